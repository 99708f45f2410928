#![doc = include_str!("kubernetes_79631.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::time::{self, Instant};
use primitives::{defer, go_named, select, Chan, GoMap};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_79631",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/79631",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes79631,
        loom: Loom::DoesNotApply(
            "the flusher loops on a 1 s timer until the test closes the queue: loom's bounded \
             search explores schedules where the timer keeps firing and the test goroutine \
             never runs, so it neither ends nor stays within the step bound",
        ),
        walkthrough: include_str!("kubernetes_79631.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/79631"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#79631"),
        review: "faithful after mends: Checked against GoKer nonblocking/kubernetes/79631, the PR #79631 review thread, GoReal's revert diff and race report (fixed tree 5257266e) and apimachinery's `JitterUntil` before 49ae5f6b: same flusher-pop vs unlocked-Get race, fake-clock fix switched; the fix table should list the merged hunks.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `podInitialBackoffDuration`, and the period of the backoff queue's flush.
const POD_INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// apimachinery's `clock.Clock`.
trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// `clock.RealClock`: the (virtual) time of the execution.
struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Instant {
        time::now()
    }
}

/// `clock.FakeClock`: a time that only moves when a test steps it (this one never does).
struct FakeClock {
    time: Instant,
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.time
    }
}

/// A pod in the backoff queue, with the time its backoff completes.
struct PodInfo {
    pod: String,
    backoff_time: Instant,
}

/// The scheduler heap's store (`heapData`): its items by key.
struct HeapData {
    items: GoMap<String, Arc<PodInfo>>,
}

impl HeapData {
    /// `container/heap`'s `Pop` ends here: `delete(h.items, key)`.
    fn pop(&self, key: &String) {
        self.items.remove(key);
    }
}

/// The scheduler's `Heap`.
struct Heap {
    data: HeapData,
}

impl Heap {
    fn add(&self, p_info: Arc<PodInfo>) {
        self.data.items.insert(p_info.pod.clone(), p_info);
    }

    fn peek(&self) -> Option<Arc<PodInfo>> {
        self.data.items.with(|m| m.values().next().cloned())
    }

    fn pop(&self) {
        if let Some(head) = self.peek() {
            self.data.pop(&head.pod);
        }
    }

    fn get(&self, pod: &String) -> Option<Arc<PodInfo>> {
        self.get_by_key(pod)
    }

    fn get_by_key(&self, key: &String) -> Option<Arc<PodInfo>> {
        self.data.items.get(key)
    }
}

fn new_with_recorder() -> Heap {
    Heap {
        data: HeapData {
            items: GoMap::new().named("podBackoffQ.data.items"),
        },
    }
}

/// The scheduler's `PriorityQueue`; `lock` guards its queues.
struct PriorityQueue {
    stop: Chan<()>,
    clock: Box<dyn Clock>,
    lock: RwMutex,
    pod_backoff_q: Heap,
}

impl PriorityQueue {
    /// Moves the pods whose backoff has completed (by the queue's clock) to the active queue.
    fn flush_backoff_q_completed(&self) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        loop {
            let Some(p_info) = self.pod_backoff_q.peek() else {
                return;
            };
            if p_info.backoff_time > self.clock.now() {
                return;
            }
            self.pod_backoff_q.pop();
        }
    }

    /// A pod failed to schedule: it backs off before it is tried again.
    fn add_unschedulable_if_not_present(&self, pod: &str) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.pod_backoff_q.add(Arc::new(PodInfo {
            pod: pod.to_string(),
            backoff_time: self.clock.now() + POD_INITIAL_BACKOFF,
        }));
    }

    /// Starts the queue's background flush, every second until `stop` is closed.
    fn run(self: &Arc<Self>) {
        let (p, stop) = (self.clone(), self.stop.clone());
        go_named("Until", move || {
            until(
                &|| p.flush_backoff_q_completed(),
                POD_INITIAL_BACKOFF,
                &stop,
            )
        });
    }

    /// `Close`: stops the background goroutines (the kernel calls it at the end of the test;
    /// see the walkthrough).
    fn close(&self) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.stop.close();
    }
}

fn new_priority_queue() -> Arc<PriorityQueue> {
    new_priority_queue_with_clock(Box::new(RealClock))
}

fn new_priority_queue_with_clock(clock: Box<dyn Clock>) -> Arc<PriorityQueue> {
    let pq = Arc::new(PriorityQueue {
        stop: Chan::new(0).named("p.stop"),
        clock,
        lock: RwMutex::new().named("p.lock"),
        pod_backoff_q: new_with_recorder(),
    });
    pq.run();
    pq
}

/// apimachinery's `wait.JitterUntil`, sliding, with no jitter: run `f`, then wait a period
/// (or `stop`), again.
fn jitter_until(f: &dyn Fn(), period: Duration, stop_ch: &Chan<()>) {
    loop {
        select! {
            recv(stop_ch) => return,
            default => {},
        }

        f();

        let t = time::after(period);
        select! {
            recv(stop_ch) => return,
            recv(t) => {},
        }
    }
}

/// apimachinery's `wait.Until`.
fn until(f: &dyn Fn(), period: Duration, stop_ch: &Chan<()>) {
    jitter_until(f, period, stop_ch)
}

/// `TestKubernetes79631` (`TestPriorityQueue_AddUnschedulableIfNotPresent_Backoff`, one pod).
fn test_kubernetes79631(variant: Variant) {
    let wg = WaitGroup::new().named("wg");
    wg.add(1);
    let wg2 = wg.clone();
    go_named("TestKubernetes79631.func1", move || {
        wg2.done();
        let q = if variant.fixed() {
            // The fix: the test's queue runs on a fake clock, so no backoff ever completes.
            new_priority_queue_with_clock(Box::new(FakeClock { time: time::now() }))
        } else {
            new_priority_queue()
        };
        let pod = "1".to_string();
        q.add_unschedulable_if_not_present(&pod);
        // The test checks that the pod is backing off, without the queue's lock.
        q.pod_backoff_q.get(&pod);
        q.close();
    });
    wg.wait();
}
