#![doc = include_str!("swarmkit_2744.md")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context, ContextError};
use primitives::explore::Engine;
use primitives::sync::{Cond, Mutex, RwMutex, WaitGroup};
use primitives::time::Timer;
use primitives::{defer, go_named, gosched, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "swarmkit_2744",
        project: "swarmkit",
        upstream: "https://github.com/docker/swarmkit/pull/2744",
        category: "Mixed deadlock (RWMutex write lock against a reader in Cond.Wait)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_swarmkit2744,
        walkthrough: include_str!("swarmkit_2744.md"),
        loom: Loom::Applies,
        source: Source::Diff("docker/swarmkit 4f152517^ manager/dispatcher/dispatcher.go, manager/dispatcher/dispatcher_test.go, testutils/poll.go, manager/manager.go"),
        fix: Fix::Upstream("docker/swarmkit 4f152517"),
        // At preemption bound 1 loom's search is exhaustive (both variants) and quick.
        budget: Budget {
            shuttle: 20_000,
            preemption_bound: Some(1),
            ..Budget::DEFAULT
        },
        not_found_by: &[(
            Engine::Loom,
            "both deadlock paths need two preemptions in loom's count: at bound 1 its search \
             is exhaustive in 1,116 executions without the deadlock; at bound 2 it finds it at \
             execution 362,231 (about 100 s for the two variants), beyond the corpus's budget",
        )],
        review: "faithful after mends: Checked against 4f152517 and its parent (manager/dispatcher/dispatcher.go, manager/manager.go, dispatcher_test.go, testutils/poll.go, vendored grpc server.go), the merge e24c2a47, the backport f10f4f7c/b0a9eabc and PRs #2744, #2742, #2753: same goroutines, objects and order; both deadlock paths exist at the parent; exact fix (the moved Broadcast); mended: poll citations, unsourced figures dropped or tied to the trace, both races named, the lost wake-up the fix leaves in place, the Session's exit path; loom now runs at bound 1 (exhaustive) and is listed as not finding it.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `maxBatchItems`: the number of queued node updates that makes `markNodeReady` trigger a
/// batch at once instead of waiting for the timer.
const MAX_BATCH_ITEMS: usize = 10000;

/// `maxBatchInterval`: how long the Run loop lets updates queue before it writes them.
const MAX_BATCH_INTERVAL: Duration = Duration::from_millis(100);

/// `api.NodeStatus_READY`, the only state the kernel writes.
const NODE_STATUS_READY: &str = "READY";

/// `nodeUpdate`: the new status of a node (its description is left out).
#[derive(Clone, Debug)]
#[allow(dead_code)] // what processUpdates would write to the store, which is not modelled
struct NodeUpdate {
    status: &'static str,
    addr: &'static str,
}

/// `Dispatcher`, with the fields the bug touches (see the walkthrough for the rest).
struct Dispatcher {
    /// `mu`: guards `ctx` and `cancel`.
    mu: Mutex,
    /// `wg`: Run holds one count while its loop runs; Stop waits for it.
    wg: WaitGroup,
    /// `rpcRW`: every RPC holds the read lock; Stop takes the write lock as a barrier.
    rpc_rw: RwMutex,
    /// `ctx`, set by Run under `mu`; `None` is Go's nil context.
    ctx: Shared<Option<Context>>,
    /// `cancel`, set with `ctx`.
    cancel: Shared<Option<CancelFunc>>,
    /// `nodeUpdates`: indexed by node ID, guarded by `nodeUpdatesLock`.
    node_updates: Shared<BTreeMap<&'static str, NodeUpdate>>,
    node_updates_lock: Mutex,
    /// `processUpdatesTrigger`: capacity 1, made by `New`.
    process_updates_trigger: Chan<()>,
    /// `processUpdatesLock`: the locker of `processUpdatesCond`.
    process_updates_lock: Mutex,
    /// `processUpdatesCond`: waiters for the next node batch, woken by `processUpdates`.
    process_updates_cond: Cond,
    variant: Variant,
}

/// `New`.
fn new(variant: Variant) -> Dispatcher {
    let process_updates_lock = Mutex::new().named("processUpdatesLock");
    let process_updates_cond = Cond::new(&process_updates_lock);
    Dispatcher {
        mu: Mutex::new().named("mu"),
        wg: WaitGroup::new().named("wg"),
        rpc_rw: RwMutex::new().named("rpcRW"),
        ctx: Shared::new(None).named("d.ctx"),
        cancel: Shared::new(None).named("d.cancel"),
        node_updates: Shared::new(BTreeMap::new()).named("nodeUpdates"),
        node_updates_lock: Mutex::new().named("nodeUpdatesLock"),
        process_updates_trigger: Chan::new(1).named("processUpdatesTrigger"),
        process_updates_lock,
        process_updates_cond,
        variant,
    }
}

impl Dispatcher {
    /// `Run`: sets the dispatcher's context, then batches updates until it is cancelled.
    fn run(&self, ctx: &Context) -> Result<(), String> {
        self.node_updates_lock.lock();
        self.node_updates.set(BTreeMap::new());
        self.node_updates_lock.unlock();

        self.mu.lock();
        if self.is_running() {
            self.mu.unlock();
            return Err("dispatcher is already running".to_string());
        }
        // markNodesUnknown, the cluster and peer watches and the update queue: left out.

        let (dctx, cancel) = context::with_cancel(ctx);
        self.ctx.set(Some(dctx.clone()));
        self.cancel.set(Some(cancel));
        let ctx = dctx;
        self.wg.add(1);
        let _done = defer(|| self.wg.done());
        self.mu.unlock();

        let batch_timer = Timer::new(MAX_BATCH_INTERVAL);
        let _stop = defer(|| {
            batch_timer.stop();
        });

        loop {
            select! {
                recv(self.process_updates_trigger) => {
                    self.process_updates(&ctx);
                    batch_timer.stop();
                    // drain the timer, if it has already expired
                    select! {
                        recv(batch_timer.c()) => {},
                        default => {},
                    }
                    batch_timer.reset(MAX_BATCH_INTERVAL);
                },
                recv(batch_timer.c()) => {
                    self.process_updates(&ctx);
                    // batch timer has already expired, so no need to drain
                    batch_timer.reset(MAX_BATCH_INTERVAL);
                },
                recv(ctx.done()) => return Ok(()),
            }
        }
    }

    /// `Stop`.
    fn stop(&self) -> Result<(), String> {
        self.mu.lock();
        if !self.is_running() {
            self.mu.unlock();
            return Err("dispatcher is already stopped".to_string());
        }
        self.cancel.get().expect("set with ctx").call();
        self.mu.unlock();

        if self.variant.fixed() {
            // The fix: wake the waiters before waiting for the RPCs to return.
            self.process_updates_lock.lock();
            self.process_updates_cond.broadcast();
            self.process_updates_lock.unlock();
        }

        // The active nodes list can be cleaned out only when all existing RPCs have finished.
        self.rpc_rw.lock();
        // d.nodes.Clean(), d.downNodes.Clean(): left out.
        self.rpc_rw.unlock();

        if !self.variant.fixed() {
            // In case there are any waiters: too late, once one of them holds rpcRW.
            self.process_updates_lock.lock();
            self.process_updates_cond.broadcast();
            self.process_updates_lock.unlock();
        }

        // d.clusterUpdateQueue.Close(): left out.

        self.wg.wait();
        Ok(())
    }

    /// `isRunningLocked`: the dispatcher's context, if it runs.
    fn is_running_locked(&self) -> Result<Context, String> {
        self.mu.lock();
        if !self.is_running() {
            self.mu.unlock();
            return Err("dispatcher is stopped".to_string());
        }
        let ctx = self.ctx.get().expect("running");
        self.mu.unlock();
        Ok(ctx)
    }

    /// `isRunning`, under `mu`.
    fn is_running(&self) -> bool {
        let Some(ctx) = self.ctx.get() else {
            return false;
        };
        select! {
            recv(ctx.done()) => return false,
            default => {},
        }
        true
    }

    /// `markNodeReady`: queues the node's READY status, then waits until a batch has written
    /// it.
    fn mark_node_ready(
        &self,
        ctx: &Context,
        node_id: &'static str,
        addr: &'static str,
    ) -> Result<(), ContextError> {
        self.node_updates_lock.lock();
        self.node_updates.write(|u| {
            u.insert(
                node_id,
                NodeUpdate {
                    status: NODE_STATUS_READY,
                    addr,
                },
            )
        });
        let num_updates = self.node_updates.read(BTreeMap::len);
        self.node_updates_lock.unlock();

        // d.downNodes.Delete(nodeID): left out.

        if num_updates >= MAX_BATCH_ITEMS {
            select! {
                send(self.process_updates_trigger, ()) => {},
                recv(ctx.done()) => return Err(ctx.err().expect("done")),
            }
        }

        // Wait until the node update batch happens before unblocking register.
        self.process_updates_lock.lock();
        let _unlock = defer(|| self.process_updates_lock.unlock());

        select! {
            recv(ctx.done()) => return Err(ctx.err().expect("done")),
            default => {},
        }
        self.process_updates_cond.wait();

        Ok(())
    }

    /// `register`: a node with no session gets one.
    fn register(&self, node_id: &'static str) -> Result<&'static str, String> {
        // prevent register until we're ready to accept it
        let dctx = self.is_running_locked()?;

        // The rate limit, the store's node and the remote address: left out.
        let addr = "10.0.0.2";

        self.mark_node_ready(&dctx, node_id, addr)
            .map_err(|err| err.to_string())?;

        // d.nodes.Add(node, expireFunc): left out; the session ID is fixed.
        Ok("session-1")
    }

    /// `Session`: the stream an agent keeps open with the leader.
    fn session(&self, node_id: &'static str) -> Result<(), String> {
        self.rpc_rw.rlock();
        let _runlock = defer(|| self.rpc_rw.runlock());

        let dctx = self.is_running_locked()?;

        // d.nodes.GetWithSession fails for an agent new to this leader: register it.
        let _session_id = self.register(node_id)?;

        // The first SessionMessage and the watches: left out. The loop, down to its one case
        // that fires here:
        dctx.done().recv(); // case <-dctx.Done(): disconnect = true
        self.disconnect_node(node_id)
    }

    /// `disconnectNode`, Session's helper closure.
    fn disconnect_node(&self, node_id: &'static str) -> Result<(), String> {
        // log "failed to remove node" on error
        let _ = self.mark_node_not_ready(node_id);
        Err("node must disconnect".to_string())
    }

    /// `markNodeNotReady`, down to its first check (the dispatcher is stopped by now).
    fn mark_node_not_ready(&self, _id: &'static str) -> Result<(), String> {
        let _dctx = self.is_running_locked()?;
        // The node's DISCONNECTED status: left out (never reached once Stop has cancelled).
        Ok(())
    }

    /// `processUpdates`: writes the queued node updates, then wakes `markNodeReady`'s waiters.
    fn process_updates(&self, _ctx: &Context) {
        // Task updates: left out (only UpdateTaskStatus queues them).
        self.node_updates_lock.lock();
        let mut node_updates = BTreeMap::new();
        if !self.node_updates.read(BTreeMap::is_empty) {
            node_updates = self.node_updates.write(std::mem::take);
        }
        self.node_updates_lock.unlock();

        if node_updates.is_empty() {
            return;
        }

        // d.store.Batch(...): the node objects in the raft store, left out.

        self.process_updates_cond.broadcast();
    }
}

/// No upstream test: `startDispatcher` (`dispatcher_test.go`) starts Run and polls until it
/// runs; one agent opens a Session; then the manager loses leadership and calls Stop
/// (`becomeFollower`, `manager.go`).
fn test_swarmkit2744(variant: Variant) {
    let d = Arc::new(new(variant));

    {
        let d = d.clone();
        go_named("Run", move || {
            let _ = d.run(&context::background());
        });
    }
    // PollFuncWithTimeout until the dispatcher runs.
    loop {
        d.mu.lock();
        let running = d.is_running();
        d.mu.unlock();
        if running {
            break;
        }
        gosched();
    }

    {
        let d = d.clone();
        go_named("Session", move || {
            // An agent's stream; its error goes back to the agent.
            let _ = d.session("node-1");
        });
    }

    // becomeFollower: m.dispatcher.Stop()
    let _ = d.stop();
}
