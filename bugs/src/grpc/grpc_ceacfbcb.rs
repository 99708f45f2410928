#![doc = include_str!("grpc_ceacfbcb.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_ceacfbcb",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/commit/ceacfbcbc1514e4e677932fd55938ac455d182fb",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_grpc_ceacfbcb,
        walkthrough: include_str!("grpc_ceacfbcb.md"),
        asplos: Some("blocking-bugs/grpc-go/ceacfbcbc1514e4e677932fd55938ac455d182fb.txt"),
        loom: Loom::DoesNotApply(
            "every round of the unbounded RPC loop starts a goroutine: more threads than loom holds"
        ),
        source: Source::Diff("ceacfbcb"),
        fix: Fix::Upstream("ceacfbcb"),
        review: "faithful: Checked against ceacfbcb (PR #660) and benchmark/worker/benchmark_client.go and main.go at db85417d: the per-round RPC goroutine's unguarded done <- true after the worker returned on stop; the commit's unary hunks mapped; the success-only call and the missing 02bd4c80 path are explained and admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A connection to the benchmark server (`grpc.ClientConn`).
struct ClientConn {
    closed: Shared<bool>,
}

impl ClientConn {
    fn close(&self) {
        self.closed.set(true);
    }
}

/// `benchmark.DoUnaryCall`: one round trip. The server stays up, so it always succeeds.
fn do_unary_call(_client: &ClientConn) -> Result<(), &'static str> {
    Ok(())
}

/// The benchmark worker's client (`benchmarkClient`).
struct BenchmarkClient {
    stop: Chan<bool>,
    mu: RwMutex,
    /// The latency histogram: here, the latencies themselves.
    histogram: Shared<Vec<Duration>>,
    variant: Variant,
}

impl BenchmarkClient {
    fn do_close_loop_unary(self: &Arc<Self>, conns: &[Arc<ClientConn>], rpc_count_per_conn: i64) {
        for conn in conns {
            // For each connection, rpc_count_per_conn goroutines make RPCs; the connection is
            // closed once they have all returned.
            let wg = WaitGroup::new().named("wg");
            wg.add(rpc_count_per_conn);
            for _ in 0..rpc_count_per_conn {
                let (bc, client, wg) = (self.clone(), conn.clone(), wg.clone());
                go_named("doCloseLoopUnary.func1", move || {
                    let _done = defer(|| wg.done());
                    // The fix makes `done` once, outside the loop.
                    let outer = bc.variant.fixed().then(|| Chan::new(0).named("done"));
                    loop {
                        let done = outer.clone().unwrap_or_else(|| Chan::new(0).named("done"));
                        let (bc2, client2, report) = (bc.clone(), client.clone(), done.clone());
                        go_named("doCloseLoopUnary.func1.1", move || {
                            let start = time::now();
                            if do_unary_call(&client2).is_err() {
                                report.send(false);
                                return;
                            }
                            let elapse = time::since(start);
                            bc2.mu.lock();
                            bc2.histogram.write(|h| h.push(elapse));
                            bc2.mu.unlock();
                            if bc2.variant.fixed() {
                                // The fix: once the client is stopping, nobody reads `done`.
                                select! {
                                    recv(bc2.stop) => {},
                                    send(report, true) => {},
                                }
                            } else {
                                report.send(true); // blocks forever once the worker returned
                            }
                        });
                        select! {
                            recv(bc.stop) => return,
                            recv(done) => {},
                        }
                    }
                });
            }
            let (wg, conn) = (wg.clone(), conn.clone());
            go_named("doCloseLoopUnary.func2", move || {
                wg.wait();
                conn.close();
            });
        }
    }

    fn shutdown(&self) {
        self.stop.close();
    }
}

/// `startBenchmarkClient` with one connection, one RPC goroutine per connection, unary RPCs.
fn start_benchmark_client(variant: Variant) -> Arc<BenchmarkClient> {
    let conns = vec![Arc::new(ClientConn {
        closed: Shared::new(false).named("conn.closed"),
    })];
    let bc = Arc::new(BenchmarkClient {
        stop: Chan::new(0).named("stop"),
        mu: RwMutex::new().named("benchmarkClient.mu"),
        histogram: Shared::new(Vec::new()).named("histogram"),
        variant,
    });
    bc.do_close_loop_unary(&conns, 1);
    bc
}

/// The worker's life: start a benchmark client, then stop it (`RunClient`, shrunk).
fn test_grpc_ceacfbcb(variant: Variant) {
    let bc = start_benchmark_client(variant);
    bc.shutdown();
}
