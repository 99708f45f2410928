#![doc = include_str!("etcd_7adb7656.md")]

use std::sync::Arc;

use primitives::sync::{AtomicI64, RwMutex, WaitGroup};
use primitives::{defer, go_named, Chan, GoMap, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_7adb7656",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/commit/7adb765660aa7548017583bcb338c5398c7c6fca",
        category: "Misuse WaitGroup",
        expected: primitives::Verdict::Race,
        kernel: test_multiple_nodes,
        walkthrough: include_str!("etcd_7adb7656.md"),
        asplos: Some("non-blocking-bugs/etcd/7adb765660aa7548017583bcb338c5398c7c6fca.txt"),
        source: Source::Diff("7adb7656"),
        fix: Fix::Upstream("7adb7656"),
        loom: Loom::DoesNotApply("main, Bootstrap and maxInflight = 4 handle goroutines: six goroutines, loom holds five"),
        review: "faithful after mends: Checked against 7adb7656 (= ASPLOS diff) and peer.go, peer_hub.go, etcd.go, etcd_test.go at b8b57346: participate's handlers add themselves to the wg after their go, racing peer.stop's blocking Wait, as upstream; both hunks mapped; the mends (Bootstrap's line cite, a Go-version source for the reuse panic, TestMultipleNodes admitted as the porter's choice) are made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `maxInflight`: the number of `handle` goroutines of a participant peer.
const MAX_INFLIGHT: usize = 4;

/// The peer's states (`participant`, from `etcd.go`; `idle`, `stopped`).
const PARTICIPANT: i32 = 0;
const IDLE: i32 = 1;
const STOPPED: i32 = 2;

/// `peer`: sends raft messages to one other member over HTTP.
struct Peer {
    queue: Shared<Chan<Vec<u8>>>,
    status: Shared<i32>,
    inflight: AtomicI64,
    mu: RwMutex,
    wg: WaitGroup,
    variant: Variant,
}

/// `newPeer`: a peer starts idle.
fn new_peer(variant: Variant) -> Arc<Peer> {
    Arc::new(Peer {
        queue: Shared::new(Chan::nil()).named("queue"),
        status: Shared::new(IDLE).named("status"),
        inflight: AtomicI64::new(0).named("inflight"),
        mu: RwMutex::new().named("peer.mu"),
        wg: WaitGroup::new().named("peer.wg"),
        variant,
    })
}

impl Peer {
    /// `participate`: makes the queue and starts the pool of `handle` goroutines.
    fn participate(self: &Arc<Self>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.queue.set(Chan::new(0).named("peer.queue"));
        self.status.set(PARTICIPANT);
        for _ in 0..MAX_INFLIGHT {
            if self.variant.fixed() {
                self.wg.add(1);
            }
            let (p, queue) = (self.clone(), self.queue.get());
            go_named("handle", move || p.handle(queue));
        }
    }

    /// `stop`: marks the peer stopped, then waits for its handlers.
    fn stop(&self) {
        self.mu.lock();
        if self.status.get() == PARTICIPANT {
            self.queue.get().close();
        }
        self.status.set(STOPPED);
        self.mu.unlock();
        self.wg.wait();
    }

    /// `handle`: posts every message of the queue until it is closed.
    fn handle(&self, queue: Chan<Vec<u8>>) {
        let _done = if self.variant.fixed() {
            Some(defer(|| self.wg.done()))
        } else {
            self.wg.add(1);
            None
        };
        while let Some(d) = queue.recv() {
            self.post(d);
        }
        if !self.variant.fixed() {
            self.wg.done();
        }
    }

    /// `post`: counts itself in flight and posts `d` to the peer's URL.
    fn post(&self, d: Vec<u8>) {
        self.inflight.add(1);
        let _done = defer(|| {
            self.inflight.add(-1);
        });
        // p.c.Post(p.url, "application/octet-stream", bytes.NewBuffer(d)): the request.
        let _ = d;
    }
}

/// `peerHub`.
struct PeerHub {
    mu: RwMutex,
    peers: GoMap<i64, Arc<Peer>>,
    variant: Variant,
}

impl PeerHub {
    /// `stop`: stops every peer.
    fn stop(&self) {
        let peers: Vec<Arc<Peer>> = self.peers.with(|m| m.values().cloned().collect());
        for p in peers {
            p.stop();
        }
        // tr.CloseIdleConnections()
    }

    /// `peer`.
    fn peer(&self, id: i64) -> Option<Arc<Peer>> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.peers.get(&id)
    }

    /// `add`.
    fn add(&self, id: i64) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.peers.insert(id, new_peer(self.variant));
    }
}

/// `Server`, the parts the bug goes through.
struct Server {
    id: i64,
    peer_hub: PeerHub,
    /// `s.stop`: closed by `Stop`.
    stop: Chan<()>,
    /// The store's watcher on `v2machineKVPrefix` (`w.EventChan`), which `waitCluster` reads.
    event_chan: Chan<String>,
}

impl Server {
    /// `Bootstrap`: the node adds itself, applies that entry, then runs as a participant.
    fn bootstrap(&self) {
        // s.node.Campaign(); s.node.Add(s.id, ...); s.apply(s.node.Next())
        self.apply_add_node(self.id);
        // s.run() → runParticipant: its loop ends on <-s.stop.
        self.stop.recv();
    }

    /// `apply`, for a `raft.AddNode` entry.
    fn apply_add_node(&self, node_id: i64) {
        self.peer_hub.add(node_id);
        let peer = match self.peer_hub.peer(node_id) {
            Some(p) => p,
            None => return, // log.Fatal("cannot get the added peer:", err)
        };
        peer.participate();
        // s.Store.Set(v2machineKVPrefix/<id>, ...): the watcher sees the new member.
        self.event_chan.send(format!("/_etcd/machines/{node_id}"));
    }

    /// `Stop`.
    fn stop(&self) {
        // s.rh.stop(); s.client.CloseConnections()
        self.peer_hub.stop();
        self.stop.close();
    }
}

/// `TestMultipleNodes` at 7adb7656^, for its cluster of one node: `buildCluster(1, false)`
/// starts `go es[0].Bootstrap()`, `waitCluster` waits for the node to appear in the store,
/// and the test stops the server.
fn test_multiple_nodes(variant: Variant) {
    let s = Arc::new(Server {
        id: 0,
        peer_hub: PeerHub {
            mu: RwMutex::new().named("peerHub.mu"),
            peers: GoMap::new().named("peerHub.peers"),
            variant,
        },
        stop: Chan::new(0).named("s.stop"),
        event_chan: Chan::new(1).named("w.EventChan"),
    });

    let e = s.clone();
    go_named("Bootstrap", move || e.bootstrap());

    // waitCluster: the first event under v2machineKVPrefix is node 0's.
    // (The test's check of the event's key cannot fail here and is left out.)
    let _key = s.event_chan.recv();

    s.stop();
}
