#![doc = include_str!("etcd_6534.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::time::{self, Instant};
use primitives::{defer, go_named, select, Chan};

use crate::{Budget, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_6534",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/6628",
        category: "Misuse WaitGroup",
        expected: primitives::Verdict::Panic,
        kernel: test_watch_event_type,
        walkthrough: include_str!("etcd_6534.md"),
        loom: Loom::DoesNotApply(
            "main, run, the raft goroutine, purgeFile, the ticker's timer goroutine and one goroutine per sync: more than loom's five threads",
        ),
        budget: Budget { shuttle: 3_000, race_detector: false, ..Budget::DEFAULT },
        source: Source::Diff("0c61d880"),
        fix: Fix::Upstream("0c61d880"),
        review: "faithful after mends: Checked against etcd f5b9238a (the version of the issue's stack), the fix 0c61d880, e011ea25/0c61d880^ for the moved sync, issue #6534 and PR #6628: right bug, right interleaving, upstream's fix at its lines, honest panic; add the missing `monitorVersions` caller to the safety argument; reports lag one regeneration.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `etcdserver.raftNode`, reduced to its goroutine's stop handshake.
struct RaftNode {
    /// `r.stopped`: `stop` sends on it to end the raft goroutine.
    stopped: Chan<()>,
    /// `r.done`: closed by `onStop` when the raft goroutine has ended.
    done: Chan<()>,
}

/// `etcdserver.EtcdServer`, reduced to its shutdown machinery.
struct EtcdServer {
    r: RaftNode,
    /// `SyncTicker`: the integration member sets `time.Tick(500 * time.Millisecond)`.
    sync_ticker: Chan<Instant>,
    /// Asks `run` to stop (`HardStop` sends on it).
    stop: Chan<()>,
    /// Closed by `run` when it starts shutting down.
    stopping: Chan<()>,
    /// Closed by `run` when the shutdown is over.
    done: Chan<()>,
    /// The fix: blocks concurrent wait group adds in `goAttach` while stopping.
    wg_mu: RwMutex,
    /// The goroutines that depend on the server's state.
    wg: WaitGroup,
    variant: Variant,
}

impl RaftNode {
    /// `raftNode.start`: the raft goroutine. On a leader it calls `s.sync` at every tick of
    /// `SyncTicker`, until `stop` sends on `stopped`.
    fn start(&self, s: &Arc<EtcdServer>) {
        let s = s.clone();
        go_named("raftNode.start", move || {
            // The one member of the test's cluster is its leader: syncC = r.s.SyncTicker.
            let sync_c = s.sync_ticker.clone();
            let _on_stop = defer(|| s.r.on_stop());
            loop {
                select! {
                    recv(sync_c) -> _ => s.sync(),
                    recv(s.r.stopped) -> _ => return,
                }
            }
        });
    }

    /// `onStop`: the raft goroutine's last act.
    fn on_stop(&self) {
        self.done.close();
    }

    /// `stop`: ends the raft goroutine and waits for it.
    fn stop(&self) {
        self.stopped.send(());
        self.done.recv();
    }
}

impl EtcdServer {
    /// `Start`: `start`, then the long-running helpers, each attached to the wait group.
    fn start_server(self: &Arc<Self>) {
        self.start();
        let s = self.clone();
        self.go_attach("purgeFile", move || s.purge_file());
    }

    /// `start`: launches the server's main loop.
    fn start(self: &Arc<Self>) {
        let s = self.clone();
        go_named("run", move || s.run());
    }

    /// `purgeFile`: runs until the server is stopping.
    fn purge_file(&self) {
        self.stopping.recv();
    }

    fn run(self: &Arc<Self>) {
        self.r.start(self);

        let _shutdown = defer(|| {
            if self.variant.fixed() {
                self.wg_mu.lock(); // block concurrent waitgroup adds in goAttach while stopping
                self.stopping.close();
                self.wg_mu.unlock();
            } else {
                self.stopping.close();
            }
            // sched.Stop(): no job was scheduled
            // wait for goroutines before closing raft so wal stays open
            self.wg.wait();
            // must stop raft after scheduler
            self.r.stop();
            self.done.close();
        });

        self.stop.recv(); // the event loop, until asked to stop
    }

    /// `sync`: proposes a SYNC request from a goroutine of its own, since the node may have
    /// no leader yet.
    fn sync(self: &Arc<Self>) {
        self.go_attach("sync", move || {
            // s.r.Propose(ctx, data); cancel()
        });
    }

    /// `goAttach`: starts `f` in a goroutine tracked by the wait group.
    fn go_attach(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        let _runlock = if self.variant.fixed() {
            self.wg_mu.rlock(); // this blocks with ongoing close(s.stopping)
            let runlock = defer(|| self.wg_mu.runlock());
            select! {
                recv(self.stopping) -> _ => return, // server has stopped (skipping goAttach)
                default => {},
            }
            Some(runlock)
        } else {
            None
        };
        // now safe to add since waitgroup wait has not started yet
        self.wg.add(1);
        let wg = self.wg.clone();
        go_named(name, move || {
            let _done = defer(|| wg.done());
            f();
        });
    }

    /// `HardStop`: asks `run` to stop and waits until it has finished.
    fn hard_stop(&self) {
        select! {
            send(self.stop, ()) => {},
            recv(self.done) -> _ => return,
        }
        self.done.recv();
    }
}

/// `TestWatchEventType`'s server lifetime: its one-member cluster starts the server
/// (`member.Launch`, `s.Start()`) and `Terminate` stops it (`member.Close`, `s.HardStop()`).
fn test_watch_event_type(variant: Variant) {
    let s = Arc::new(EtcdServer {
        r: RaftNode {
            stopped: Chan::new(0).named("r.stopped"),
            done: Chan::new(0).named("r.done"),
        },
        sync_ticker: time::tick(Duration::from_millis(500)),
        stop: Chan::new(0).named("stop"),
        stopping: Chan::new(0).named("stopping"),
        done: Chan::new(0).named("done"),
        wg_mu: RwMutex::new().named("wgMu"),
        wg: WaitGroup::new().named("wg"),
        variant,
    });
    s.start_server();
    s.hard_stop();
}
