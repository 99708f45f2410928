#![doc = include_str!("grpc_660.md")]

use std::sync::Arc;

use primitives::{go_named, rand, select, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_660",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/660",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_grpc660,
        walkthrough: include_str!("grpc_660.md"),
        goker: Some("gobench/goker/blocking/grpc/660"),
        loom: Loom::DoesNotApply(
            "every round of the unbounded loop starts a goroutine: more threads than loom holds"
        ),
        source: Source::Goker,
        fix: Fix::Ours("TODO"),
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The benchmark worker's client (`benchmarkClient`).
struct BenchmarkClient {
    stop: Chan<bool>,
    variant: Variant,
}

impl BenchmarkClient {
    fn do_close_loop_unary(&self) {
        // The fix makes one `done` channel for the whole loop.
        let shared_done = self.variant.fixed().then(|| Chan::new(0).named("done"));
        loop {
            let done = shared_done
                .clone()
                .unwrap_or_else(|| Chan::new(0).named("done"));
            let (stop, result) = (self.stop.clone(), done.clone());
            let fixed = self.variant.fixed();
            go_named("doCloseLoopUnary.func1", move || {
                // The unary call: it fails now and then.
                let ok = rand::intn(10) <= 7;
                if fixed {
                    // The fix: give up on reporting once the client is stopping.
                    select! {
                        recv(stop) => {},
                        send(result, ok) => {},
                    }
                } else {
                    result.send(ok); // blocks forever once the loop has returned
                }
            });
            select! {
                recv(self.stop) => return,
                recv(done) => {},
            }
        }
    }

    /// Stops the client: every worker sees `stop` closed.
    fn shutdown(&self) {
        self.stop.close();
    }
}

/// `TestGrpc660`.
fn test_grpc660(variant: Variant) {
    let bc = Arc::new(BenchmarkClient {
        stop: Chan::new(0).named("stop"),
        variant,
    });
    let worker = bc.clone();
    go_named("doCloseLoopUnary", move || worker.do_close_loop_unary());
    go_named("shutdown", move || bc.shutdown());
}
