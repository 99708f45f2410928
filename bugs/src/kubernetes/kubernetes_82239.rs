#![doc = include_str!("kubernetes_82239.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::{go_named, select, time, Chan, GoMap};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_82239",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/82239",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes82239,
        loom: Loom::DoesNotApply(
            "the controller's worker loops on a 1 s timer until the test closes stopCh: \
             loom's search explores schedules where the timer keeps firing and main never \
             runs again, so it neither ends nor stays within the step bound",
        ),
        walkthrough: include_str!("kubernetes_82239.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/82239"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#82239"),
        review: "faithful after mends: Checked against GoKer `nonblocking/kubernetes/82239`, GoReal's revert patch and race report (fix tree cedffee9) and the PR description: right race and fix, honest detection; re-bless the stale trace and name the fake-watch goroutines dropped.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `metav1.ObjectMeta`, with only its annotations.
struct ObjectMeta {
    annotations: GoMap<String, ()>,
}

impl ObjectMeta {
    /// The generated `DeepCopyInto`: a new map with the same entries.
    fn deep_copy_into(&self) -> ObjectMeta {
        let entries = self.annotations.with(|m| m.clone());
        let out = GoMap::new().named("copy.Annotations");
        for (key, val) in entries {
            out.insert(key, val);
        }
        ObjectMeta { annotations: out }
    }
}

/// `v1.PersistentVolume`.
struct PersistentVolume {
    object_meta: ObjectMeta,
}

impl PersistentVolume {
    fn deep_copy(&self) -> Arc<PersistentVolume> {
        Arc::new(PersistentVolume {
            object_meta: self.object_meta.deep_copy_into(),
        })
    }
}

fn new_volume() -> Arc<PersistentVolume> {
    let annotations = GoMap::new().named("volume.Annotations");
    for i in 0..2 {
        annotations.insert(i.to_string(), ());
    }
    Arc::new(PersistentVolume {
        object_meta: ObjectMeta { annotations },
    })
}

fn new_volume_array() -> Vec<Arc<PersistentVolume>> {
    vec![new_volume()]
}

/// The informer's lister, reduced to the one volume it serves.
struct SimplifiedLister {
    volume: Arc<PersistentVolume>,
}

impl SimplifiedLister {
    fn get(&self, _key: &str) -> Arc<PersistentVolume> {
        self.volume.clone()
    }
}

/// The PV controller (`PersistentVolumeController`).
struct PersistentVolumeController {
    volume_lister: SimplifiedLister,
}

impl PersistentVolumeController {
    fn run(self: &Arc<Self>, stop_ch: Chan<()>) {
        let ctrl = self.clone();
        go_named("Until", move || {
            until(&|| ctrl.volume_worker(), Duration::from_secs(1), &stop_ch)
        });
    }

    fn volume_worker(&self) {
        let work_func = || {
            let volume = self.volume_lister.get("0");
            self.update_volume(&volume);
        };
        work_func();
    }

    fn update_volume(&self, volume: &PersistentVolume) {
        self.sync_volume(volume);
    }

    fn sync_volume(&self, volume: &PersistentVolume) {
        self.update_volume_phase(volume);
    }

    /// Works on a copy of the volume, as controllers must (the copy reads the original).
    fn update_volume_phase(&self, volume: &PersistentVolume) {
        volume.deep_copy();
    }
}

/// apimachinery's `wait.JitterUntil`: run `f`, then wait a period (or `stop`), again. (The
/// GoKer kernel spins without a period; see the walkthrough's Deviations.)
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

fn until(f: &dyn Fn(), period: Duration, stop_ch: &Chan<()>) {
    jitter_until(f, period, stop_ch)
}

/// One case of the PV controller's table-driven tests: the volumes it starts with, and
/// what the test does to them while the controller runs.
struct ControllerTest {
    initial_volumes: Vec<Arc<PersistentVolume>>,
    test: fn(&ControllerTest),
}

/// `TestKubernetes82239`.
fn test_kubernetes82239(variant: Variant) {
    let tests = vec![ControllerTest {
        initial_volumes: new_volume_array(),
        test: |test| {
            test.initial_volumes[0]
                .object_meta
                .annotations
                .insert("0".to_string(), ());
        },
    }];

    for test in &tests {
        let volume = if variant.fixed() {
            // The fix: `volume = volume.DeepCopy()` before the fake reactor and watch get it.
            test.initial_volumes[0].deep_copy()
        } else {
            test.initial_volumes[0].clone()
        };
        let ctrl = Arc::new(PersistentVolumeController {
            volume_lister: SimplifiedLister { volume },
        });

        let stop_ch = Chan::new(0).named("stopCh");
        let stop = stop_ch.clone();
        go_named("PersistentVolumeController.Run", move || ctrl.run(stop));
        time::sleep(Duration::from_millis(1));
        (test.test)(test);
        stop_ch.close();
    }
}
