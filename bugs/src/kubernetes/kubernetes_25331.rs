#![doc = include_str!("kubernetes_25331.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::{go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_25331",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/25331",
        category: "Communication deadlock (channel & context)",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes25331,
        walkthrough: include_str!("kubernetes_25331.md"),
        goker: Some("gobench/goker/blocking/kubernetes/25331"),
        asplos: Some("blocking-bugs/kubernetes/97f4647dc3d8cf46c2b66b89a31c758a6edfb57c.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("97f4647d"),
        review: "faithful: Checked against GoKer blocking/kubernetes/25331, the 97f4647d diff (ASPLOS) and a later etcd3 watcher.go: GoKer's kernel, upstream's fix as a switch, leak verdict right; every departure admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The error the watch reports.
struct Error(&'static str);

/// The etcd3 storage's watch (`watchChan`).
struct WatchChan {
    ctx: Context,
    cancel: CancelFunc,
    result_chan: Chan<bool>,
    err_chan: Chan<Error>,
    variant: Variant,
}

impl WatchChan {
    fn stop(&self) {
        self.err_chan.send(Error("Error"));
        self.cancel.call();
    }

    fn run(&self) {
        select! {
            recv(self.err_chan) -> err => {
                let err = err.expect("errChan is never closed");
                let err_result = !err.0.is_empty();
                if self.variant.fixed() {
                    // The fix: give up the send once the user has cancelled, and cancel only
                    // afterwards.
                    select! {
                        send(self.result_chan, err_result) => {},
                        recv(self.ctx.done()) => {},
                    }
                    self.cancel.call();
                } else {
                    self.cancel.call();
                    self.result_chan.send(err_result); // nobody receives: blocks forever
                }
            },
            recv(self.ctx.done()) => {},
        }
    }
}

fn new_watch_chan(variant: Variant) -> Arc<WatchChan> {
    let (ctx, cancel) = context::with_cancel(&context::background());
    Arc::new(WatchChan {
        ctx,
        cancel,
        result_chan: Chan::new(0).named("resultChan"),
        err_chan: Chan::new(0).named("errChan"),
        variant,
    })
}

/// `TestKubernetes25331`.
fn test_kubernetes25331(variant: Variant) {
    let wc = new_watch_chan(variant);
    let wc2 = wc.clone();
    go_named("run", move || wc2.run()); // G1
    go_named("Stop", move || wc.stop()); // G2
}
