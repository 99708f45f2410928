#![doc = include_str!("etcd_3077.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_3077",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/3077",
        category: "Misuse channel",
        expected: primitives::Verdict::Race,
        kernel: test_etcd3077,
        walkthrough: include_str!("etcd_3077.md"),
        goker: Some("gobench/goker/nonblocking/etcd/3077"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("7f95780b"),
        review: "faithful: Checked against GoKer etcd/3077 (and its race report), the fix 7f95780b and etcdserver/{server,raft}.go at 00c32ef0: \
                 the unordered creation of r.stopped/r.done in the raft goroutine and its read in the server's deferred shutdown, \
                 fixed by creating them before `go s.r.run()`, as upstream.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `raftNode`: the raft side of the server. Its channel fields start out nil, as Go's zero
/// value.
struct RaftNode {
    stopped: Shared<Chan<()>>,
    done: Shared<Chan<()>>,
    variant: Variant,
}

impl RaftNode {
    fn run(&self) {
        if !self.variant.fixed() {
            // The bug: the channels are made here, in the raft goroutine, while the server
            // goroutine may already read the fields.
            self.stopped.set(Chan::new(0).named("r.stopped"));
            self.done.set(Chan::new(0).named("r.done"));
        }
        let _stop = defer(|| self.stop());
        // The raft loop, whose only case left is `<-r.stopped`: return.
        self.stopped.get().recv();
    }

    fn stop(&self) {
        self.done.get().close();
    }
}

/// `EtcdServer`, which embeds its `raftNode`.
struct EtcdServer {
    r: RaftNode,
    done: Shared<Chan<()>>,
    stop: Shared<Chan<()>>,
}

impl EtcdServer {
    fn run(self: &Arc<Self>) {
        if self.r.variant.fixed() {
            // The fix: the server makes raft's channels before it starts the raft goroutine.
            self.r.stopped.set(Chan::new(0).named("r.stopped"));
            self.r.done.set(Chan::new(0).named("r.done"));
        }
        let s = self.clone();
        go_named("raftNode.run", move || s.r.run());
        // Give raftNode.run time to start (a guess, not synchronisation).
        time::sleep(Duration::from_millis(10));
        let _stop_raft = defer(|| {
            self.r.stopped.get().send(());
            self.r.done.get().recv();
            self.done.get().close();
        });
        // The server loop, whose only case left is `<-s.stop`: return.
        self.stop.get().recv();
    }

    fn start(self: &Arc<Self>) {
        self.done.set(Chan::new(0).named("s.done"));
        self.stop.set(Chan::new(0).named("s.stop"));
        let s = self.clone();
        go_named("EtcdServer.run", move || s.run());
    }

    fn stop(&self) {
        let (stop, done) = (self.stop.get(), self.done.get());
        select! {
            send(stop, ()) => {},
            recv(done) => return,
        }
        self.done.get().recv();
    }
}

/// `TestEtcd3077`.
fn test_etcd3077(variant: Variant) {
    let srv = Arc::new(EtcdServer {
        r: RaftNode {
            stopped: Shared::new(Chan::nil()).named("r.stopped"),
            done: Shared::new(Chan::nil()).named("r.done"),
            variant,
        },
        done: Shared::new(Chan::nil()).named("s.done"),
        stop: Shared::new(Chan::nil()).named("s.stop"),
    });
    srv.start();
    let _stop = defer(|| srv.stop());
}
