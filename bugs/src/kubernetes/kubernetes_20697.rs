#![doc = include_str!("kubernetes_20697.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{Cond, RLocker, RwMutex};
use primitives::{defer, go_named, time, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_20697",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/20697",
        category: "Missing unlock",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes20697,
        walkthrough: include_str!("kubernetes_20697.md"),
        asplos: Some("blocking-bugs/kubernetes/d3639aff7397dd0f0d3553b82043401ff834a356.txt"),
        source: Source::Diff("d3639aff"),
        fix: Fix::Upstream("d3639aff"),
        review: "faithful: Checked against the ASPLOS diff of d3639aff (PR #20697) and PR #20695's thread: WaitUntilFreshAndList's time-limit return skips the RUnlock deferred after the loop, so the watch cache's next write blocks for good; the one hunk mapped; later-version context and lazy timers admitted.",
        file: file!(),
        // The list's 60 s limit and the etcd events 25 s apart are real durations: time passes
        // only when every goroutine waits (see the walkthrough).
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// `MaximumListWait`: how long a list waits for a resource version in the future.
const MAXIMUM_LIST_WAIT: Duration = Duration::from_secs(60);

/// The time between two changes of the watched resource in etcd (the kernel's choice).
const EVENT_INTERVAL: Duration = Duration::from_secs(25);

/// An error (`error`).
#[derive(Debug)]
struct Error(String);

/// `watchCache`: the apiserver's cache of one resource, fed by a reflector.
struct WatchCache {
    /// The embedded `sync.RWMutex`.
    rw: RwMutex,
    /// Lists wait here for a fresh enough resource version (`sync.NewCond(wc.RLocker())`).
    cond: Cond<RLocker>,
    /// `store`, reduced to the resource versions of the objects it holds.
    store: Shared<Vec<u64>>,
    /// `resourceVersion`: up to which the cache is propagated.
    resource_version: Shared<u64>,
    variant: Variant,
}

impl Deref for WatchCache {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw
    }
}

impl WatchCache {
    /// `newWatchCache`.
    fn new(variant: Variant) -> Arc<Self> {
        let rw = RwMutex::new().named("watchCache");
        let cond = Cond::new(&rw.rlocker());
        Arc::new(WatchCache {
            rw,
            cond,
            store: Shared::new(Vec::new()).named("store"),
            resource_version: Shared::new(0).named("resourceVersion"),
            variant,
        })
    }

    /// `Add`: an object at `resource_version` was added.
    fn add(&self, resource_version: u64) -> Result<(), Error> {
        self.process_event(resource_version)
    }

    /// `processEvent`: updates the cache under the write lock and wakes the waiting lists.
    fn process_event(&self, resource_version: u64) -> Result<(), Error> {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.resource_version.set(resource_version);
        self.cond.broadcast();
        self.store.write(|objects| objects.push(resource_version)); // updateFunc
        Ok(())
    }

    /// `WaitUntilFreshAndList`: waits (up to `MaximumListWait`) until the cache has reached
    /// `resource_version`, then lists it.
    fn wait_until_fresh_and_list(
        self: &Arc<Self>,
        resource_version: u64,
    ) -> Result<(Vec<u64>, u64), Error> {
        let start_time = time::now();
        let w = self.clone();
        go_named("WaitUntilFreshAndList.func1", move || {
            // Wake us up when the time limit has expired.
            time::after(MAXIMUM_LIST_WAIT).recv();
            w.cond.broadcast();
        });

        self.rlock();
        // The fix: `defer w.RUnlock()` right after `RLock`, before the loop.
        let _runlock = self.variant.fixed().then(|| defer(|| self.runlock()));
        while self.resource_version.get() < resource_version {
            if time::since(start_time) >= MAXIMUM_LIST_WAIT {
                return Err(Error(format!(
                    "time limit exceeded while waiting for resource version {resource_version} \
                     (current value: {})",
                    self.resource_version.get()
                )));
            }
            self.cond.wait();
        }
        // Before the fix the deferred `RUnlock` came only here, after the loop.
        let _runlock = (!self.variant.fixed()).then(|| defer(|| self.runlock()));
        Ok((self.store.get(), self.resource_version.get()))
    }
}

/// The cacher's reflector: its watch on etcd delivers an event every `EVENT_INTERVAL`, and
/// its watch handler adds each to the watch cache.
fn reflector_list_and_watch(watch_cache: Arc<WatchCache>, resource_versions: &[u64]) {
    for &rv in resource_versions {
        time::sleep(EVENT_INTERVAL); // the next change arrives from etcd
        if let Err(err) = watch_cache.add(rv) {
            let _ = err; // utilruntime.HandleError
        }
    }
}

/// `Cacher.List` with a resource version the cache has not reached.
fn test_kubernetes20697(variant: Variant) {
    let watch_cache = WatchCache::new(variant);
    let wc = watch_cache.clone();
    go_named("Reflector.ListAndWatch", move || {
        reflector_list_and_watch(wc, &[2, 3, 4])
    });

    let list_rv = 5;
    match watch_cache.wait_until_fresh_and_list(list_rv) {
        // The request fails.
        Err(err) => {
            let _ = format!("failed to wait for fresh list: {}", err.0);
        }
        Ok((objs, read_resource_version)) => {
            let _ = (objs, read_resource_version);
        }
    }
}
