#![doc = include_str!("moby_36114.md")]

use std::ops::Deref;

use primitives::sync::Mutex;
use primitives::{defer, go_named};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_36114",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/36114",
        category: "Double locking",
        expected: primitives::Verdict::Leak,
        kernel: test_moby36114,
        walkthrough: include_str!("moby_36114.md"),
        goker: Some("gobench/goker/blocking/moby/36114"),
        asplos: Some("blocking-bugs/docker/a44fcd3d27c06aaa60d8d1cbce169f0d982e74b1.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("a44fcd3d"),
        review: "faithful after mends: Checked against GoKer blocking/moby/36114, a44fcd3d and the code at 2b2265ac: GoKer's double-lock kernel with upstream's fix; only the trace is stale.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The LCOW graph driver's utility VM (`serviceVM`), which embeds a `sync.Mutex`.
struct ServiceVm {
    mutex: Mutex,
    variant: Variant,
}

impl Deref for ServiceVm {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

impl ServiceVm {
    fn hot_add_vhds_at_start(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        // On a failed hot-add, the disks added so far are removed again.
        if self.variant.fixed() {
            self.hot_remove_vhds_no_lock();
        } else {
            self.hot_remove_vhds_at_start();
        }
    }

    fn hot_remove_vhds_at_start(&self) {
        self.lock(); // the lock hot_add_vhds_at_start already holds
        let _unlock = defer(|| self.unlock());
    }

    /// The fix's variant: the caller must hold the lock.
    fn hot_remove_vhds_no_lock(&self) {}
}

/// `TestMoby36114`.
fn test_moby36114(variant: Variant) {
    let s = ServiceVm {
        mutex: Mutex::new().named("serviceVM"),
        variant,
    };
    go_named("hotAddVHDsAtStart", move || s.hot_add_vhds_at_start());
}
