#![doc = include_str!("etcd_4876.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::WaitGroup;
use primitives::time::Ticker;
use primitives::{defer, go_named, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_4876",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/4876",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_etcd4876,
        walkthrough: include_str!("etcd_4876.md"),
        goker: Some("gobench/goker/nonblocking/etcd/4876"),
        asplos: Some(
            "non-blocking-bugs/etcd/91dc6b29a6e000375ba47181db1bfcf8ba92daad.txt;\
             non-blocking-bugs/etcd/2c83362e63e6b796ea988442483673056c567455.txt;\
             non-blocking-bugs/etcd/e129223dbebaa5a13b9564dea27fdcd5bbebb317.txt;\
             non-blocking-bugs/etcd/4bdfc0a46d28f35462a312e1b51a771764321442.txt"
        ),
        loom: Loom::DoesNotApply(
            "five goroutines (test, setInterval, Watch, sendLoop and main) and the ticker's timer \
             goroutine: one more thread than loom holds"
        ),
        source: Source::Goker,
        fix: Fix::Upstream("91dc6b29"),
        review: "faithful: Checked against GoKer etcd/4876 (and its race report), the fix 91dc6b29 and v3rpc/watch.go + clientv3/integration/watch_test.go at 2c83362e: the progress-interval race and its fix (write before the servers start) are upstream's; the registration's four ASPLOS entries cover the whole PR while the kernel is the one 91dc6b29 race, which the header could say.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The package-level variables of `v3rpc`, which tests overwrite to finish fast.
struct V3rpc {
    /// Before the fix: `ProgressReportInterval`, a `time.Duration` (10 minutes).
    progress_report_interval: Shared<Duration>,
    /// After the fix: `ProgressReportIntervalMilliseconds`, an `int32` (10 minutes).
    progress_report_interval_milliseconds: Shared<i32>,
    variant: Variant,
}

/// `serverWatchStream`: one watch stream of the watch server.
struct ServerWatchStream {
    v3rpc: Arc<V3rpc>,
}

impl ServerWatchStream {
    fn send_loop(&self) {
        let interval = if self.v3rpc.variant.fixed() {
            let ms = self.v3rpc.progress_report_interval_milliseconds.get();
            Duration::from_millis(ms as u64)
        } else {
            self.v3rpc.progress_report_interval.get()
        };
        let _progress_ticker = Ticker::new(interval);
    }
}

/// `watchServer`.
struct WatchServer {
    v3rpc: Arc<V3rpc>,
}

impl WatchServer {
    /// `Watch`: serves a new stream; its responses go out from `sendLoop`.
    fn watch(&self) {
        let sws = ServerWatchStream {
            v3rpc: self.v3rpc.clone(),
        };
        go_named("sendLoop", move || sws.send_loop());
    }
}

/// `TestEtcd4876`.
fn test_etcd4876(variant: Variant) {
    let v3rpc = Arc::new(V3rpc {
        progress_report_interval: Shared::new(Duration::from_secs(10 * 60))
            .named("ProgressReportInterval"),
        progress_report_interval_milliseconds: Shared::new(10 * 60 * 1000)
            .named("ProgressReportIntervalMilliseconds"),
        variant,
    });
    let wg = WaitGroup::new();
    wg.add(3);
    let wg1 = wg.clone();
    go_named("test", move || {
        let _done = defer(|| wg1.done());
        let w = WatchServer {
            v3rpc: v3rpc.clone(),
        };
        if v3rpc.variant.fixed() {
            // The fix: the test sets the interval before the server starts (upstream with
            // `atomic.StoreInt32`).
            v3rpc.progress_report_interval_milliseconds.set(3 * 1000);
        }
        let (wg2, wg3) = (wg1.clone(), wg1.clone());
        // The test speeds the progress reports up...
        go_named("setInterval", move || {
            let _done = defer(|| wg2.done());
            if !v3rpc.variant.fixed() {
                let test_interval = Duration::from_secs(3);
                v3rpc.progress_report_interval.set(test_interval);
            }
        });
        // ... while the server already serves a watch stream.
        go_named("Watch", move || {
            let _done = defer(|| wg3.done());
            w.watch();
        });
    });
    wg.wait();
}
