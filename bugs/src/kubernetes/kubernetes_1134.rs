#![doc = include_str!("kubernetes_1134.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{AtomicI32, AtomicI64, Mutex};
use primitives::time::{self, Instant};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_1134",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/1134",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_operation,
        walkthrough: include_str!("kubernetes_1134.md"),
        asplos: Some("non-blocking-bugs/kubernetes/6a624a2b4feebe51cf2acd165e860604fe7f1aba.txt"),
        source: Source::Test("kubernetes/kubernetes pkg/apiserver/operation_test.go @ 6a624a2b^"),
        fix: Fix::Upstream("6a624a2b"),
        loom: Loom::DoesNotApply(
            "main, op.wait, the sender, two waiters and the timer goroutine: more than loom's five threads",
        ),
        review: "faithful after mends: Checked against 6a624a2b (ASPLOS diff), TestOperation and a 2014 operation.go from the index (the exact parent version unverifiable; admitted), and the new `plain_load` primitive: right race (plain read of an atomically-added counter), shape and fix; one wording mend (the early expiry/Get checks are also dropped).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `apiserver.Operation`: an API call that finishes asynchronously.
struct Operation {
    id: String,
    result: Shared<Option<String>>,
    awaiting: Chan<String>,
    finished: Shared<Option<Instant>>,
    lock: Mutex,
    notify: Chan<bool>,
}

/// `apiserver.Operations` (the ops map, its `insert`, `Get` and `expire` left out).
struct Operations {
    /// The last operation's ID, only ever updated atomically.
    last_id: AtomicI64,
}

impl Operations {
    /// `NewOperations` (without its `util.Forever` expiry goroutine).
    fn new() -> Arc<Self> {
        Arc::new(Operations {
            last_id: AtomicI64::new(0).named("lastID"),
        })
    }

    /// `NewOperation`: the operation completes when `from` delivers its result.
    fn new_operation(&self, from: Chan<String>) -> Arc<Operation> {
        let id = self.last_id.add(1);
        let op = Arc::new(Operation {
            id: id.to_string(),
            result: Shared::new(None).named("op.result"),
            awaiting: from,
            finished: Shared::new(None).named("op.finished"),
            lock: Mutex::new().named("op.lock"),
            notify: Chan::new(1).named("op.notify"),
        });
        let o = op.clone();
        go_named("op.wait", move || o.wait());
        op
    }
}

impl Operation {
    /// `wait`: waits for the result, records it, and notifies once.
    fn wait(&self) {
        let result = self.awaiting.recv().unwrap_or_default();
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.result.set(Some(result));
        self.finished.set(Some(time::now()));
        self.notify.send(true);
    }

    /// `WaitFor`: waits until the operation finishes or `timeout` passes; a waiter that takes
    /// the notification puts it back for the next.
    fn wait_for(&self, timeout: Duration) {
        let after = time::after(timeout);
        select! {
            recv(after) => {},
            recv(self.notify) => self.notify.send(true),
        }
    }

    /// `StatusOrResult`: whether the operation has finished.
    fn status_or_result(&self) -> (Option<String>, bool) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        match self.finished.get() {
            None => (Some(self.id.clone()), false),
            Some(_) => (self.result.get(), true),
        }
    }
}

/// `TestOperation`, up to its check of the waiters (two of them here, ten upstream).
fn test_operation(variant: Variant) {
    let ops = Operations::new();
    let c = Chan::new(0).named("c");
    let op = ops.new_operation(c.clone());
    time::sleep(Duration::from_millis(1));
    go_named("sender", move || {
        time::sleep(Duration::from_millis(500));
        c.send("All done".to_string());
    });

    op.wait_for(Duration::from_millis(10));
    let _ = op.status_or_result(); // t.Errorf if completed: a timing check, left out

    const WAITERS: i32 = 2;
    let waited = AtomicI32::new(0).named("waited");
    for _ in 0..WAITERS {
        let (op, waited) = (op.clone(), waited.clone());
        go_named("waiter", move || {
            op.wait_for(Duration::from_secs(3600));
            waited.add(1);
        });
    }

    op.wait_for(Duration::from_secs(60));
    let _ = op.status_or_result(); // t.Errorf if not completed: a timing check, left out

    time::sleep(Duration::from_millis(100));
    let finished = if variant.fixed() {
        waited.load()
    } else {
        waited.plain_load()
    };
    // `if finished != waiters { t.Errorf(...) }`: whether the waiters are done within the
    // 100 ms is timing, not the race; the kernel does not check it.
    let _ = (finished, WAITERS);
}
