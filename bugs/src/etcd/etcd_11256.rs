#![doc = include_str!("etcd_11256.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context;
use primitives::time::Ticker;
use primitives::{defer, go_named, select, Chan, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_11256",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/issues/11256",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_node_propose_add_learner_node,
        walkthrough: include_str!("etcd_11256.md"),
        budget: Budget {
            shuttle: 10_000,
            loom: 30_000,
            timers: Some(TimerMode::Lazy),
            ..Budget::DEFAULT
        },
        source: Source::Test("etcd-io/etcd raft/node_test.go @ bcc14712"),
        fix: Fix::Ours(
            "upstream has none: #11256 was closed without a change, its PR #11303 was closed \
             unmerged (stale), and the send is still inside the loop in etcd-io/raft's \
             node_test.go (cdfbeed)",
        ),
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `raftpb.ConfChange`: only `ConfChangeAddLearnerNode` is used.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ConfChange {
    node_id: u64,
}

/// `raftpb.Entry`: an empty normal entry (a new leader's, or a refused conf change) or a conf
/// change.
#[derive(Clone, Copy, Debug)]
struct Entry {
    index: u64,
    conf_change: Option<ConfChange>,
}

/// `raftpb.ConfState`.
#[derive(Clone, Debug, Default)]
struct ConfState {
    voters: Vec<u64>,
    learners: Vec<u64>,
}

/// raft's `Ready`: entries to save, entries to apply.
#[derive(Clone, Default)]
struct Ready {
    entries: Vec<Entry>,
    committed_entries: Vec<Entry>,
}

/// The raft state machine of a one-voter group, reduced to what the test touches.
struct Raft {
    id: u64,
    lead: u64,
    conf: ConfState,
    log: Vec<Entry>,
    stabled: u64,
    committed: u64,
    applied: u64,
    /// The index of the last conf change proposed; a new one is refused until it is applied.
    pending_conf_index: u64,
}

impl Raft {
    fn last_index(&self) -> u64 {
        self.log.last().map_or(0, |e| e.index)
    }

    /// `appendEntry`: with one voter, an appended entry is committed at once.
    fn append_entry(&mut self, conf_change: Option<ConfChange>) {
        let index = self.last_index() + 1;
        self.log.push(Entry { index, conf_change });
        self.committed = index;
    }

    /// `MsgHup`: the only voter wins its election and appends an empty entry.
    fn campaign(&mut self) {
        self.lead = self.id;
        // Conservatively, the log may hold an unapplied conf change.
        self.pending_conf_index = self.last_index();
        self.append_entry(None);
    }

    /// `stepLeader` on `MsgProp` of a conf change.
    fn propose_conf_change(&mut self, cc: ConfChange) {
        if self.pending_conf_index > self.applied {
            // Refused: it becomes an empty normal entry.
            self.append_entry(None);
        } else {
            self.pending_conf_index = self.last_index() + 1;
            self.append_entry(Some(cc));
        }
    }

    fn apply_conf_change(&mut self, cc: ConfChange) -> ConfState {
        if !self.conf.learners.contains(&cc.node_id) {
            self.conf.learners.push(cc.node_id);
        }
        self.conf.clone()
    }

    fn entries(&self, after: u64, upto: u64) -> Vec<Entry> {
        self.log
            .iter()
            .filter(|e| e.index > after && e.index <= upto)
            .copied()
            .collect()
    }
}

/// raft's `node`: a handle whose requests are served by `run`.
struct Node {
    propc: Chan<ConfChange>,
    recvc: Chan<()>,
    confc: Chan<ConfChange>,
    confstatec: Chan<ConfState>,
    readyc: Chan<Ready>,
    advancec: Chan<()>,
    tickc: Chan<()>,
    done: Chan<()>,
    stop: Chan<()>,
}

/// `newNode(newTestRawNode(1, []uint64{1}, 10, 1, s))`.
fn new_node() -> Arc<Node> {
    Arc::new(Node {
        propc: Chan::new(0).named("propc"),
        recvc: Chan::new(0).named("recvc"),
        confc: Chan::new(0).named("confc"),
        confstatec: Chan::new(0).named("confstatec"),
        readyc: Chan::new(0).named("readyc"),
        advancec: Chan::new(0).named("advancec"),
        tickc: Chan::new(128).named("tickc"),
        done: Chan::new(0).named("n.done"),
        stop: Chan::new(0).named("n.stop"),
    })
}

impl Node {
    /// `node.run`.
    fn run(&self) {
        let mut r = Raft {
            id: 1,
            lead: 0,
            conf: ConfState {
                voters: vec![1],
                learners: vec![],
            },
            log: vec![],
            stabled: 0,
            committed: 0,
            applied: 0,
            pending_conf_index: 0,
        };
        let mut rd = Ready::default();
        let mut advancing = false;
        loop {
            let readyc = if advancing {
                Chan::nil()
            } else {
                rd = Ready {
                    entries: r.entries(r.stabled, r.last_index()),
                    committed_entries: r.entries(r.applied, r.committed),
                };
                if rd.entries.is_empty() && rd.committed_entries.is_empty() {
                    Chan::nil()
                } else {
                    self.readyc.clone()
                }
            };
            let advancec = if advancing {
                self.advancec.clone()
            } else {
                Chan::nil()
            };
            // Proposals are taken only with a leader.
            let propc = if r.lead != 0 {
                self.propc.clone()
            } else {
                Chan::nil()
            };
            select! {
                recv(propc) -> cc => r.propose_conf_change(cc.expect("propc is never closed")),
                recv(self.recvc) => r.campaign(),
                recv(self.confc) -> cc => {
                    let cs = r.apply_conf_change(cc.expect("confc is never closed"));
                    select! {
                        send(self.confstatec, cs) => {},
                        recv(self.done) => {},
                    }
                },
                recv(self.tickc) => {}, // a leader's heartbeat tick: nobody to send to
                send(readyc, rd.clone()) => advancing = true,
                recv(advancec) => {
                    if let Some(e) = rd.entries.last() {
                        r.stabled = e.index;
                    }
                    if let Some(e) = rd.committed_entries.last() {
                        r.applied = e.index;
                    }
                    advancing = false;
                },
                recv(self.stop) => {
                    self.done.close();
                    return;
                },
            }
        }
    }

    /// `Campaign`: steps `MsgHup` through `recvc`.
    fn campaign(&self, ctx: &context::Context) {
        select! {
            send(self.recvc, ()) => {},
            recv(ctx.done()) => {},
            recv(self.done) => {},
        }
    }

    /// `ProposeConfChange`: returns once the state machine took the message.
    fn propose_conf_change(&self, ctx: &context::Context, cc: ConfChange) {
        select! {
            send(self.propc, cc) => {},
            recv(ctx.done()) => {},
            recv(self.done) => {},
        }
    }

    fn tick(&self) {
        select! {
            send(self.tickc, ()) => {},
            recv(self.done) => {},
            default => {}, // the node is busy: the tick is dropped (and logged)
        }
    }

    fn ready(&self) -> &Chan<Ready> {
        &self.readyc
    }

    fn apply_conf_change(&self, cc: ConfChange) -> ConfState {
        select! {
            send(self.confc, cc) => {},
            recv(self.done) => {},
        }
        select! {
            recv(self.confstatec) -> cs => cs.unwrap_or_default(),
            recv(self.done) => ConfState::default(),
        }
    }

    fn advance(&self) {
        select! {
            send(self.advancec, ()) => {},
            recv(self.done) => {},
        }
    }

    fn stop(&self) {
        select! {
            send(self.stop, ()) => {},
            recv(self.done) => return,
        }
        self.done.recv();
    }
}

/// `TestNodeProposeAddLearnerNode`.
fn test_node_propose_add_learner_node(variant: Variant) {
    let ticker = Ticker::new(Duration::from_millis(100));
    let _stop_ticker = defer(|| ticker.stop());
    let n = new_node();
    let n2 = n.clone();
    go_named("node.run", move || n2.run());
    n.campaign(&context::todo());
    let stop = Chan::<()>::new(0).named("stop");
    let done = Chan::<()>::new(0).named("done");
    let apply_conf_chan = Chan::<()>::new(0).named("applyConfChan");

    let (n2, t2, stop2, done2, apply2) = (
        n.clone(),
        ticker.c().clone(),
        stop.clone(),
        done.clone(),
        apply_conf_chan.clone(),
    );
    go_named("TestNodeProposeAddLearnerNode.func1", move || {
        let _close_done = defer(|| done2.close());
        loop {
            select! {
                recv(stop2) => return,
                recv(t2) => n2.tick(),
                recv(n2.ready()) -> rd => {
                    let rd = rd.expect("readyc is never closed");
                    // (s.Append(rd.Entries), t.Logf)
                    for ent in &rd.entries {
                        let Some(cc) = ent.conf_change else {
                            continue;
                        };
                        let state = n2.apply_conf_change(cc);
                        assert!(
                            state.learners.first() == Some(&cc.node_id) && cc.node_id == 2,
                            "ApplyConfChange reports the learner just added"
                        );
                        assert_eq!(state.voters.len(), 1, "a learner leaves the voters alone");
                        if variant.fixed() {
                            // Ours: the signal gives way once the test has stopped listening.
                            select! {
                                send(apply2, ()) => {},
                                recv(stop2) => return,
                            }
                        } else {
                            apply2.send(());
                        }
                    }
                    n2.advance();
                },
            }
        }
    });

    let cc = ConfChange { node_id: 2 };
    // Not upstream: a second client proposes the same learner (a retry). Raft accepts it as a
    // second conf-change entry if the first has been applied by then.
    let n3 = n.clone();
    go_named("proposeAgain", move || {
        n3.propose_conf_change(&context::todo(), cc)
    });
    n.propose_conf_change(&context::todo(), cc);
    apply_conf_chan.recv();
    stop.close();
    done.recv();
    n.stop(); // added upstream later (etcd#13562)
}
