#![doc = include_str!("kubernetes_81148.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, select, time, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_81148",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/81148",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes81148,
        walkthrough: include_str!("kubernetes_81148.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/81148"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#81148"),
        review: "faithful after mends: Checked against GoKer `nonblocking/kubernetes/81148`, GoReal's revert patch and race report (fix tree 8c6c94ba) and the index's copy of the buggy test: right race, right fix hunk, honest detection; mend one false sentence about upstream's `stop` (it is nil) and re-bless the stale trace.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

const UNSCHEDULABLE_Q_TIME_INTERVAL: Duration = Duration::from_secs(60);

/// A `time.Time`, as nanoseconds of the execution's virtual clock (which starts at zero, so
/// a time in the past can be negative).
type Time = i128;

fn now() -> Time {
    time::now().since_start().as_nanos() as Time
}

type Pod = String;

/// The scheduling queue's `PodInfo`: a pod and when it was last tried.
struct PodInfo {
    pod: Pod,
    timestamp: Shared<Time>,
}

/// `UnschedulablePodsMap`: the pods that could not be scheduled, by full name.
struct UnschedulablePodsMap {
    pod_info_map: GoMap<String, Arc<PodInfo>>,
    key_func: fn(&Pod) -> String,
}

impl UnschedulablePodsMap {
    fn add_or_update(&self, p_info: Arc<PodInfo>) {
        let pod_id = (self.key_func)(&p_info.pod);
        self.pod_info_map.insert(pod_id, p_info);
    }
}

fn get_pod_full_name(pod: &Pod) -> String {
    pod.clone()
}

fn new_unschedulable_pods_map() -> UnschedulablePodsMap {
    UnschedulablePodsMap {
        pod_info_map: GoMap::new().named("podInfoMap"),
        key_func: get_pod_full_name,
    }
}

/// The scheduler's `PriorityQueue`; `lock` guards its queues.
struct PriorityQueue {
    stop: Chan<()>,
    lock: RwMutex,
    unschedulable_q: UnschedulablePodsMap,
}

impl PriorityQueue {
    /// Moves pods that stayed unschedulable too long back to the active queue; here it only
    /// looks at their timestamps.
    fn flush_unschedulable_q_leftover(&self) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());

        let p_infos: Vec<Arc<PodInfo>> = self
            .unschedulable_q
            .pod_info_map
            .with(|m| m.values().cloned().collect());
        for p_info in p_infos {
            let _last_schedule_time = p_info.timestamp.get();
        }
    }

    /// Starts the queue's background flush.
    fn run(self: &Arc<Self>) {
        let (p, stop) = (self.clone(), self.stop.clone());
        go_named("Until", move || {
            until(&|| p.flush_unschedulable_q_leftover(), &stop)
        });
    }

    fn new_pod_info(&self, pod: Pod) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            pod,
            timestamp: Shared::new(now()).named("pInfo.Timestamp"),
        })
    }
}

fn new_priority_queue_with_clock(stop: Chan<()>) -> Arc<PriorityQueue> {
    let pq = Arc::new(PriorityQueue {
        stop,
        lock: RwMutex::new().named("p.lock"),
        unschedulable_q: new_unschedulable_pods_map(),
    });
    pq.run();
    pq
}

fn new_priority_queue(stop: Chan<()>) -> Arc<PriorityQueue> {
    new_priority_queue_with_clock(stop)
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

/// The test helper: adds a pod to the unschedulable queue under the queue's lock. It takes the
/// `PodInfo` as the fixed helper does (before the fix it took the pod and called `newPodInfo`
/// itself; see the walkthrough's Deviations).
fn add_or_update_unschedulable_pod(p: &PriorityQueue, p_info: Arc<PodInfo>) {
    p.lock.lock();
    let _unlock = defer(|| p.lock.unlock());
    p.unschedulable_q.add_or_update(p_info);
}

/// `TestKubernetes81148` (`TestHighPriorityFlushUnschedulableQLeftover`, one pod).
fn test_kubernetes81148(variant: Variant) {
    let stop = Chan::new(0).named("stop");
    let wg = WaitGroup::new().named("wg");
    wg.add(1);
    let (wg2, stop2) = (wg.clone(), stop.clone());
    go_named("TestKubernetes81148.func1", move || {
        let _done = defer(|| wg2.done());
        let q = new_priority_queue(stop2);
        let high_pod: Pod = "1".to_string();
        let past = now() - UNSCHEDULABLE_Q_TIME_INTERVAL.as_nanos() as Time;
        if variant.fixed() {
            // The fix: the timestamp is set before the pod is in the queue.
            let high_pod_info = q.new_pod_info(high_pod);
            high_pod_info.timestamp.set(past);
            add_or_update_unschedulable_pod(&q, high_pod_info);
        } else {
            add_or_update_unschedulable_pod(&q, q.new_pod_info(high_pod.clone()));
            // `q.unschedulableQ.podInfoMap[GetPodFullName(highPod)].Timestamp = ...`: reaches into
            // the queue and moves the timestamp back, without the lock.
            let key = get_pod_full_name(&high_pod);
            let p_info = q
                .unschedulable_q
                .pod_info_map
                .get(&key)
                .expect("the pod was just added");
            p_info.timestamp.set(past);
        }
    });
    wg.wait();
    stop.close();
}
