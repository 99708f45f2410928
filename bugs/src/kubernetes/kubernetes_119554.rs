#![doc = include_str!("kubernetes_119554.md")]

use std::collections::{BTreeSet, VecDeque};

use primitives::sync::{Cond, Mutex, WaitGroup};
use primitives::{defer, go_named, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_119554",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/119554",
        category: "Lost wakeup (a check and the wait it guards under two lock holds)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_force_queue_shutdown_using_shut_down,
        walkthrough: include_str!("kubernetes_119554.md"),
        source: Source::Test("kubernetes/client-go util/workqueue/queue_test.go @ e9b0103a4^"),
        fix: Fix::Upstream("kubernetes/client-go e9b0103a4 (Kubernetes-commit 2b12df56b0be)"),
        review: "faithful: Checked against client-go e9b0103a4 (Kubernetes-commit 2b12df56b0be) and its parent (util/workqueue/queue.go, queue_test.go:250-290, metrics.go:225-240), the commit message and the PR #119554 thread: right bug, shape, fix and deadlock verdict, honest failure; nits mended (the prose's order matches the trace, the collapsed constructor chain, the folded empty check).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `t`: an item of the queue (upstream `interface{}`; the test queues strings).
type T = &'static str;

/// `workqueue.Type`, without metrics and clock (see the walkthrough).
struct Type {
    /// The order in which items are handed out; each is also in `dirty`, not in `processing`.
    queue: Shared<VecDeque<T>>,
    /// Items that need processing.
    dirty: Shared<BTreeSet<T>>,
    /// Items handed out by `Get` and not yet `Done`.
    processing: Shared<BTreeSet<T>>,
    /// `cond *sync.Cond` over a `sync.Mutex`: guards every field above and below.
    cond: Cond,
    shutting_down: Shared<bool>,
    /// Whether a shut-down waits for `processing` to empty.
    drain: Shared<bool>,
    variant: Variant,
}

impl Type {
    /// `workqueue.New()`: an unnamed queue, so no metrics and no `updateUnfinishedWorkLoop`.
    fn new(variant: Variant) -> Type {
        Type {
            queue: Shared::new(VecDeque::new()).named("q.queue"),
            dirty: Shared::new(BTreeSet::new()).named("q.dirty"),
            processing: Shared::new(BTreeSet::new()).named("q.processing"),
            cond: Cond::new(&Mutex::new().named("q.cond.L")),
            shutting_down: Shared::new(false).named("q.shuttingDown"),
            drain: Shared::new(false).named("q.drain"),
            variant,
        }
    }

    fn add(&self, item: T) {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        if self.shutting_down.get() {
            return;
        }
        if self.dirty.read(|d| d.contains(item)) {
            return;
        }

        self.dirty.write(|d| d.insert(item));
        if self.processing.read(|p| p.contains(item)) {
            return;
        }

        self.queue.write(|q| q.push_back(item));
        self.cond.signal();
    }

    fn get(&self) -> (Option<T>, bool) {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        while self.queue.read(VecDeque::is_empty) && !self.shutting_down.get() {
            self.cond.wait();
        }
        let Some(item) = self.queue.write(VecDeque::pop_front) else {
            // We must be shutting down.
            return (None, true);
        };

        self.processing.write(|p| p.insert(item));
        self.dirty.write(|d| d.remove(item));

        (Some(item), false)
    }

    /// Unused by the test (no item is ever done); kept because it is the only other waker
    /// of a drainer, and the bug's window ends at the next `Done`.
    #[allow(dead_code)]
    fn done(&self, item: T) {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());

        self.processing.write(|p| p.remove(item));
        if self.dirty.read(|d| d.contains(item)) {
            self.queue.write(|q| q.push_back(item));
            self.cond.signal();
        } else if self.processing.read(BTreeSet::is_empty) {
            self.cond.signal();
        }
    }

    fn shut_down(&self) {
        if !self.variant.fixed() {
            self.set_drain(false);
            self.shutdown();
            return;
        }
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());

        self.drain.set(false);
        self.shutting_down.set(true);
        self.cond.broadcast();
    }

    fn shut_down_with_drain(&self) {
        if !self.variant.fixed() {
            self.set_drain(true);
            self.shutdown();
            while self.is_processing() && self.should_drain() {
                self.wait_for_processing();
            }
            return;
        }
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());

        self.drain.set(true);
        self.shutting_down.set(true);
        self.cond.broadcast();

        while !self.processing.read(BTreeSet::is_empty) && self.drain.get() {
            self.cond.wait();
        }
    }

    /// Buggy only (the fix removes it).
    fn is_processing(&self) -> bool {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        !self.processing.read(BTreeSet::is_empty)
    }

    /// Buggy only. Re-checks `processing` but not `drain` before it waits.
    fn wait_for_processing(&self) {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        if self.processing.read(BTreeSet::is_empty) {
            return;
        }
        self.cond.wait();
    }

    /// Buggy only.
    fn set_drain(&self, should_drain: bool) {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        self.drain.set(should_drain);
    }

    /// Buggy only.
    fn should_drain(&self) -> bool {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        self.drain.get()
    }

    /// Buggy only.
    fn shutdown(&self) {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        self.shutting_down.set(true);
        self.cond.broadcast();
    }
}

/// `TestForceQueueShutdownUsingShutDown`: a drain-shutdown is overridden by a plain one while
/// both items are still being processed.
fn test_force_queue_shutdown_using_shut_down(variant: Variant) {
    let q = std::sync::Arc::new(Type::new(variant));

    q.add("foo");
    q.add("bar");

    q.get();
    q.get();

    let finished_wg = WaitGroup::new().named("finishedWG");
    finished_wg.add(1);
    {
        let (q, finished_wg) = (q.clone(), finished_wg.clone());
        go_named("ShutDownWithDrain", move || {
            let _done = defer(|| finished_wg.done());
            q.shut_down_with_drain();
        });
    }

    // Get until the drainer's shut-down is seen: ShutDownWithDrain came first.
    let mut shutting_down = false;
    while !shutting_down {
        (_, shutting_down) = q.get();
    }

    // The forcing ShutDown (a second SIGTERM/SIGINT, in the test's words).
    q.shut_down();

    // No item was ever Done: only ShutDown can let the drainer return.
    finished_wg.wait();
}
