#![doc = include_str!("swarmkit_1347.md")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{AtomicU32, Mutex, RwMutex};
use primitives::time::Ticker;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "swarmkit_1347",
        project: "swarmkit",
        upstream: "https://github.com/moby/swarmkit/pull/1347",
        category: "RWR deadlock (stopMu read-locked twice across Shutdown)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_swarmkit1347,
        walkthrough: include_str!("swarmkit_1347.md"),
        source: Source::Diff("docker/swarmkit 84a20114^ manager/state/raft/raft.go, manager/state/raft/util.go, manager/state/raft/membership/cluster.go, manager/raftpicker/raftpicker.go, manager/manager.go, api/control.pb.go"),
        fix: Fix::Upstream("docker/swarmkit 84a20114"),
        review: "faithful after mends: Checked against 84a20114 and its parent (manager/state/raft/raft.go, util.go, membership/cluster.go, manager/raftpicker/raftpicker.go, manager/manager.go, api/control.pb.go, vendored etcd raft node.go), the merge d7215e31, dd55a271 (#1391) and ca855c08 (#1478): right bug, the order of lock operations kept, exact fix, deadlock verdict, honest failure; mended: an unsourced loom figure dropped, the ListNodes caller admitted as the port's own choice (updateLoop is likelier), the RWMutex doc wording, stop's ticker and WAL, Manager.Stop's dropped parts, the source list.",
        file: file!(),
        // The default loom budget: 50,000 did not finish the fixed variant's search either.
        ..Bug::DEFAULT
    }
}

/// `ErrNoRaftMember`.
const ERR_NO_RAFT_MEMBER: &str = "raft: node is not yet part of a raft cluster";
/// `ErrNoClusterLeader`.
const ERR_NO_CLUSTER_LEADER: &str = "raft: no elected cluster leader";

/// A member of the raft cluster as this node knows it (`membership.Member`).
#[derive(Clone, Debug)]
struct Member {
    addr: &'static str,
}

/// `membership.Cluster`: the members this node knows, by raft id. Fixed in the kernel.
struct Cluster {
    members: BTreeMap<u64, Member>,
}

impl Cluster {
    /// `Members`: a copy of the member list.
    fn members(&self) -> BTreeMap<u64, Member> {
        self.members.clone()
    }
}

/// `raft.Status`: what etcd's raft node reports of itself.
struct Status {
    lead: u64,
}

/// The embedded etcd `raft.Node`; its own goroutine is left out, and the leader it reports
/// does not change.
struct RaftNode {
    lead: u64,
}

impl RaftNode {
    /// `Status`.
    fn status(&self) -> Status {
        Status { lead: self.lead }
    }
}

/// `raft.Node` of swarmkit's manager (`manager/state/raft/raft.go`).
struct Node {
    node: RaftNode,
    cluster: Cluster,
    ctx: Context,
    cancel: CancelFunc,
    is_member: AtomicU32,
    stop_ch: Chan<()>,
    done_ch: Chan<()>,
    /// Read-locked by the methods that must not overlap `stop`; write-locked by `stop` alone.
    stop_mu: RwMutex,
    variant: Variant,
}

/// `NewNode`, for a follower (raft id 1) of a cluster whose leader is raft id 2.
fn new_node(variant: Variant) -> Node {
    let (ctx, cancel) = context::with_cancel(&context::background());
    let this = Member {
        addr: "10.0.0.1:4242",
    };
    let leader = Member {
        addr: "10.0.0.2:4242",
    };
    Node {
        node: RaftNode { lead: 2 },
        cluster: Cluster {
            members: BTreeMap::from([(1, this), (2, leader)]),
        },
        ctx,
        cancel,
        // Set to 1 by JoinAndStart; the kernel starts joined.
        is_member: AtomicU32::new(1).named("isMember"),
        stop_ch: Chan::new(0).named("stopCh"),
        done_ch: Chan::new(0).named("doneCh"),
        stop_mu: RwMutex::new().named("stopMu"),
        variant,
    }
}

impl Node {
    /// `Run`, the raft loop; of its cases only the stop request is left.
    fn run(&self) {
        let _done = defer(|| self.done_ch.close());
        // for { select { ...; case <-n.stopCh: n.stop(); return nil } }
        self.stop_ch.recv();
        self.stop();
    }

    /// `Shutdown`: asks `Run` to stop and waits until it has.
    fn shutdown(&self) {
        select! {
            recv(self.done_ch) => {},
            default => {
                self.stop_ch.close();
                self.done_ch.recv();
            },
        }
    }

    /// `isShutdown`: whether `stop` has cancelled the node's context. Upstream asks its callers
    /// to hold `stopMu`, so that `stop` cannot run between the check and what follows.
    fn is_shutdown(&self) -> bool {
        select! {
            recv(self.ctx.done()) => true,
            default => false,
        }
    }

    /// `stop`: the only writer of `stopMu`.
    fn stop(&self) {
        self.stop_mu.lock();
        let _unlock = defer(|| self.stop_mu.unlock());

        self.cancel.call();
        // waitProp, asyncTasks, members' connections, the raft node, the ticker and the WAL:
        // left out.
        self.is_member.store(0);
    }

    /// `leader`: the id of the leader, without the protection of the lock.
    fn leader(&self) -> u64 {
        if !self.is_member() {
            return 0;
        }
        self.node.status().lead
    }

    /// `Leader`: the id of the leader, with the protection of the lock.
    fn leader_locked(&self) -> u64 {
        self.stop_mu.rlock();
        let _runlock = defer(|| self.stop_mu.runlock());
        self.leader()
    }

    /// `IsMember`.
    fn is_member(&self) -> bool {
        self.is_member.load() == 1
    }

    /// `LeaderAddr`: the address of the cluster's leader.
    fn leader_addr(&self) -> Result<&'static str, String> {
        // The fix removes the read lock and the isShutdown check it guarded.
        let _runlock = if self.variant.fixed() {
            None
        } else {
            self.stop_mu.rlock();
            let runlock = defer(|| self.stop_mu.runlock());
            if self.is_shutdown() {
                return Err("raft node is shut down".to_string());
            }
            Some(runlock)
        };
        let (ctx, cancel) = context::with_timeout(&self.ctx, Duration::from_secs(10));
        let _cancel = defer(|| cancel.call());
        if wait_for_leader(&ctx, self).is_err() {
            return Err(ERR_NO_CLUSTER_LEADER.to_string());
        }
        if !self.is_member() {
            return Err(ERR_NO_RAFT_MEMBER.to_string());
        }
        let ms = self.cluster.members();
        match ms.get(&self.leader()) {
            Some(l) => Ok(l.addr),
            None => Err(ERR_NO_CLUSTER_LEADER.to_string()),
        }
    }
}

/// `WaitForLeader` (`manager/state/raft/util.go`): polls `Leader` until there is one or `ctx`
/// is done.
fn wait_for_leader(ctx: &Context, n: &Node) -> Result<(), context::ContextError> {
    let mut l = n.leader_locked();
    if l != 0 {
        return Ok(());
    }
    let ticker = Ticker::new(Duration::from_millis(50));
    let _stop = defer(|| ticker.stop());
    while l == 0 {
        select! {
            recv(ticker.c()) => {},
            recv(ctx.done()) => return Err(ctx.err().expect("done is closed only once cancelled")),
        }
        l = n.leader_locked();
    }
    Ok(())
}

/// A `*grpc.ClientConn` to the leader; dialling is not modelled.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // the address it would connect to
struct ClientConn {
    target: &'static str,
}

/// `raftpicker.ConnSelector`: the connection to the leader that proxied requests use.
struct ConnSelector {
    mu: Mutex,
    cluster: Arc<Node>,
    cc: Shared<Option<ClientConn>>,
    addr: Shared<&'static str>,
}

impl ConnSelector {
    /// `Conn`: the connection to the leader, dialled on first use.
    fn conn(&self) -> Result<ClientConn, String> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if let Some(cc) = self.cc.get() {
            return Ok(cc);
        }
        let addr = self.cluster.leader_addr()?;
        // grpc.Dial(addr, c.opts...) cannot fail here.
        let cc = ClientConn { target: addr };
        self.cc.set(Some(cc));
        self.addr.set(addr);
        Ok(cc)
    }
}

/// No upstream test: a manager that is not the leader is stopped (`Manager.Stop` calls
/// `m.RaftNode.Shutdown()`) while an API request it proxies to the leader asks its
/// `ConnSelector` for a connection.
fn test_swarmkit1347(variant: Variant) {
    let n = Arc::new(new_node(variant));
    // raftpicker.NewConnSelector(m.RaftNode, proxyOpts...)
    let cs = Arc::new(ConnSelector {
        mu: Mutex::new().named("ConnSelector.mu"),
        cluster: n.clone(),
        cc: Shared::new(None).named("ConnSelector.cc"),
        addr: Shared::new("").named("ConnSelector.addr"),
    });
    {
        let n = n.clone();
        // go func() { err := m.RaftNode.Run(ctx); ... }()
        go_named("Run", move || n.run());
    }
    go_named("ListNodes", move || {
        // raftProxyControlServer.ListNodes, once it has found it is not the leader:
        // conn, err := p.connSelector.Conn()
        let _ = cs.conn();
    });

    // Manager.Stop: ... m.RaftNode.Shutdown()
    n.shutdown();
}
