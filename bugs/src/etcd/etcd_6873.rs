#![doc = include_str!("etcd_6873.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_6873",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/6873",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Leak,
        kernel: test_etcd6873,
        walkthrough: include_str!("etcd_6873.md"),
        goker: Some("gobench/goker/blocking/etcd/6873"),
        asplos: Some("blocking-bugs/etcd/7618fdd1d642e47cac70c03f637b0fd798a53a6e.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("7618fdd1"),
        review: "faithful: Checked against GoKer etcd/6873, the fix 7618fdd1 and proxy/grpcproxy/watch_broadcasts.go at its parent 377f19b0: lock held across the wait for the coalescing goroutine, fixed by unlocking before `<-donec`, as upstream.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The grpc proxy's `watchBroadcast` (its fields do not matter here).
struct WatchBroadcast;

/// The grpc proxy's `watchBroadcasts`: a set of broadcasts, and a goroutine that coalesces
/// them as updates arrive on `updatec`.
struct WatchBroadcasts {
    mu: Mutex,
    updatec: Chan<WatchBroadcast>,
    donec: Chan<()>,
    variant: Variant,
}

fn new_watch_broadcasts(variant: Variant) -> Arc<WatchBroadcasts> {
    let wbs = Arc::new(WatchBroadcasts {
        mu: Mutex::new().named("watchBroadcasts.mu"),
        updatec: Chan::new(1).named("updatec"),
        donec: Chan::new(0).named("donec"),
        variant,
    });
    let w = wbs.clone();
    go_named("coalesceLoop", move || {
        let _close = defer(|| w.donec.close());
        while let Some(wb) = w.updatec.recv() {
            w.coalesce(wb);
        }
    });
    wbs
}

impl WatchBroadcasts {
    fn coalesce(&self, _wb: WatchBroadcast) {
        self.mu.lock();
        self.mu.unlock();
    }

    fn stop(&self) {
        self.mu.lock();
        // The fix deletes this deferred unlock...
        let deferred = !self.variant.fixed();
        let _unlock = defer(|| {
            if deferred {
                self.mu.unlock()
            }
        });
        self.updatec.close();
        // ...and unlocks here instead, before waiting for the coalescing goroutine.
        if self.variant.fixed() {
            self.mu.unlock();
        }
        self.donec.recv();
    }

    fn update(&self, wb: WatchBroadcast) {
        select! {
            send(self.updatec, wb) => {},
            default => {},
        }
    }
}

/// GoKer's `TestEtcd` (in `etcd6873_test.go`).
fn test_etcd6873(variant: Variant) {
    let wbs = new_watch_broadcasts(variant);
    wbs.update(WatchBroadcast);
    go_named("stop", move || wbs.stop());
}
