#![doc = include_str!("kubernetes_58107.md")]

use std::collections::VecDeque;
use std::sync::Arc;

use primitives::sync::{Cond, Mutex, RwMutex};
use primitives::{defer, go_named, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_58107",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/58107",
        category: "RWR deadlock",
        expected: primitives::Verdict::Deadlock,
        kernel: test_kubernetes58107,
        walkthrough: include_str!("kubernetes_58107.md"),
        goker: Some("gobench/goker/blocking/kubernetes/58107"),
        asplos: Some("blocking-bugs/kubernetes/010a127314a935d8d038f8dd4559fc5b249813e4.txt"),
        source: Source::Diff("010a1273"),
        fix: Fix::Upstream("010a1273"),
        review: "faithful: Checked against the 010a1273 diff and message (ASPLOS), GoKer blocking/kubernetes/58107 and client-go queue.go at 268171e6: the commit message's cycle with a real workqueue and the kernel's own test (admitted), upstream's moved RLock as two switches, deadlock verdict right; reports/ one regeneration behind.",
        file: file!(),
        // Bound 3 neither finds the bug nor finishes the fixed variant within the budget;
        // bound 2 finds it late (execution 10,655); bound 1 does both.
        budget: Budget { preemption_bound: Some(1), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// client-go's work queue (`workqueue.Type`, reduced to what the controller uses): `Get`
/// blocks until an item is queued or the queue is shut down.
struct Type {
    cond: Cond,
    queue: Shared<VecDeque<&'static str>>,
    shutting_down: Shared<bool>,
}

impl Type {
    fn new(name: &str) -> Type {
        let l = Mutex::new().named(&format!("{name}.cond.L"));
        Type {
            cond: Cond::new(&l),
            queue: Shared::new(VecDeque::new()).named(&format!("{name}.queue")),
            shutting_down: Shared::new(false).named(&format!("{name}.shuttingDown")),
        }
    }

    fn add(&self, item: &'static str) {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        if self.shutting_down.get() {
            return;
        }
        self.queue.write(|q| q.push_back(item));
        self.cond.signal();
    }

    /// Returns the next item, or `quit` once the queue is shut down and empty.
    fn get(&self) -> (Option<&'static str>, bool) {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        while self.queue.read(|q| q.is_empty()) && !self.shutting_down.get() {
            self.cond.wait();
        }
        match self.queue.write(|q| q.pop_front()) {
            Some(item) => (Some(item), false),
            None => (None, true),
        }
    }

    fn shut_down(&self) {
        self.cond.l().lock();
        let _unlock = defer(|| self.cond.l().unlock());
        self.shutting_down.set(true);
        self.cond.broadcast();
    }
}

/// The resource quota controller (`ResourceQuotaController`).
struct ResourceQuotaController {
    /// Workers hold it for reading while they work; `Sync` takes it for writing to pause them.
    worker_lock: RwMutex,
    queue: Type,
    missing_usage_queue: Type,
    /// The test's `syncHandler` reports each synced quota here.
    synced: Chan<&'static str>,
    variant: Variant,
}

impl ResourceQuotaController {
    fn worker(self: &Arc<Self>, queue: impl Fn(&Self) -> &Type) {
        let work_func = || -> bool {
            // Before the fix: the read lock is taken before `Get`, so an idle worker holds it.
            let _runlock = if !self.variant.fixed() {
                self.worker_lock.rlock();
                Some(defer(|| self.worker_lock.runlock()))
            } else {
                None
            };
            let (key, quit) = queue(self).get(); // an idle worker waits here
            if quit {
                return true;
            }
            // The fix: the read lock is taken only once there is work, after `Get`.
            let _runlock = if self.variant.fixed() {
                self.worker_lock.rlock();
                Some(defer(|| self.worker_lock.runlock()))
            } else {
                None
            };
            self.sync_handler(key.expect("an item unless quit"));
            false
        };
        loop {
            if work_func() {
                return;
            }
        }
    }

    fn run(self: &Arc<Self>) {
        let rq = self.clone();
        go_named("worker", move || rq.worker(|rq| &rq.queue)); // G1
        let rq = self.clone();
        go_named("worker", move || rq.worker(|rq| &rq.missing_usage_queue)); // G2
    }

    /// Applies a discovery update: pauses the workers by taking the write lock.
    fn sync(&self) {
        self.worker_lock.lock();
        let _unlock = defer(|| self.worker_lock.unlock());
    }

    fn sync_handler(&self, key: &'static str) {
        self.synced.send(key);
    }
}

/// The test: a quota is queued on `missingUsageQueue` while a discovery update comes in; the
/// test waits until the quota is synced, then shuts the queues down.
fn test_kubernetes58107(variant: Variant) {
    let rq = Arc::new(ResourceQuotaController {
        worker_lock: RwMutex::new().named("workerLock"),
        queue: Type::new("queue"),
        missing_usage_queue: Type::new("missingUsageQueue"),
        synced: Chan::new(1).named("synced"),
        variant,
    });
    let rq2 = rq.clone();
    go_named("Run", move || rq2.run());
    let rq3 = rq.clone();
    go_named("Sync", move || rq3.sync()); // G3
    rq.missing_usage_queue.add("ns/quota");
    rq.synced.recv();
    rq.queue.shut_down();
    rq.missing_usage_queue.shut_down();
}
