#![doc = include_str!("etcd_6857.md")]

use std::sync::Arc;

use primitives::{go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_6857",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/6857",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_etcd6857,
        walkthrough: include_str!("etcd_6857.md"),
        goker: Some("gobench/goker/blocking/etcd/6857"),
        asplos: Some("blocking-bugs/etcd/7afc490c95789c408fbc256d8e790273d331c984.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("7afc490c"),
        review: "faithful: Checked against GoKer etcd/6857, the fix 7afc490c and raft/node.go at 7c8f13ae: GoKer's Status/Stop/run leak with upstream's select-on-done fix, all departures admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// raft's `Status` (its fields do not matter here).
struct Status;

/// raft's `node`: its event loop serves requests that arrive on channels.
struct Node {
    status: Chan<Chan<Status>>,
    stop: Chan<()>,
    done: Chan<()>,
    variant: Variant,
}

impl Node {
    fn status(&self) -> Status {
        let c = Chan::new(0).named("c");
        if self.variant.fixed() {
            // The fix: a stopped node answers with an empty status instead of hanging.
            return select! {
                send(self.status, c.clone()) => c.recv().expect("run answers"),
                recv(self.done) -> _ => Status,
            };
        }
        self.status.send(c.clone());
        c.recv().expect("run answers")
    }

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

    fn stop(&self) {
        select! {
            send(self.stop, ()) => {},
            recv(self.done) -> _ => return,
        }
        self.done.recv();
    }
}

fn new_node(variant: Variant) -> Arc<Node> {
    Arc::new(Node {
        status: Chan::new(0).named("status"),
        stop: Chan::new(0).named("stop"),
        done: Chan::new(0).named("done"),
        variant,
    })
}

/// `TestEtcd6857`.
fn test_etcd6857(variant: Variant) {
    let n = new_node(variant);
    let (n1, n2, n3) = (n.clone(), n.clone(), n.clone());
    go_named("run", move || n1.run());
    go_named("Status", move || {
        n2.status();
    });
    go_named("Stop", move || n3.stop());
}
