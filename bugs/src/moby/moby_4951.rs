#![doc = include_str!("moby_4951.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::{defer, go_named, time, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_4951",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/4951",
        category: "AB-BA deadlock",
        expected: primitives::Verdict::Leak,
        kernel: test_moby4951,
        walkthrough: include_str!("moby_4951.md"),
        goker: Some("gobench/goker/blocking/moby/4951"),
        asplos: Some("blocking-bugs/docker/2ffef1b7eb618162673c6ffabccb9ca57c7dfce3.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("2ffef1b7"),
        review: "faithful after mends: Checked against GoKer blocking/moby/4951, the fix 2ffef1b7 and deviceset.go at 70826e8b (and 81f148be): the AB-BA cycle made by dropping the global lock while holding the device lock, fixed by taking the device lock first, as upstream; one mislabelled hunk in the fix table.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// devmapper's `DeviceSet`, which embeds a `sync.Mutex`: the global lock.
struct DeviceSet {
    mutex: Mutex,
    /// Guards `infos` only (upstream's `MetaData.devicesLock`, from 70826e8b of the same PR).
    devices_lock: Mutex,
    infos: GoMap<&'static str, Arc<DevInfo>>,
    variant: Variant,
}

impl Deref for DeviceSet {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

/// One device (`DevInfo`), with its own lock.
struct DevInfo {
    lock: Mutex,
    name: &'static str,
}

impl DevInfo {
    fn name(&self) -> &'static str {
        self.name
    }
}

impl DeviceSet {
    fn delete_device(&self, hash: &'static str) {
        // The fix moves the global lock from here to after the device's lock.
        let _unlock = (!self.variant.fixed()).then(|| {
            self.lock();
            defer(|| self.unlock())
        });

        let info = self.lookup_device(hash).expect("the device exists");

        info.lock.lock();
        let _info_unlock = defer(|| info.lock.unlock());

        let _unlock_fixed = self.variant.fixed().then(|| {
            self.lock();
            defer(|| self.unlock())
        });

        self.delete_device_locked(&info);
    }

    fn lookup_device(&self, hash: &'static str) -> Option<Arc<DevInfo>> {
        self.devices_lock.lock();
        let _unlock = defer(|| self.devices_lock.unlock());
        self.infos.get(&hash)
    }

    /// Go's `deleteDevice` (the caller holds the global lock).
    fn delete_device_locked(&self, info: &DevInfo) {
        self.remove_device_and_wait(info.name());
    }

    /// The device is busy: drop the global lock while waiting, keep the device's lock.
    fn remove_device_and_wait(&self, _devname: &str) {
        self.unlock();
        time::sleep(Duration::from_nanos(300));
        self.lock();
    }
}

fn new_device_set(variant: Variant) -> Arc<DeviceSet> {
    let devices = Arc::new(DeviceSet {
        mutex: Mutex::new().named("devices"),
        devices_lock: Mutex::new().named("devicesLock"),
        infos: GoMap::new().named("infos"),
        variant,
    });
    for name in ["info1", "info2"] {
        let info = Arc::new(DevInfo {
            lock: Mutex::new().named(&format!("{name}.lock")),
            name,
        });
        devices.infos.insert(name, info);
    }
    devices
}

/// `TestMoby4951`: two deletions of the same device.
fn test_moby4951(variant: Variant) {
    let ds = new_device_set(variant);
    let ds2 = ds.clone();
    go_named("DeleteDevice", move || ds.delete_device("info1"));
    go_named("DeleteDevice", move || ds2.delete_device("info1"));
}
