#![doc = include_str!("etcd_6855.md")]

use std::sync::Arc;

use primitives::{go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_6855",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/6857",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_etcd6855,
        walkthrough: include_str!("etcd_6855.md"),
        asplos: Some("blocking-bugs/etcd/7afc490c95789c408fbc256d8e790273d331c984.txt"),
        source: Source::Diff("7afc490c"),
        fix: Fix::Upstream("7afc490c"),
        review: "faithful: Checked against the fix 7afc490c, raft/node.go at 7c8f13ae and the issue #6855 / PR #6857 threads: the Status-after-Stop hang and its select-on-done fix are upstream's; the sequential driver is ours and said to be, built from the issue's description.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// raft's `Status` (its fields do not matter here; the fix returns the zero value).
struct Status;

/// raft's `node`: a handle whose requests are served by the `run` goroutine.
struct Node {
    status: Chan<Chan<Status>>,
    stop: Chan<()>,
    done: Chan<()>,
    variant: Variant,
}

fn new_node(variant: Variant) -> Arc<Node> {
    Arc::new(Node {
        status: Chan::new(0).named("status"),
        stop: Chan::new(0).named("stop"),
        done: Chan::new(0).named("done"),
        variant,
    })
}

impl Node {
    /// `node.run`: the event loop (only its `status` and `stop` cases matter here).
    fn run(&self) {
        loop {
            select! {
                recv(self.status) -> c => c.expect("status is never closed").send(Status),
                recv(self.stop) -> _ => {
                    self.done.close();
                    return;
                },
            }
        }
    }

    /// `node.Stop`: asks `run` to stop and waits until it has.
    fn stop(&self) {
        select! {
            send(self.stop, ()) => {},
            recv(self.done) -> _ => return, // already stopped
        }
        self.done.recv();
    }

    /// `node.Status`.
    fn status(&self) -> Status {
        let c = Chan::new(0).named("c");
        if self.variant.fixed() {
            return select! {
                send(self.status, c.clone()) => c.recv().expect("run answers"),
                recv(self.done) -> _ => Status, // Status{}
            };
        }
        self.status.send(c.clone());
        c.recv().expect("run answers")
    }
}

/// The scenario of etcd#6855: a node is started, stopped, and then asked for its status.
fn test_etcd6855(variant: Variant) {
    let n = new_node(variant);
    let r = n.clone();
    go_named("run", move || r.run());
    n.stop();
    n.status();
}
