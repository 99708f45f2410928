#![doc = include_str!("etcd_4033.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context;
use primitives::time::Ticker;
use primitives::{defer, go_named, select, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_4033",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/commit/b7cf2385e6874d07f32f183007e50f4448b7e3a2",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_propose_on_commit,
        walkthrough: include_str!("etcd_4033.md"),
        asplos: Some("blocking-bugs/etcd/b7cf2385e6874d07f32f183007e50f4448b7e3a2.txt"),
        loom: Loom::DoesNotApply(
            "seven goroutines and the ticker's timer: more than loom's five threads",
        ),
        source: Source::Diff("b7cf2385"),
        fix: Fix::Upstream("b7cf2385"),
        review: "faithful after mends: Checked against etcd b7cf2385 (the fix and its test) and b7cf2385^ (`contrib/raftexample/raft.go`, `raft/node.go`), PR #4033 and the ASPLOS diff: right cycle, upstream's fix, honest deadlock verdict with the Go caveat stated; one step of the narrative overstates what the trace shows.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `ElectionTick` of raftexample's raft config: ticks without a leader before campaigning.
const ELECTION_TICK: u32 = 10;

/// How many commits the test feeds back into the proposal channel (upstream: 100 per node).
const ROUNDS: usize = 2;

/// A raft log entry: the configuration entries `StartNode` bootstraps with, or a proposal.
#[derive(Clone)]
enum Entry {
    ConfChange,
    Normal(String),
}

/// raft's `Ready`: entries to save, send and apply.
struct Ready {
    entries: Vec<Entry>,
}

/// raft's `node` for a one-member cluster: a handle whose requests are served by `run`.
struct Node {
    propc: Chan<String>,
    readyc: Chan<Ready>,
    advancec: Chan<()>,
    tickc: Chan<()>,
    stop: Chan<()>,
    done: Chan<()>,
}

impl Node {
    /// `raft.StartNode`: the node starts with its bootstrap entries and no leader.
    fn start() -> Arc<Node> {
        let n = Arc::new(Node {
            propc: Chan::new(0).named("propc"),
            readyc: Chan::new(0).named("readyc"),
            advancec: Chan::new(0).named("advancec"),
            tickc: Chan::new(0).named("tickc"),
            stop: Chan::new(0).named("node.stop"),
            done: Chan::new(0).named("node.done"),
        });
        let r = n.clone();
        go_named("node.run", move || r.run());
        n
    }

    /// `node.run`: the raft state machine's loop.
    fn run(&self) {
        let mut lead = false;
        let mut elapsed = 0;
        let mut unstable = vec![Entry::ConfChange];
        let mut hard_state_changed = false;
        let mut advancing = false;
        loop {
            // Without a leader there is nobody to forward a proposal to: propc is nil.
            let propc = if lead {
                self.propc.clone()
            } else {
                Chan::nil()
            };
            let has_ready = !unstable.is_empty() || hard_state_changed;
            let readyc = if !advancing && has_ready {
                self.readyc.clone()
            } else {
                Chan::nil()
            };
            let advancec = if advancing {
                self.advancec.clone()
            } else {
                Chan::nil()
            };
            let rd = Ready {
                entries: unstable.clone(),
            };
            select! {
                recv(propc) -> m => unstable.push(Entry::Normal(m.expect("propc is never closed"))),
                recv(self.tickc) => {
                    elapsed += 1;
                    if !lead && elapsed >= ELECTION_TICK {
                        // A one-member cluster wins its own election.
                        lead = true;
                        hard_state_changed = true;
                    }
                },
                send(readyc, rd) => {
                    unstable.clear();
                    hard_state_changed = false;
                    advancing = true;
                },
                recv(advancec) => advancing = false,
                recv(self.stop) => {
                    self.done.close();
                    return;
                },
            }
        }
    }

    /// `Tick`: blocks until the state machine takes the tick (or has stopped).
    fn tick(&self) {
        select! {
            send(self.tickc, ()) => {},
            recv(self.done) => {},
        }
    }

    /// `Propose(ctx, data)`: blocks until the state machine takes the proposal.
    fn propose(&self, ctx: &context::Context, data: String) {
        select! {
            send(self.propc, data) => {},
            recv(ctx.done()) => {},
            recv(self.done) => {},
        }
    }

    fn ready(&self) -> &Chan<Ready> {
        &self.readyc
    }

    fn advance(&self) {
        select! {
            send(self.advancec, ()) => {},
            recv(self.done) => {},
        }
    }

    fn stop_node(&self) {
        select! {
            send(self.stop, ()) => {},
            recv(self.done) => return,
        }
        self.done.recv();
    }
}

/// raftexample's `raftNode`: a key-value stream backed by raft.
struct RaftNode {
    propose_c: Chan<String>,
    commit_c: Chan<Option<String>>,
    error_c: Chan<&'static str>,
    node: Arc<Node>,
    variant: Variant,
}

/// `newRaftNode`: returns the commit and error channels; the raft node starts in the background.
fn new_raft_node(
    propose_c: Chan<String>,
    variant: Variant,
) -> (Chan<Option<String>>, Chan<&'static str>) {
    let commit_c = Chan::new(0).named("commitC");
    let error_c = Chan::new(0).named("errorC");
    let (c, e) = (commit_c.clone(), error_c.clone());
    go_named("startRaft", move || {
        // replayWAL: an empty log, then nil so the client knows the commit channel is current
        c.send(None);
        let rc = Arc::new(RaftNode {
            propose_c,
            commit_c: c,
            error_c: e,
            node: Node::start(),
            variant,
        });
        go_named("serveChannels", move || rc.serve_channels());
    });
    (commit_c, error_c)
}

impl RaftNode {
    /// `publishEntries`: writes committed entries to the commit channel.
    fn publish_entries(&self, ents: &[Entry]) {
        for e in ents {
            if let Entry::Normal(s) = e {
                self.commit_c.send(Some(s.clone()));
            }
        }
    }

    fn stop(&self) {
        self.commit_c.close();
        self.error_c.close();
        self.node.stop_node();
    }

    fn serve_channels(self: &Arc<Self>) {
        let ticker = Ticker::new(Duration::from_millis(100));
        let _stop_ticker = defer(|| ticker.stop());

        if self.variant.fixed() {
            // send proposals over raft
            let stopc = Chan::new(1).named("stopc");
            let (rc, s) = (self.clone(), stopc.clone());
            go_named("proposeLoop", move || {
                while let Some(prop) = rc.propose_c.recv() {
                    // blocks until accepted by the raft state machine
                    rc.node.propose(&context::todo(), prop);
                }
                // client closed channel; shut down raft if not already
                s.send(());
            });
            // event loop on raft state machine updates
            loop {
                select! {
                    recv(ticker.c()) => self.node.tick(),
                    recv(self.node.ready()) -> rd => self.handle_ready(rd.expect("readyc is never closed")),
                    recv(stopc) => {
                        self.stop();
                        return;
                    },
                }
            }
        }

        // event loop on client proposals and raft updates
        loop {
            select! {
                recv(ticker.c()) => self.node.tick(),
                // send proposals over raft
                recv(self.propose_c) -> prop => match prop {
                    // client closed channel; shut down
                    None => {
                        self.stop();
                        return;
                    }
                    Some(prop) => self.node.propose(&context::todo(), prop),
                },
                recv(self.node.ready()) -> rd => self.handle_ready(rd.expect("readyc is never closed")),
            }
        }
    }

    /// Store raft entries to the WAL, then publish them over the commit channel.
    fn handle_ready(&self, rd: Ready) {
        // (wal.Save, raftStorage.Append, transport.Send)
        self.publish_entries(&rd.entries);
        self.node.advance();
    }
}

/// `TestProposeOnCommit`, for a one-member cluster: feed every commit back into the proposal
/// channel; blocking on a proposal must not block raft's progress.
fn test_propose_on_commit(variant: Variant) {
    // newCluster(1)
    let propose_c = Chan::new(1).named("proposeC");
    let (commit_c, error_c) = new_raft_node(propose_c.clone(), variant);
    // replay local log
    while let Some(s) = commit_c.recv() {
        if s.is_none() {
            break;
        }
    }

    let donec = Chan::new(0).named("donec");
    let (p_c, c_c, e_c, d) = (
        propose_c.clone(),
        commit_c.clone(),
        error_c.clone(),
        donec.clone(),
    );
    // feedback for ROUNDS committed entries, then update donec
    go_named("feedback", move || {
        for _ in 0..ROUNDS {
            select! {
                recv(c_c) -> s => p_c.send(s.flatten().expect("a committed entry")),
                recv(e_c) => return, // t.Fatalf
            }
        }
        d.send(());
    });
    // one message feedback per node
    let p_c = propose_c.clone();
    go_named("propose foo", move || p_c.send("foo".to_string()));

    donec.recv();

    // clus.Close()
    propose_c.close();
    while commit_c.recv().is_some() {} // drain pending commits
    error_c.recv(); // wait for the channel to close
}
