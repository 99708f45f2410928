#![doc = include_str!("kubernetes_26407.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, select, time, Chan, GoMap, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_26407",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/26407",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes26407,
        walkthrough: include_str!("kubernetes_26407.md"),
        asplos: Some("non-blocking-bugs/kubernetes/3c345abafd024853d8ff0fb332db6076cfc610c5.txt"),
        source: Source::Diff("3c345aba"),
        fix: Fix::Upstream("3c345aba"),
        review: "faithful: Checked against 3c345aba (ASPLOS diff), issue #26377's race report and attacher_detacher.go (305b50a5 via the index): right race pair, shape and fix, deviations admitted; only the fake plugin's write-lock claim wants a source.",
        file: file!(),
        loom: Loom::DoesNotApply(
            "main, the reconciler, an attach and a detach operation and the timer goroutine \
             exceed loom's threads, and the race needs the reconciler to loop while an \
             operation is pending",
        ),
        ..Bug::DEFAULT
    }
}

/// The reconciler's loop period in the test (the kernel's value).
const RECONCILER_LOOP_PERIOD: Duration = Duration::from_millis(10);

/// `volumetesting.FakeVolume`: counts the calls made on it.
struct FakeVolume {
    rw: RwMutex,
    attach_call_count: Shared<i32>,
    detach_call_count: Shared<i32>,
}

impl Deref for FakeVolume {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw
    }
}

impl FakeVolume {
    fn new() -> Arc<Self> {
        Arc::new(FakeVolume {
            rw: RwMutex::new().named("FakeVolume"),
            attach_call_count: Shared::new(0).named("AttachCallCount"),
            detach_call_count: Shared::new(0).named("DetachCallCount"),
        })
    }

    /// `Attach`.
    fn attach(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.attach_call_count.set(self.attach_call_count.get() + 1);
    }

    /// `GetAttachCallCount`.
    fn get_attach_call_count(&self) -> i32 {
        self.rlock();
        let _unlock = defer(|| self.runlock());
        self.attach_call_count.get()
    }

    /// `Detach`.
    fn detach(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.detach_call_count.set(self.detach_call_count.get() + 1);
    }

    /// `GetDetachCallCount`.
    fn get_detach_call_count(&self) -> i32 {
        self.rlock();
        let _unlock = defer(|| self.runlock());
        self.detach_call_count.get()
    }
}

/// `volumetesting.FakeVolumePlugin`: its embedded `sync.RWMutex` guards the lists of the
/// attachers and detachers it hands out and the counts of those calls.
struct FakeVolumePlugin {
    rw: RwMutex,
    attachers: Shared<Vec<Arc<FakeVolume>>>,
    detachers: Shared<Vec<Arc<FakeVolume>>>,
    new_attacher_call_count: Shared<i32>,
    new_detacher_call_count: Shared<i32>,
}

impl Deref for FakeVolumePlugin {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw
    }
}

impl FakeVolumePlugin {
    fn new() -> Arc<Self> {
        Arc::new(FakeVolumePlugin {
            rw: RwMutex::new().named("FakeVolumePlugin"),
            attachers: Shared::new(Vec::new()).named("plugin.Attachers"),
            detachers: Shared::new(Vec::new()).named("plugin.Detachers"),
            new_attacher_call_count: Shared::new(0).named("NewAttacherCallCount"),
            new_detacher_call_count: Shared::new(0).named("NewDetacherCallCount"),
        })
    }

    /// `getFakeVolume`: a new fake volume, appended to `list`.
    fn get_fake_volume(&self, list: &Shared<Vec<Arc<FakeVolume>>>) -> Arc<FakeVolume> {
        let volume = FakeVolume::new();
        let mut l = list.get();
        l.push(volume.clone());
        list.set(l);
        volume
    }

    /// `NewAttacher`.
    fn new_attacher(&self) -> Arc<FakeVolume> {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.new_attacher_call_count
            .set(self.new_attacher_call_count.get() + 1);
        self.get_fake_volume(&self.attachers)
    }

    /// `GetAttachers` (added by the fix).
    fn get_attachers(&self) -> Vec<Arc<FakeVolume>> {
        self.rlock();
        let _unlock = defer(|| self.runlock());
        self.attachers.get()
    }

    /// `GetNewAttacherCallCount`.
    fn get_new_attacher_call_count(&self) -> i32 {
        self.rlock();
        let _unlock = defer(|| self.runlock());
        self.new_attacher_call_count.get()
    }

    /// `NewDetacher`.
    fn new_detacher(&self) -> Arc<FakeVolume> {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.new_detacher_call_count
            .set(self.new_detacher_call_count.get() + 1);
        self.get_fake_volume(&self.detachers)
    }

    /// `GetDetachers` (added by the fix).
    fn get_detachers(&self) -> Vec<Arc<FakeVolume>> {
        self.rlock();
        let _unlock = defer(|| self.runlock());
        self.detachers.get()
    }

    /// `GetNewDetacherCallCount`.
    fn get_new_detacher_call_count(&self) -> i32 {
        self.rlock();
        let _unlock = defer(|| self.runlock());
        self.new_detacher_call_count.get()
    }
}

/// `cache.DesiredStateOfWorld`, for one volume on one node: does a pod want it there?
struct DesiredStateOfWorld {
    mu: Mutex,
    volume_wanted: Shared<bool>,
}

impl DesiredStateOfWorld {
    /// `AddPod`.
    fn add_pod(&self) {
        self.mu.lock();
        self.volume_wanted.set(true);
        self.mu.unlock();
    }

    /// `DeletePod`.
    fn delete_pod(&self) {
        self.mu.lock();
        self.volume_wanted.set(false);
        self.mu.unlock();
    }

    /// `VolumeExists`, and `GetVolumesToAttach` being non-empty.
    fn volume_exists(&self) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.volume_wanted.get()
    }
}

/// `cache.ActualStateOfWorld`, for one volume on one node: is it attached?
struct ActualStateOfWorld {
    mu: Mutex,
    attached: Shared<bool>,
}

impl ActualStateOfWorld {
    /// `AddVolumeNode`.
    fn add_volume_node(&self) {
        self.mu.lock();
        self.attached.set(true);
        self.mu.unlock();
    }

    /// `DeleteVolumeNode`.
    fn delete_volume_node(&self) {
        self.mu.lock();
        self.attached.set(false);
        self.mu.unlock();
    }

    /// `VolumeNodeExists`, and `GetAttachedVolumes` being non-empty.
    fn volume_node_exists(&self) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.attached.get()
    }
}

/// `goroutinemap.GoRoutineMap`: at most one operation per name.
struct GoRoutineMap {
    mu: Mutex,
    operations: GoMap<&'static str, bool>,
}

impl GoRoutineMap {
    /// `Run`: starts `operation_func` on a new goroutine unless one of that name is pending.
    fn run(
        self: &Arc<Self>,
        operation_name: &'static str,
        goroutine: &str,
        operation_func: impl FnOnce() + Send + 'static,
    ) -> Result<(), String> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.operations.get(&operation_name).unwrap_or(false) {
            return Err(format!("operation {operation_name:?} already exists"));
        }
        self.operations.insert(operation_name, true);
        let grm = self.clone();
        go_named(goroutine, move || {
            operation_func();
            grm.operation_complete(operation_name);
        });
        Ok(())
    }

    /// `operationComplete`.
    fn operation_complete(&self, operation_name: &'static str) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.operations.remove(&operation_name);
    }
}

/// `attacherdetacher.attacherDetacher`.
struct AttacherDetacher {
    plugin: Arc<FakeVolumePlugin>,
    pending_operations: Arc<GoRoutineMap>,
}

const VOLUME_NAME: &str = "volume-name";

impl AttacherDetacher {
    /// `AttachVolume`.
    fn attach_volume(&self, asw: &Arc<ActualStateOfWorld>) -> Result<(), String> {
        let attach_func = self.generate_attach_volume_func(asw);
        self.pending_operations
            .run(VOLUME_NAME, "attachVolumeFunc", attach_func)
    }

    /// `DetachVolume`.
    fn detach_volume(&self, asw: &Arc<ActualStateOfWorld>) -> Result<(), String> {
        let detach_func = self.generate_detach_volume_func(asw);
        self.pending_operations
            .run(VOLUME_NAME, "detachVolumeFunc", detach_func)
    }

    /// `generateAttachVolumeFunc`: gets an attacher from the plugin now, attaches later.
    fn generate_attach_volume_func(
        &self,
        asw: &Arc<ActualStateOfWorld>,
    ) -> impl FnOnce() + Send + 'static {
        let volume_attacher = self.plugin.new_attacher();
        let asw = asw.clone();
        move || {
            volume_attacher.attach();
            asw.add_volume_node();
        }
    }

    /// `generateDetachVolumeFunc`: gets a detacher from the plugin now, detaches later.
    fn generate_detach_volume_func(
        &self,
        asw: &Arc<ActualStateOfWorld>,
    ) -> impl FnOnce() + Send + 'static {
        let volume_detacher = self.plugin.new_detacher();
        let asw = asw.clone();
        move || {
            volume_detacher.detach();
            asw.delete_volume_node();
        }
    }
}

/// `reconciler.reconciler`.
struct Reconciler {
    loop_period: Duration,
    desired_state_of_world: Arc<DesiredStateOfWorld>,
    actual_state_of_world: Arc<ActualStateOfWorld>,
    attacher_detacher: AttacherDetacher,
}

impl Reconciler {
    /// `Run`: `wait.Until(rc.reconciliationLoopFunc(), rc.loopPeriod, stopCh)`.
    fn run(&self, stop_ch: Chan<()>) {
        loop {
            select! {
                recv(stop_ch) => return,
                default => {},
            }
            self.reconciliation_loop_func();
            let tick = time::after(self.loop_period);
            select! {
                recv(stop_ch) => return,
                recv(tick) => {},
            }
        }
    }

    /// `reconciliationLoopFunc`'s function: detaches first, then attaches.
    fn reconciliation_loop_func(&self) {
        let asw = &self.actual_state_of_world;
        let dsw = &self.desired_state_of_world;
        // Volumes attached but no longer wanted.
        if asw.volume_node_exists() && !dsw.volume_exists() {
            let _ = self.attacher_detacher.detach_volume(asw);
        }
        // Volumes wanted but not attached yet.
        if dsw.volume_exists() && !asw.volume_node_exists() {
            let _ = self.attacher_detacher.attach_volume(asw);
        }
    }
}

/// The test's helpers, with the variant (the fix changes how they read the plugin's lists).
struct Checks {
    fake_plugin: Arc<FakeVolumePlugin>,
    variant: Variant,
}

/// `retryWithExponentialBackOff`: calls `f` until it returns true, sleeping 5 ms, then three
/// times longer each time, six tries at most.
fn retry_with_exponential_back_off(initial_duration: Duration, f: impl Fn() -> bool) -> bool {
    let mut d = initial_duration;
    for _ in 0..6 {
        if f() {
            return true;
        }
        time::sleep(d);
        d *= 3;
    }
    false
}

impl Checks {
    /// `waitForNewAttacherCallCount`.
    fn wait_for_new_attacher_call_count(&self, expected: i32) {
        let _ = retry_with_exponential_back_off(Duration::from_millis(5), || {
            self.fake_plugin.get_new_attacher_call_count() == expected
        });
    }

    /// `waitForNewDetacherCallCount`.
    fn wait_for_new_detacher_call_count(&self, expected: i32) {
        let _ = retry_with_exponential_back_off(Duration::from_millis(5), || {
            self.fake_plugin.get_new_detacher_call_count() == expected
        });
    }

    /// `fakePlugin.Attachers`, or `fakePlugin.GetAttachers()` after the fix.
    fn attachers(&self) -> Vec<Arc<FakeVolume>> {
        if self.variant.fixed() {
            self.fake_plugin.get_attachers()
        } else {
            self.fake_plugin.attachers.get()
        }
    }

    /// `fakePlugin.Detachers`, or `fakePlugin.GetDetachers()` after the fix.
    fn detachers(&self) -> Vec<Arc<FakeVolume>> {
        if self.variant.fixed() {
            self.fake_plugin.get_detachers()
        } else {
            self.fake_plugin.detachers.get()
        }
    }

    /// `waitForAttachCallCount`.
    fn wait_for_attach_call_count(&self, expected_attach_call_count: i32) {
        if self.attachers().is_empty() && expected_attach_call_count == 0 {
            return;
        }
        let _ = retry_with_exponential_back_off(Duration::from_millis(5), || {
            for attacher in self.attachers() {
                if attacher.get_attach_call_count() == expected_attach_call_count {
                    return true;
                }
            }
            false
        });
    }

    /// `waitForDetachCallCount`.
    fn wait_for_detach_call_count(&self, expected_detach_call_count: i32) {
        if self.detachers().is_empty() && expected_detach_call_count == 0 {
            return;
        }
        let _ = retry_with_exponential_back_off(Duration::from_millis(5), || {
            for detacher in self.detachers() {
                if detacher.get_detach_call_count() == expected_detach_call_count {
                    return true;
                }
            }
            false
        });
    }
}

/// `Test_Run_Positive_OneDesiredVolumeAttachThenDetachWithMarkVolume`
/// (`pkg/controller/volume/reconciler/reconciler_test.go`).
fn test_kubernetes26407(variant: Variant) {
    // Arrange
    let fake_plugin = FakeVolumePlugin::new();
    let dsw = Arc::new(DesiredStateOfWorld {
        mu: Mutex::new().named("dsw"),
        volume_wanted: Shared::new(false).named("dsw.volume"),
    });
    let asw = Arc::new(ActualStateOfWorld {
        mu: Mutex::new().named("asw"),
        attached: Shared::new(false).named("asw.volume"),
    });
    let ad = AttacherDetacher {
        plugin: fake_plugin.clone(),
        pending_operations: Arc::new(GoRoutineMap {
            mu: Mutex::new().named("goRoutineMap"),
            operations: GoMap::new().named("operations"),
        }),
    };
    let reconciler = Arc::new(Reconciler {
        loop_period: RECONCILER_LOOP_PERIOD,
        desired_state_of_world: dsw.clone(),
        actual_state_of_world: asw.clone(),
        attacher_detacher: ad,
    });
    let checks = Checks {
        fake_plugin,
        variant,
    };
    dsw.add_pod();

    // Act
    let stop_ch = Chan::new(0).named("stopCh");
    let (r, stop) = (reconciler.clone(), stop_ch.clone());
    go_named("reconciler.Run", move || r.run(stop));

    // Assert
    checks.wait_for_new_attacher_call_count(1);
    checks.wait_for_attach_call_count(1);

    // The pod goes away: the volume is to be detached.
    dsw.delete_pod();

    checks.wait_for_new_detacher_call_count(1);
    checks.wait_for_detach_call_count(1);

    stop_ch.close();
}
