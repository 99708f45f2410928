#![doc = include_str!("kubernetes_10182.md")]

use std::sync::Arc;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_10182",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/10182",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes10182,
        walkthrough: include_str!("kubernetes_10182.md"),
        goker: Some("gobench/goker/blocking/kubernetes/10182"),
        asplos: Some("blocking-bugs/kubernetes/64ad3e17ad15cd0f9a4fd86706eec1c572033254.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("64ad3e17"),
        review: "faithful: Checked against GoKer blocking/kubernetes/10182 and the ASPLOS copy of 64ad3e17: GoKer's kernel with upstream's one-line fix; nothing unadmitted.",
        file: file!(),
        loom: Loom::DoesNotApply(
            "the fixed variant starts two more goroutines (go DeletePodStatus): seven threads \
             with main, loom has five",
        ),
        ..Bug::DEFAULT
    }
}

/// The kubelet's pod status manager (`statusManager`).
struct StatusManager {
    pod_statuses_lock: RwMutex,
    pod_status_channel: Chan<bool>,
    variant: Variant,
}

impl StatusManager {
    fn start(self: &Arc<Self>) {
        let s = self.clone();
        go_named("Start.func1", move || {
            for _ in 0..2 {
                s.sync_batch();
            }
        });
    }

    fn sync_batch(self: &Arc<Self>) {
        self.pod_status_channel.recv();
        if self.variant.fixed() {
            // The fix: delete asynchronously, so the channel's reader never waits for the lock.
            let s = self.clone();
            go_named("DeletePodStatus", move || s.delete_pod_status());
        } else {
            self.delete_pod_status();
        }
    }

    fn delete_pod_status(&self) {
        self.pod_statuses_lock.lock();
        let _unlock = defer(|| self.pod_statuses_lock.unlock());
    }

    fn set_pod_status(&self) {
        self.pod_statuses_lock.lock();
        let _unlock = defer(|| self.pod_statuses_lock.unlock());
        self.pod_status_channel.send(true); // blocks holding the lock
    }
}

fn new_status_manager(variant: Variant) -> Arc<StatusManager> {
    Arc::new(StatusManager {
        pod_statuses_lock: RwMutex::new().named("podStatusesLock"),
        pod_status_channel: Chan::new(0).named("podStatusChannel"),
        variant,
    })
}

/// `TestKubernetes10182`.
fn test_kubernetes10182(variant: Variant) {
    let s = new_status_manager(variant);
    let (s1, s2, s3) = (s.clone(), s.clone(), s);
    go_named("Start", move || s1.start());
    go_named("SetPodStatus", move || s2.set_pod_status()); // G2
    go_named("SetPodStatus", move || s3.set_pod_status()); // G3
}
