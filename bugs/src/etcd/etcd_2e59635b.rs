#![doc = include_str!("etcd_2e59635b.md")]

use std::sync::Arc;

use primitives::sync::{AtomicI64, RwMutex, WaitGroup};
use primitives::{defer, go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_2e59635b",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/commit/2e59635bea6a105581087bb93f68186f35cb0263",
        category: "Misuse WaitGroup",
        expected: primitives::Verdict::Race,
        kernel: test_etcd2e59635b,
        walkthrough: include_str!("etcd_2e59635b.md"),
        asplos: Some("non-blocking-bugs/etcd/2e59635bea6a105581087bb93f68186f35cb0263.txt"),
        source: Source::Diff("2e59635b"),
        fix: Fix::Upstream("2e59635b"),
        review: "faithful after mends: Checked against 2e59635b (= ASPLOS diff) and peer.go, peer_hub.go, etcd.go, participant.go, etcd_test.go at 6dc49def: the idle send goroutine's own wg.Add races peer.stop's Wait exactly as upstream; one-hunk fix mapped; the mends (Server.Run's line range, a source for idle peers) are made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `maxInflight`.
const MAX_INFLIGHT: i64 = 4;

/// The peer's states (`participantPeer`, `idlePeer`, `stoppedPeer`).
const PARTICIPANT_PEER: i32 = 0;
const IDLE_PEER: i32 = 1;
const STOPPED_PEER: i32 = 2;

/// `peer`: sends raft messages to one other member over HTTP.
struct Peer {
    /// `queue`: only made by `participate`, which this kernel never calls.
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
        status: Shared::new(IDLE_PEER).named("status"),
        inflight: AtomicI64::new(0).named("inflight"),
        mu: RwMutex::new().named("peer.mu"),
        wg: WaitGroup::new().named("peer.wg"),
        variant,
    })
}

impl Peer {
    /// `stop`: marks the peer stopped, then waits for every send in flight.
    fn stop(&self) {
        self.mu.lock();
        if self.status.get() == PARTICIPANT_PEER {
            self.queue.get().close();
        }
        self.status.set(STOPPED_PEER);
        self.mu.unlock();
        self.wg.wait();
    }

    /// `send`: an idle peer posts each message from a goroutine of its own.
    fn send(self: &Arc<Self>, d: Vec<u8>) -> Result<(), String> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());

        match self.status.get() {
            PARTICIPANT_PEER => {
                // The queue's `select` with `default`: never reached, the peer stays idle.
                return Err("reach max serving".into());
            }
            IDLE_PEER => {
                if self.inflight.load() > MAX_INFLIGHT {
                    return Err("reach max idle".into());
                }
                if self.variant.fixed() {
                    self.wg.add(1);
                }
                let p = self.clone();
                go_named("send.func1", move || {
                    if !p.variant.fixed() {
                        p.wg.add(1);
                    }
                    p.post(d);
                    p.wg.done();
                });
            }
            STOPPED_PEER => return Err("sender stopped".into()),
            _ => {}
        }
        Ok(())
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

/// `peerHub`, with its one peer.
struct PeerHub {
    mu: RwMutex,
    stopped: Shared<bool>,
    peer: Arc<Peer>,
}

impl PeerHub {
    /// `stop`: stops every peer.
    fn stop(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.stopped.set(true);
        self.peer.stop();
        // tr.CloseIdleConnections()
    }

    /// `send`, through `fetch` and `peer`: hands the encoded message to the peer.
    fn send(&self, msg: &str) -> Result<(), String> {
        let p = {
            self.mu.lock();
            let _unlock = defer(|| self.mu.unlock());
            if self.stopped.get() {
                return Err("peerHub stopped".into());
            }
            self.peer.clone()
        };
        // json.Marshal(msg)
        p.send(msg.as_bytes().to_vec())
    }
}

/// A test of `etcd/etcd_test.go` at 2e59635b^: a server runs (`go es[i].Run()`), its
/// participant sends a raft message to an idle peer, then the test stops the server
/// (`es[i].Stop()`).
fn test_etcd2e59635b(variant: Variant) {
    let peer_hub = Arc::new(PeerHub {
        mu: RwMutex::new().named("peerHub.mu"),
        stopped: Shared::new(false).named("peerHub.stopped"),
        peer: new_peer(variant),
    });
    // participant.stopc and Server.stopc.
    let p_stopc: Chan<()> = Chan::new(0).named("participant.stopc");
    let s_stopc: Chan<()> = Chan::new(0).named("Server.stopc");

    let (hub, p_stop, s_stop) = (peer_hub.clone(), p_stopc.clone(), s_stopc.clone());
    go_named("Server.Run", move || {
        // participant.run: one round of its loop ends in p.send(node.Msgs()).
        if let Err(err) = hub.send("MsgApp") {
            let _ = err; // log.Println("send:", err)
        }
        // case <-p.stopc: return stopMode
        p_stop.recv();
        // Run, in stopMode: s.stopc <- struct{}{}
        s_stop.send(());
    });

    // Server.Stop: s.p.stop() closes the participant's stopc, waits for Run to end, then
    // stops the peer hub.
    p_stopc.close();
    s_stopc.recv();
    peer_hub.stop();
}
