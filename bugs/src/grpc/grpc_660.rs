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
        fix: Fix::Upstream("#660"),
        review: "faithful: Checked against GoKer's grpc660_test.go, benchmark/worker/benchmark_client.go and main.go at db85417d, and the PR's two fix commits ceacfbcb and 02bd4c80: the per-round RPC goroutine's unguarded send on done after the worker returned on stop; both commits mapped; GoKer's single stop send corrected to upstream's close, admitted.",
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
    fn do_close_loop_unary(self: &Arc<Self>) {
        // The fix (ceacfbcb) makes one `done` channel for the whole loop, not one per round.
        let loop_done = self.variant.fixed().then(|| Chan::new(0).named("done"));
        loop {
            let done = loop_done
                .clone()
                .unwrap_or_else(|| Chan::new(0).named("done"));
            let (bc, done2) = (self.clone(), done.clone());
            go_named("doCloseLoopUnary.func1", move || {
                // The unary call: GoKer's draw stands for its error.
                if rand::intn(10) > 7 {
                    if bc.variant.fixed() {
                        // 02bd4c80: the error report gives up once the client is stopping.
                        select! {
                            recv(bc.stop) => {},
                            send(done2, false) => {},
                        }
                    } else {
                        done2.send(false); // blocks forever once the loop has returned
                    }
                    return;
                }
                if bc.variant.fixed() {
                    // ceacfbcb: the success report gives up once the client is stopping.
                    select! {
                        recv(bc.stop) => {},
                        send(done2, true) => {},
                    }
                } else {
                    done2.send(true); // blocks forever once the loop has returned
                }
            });
            select! {
                recv(self.stop) => return,
                recv(done) => {},
            }
        }
    }

    /// `shutdown`: stops the client; every worker sees `stop` closed.
    fn shutdown(&self) {
        self.stop.close();
    }
}

/// `TestGrpc660` (GoKer's), with the helper goroutine calling upstream's `shutdown`.
fn test_grpc660(variant: Variant) {
    let bc = Arc::new(BenchmarkClient {
        stop: Chan::new(0).named("stop"),
        variant,
    });
    let worker = bc.clone();
    go_named("doCloseLoopUnary", move || worker.do_close_loop_unary());
    go_named("shutdown", move || bc.shutdown());
}
