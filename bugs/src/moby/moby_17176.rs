#![doc = include_str!("moby_17176.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, time, Chan, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_17176",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/17176",
        category: "Double locking",
        expected: primitives::Verdict::Leak,
        kernel: test_moby17176,
        walkthrough: include_str!("moby_17176.md"),
        goker: Some("gobench/goker/blocking/moby/17176"),
        asplos: Some("blocking-bugs/docker/2f16895ee94848e2d8ad72bc01968b4c88d84cb8.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("2f16895e"),
        review: "faithful: Checked against GoKer blocking/moby/17176, the fix 2f16895e (deviceset.go and the test it adds) and the history d295dc66/87de0400: the early return that keeps the devices lock, fixed by the one Unlock upstream added.",
        file: file!(),
        // The test's `time.After` is a watchdog: it fires only once the checker is stuck.
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// devmapper's `DeviceSet`, which embeds a `sync.Mutex` (the global "devices lock").
struct DeviceSet {
    mutex: Mutex,
    nr_deleted_devices: Shared<i64>,
    variant: Variant,
}

impl Deref for DeviceSet {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

impl DeviceSet {
    /// Returns `true` for Go's `nil` error.
    fn cleanup_deleted_devices(&self) -> bool {
        self.lock();
        // Nothing was deleted: nothing to clean up.
        if self.nr_deleted_devices.get() == 0 {
            if self.variant.fixed() {
                self.unlock();
            }
            return true;
        }
        self.unlock();
        false
    }
}

/// `testDevmapperLockReleasedDeviceDeletion`.
fn test_devmapper_lock_released_device_deletion(variant: Variant) {
    let ds = Arc::new(DeviceSet {
        mutex: Mutex::new().named("devices"),
        nr_deleted_devices: Shared::new(0).named("nrDeletedDevices"),
        variant,
    });
    ds.cleanup_deleted_devices();
    let done_chan = Chan::new(0).named("doneChan");
    let (ds2, done2) = (ds.clone(), done_chan.clone());
    go_named("testDevmapperLockReleasedDeviceDeletion.func1", move || {
        ds2.lock();
        let _unlock = defer(|| ds2.unlock());
        done2.send(true);
    });
    select! {
        recv(time::after(Duration::from_millis(1))) => {},
        recv(done_chan) => {},
    }
}

/// `TestMoby17176`.
fn test_moby17176(variant: Variant) {
    test_devmapper_lock_released_device_deletion(variant);
}
