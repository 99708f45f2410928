#![doc = include_str!("kubernetes_37560.md")]

use std::sync::Arc;

use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, Chan, GoMap};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_37560",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/37569",
        category: "Data race (map)",
        expected: primitives::Verdict::Panic,
        kernel: test_kubernetes37560,
        budget: Budget { race_detector: false, ..Budget::DEFAULT },
        walkthrough: include_str!("kubernetes_37560.md"),
        goker: None,
        asplos: None,
        source: Source::Diff("#37569"),
        fix: Fix::Upstream("#37569"),
        review: "faithful: Checked against issue #37560 (crash stack), PR #37569 (description, review-thread hunk in `merge`) and before/after copies of `pkg/kubelet/config/apiserver.go` in the index: same read-in-push-function vs write-in-merge race on shared pod annotations, fix moved as upstream did; the unread buggy `apiserver.go` body is honestly reconstructed and admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `kubetypes.ApiserverSource`.
const APISERVER_SOURCE: &str = "api";
/// `kubetypes.ConfigSourceAnnotationKey`.
const CONFIG_SOURCE_ANNOTATION_KEY: &str = "kubernetes.io/config.source";
/// `v1.PodInitContainersAnnotationKey`.
const POD_INIT_CONTAINERS_ANNOTATION_KEY: &str = "pod.alpha.kubernetes.io/init-containers";

/// `v1.Pod`, reduced to its UID and its annotations (a Go map, shared by every holder of
/// the `*v1.Pod`).
struct Pod {
    uid: String,
    annotations: GoMap<String, String>,
}

/// `kubetypes.PodUpdate` with `Op: kubetypes.SET`.
struct PodUpdate {
    pods: Vec<Arc<Pod>>,
    source: &'static str,
}

/// `podutil.SetInitContainersAndStatuses`: reads the init-container annotations (and, when
/// they are set, fills the pod's init-container fields from them; they are not set here).
fn set_init_containers_and_statuses(pod: &Pod) -> Result<(), String> {
    let _init_containers_annotation = pod
        .annotations
        .get(&POD_INIT_CONTAINERS_ANNOTATION_KEY.to_string());
    Ok(())
}

/// `cache.UndeltaStore`: a store that hands its whole content to `PushFunc` after every
/// change.
struct UndeltaStore {
    store: GoMap<String, Arc<Pod>>,
    push_func: Box<dyn Fn(Vec<Arc<Pod>>) + Send + Sync>,
}

impl UndeltaStore {
    /// `UndeltaStore.Add`.
    fn add(&self, pod: Arc<Pod>) {
        self.store.insert(pod.uid.clone(), pod);
        (self.push_func)(self.store.with(|m| m.values().cloned().collect()));
    }
}

/// `newSourceApiserverFromLW`'s `send`: the pods of the store, as a SET update.
fn send(objs: Vec<Arc<Pod>>, updates: &Chan<PodUpdate>, variant: Variant) {
    let mut pods = Vec::new();
    for pod in objs {
        if !variant.fixed() {
            // Make sure the init containers and statuses are set on the pod.
            if let Err(_err) = set_init_containers_and_statuses(&pod) {
                // glog.Error
            }
        }
        pods.push(pod);
    }
    updates.send(PodUpdate {
        pods,
        source: APISERVER_SOURCE,
    });
}

/// `config.podStorage`: the kubelet's merged view of the pods of every source.
struct PodStorage {
    pod_lock: Mutex,
    pods: GoMap<String, Arc<Pod>>,
    variant: Variant,
}

impl PodStorage {
    /// `podStorage.merge` for a SET update: annotates each pod with its source and keeps it.
    fn merge(&self, source: &str, update: PodUpdate) {
        self.pod_lock.lock();
        let _unlock = defer(|| self.pod_lock.unlock());

        if self.variant.fixed() && source == APISERVER_SOURCE {
            // The fix: the init containers are set here, on the goroutine that also writes
            // the annotations.
            for pod in &update.pods {
                if let Err(_err) = set_init_containers_and_statuses(pod) {
                    // glog.Error
                }
            }
        }

        // updatePodsFunc
        for r#ref in update.pods {
            // Annotate the pod with the source before any comparison.
            r#ref
                .annotations
                .insert(CONFIG_SOURCE_ANNOTATION_KEY.to_string(), source.to_string());
            if !self.pods.contains_key(&r#ref.uid) {
                // recordFirstSeenTime and the other annotations are left out.
                self.pods.insert(r#ref.uid.clone(), r#ref);
            }
        }
    }
}

/// The kubelet starts the API server source and the listener that merges its updates; the
/// API server reports two new pods.
fn test_kubernetes37560(variant: Variant) {
    let updates: Chan<PodUpdate> = Chan::new(0).named("updates");
    let storage = Arc::new(PodStorage {
        pod_lock: Mutex::new().named("podLock"),
        pods: GoMap::new().named("pods"),
        variant,
    });

    let wg = WaitGroup::new().named("wg");
    wg.add(1);
    let (ch, s, w) = (updates.clone(), storage.clone(), wg.clone());
    go_named("listen", move || {
        let _done = defer(|| w.done());
        while let Some(update) = ch.recv() {
            let source = update.source;
            s.merge(source, update);
        }
    });

    let ch = updates.clone();
    go_named("Reflector.Run.func1", move || {
        let push_ch = ch.clone();
        let store = UndeltaStore {
            store: GoMap::new().named("store"),
            push_func: Box::new(move |objs| send(objs, &push_ch, variant)),
        };
        for uid in ["pod-a", "pod-b"] {
            // watchHandler: an ADDED event, decoded into a new pod.
            store.add(Arc::new(Pod {
                uid: uid.to_string(),
                annotations: GoMap::new().named(&format!("{uid}.Annotations")),
            }));
        }
        ch.close();
    });

    wg.wait();
}
