#![doc = include_str!("kubernetes_38857.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_38857",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/39479",
        category: "Send on closed channel",
        expected: primitives::Verdict::Panic,
        kernel: test_kubernetes38857,
        walkthrough: include_str!("kubernetes_38857.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/kubernetes/0bbb49d2d52675dec586e17763f959634736ac8c.txt"),
        source: Source::Diff("0bbb49d2"),
        fix: Fix::Upstream("#39479"),
        review: "faithful: Checked against issue #38857 (buggy `podKiller` at 1d3c7ca7, read in the index), PR #39479's review-thread hunk and merge 0bbb49d2 (ASPLOS, message only): buggy code reproduced verbatim, fix matches, the stop path the kernel takes is admitted as the only one the code offers.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A pod's UID (`types.UID`).
type Uid = String;

/// `kubecontainer.Pod`: the running pod, as the container runtime sees it (its `ID`; the
/// name only appears in log lines).
struct RunningPod {
    id: Uid,
}

/// `kubecontainer.PodPair`: the pod from the API server (unused here) and the running pod.
struct PodPair {
    running_pod: RunningPod,
}

/// The kubelet, reduced to the channel that feeds the pod killer.
struct Kubelet {
    pod_killing_ch: Chan<PodPair>,
    variant: Variant,
}

impl Kubelet {
    /// `killPod`: stops the pod's containers through the runtime (a no-op here).
    fn kill_pod(&self, _running_pod: &RunningPod) -> Result<(), String> {
        Ok(())
    }

    /// `podKiller`: kills each pod received on `podKillingCh`, one goroutine per pod, unless a
    /// goroutine is already killing it; returns when `podKillingCh` is closed.
    fn pod_killer(self: &Arc<Self>) {
        // `sets.NewString()`: a Go map underneath.
        let killing: GoMap<Uid, ()> = GoMap::new().named("killing");
        // Before the fix the killers report back on resultCh, closed when podKiller returns;
        // the fix drops it (a nil channel, never ready) and guards the set with a mutex.
        let (result_ch, lock): (Chan<Uid>, Mutex) = if self.variant.fixed() {
            (Chan::nil(), Mutex::new().named("lock"))
        } else {
            (Chan::new(0).named("resultCh"), Mutex::new())
        };
        let _close_result_ch = defer(|| {
            if !self.variant.fixed() {
                result_ch.close();
            }
        });
        loop {
            select! {
                recv(self.pod_killing_ch) -> pod_pair => {
                    let Some(pod_pair) = pod_pair else { return };
                    let running_pod = pod_pair.running_pod;

                    if self.variant.fixed() {
                        lock.lock();
                        let exists = killing.contains_key(&running_pod.id);
                        if !exists {
                            killing.insert(running_pod.id.clone(), ());
                        }
                        lock.unlock();

                        if !exists {
                            let (kl, killing, lock) = (self.clone(), killing.clone(), lock.clone());
                            go_named("podKiller.func1", move || {
                                // glog: "Killing unwanted pod"
                                if let Err(_err) = kl.kill_pod(&running_pod) {
                                    // glog: "Failed killing the pod"
                                }
                                lock.lock();
                                killing.remove(&running_pod.id);
                                lock.unlock();
                            });
                        }
                    } else {
                        if killing.contains_key(&running_pod.id) {
                            // The pod is already being killed.
                            continue;
                        }
                        killing.insert(running_pod.id.clone(), ());
                        let (kl, ch) = (self.clone(), result_ch.clone());
                        go_named("podKiller.func1", move || {
                            let id = running_pod.id.clone();
                            let _report = defer(move || ch.send(id));
                            // glog: "Killing unwanted pod"
                            if let Err(_err) = kl.kill_pod(&running_pod) {
                                // glog: "Failed killing the pod"
                            }
                        });
                    }
                },
                recv(result_ch) -> pod_id => {
                    if let Some(pod_id) = pod_id {
                        killing.remove(&pod_id);
                    }
                },
            }
        }
    }
}

/// The kubelet runs the pod killer, hands it one pod to kill (as `deletePod` does) and then
/// stops it by closing `podKillingCh`.
fn test_kubernetes38857(variant: Variant) {
    let kl = Arc::new(Kubelet {
        pod_killing_ch: Chan::new(1).named("podKillingCh"),
        variant,
    });
    let k = kl.clone();
    go_named("podKiller", move || k.pod_killer());

    kl.pod_killing_ch.send(PodPair {
        running_pod: RunningPod {
            id: "uid-1".to_string(),
        },
    });
    kl.pod_killing_ch.close();
}
