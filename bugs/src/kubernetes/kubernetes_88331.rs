#![doc = include_str!("kubernetes_88331.md")]

use std::sync::Arc;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_88331",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/88331",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes88331,
        walkthrough: include_str!("kubernetes_88331.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/88331"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#88331"),
        review: "faithful after mends: Checked against GoKer `nonblocking/kubernetes/88331`, GoReal's revert patch and race reports (fix tree f1163084), issue #88327 and PR #90755: right race and fix, the added queue stop is admitted; re-bless the stale trace.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The scheduler heap's backing store (`data`): its `queue` slice.
struct Data {
    queue: Shared<Vec<()>>,
}

impl Data {
    /// `container/heap`'s `Pop` ends here: `h.queue = h.queue[0 : len(h.queue)-1]`.
    fn pop(&self) {
        let queue = self.queue.get();
        let n = queue.len();
        self.queue.set(queue[0..n - 1].to_vec());
    }
}

/// The scheduler's `Heap`.
struct Heap {
    data: Data,
}

impl Heap {
    fn pop(&self) {
        self.data.pop();
    }

    fn len(&self) -> usize {
        self.data.queue.read(|q| q.len())
    }
}

fn new_with_recorder(name: &str) -> Heap {
    Heap {
        data: Data {
            queue: Shared::new(vec![(), ()]).named(name),
        },
    }
}

/// The scheduler's `PriorityQueue`; `lock` guards its heaps.
struct PriorityQueue {
    stop: Chan<()>,
    lock: RwMutex,
    pod_backoff_q: Heap,
    #[allow(dead_code)]
    active_q: Heap,
}

impl PriorityQueue {
    /// Moves pods whose backoff has completed to the active queue; here it pops one.
    fn flush_backoff_q_completed(&self) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.pod_backoff_q.pop();
    }

    /// Starts the queue's background flush.
    fn run(self: &Arc<Self>) {
        let (p, stop) = (self.clone(), self.stop.clone());
        go_named("Until", move || {
            until(&|| p.flush_backoff_q_completed(), &stop)
        });
    }

    /// Stops the background goroutine: the kernel's addition (GoKer's test never stops the
    /// queue; see the walkthrough's Deviations).
    fn close(&self) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.stop.close();
    }
}

fn new_priority_queue() -> Arc<PriorityQueue> {
    Arc::new(PriorityQueue {
        stop: Chan::new(0).named("p.stop"),
        lock: RwMutex::new().named("p.lock"),
        active_q: new_with_recorder("activeQ.data.queue"),
        pod_backoff_q: new_with_recorder("podBackoffQ.data.queue"),
    })
}

fn create_and_run_priority_queue() -> Arc<PriorityQueue> {
    let q = new_priority_queue();
    q.run();
    q
}

/// apimachinery's `wait.BackoffUntil`, reduced as in the GoKer kernel: run `f`, then wait
/// for `stop` (the period between runs never elapses here, so the loop never comes round).
#[allow(clippy::never_loop)]
fn backoff_until(f: &dyn Fn(), stop_ch: &Chan<()>) {
    loop {
        select! {
            recv(stop_ch) => return,
            default => {},
        }

        f();

        select! {
            recv(stop_ch) => return,
        }
    }
}

fn jitter_until(f: &dyn Fn(), stop_ch: &Chan<()>) {
    backoff_until(f, stop_ch)
}

fn until(f: &dyn Fn(), stop_ch: &Chan<()>) {
    jitter_until(f, stop_ch)
}

/// `TestKubernetes88331` (upstream, e.g. `TestPriorityQueue_MoveAllToActiveOrBackoffQueue`): a
/// scheduling-queue test looks at the backoff queue's length while the queue runs.
fn test_kubernetes88331(variant: Variant) {
    let wg = WaitGroup::new().named("wg");
    wg.add(1);
    let wg2 = wg.clone();
    go_named("TestKubernetes88331.func1", move || {
        wg2.done();
        let p = create_and_run_priority_queue();
        if variant.fixed() {
            // The fix: `q.lock.RLock()` and `defer q.lock.RUnlock()` before the test reads the
            // heaps (released here at the end of the block, before the kernel's `close`).
            p.lock.rlock();
            let _runlock = defer(|| p.lock.runlock());
            p.pod_backoff_q.len();
        } else {
            p.pod_backoff_q.len();
        }
        p.close();
    });
    wg.wait();
}
