#![doc = include_str!("kubernetes_16223.md")]

use std::sync::Arc;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, select, Chan, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_16223",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/16223",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_kubernetes16223,
        walkthrough: include_str!("kubernetes_16223.md"),
        asplos: Some("blocking-bugs/kubernetes/9a2089adc8b60e9a33ca59cdc931e21d956f1ff8.txt"),
        source: Source::Diff("9a2089ad"),
        fix: Fix::Upstream("9a2089ad"),
        review: "faithful: Checked against 9a2089ad's diff (ASPLOS copy) and PR #16216's description: the lock-held send versus the sync goroutine's synchronous DeletePodStatus, the non-blocking-send fix and the shape all match; only a quote's attribution (commit message vs PR description) to tighten.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `types.UID`.
type Uid = &'static str;

/// `api.PodStatus`, reduced to a message that tells two statuses apart.
#[derive(Clone, PartialEq, Debug)]
struct PodStatus {
    message: &'static str,
}

/// `api.Pod`: what `syncBatch` reads of it.
struct Pod {
    uid: Uid,
    name: &'static str,
    /// `DeletionTimestamp != nil`: the pod is being deleted gracefully.
    deletion_timestamp: bool,
    /// `notRunning(pod.Status.ContainerStatuses)`: every container is terminated or waiting.
    containers_not_running: bool,
}

/// `podStatusSyncRequest`.
struct PodStatusSyncRequest {
    pod: Arc<Pod>,
    status: PodStatus,
}

/// The kubelet's `client.Interface`, as the API server answers it here: every pod exists,
/// and status updates and deletions succeed.
struct KubeClient;

impl KubeClient {
    /// `Pods(ns).Get(name)`: the server's copy of the pod (its UID is what `syncBatch` checks).
    fn get(&self, pod: &Pod) -> Result<Uid, &'static str> {
        Ok(pod.uid)
    }

    /// `Pods(ns).UpdateStatus(pod)`.
    fn update_status(&self, _name: &str, _status: &PodStatus) -> Result<(), &'static str> {
        Ok(())
    }

    /// `Pods(ns).Delete(name, api.NewDeleteOptions(0))`.
    fn delete(&self, _name: &str) -> Result<(), &'static str> {
        Ok(())
    }
}

/// `status.manager`: the kubelet's cache of pod statuses and its sync to the API server.
struct Manager {
    kube_client: KubeClient,
    /// `podStatuses`, guarded by `podStatusesLock`.
    pod_statuses: GoMap<Uid, PodStatus>,
    pod_statuses_lock: RwMutex,
    pod_status_channel: Chan<PodStatusSyncRequest>,
    variant: Variant,
}

impl Manager {
    /// `NewManager`.
    fn new(variant: Variant) -> Arc<Self> {
        Arc::new(Manager {
            kube_client: KubeClient,
            pod_statuses: GoMap::new().named("podStatuses"),
            pod_statuses_lock: RwMutex::new().named("podStatusesLock"),
            // Buffer up to 1000 statuses upstream; one here.
            pod_status_channel: Chan::new(1).named("podStatusChannel"),
            variant,
        })
    }

    /// `Start`: the sync goroutine, `util.Until(syncBatch, 0, util.NeverStop)` upstream; here
    /// it ends when the test closes `stop` (see the walkthrough).
    fn start(self: &Arc<Self>, stop: Chan<()>) {
        let m = self.clone();
        go_named("util.Until", move || loop {
            select! {
                recv(stop) => return,
                default => {},
            }
            if m.sync_batch(&stop).is_err() {
                // glog.Warningf("Failed to updated pod status: %v", err)
            }
        });
    }

    /// `SetPodStatus`.
    fn set_pod_status(&self, pod: &Arc<Pod>, status: PodStatus) {
        self.pod_statuses_lock.lock();
        let _unlock = defer(|| self.pod_statuses_lock.unlock());
        let old_status = self.pod_statuses.get(&pod.uid);
        // (StartTime and the Ready condition's LastTransitionTime are carried over here.)
        if old_status.as_ref() != Some(&status) || pod.deletion_timestamp {
            self.pod_statuses.insert(pod.uid, status.clone());
            let request = PodStatusSyncRequest {
                pod: pod.clone(),
                status,
            };
            if self.variant.fixed() {
                select! {
                    send(self.pod_status_channel, request) => {},
                    // Let the periodic syncBatch handle the update if the channel is full.
                    default => {},
                }
            } else {
                self.pod_status_channel.send(request);
            }
        }
    }

    /// `DeletePodStatus`.
    fn delete_pod_status(&self, uid: Uid) {
        self.pod_statuses_lock.lock();
        let _unlock = defer(|| self.pod_statuses_lock.unlock());
        self.pod_statuses.remove(&uid);
    }

    /// `syncBatch`: takes one request from the channel and writes it to the API server.
    fn sync_batch(&self, stop: &Chan<()>) -> Result<(), String> {
        let sync_request = select! {
            recv(self.pod_status_channel) -> r => r.expect("never closed"),
            recv(stop) => return Ok(()),
        };
        let pod = sync_request.pod;
        let status = sync_request.status;

        let status_pod_uid = match self.kube_client.get(&pod) {
            Err(_) => return Ok(()), // IsNotFound: the pod was deleted on the server
            Ok(uid) => uid,
        };
        if status_pod_uid != pod.uid {
            return Ok(()); // deleted and then recreated
        }
        if self.kube_client.update_status(pod.name, &status).is_ok() {
            if !pod.deletion_timestamp {
                return Ok(());
            }
            if !pod.containers_not_running {
                return Ok(());
            }
            if self.kube_client.delete(pod.name).is_ok() {
                // Fully terminated and removed from etcd.
                self.delete_pod_status(pod.uid);
                return Ok(());
            }
        }
        // Failed: `go m.DeletePodStatus(pod.UID)` upstream (never reached here).
        Err(format!("error updating status for pod {:?}", pod.name))
    }
}

/// The kubelet's pod workers report statuses; the status manager syncs them.
fn test_kubernetes16223(variant: Variant) {
    let m = Manager::new(variant);
    let stop = Chan::new(0).named("stop");
    m.start(stop.clone());

    // A pod being deleted whose containers have all terminated: its last status.
    let terminated = Arc::new(Pod {
        uid: "pod-a",
        name: "terminated",
        deletion_timestamp: true,
        containers_not_running: true,
    });
    // A running pod whose status changes twice.
    let running = Arc::new(Pod {
        uid: "pod-b",
        name: "running",
        deletion_timestamp: false,
        containers_not_running: false,
    });

    m.set_pod_status(
        &terminated,
        PodStatus {
            message: "terminated",
        },
    );
    m.set_pod_status(
        &running,
        PodStatus {
            message: "starting",
        },
    );
    m.set_pod_status(&running, PodStatus { message: "ready" });

    stop.close();
}
