#![doc = include_str!("kubernetes_13135.md")]

use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::time::Duration;

use primitives::sync::{Mutex, Once, RwMutex, WaitGroup};
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_13135",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/13135",
        category: "AB-BA deadlock",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes13135,
        walkthrough: include_str!("kubernetes_13135.md"),
        goker: Some("gobench/goker/blocking/kubernetes/13135"),
        asplos: Some("blocking-bugs/kubernetes/a12b7edc42c5c06a2e7d9f381975658692951d5a.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("a12b7edc"),
        review: "faithful after mends: Checked against GoKer blocking/kubernetes/13135, the ASPLOS copy of a12b7edc and the fix-era cacher.go in the index: the AB-BA cycle and the fix are upstream's. GoKer's concurrent `watchCache.Add` stands in for upstream's concurrent `Watch`, and the walkthrough maps it wrongly to the reflector (which runs on the same goroutine as startCaching).",
        file: file!(),
        loom: Loom::DoesNotApply(
            "Until's loop ends only when the `close` goroutine runs; loom's schedules can starve \
             it, and the starved loop ends at the step bound as a leak in the fixed variant too",
        ),
        ..Bug::DEFAULT
    }
}

/// `util.Until`: runs `f` every `period` until `stop_ch` is closed.
fn util(f: impl Fn(), period: Duration, stop_ch: Chan<()>) {
    loop {
        select! {
            recv(stop_ch) => return,
            default => {},
        }
        f();
        time::sleep(period);
    }
}

/// `Until`'s period: 0 in GoKer and upstream, where `ListAndWatch` blocks on its watch for a
/// long time. GoKer's `ListAndWatch` returns at once, which would make `Until` a busy loop that
/// only preemption can interrupt; the kernel sleeps 1 ms of virtual time between rounds
/// instead, standing for the watch's duration.
const PERIOD: Duration = Duration::from_millis(1);

/// A hook the watch cache calls (`func()`).
type Hook = Arc<dyn Fn() + Send + Sync>;

/// The reflector that fills the watch cache (`Reflector`); its store is the watch cache.
struct Reflector {
    store: Arc<WatchCache>,
}

impl Reflector {
    fn list_and_watch(&self, _stop_ch: &Chan<()>) -> Result<(), ()> {
        self.sync_with();
        Ok(())
    }

    fn sync_with(&self) {
        self.store.replace();
    }
}

/// The apiserver's watch cache (`WatchCache`), which embeds a `sync.RWMutex`.
struct WatchCache {
    rw_mutex: RwMutex,
    on_replace: Shared<Option<Hook>>,
    on_event: Shared<Option<Hook>>,
}

impl Deref for WatchCache {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

impl WatchCache {
    fn set_on_event(&self, on_event: Hook) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.on_event.set(Some(on_event));
    }

    fn set_on_replace(&self, on_replace: Hook) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.on_replace.set(Some(on_replace));
    }

    fn process_event(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        if let Some(on_event) = self.on_event.get() {
            on_event();
        }
    }

    fn add(&self) {
        self.process_event();
    }

    fn replace(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        if let Some(on_replace) = self.on_replace.get() {
            on_replace();
        }
    }
}

/// The apiserver's caching storage layer (`Cacher`). Upstream it embeds a `sync.RWMutex`,
/// GoKer's a `sync.Mutex`; only its write side is used here.
struct Cacher {
    mutex: Mutex,
    /// Removed by the fix, with `init_once`.
    initialized: WaitGroup,
    init_once: Once,
    /// Added by the fix: held while the cache is being (re)filled.
    usable: RwMutex,
    watch_cache: Arc<WatchCache>,
    reflector: Reflector,
    variant: Variant,
}

impl Deref for Cacher {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

impl Cacher {
    fn process_event(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
    }

    fn start_caching(&self, stop_channel: &Chan<()>) {
        // The fix: `defer c.usable.Lock()` instead of `c.Lock()`.
        let _relock = self.variant.fixed().then(|| defer(|| self.usable.lock()));
        if !self.variant.fixed() {
            // Not unlocked here: the onReplace hook unlocks it, from inside the watch cache's
            // lock.
            self.lock();
        }
        self.terminate_all_watchers();
        loop {
            if self.reflector.list_and_watch(stop_channel).is_ok() {
                break;
            }
        }
    }

    /// `terminateAllWatchers` (there are no watchers here). Before the fix it ran under the
    /// lock `startCaching` had taken; the fix makes it take the cacher's lock itself.
    fn terminate_all_watchers(&self) {
        if self.variant.fixed() {
            self.lock();
        }
        let _unlock = defer(|| {
            if self.variant.fixed() {
                self.unlock()
            }
        });
    }
}

fn new_cacher(stop_channel: Chan<()>, variant: Variant) -> Arc<Cacher> {
    let watch_cache = Arc::new(WatchCache {
        rw_mutex: RwMutex::new().named("WatchCache"),
        on_replace: Shared::new(None).named("onReplace"),
        on_event: Shared::new(None).named("onEvent"),
    });
    let cacher = Arc::new(Cacher {
        mutex: Mutex::new().named("Cacher"),
        initialized: WaitGroup::new().named("initialized"),
        init_once: Once::new(),
        usable: RwMutex::new().named("usable"),
        watch_cache: watch_cache.clone(),
        reflector: Reflector {
            store: watch_cache.clone(),
        },
        variant,
    });
    // The hooks hold the cacher weakly only to spare Rust a reference cycle; the goroutines
    // that call them (`Util`, `Add`) hold it strongly.
    let weak: Weak<Cacher> = Arc::downgrade(&cacher);
    let upgrade = move || weak.upgrade().expect("the cacher outlives its hooks");
    if variant.fixed() {
        cacher.usable.lock();
        let c = upgrade.clone();
        watch_cache.set_on_replace(Arc::new(move || c().usable.unlock()));
    } else {
        cacher.initialized.add(1);
        let c = upgrade.clone();
        watch_cache.set_on_replace(Arc::new(move || {
            let c = c();
            c.init_once.do_(|| c.initialized.done());
            c.unlock();
        }));
    }
    let c = upgrade.clone();
    watch_cache.set_on_event(Arc::new(move || c().process_event()));
    let stop_ch = stop_channel;
    let c = cacher.clone();
    go_named("Util", move || {
        let stop = stop_ch.clone();
        util(|| c.start_caching(&stop), PERIOD, stop_ch)
    }); // G2
    if !variant.fixed() {
        cacher.initialized.wait();
    }
    cacher
}

/// `TestKubernetes13135`.
fn test_kubernetes13135(variant: Variant) {
    let stop_channel = Chan::new(0).named("StopChannel");
    let c = new_cacher(stop_channel.clone(), variant); // G1
    go_named("Add", move || c.watch_cache.add()); // G3
    go_named("close", move || stop_channel.close());
}
