#![doc = include_str!("etcd_6534.md")]

use std::sync::Arc;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, select, Chan};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_6534",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/6628",
        category: "Misuse WaitGroup",
        expected: primitives::Verdict::Panic,
        kernel: test_watch_event_type,
        walkthrough: include_str!("etcd_6534.md"),
        // shuttle-random needs up to about 700 schedules over seeds 1 to 5 (one of them more).
        budget: Budget { shuttle: 3_000, preemption_bound: Some(2), ..Budget::DEFAULT },
        source: Source::Description("https://github.com/etcd-io/etcd/pull/6628"),
        fix: Fix::Upstream("#6628"),
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `etcdserver.EtcdServer`, reduced to its shutdown machinery.
struct EtcdServer {
    /// Asks `run` to stop (`Stop` sends on it).
    stop: Chan<()>,
    /// Closed by `run` when it starts shutting down.
    stopping: Chan<()>,
    /// Closed by `run` when the shutdown is over.
    done: Chan<()>,
    /// The fix: blocks `goAttach`'s `Add` while `stopping` is being closed.
    wg_mu: RwMutex,
    /// The goroutines that depend on the server's state.
    wg: WaitGroup,
    variant: Variant,
}

impl EtcdServer {
    /// `start`: launches the server's main loop.
    fn start(self: &Arc<Self>) {
        let s = self.clone();
        go_named("run", move || s.run());
    }

    /// `Start`: `start`, then the long-running helpers, each attached to the wait group.
    fn start_all(self: &Arc<Self>) {
        self.start();
        let s = self.clone();
        self.go_attach("purgeFile", move || s.purge_file());
    }

    /// `purgeFile`: runs until the server is stopping.
    fn purge_file(&self) {
        self.stopping.recv();
    }

    fn run(self: &Arc<Self>) {
        // s.r.start(rh): the raft node's goroutine starts and calls back into the server.
        let s = self.clone();
        go_named("raftNode.start", move || s.send_merged_snap());

        let _shutdown = defer(|| {
            if self.variant.fixed() {
                self.wg_mu.lock(); // block concurrent wait group adds in goAttach while stopping
                self.stopping.close();
                self.wg_mu.unlock();
            } else {
                self.stopping.close();
            }
            // wait for goroutines before closing raft so the WAL stays open
            self.wg.wait();
            self.done.close();
        });

        self.stop.recv(); // the event loop, until asked to stop
    }

    /// `sendMergedSnap`, called by the raft goroutine: tracks the snapshot in flight.
    fn send_merged_snap(self: &Arc<Self>) {
        let s = self.clone();
        self.go_attach("sendMergedSnap", move || {
            // waits for the snapshot to be acknowledged, or for the server to stop
            s.stopping.recv();
        });
    }

    /// `goAttach`: starts `f` in a goroutine tracked by the wait group.
    fn go_attach(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        if self.variant.fixed() {
            self.wg_mu.rlock(); // this blocks while stopping is being closed
            let _runlock = defer(|| self.wg_mu.runlock());
            select! {
                recv(self.stopping) -> _ => return, // server has stopped: skip goAttach
                default => {},
            }
            self.add_and_go(name, f);
        } else {
            self.add_and_go(name, f);
        }
    }

    fn add_and_go(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        self.wg.add(1);
        let wg = self.wg.clone();
        go_named(name, move || {
            let _done = defer(|| wg.done());
            f();
        });
    }

    /// `Stop`: asks `run` to stop and waits until it has finished.
    fn stop_server(&self) {
        select! {
            send(self.stop, ()) => {},
            recv(self.done) -> _ => return,
        }
        self.done.recv();
    }
}

/// An integration test's server lifetime (`TestWatchEventType` starts a one-member cluster
/// and terminates it): start the server, then stop it.
fn test_watch_event_type(variant: Variant) {
    let s = Arc::new(EtcdServer {
        stop: Chan::new(0).named("stop"),
        stopping: Chan::new(0).named("stopping"),
        done: Chan::new(0).named("done"),
        wg_mu: RwMutex::new().named("wgMu"),
        wg: WaitGroup::new().named("wg"),
        variant,
    });
    s.start_all();
    s.stop_server();
}
