#![doc = include_str!("etcd_4474.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context;
use primitives::time::Ticker;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_4474",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/4476",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Livelock,
        kernel: test_restart,
        walkthrough: include_str!("etcd_4474.md"),
        asplos: Some("blocking-bugs/etcd/0cb304ec61019c5ff2f6260245ef30fb6dc9711a.txt"),
        loom: Loom::DoesNotApply(
            "main, four goroutines and the ticker's timer: more than loom's five threads; \
             and only the step bound ends the livelock",
        ),
        source: Source::Diff("0cb304ec"),
        fix: Fix::Upstream("0cb304ec"),
        review: "faithful after mends: Checked against the fix 0cb304ec (#4476), contrib/raftexample/raft.go and raft/{node,raft}.go at 5e47ba3f, eb7fef55, and the #4474/#4476 threads: the missing-HardState restart hang and upstream's replay-through-raft fix are modelled with an openly admitted pre-eb7fef55 buggy publishEntries; one unlisted channel capacity (proposeC) to add to Deviations.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `ElectionTick` of raftexample's raft config.
const ELECTION_TICK: u32 = 10;

/// The member id of the one-node cluster (`--id 1`).
const ID: u64 = 1;

#[derive(Clone, Debug)]
enum EntryType {
    /// `ConfChangeAddNode` of a member.
    ConfChange(u64),
    /// A normal entry; `None` is an empty one (a new leader's first entry).
    Normal(Option<String>),
}

/// `raftpb.Entry` (terms left out).
#[derive(Clone, Debug)]
struct Entry {
    index: u64,
    kind: EntryType,
}

/// `raftpb.HardState`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct HardState {
    term: u64,
    vote: u64,
    commit: u64,
}

/// `raft.MemoryStorage`: what `RestartNode` reads its state from.
#[derive(Default)]
struct MemoryStorage {
    hard_state: HardState,
    /// The membership of the last snapshot (there is none here).
    conf_state: Vec<u64>,
    ents: Vec<Entry>,
}

/// What the first run left in the WAL (`raftexample-1`): the bootstrap conf change, the first
/// leader's empty entry and one key-value proposal, all committed.
fn wal_read_all() -> (HardState, Vec<Entry>) {
    let st = HardState {
        term: 2,
        vote: ID,
        commit: 3,
    };
    let ents = vec![
        Entry {
            index: 1,
            kind: EntryType::ConfChange(ID),
        },
        Entry {
            index: 2,
            kind: EntryType::Normal(None),
        },
        Entry {
            index: 3,
            kind: EntryType::Normal(Some("foo".to_string())),
        },
    ];
    (st, ents)
}

/// raft's `Ready`: entries to save, the hard state to save, entries to apply.
struct Ready {
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
    committed_entries: Vec<Entry>,
}

/// The raft state machine (`raft`), reduced to a log, a term, a leader and the progress map.
struct Raft {
    id: u64,
    /// `prs`: the members it knows of; it may only campaign if it is one of them.
    prs: Vec<u64>,
    term: u64,
    vote: u64,
    lead: u64,
    log: Vec<Entry>,
    stabled: u64,
    committed: u64,
    applied: u64,
    election_elapsed: u32,
}

impl Raft {
    /// `newRaft`: the membership comes from the snapshot's ConfState, the term and the commit
    /// index from the saved HardState; the node starts as a follower without a leader.
    fn new(storage: MemoryStorage) -> Raft {
        let hs = storage.hard_state;
        let last = storage.ents.last().map_or(0, |e| e.index);
        Raft {
            id: ID,
            prs: storage.conf_state,
            term: hs.term,
            vote: hs.vote,
            lead: 0,
            log: storage.ents,
            stabled: last,
            committed: hs.commit,
            applied: 0,
            election_elapsed: 0,
        }
    }

    fn last_index(&self) -> u64 {
        self.log.last().map_or(0, |e| e.index)
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.committed,
        }
    }

    /// `promotable`: its own id is in the progress map.
    fn promotable(&self) -> bool {
        self.prs.contains(&self.id)
    }

    fn add_node(&mut self, id: u64) {
        if !self.prs.contains(&id) {
            self.prs.push(id);
        }
    }

    /// `tickElection`.
    fn tick(&mut self) {
        if !self.promotable() {
            self.election_elapsed = 0;
            return;
        }
        self.election_elapsed += 1;
        if self.lead == 0 && self.election_elapsed >= ELECTION_TICK {
            self.election_elapsed = 0;
            self.campaign();
        }
    }

    /// `campaign`: with itself the only member, its own vote is a quorum.
    fn campaign(&mut self) {
        self.term += 1;
        self.vote = self.id;
        self.lead = self.id;
        self.append_entry(None);
    }

    /// `appendEntry` on the leader of a one-member cluster: committed at once.
    fn append_entry(&mut self, data: Option<String>) {
        let index = self.last_index() + 1;
        self.log.push(Entry {
            index,
            kind: EntryType::Normal(data),
        });
        self.committed = index;
    }

    fn entries_between(&self, from: u64, to: u64) -> Vec<Entry> {
        self.log
            .iter()
            .filter(|e| e.index > from && e.index <= to)
            .cloned()
            .collect()
    }
}

/// raft's `node`: a handle whose requests are served by `run`.
struct Node {
    propc: Chan<String>,
    confc: Chan<u64>,
    confstatec: Chan<Vec<u64>>,
    readyc: Chan<Ready>,
    advancec: Chan<()>,
    tickc: Chan<()>,
    done: Chan<()>,
    stop: Chan<()>,
}

impl Node {
    /// `raft.RestartNode`: the membership and the log come from the storage.
    fn restart(storage: MemoryStorage) -> Arc<Node> {
        let r = Raft::new(storage);
        let n = Arc::new(Node {
            propc: Chan::new(0).named("propc"),
            confc: Chan::new(0).named("confc"),
            confstatec: Chan::new(0).named("confstatec"),
            readyc: Chan::new(0).named("readyc"),
            advancec: Chan::new(0).named("advancec"),
            tickc: Chan::new(0).named("tickc"),
            done: Chan::new(0).named("node.done"),
            stop: Chan::new(0).named("node.stop"),
        });
        let n2 = n.clone();
        go_named("node.run", move || n2.run(r));
        n
    }

    /// `node.run`.
    fn run(&self, mut r: Raft) {
        let mut advancing = false;
        let mut prev_hard_st = HardState::default();
        let mut prev_commit = 0;
        loop {
            // No leader, nobody to take a proposal: propc is nil.
            let propc = if r.lead != 0 {
                self.propc.clone()
            } else {
                Chan::nil()
            };
            let hs = r.hard_state();
            let rd = Ready {
                hard_state: (hs != prev_hard_st).then_some(hs),
                entries: r.entries_between(r.stabled, r.last_index()),
                committed_entries: r.entries_between(r.applied, r.committed),
            };
            let has_ready = rd.hard_state.is_some()
                || !rd.entries.is_empty()
                || !rd.committed_entries.is_empty();
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
            select! {
                recv(propc) -> m => r.append_entry(Some(m.expect("propc is never closed"))),
                recv(self.confc) -> cc => {
                    r.add_node(cc.expect("confc is never closed"));
                    select! {
                        send(self.confstatec, r.prs.clone()) => {},
                        recv(self.done) => {},
                    }
                },
                recv(self.tickc) => r.tick(),
                send(readyc, rd) => {
                    prev_hard_st = hs;
                    prev_commit = hs.commit;
                    r.stabled = r.last_index();
                    advancing = true;
                },
                recv(advancec) => {
                    r.applied = prev_commit;
                    advancing = false;
                },
                recv(self.stop) => {
                    self.done.close();
                    return;
                },
            }
        }
    }

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

    fn apply_conf_change(&self, node_id: u64) {
        select! {
            send(self.confc, node_id) => {},
            recv(self.done) => {},
        }
        select! {
            recv(self.confstatec) => {},
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
    /// The index of the last entry found in the WAL at start.
    last_index: Shared<u64>,
    /// Populated after the WAL replay.
    node: Shared<Option<Arc<Node>>>,
    raft_storage: Shared<MemoryStorage>,
    /// Closed when the client has closed `proposeC`.
    stopc: Chan<()>,
    variant: Variant,
}

/// Go's `x.f()` on a nil interface `x`.
#[track_caller]
fn deref<T>(p: Option<T>) -> T {
    p.expect("runtime error: invalid memory address or nil pointer dereference")
}

/// `newRaftNode`, restarting from an existing WAL.
fn new_raft_node(
    propose_c: Chan<String>,
    variant: Variant,
) -> (Chan<Option<String>>, Chan<&'static str>) {
    let rc = Arc::new(RaftNode {
        propose_c,
        commit_c: Chan::new(0).named("commitC"),
        error_c: Chan::new(0).named("errorC"),
        last_index: Shared::new(0).named("rc.lastIndex"),
        node: Shared::new(None).named("rc.node"),
        raft_storage: Shared::new(MemoryStorage::default()).named("rc.raftStorage"),
        stopc: Chan::new(0).named("stopc"),
        variant,
    });
    let (commit_c, error_c) = (rc.commit_c.clone(), rc.error_c.clone());
    go_named("startRaft", move || rc.start_raft());
    (commit_c, error_c)
}

impl RaftNode {
    fn node(&self) -> Arc<Node> {
        deref(self.node.get())
    }

    /// `publishEntries`: hands committed entries to the client; `false` once stopped.
    fn publish_entries(&self, ents: &[Entry]) -> bool {
        for e in ents {
            match &e.kind {
                EntryType::Normal(None) => {
                    // Nothing to publish in an empty entry.
                    if !self.variant.fixed() {
                        continue;
                    }
                }
                EntryType::Normal(Some(s)) => {
                    select! {
                        send(self.commit_c, Some(s.clone())) => {},
                        recv(self.stopc) => return false,
                    }
                }
                EntryType::ConfChange(node_id) => {
                    // Buggy: ignored, as raftexample did before eb7fef55 (at the fix's parent,
                    // applying it during the replay crashes on the nil node instead).
                    if self.variant.fixed() {
                        self.node().apply_conf_change(*node_id);
                    }
                }
            }

            if self.variant.fixed() && e.index == self.last_index.get() {
                // The replayed log is all out: tell the client with a nil.
                select! {
                    send(self.commit_c, None) => {},
                    recv(self.stopc) => return false,
                }
            }
        }
        true
    }

    /// `replayWAL`.
    fn replay_wal(&self) {
        let (st, ents) = wal_read_all();
        // The storage gets the log, so that raft restarts after its last entry.
        self.raft_storage
            .write(|s| s.ents.extend(ents.iter().cloned()));
        if self.variant.fixed() {
            // The nil goes out once the entry at lastIndex is published (none: at once).
            if let Some(last) = ents.last() {
                self.last_index.set(last.index);
            } else {
                self.commit_c.send(None);
            }
            self.raft_storage.write(|s| s.hard_state = st);
        } else {
            self.publish_entries(&ents);
            // The nil tells the client it has seen the whole log.
            self.commit_c.send(None);
        }
    }

    fn start_raft(self: Arc<Self>) {
        self.replay_wal();
        // oldwal: the node restarts from its storage
        let storage = self.raft_storage.write(std::mem::take);
        self.node.set(Some(Node::restart(storage)));
        go_named("serveChannels", move || self.serve_channels());
    }

    /// `stop`: closes all channels and stops raft (and, upstream, exits the process).
    fn stop(&self) {
        self.commit_c.close();
        self.error_c.close();
        self.node().stop_node();
    }

    fn serve_channels(self: Arc<Self>) {
        let ticker = Ticker::new(Duration::from_millis(100));
        let _stop_ticker = defer(|| ticker.stop());
        let node = self.node();

        // Proposals go to raft from a goroutine of their own.
        let rc = self.clone();
        go_named("serveChannels.func1", move || {
            while let Some(prop) = rc.propose_c.recv() {
                // Waits until raft takes it (only a leader does).
                rc.node().propose(&context::todo(), prop);
            }
            // The client is done: stop the loop below.
            rc.stopc.close();
        });

        // The loop that drives raft: ticks and Ready batches.
        loop {
            select! {
                recv(ticker.c()) => node.tick(),
                // Save the batch, then publish what it commits.
                recv(node.ready()) -> rd => {
                    let rd = rd.expect("readyc is never closed");
                    // (wal.Save(rd.HardState, rd.Entries), raftStorage.Append(rd.Entries),
                    // transport.Send(rd.Messages))
                    if !self.publish_entries(&rd.committed_entries) {
                        self.stop();
                        return;
                    }
                    node.advance();
                },
                recv(self.stopc) => {
                    self.stop();
                    return;
                },
            }
        }
    }
}

/// The restart of a one-member raftexample cluster: the node replays its WAL, then a new
/// proposal must commit.
fn test_restart(variant: Variant) {
    // `proposeC := make(chan string)` in raftexample's `main`.
    let propose_c = Chan::new(0).named("proposeC");
    let (commit_c, error_c) = new_raft_node(propose_c.clone(), variant);

    // Read the replayed log, up to the nil.
    let mut replayed = Vec::new();
    while let Some(Some(s)) = commit_c.recv() {
        replayed.push(s);
    }
    assert_eq!(replayed, ["foo"], "the replay publishes the committed log");

    // curl -XPUT: a new write after the restart
    propose_c.send("bar".to_string());
    let got = commit_c.recv().flatten();
    assert_eq!(got.as_deref(), Some("bar"), "the proposal commits");

    // shut down: close proposeC, wait for errorC to close
    propose_c.close();
    while commit_c.recv().is_some() {}
    error_c.recv();
}
