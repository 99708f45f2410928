#![doc = include_str!("kubernetes_89164.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_89164",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/89164",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes89164,
        walkthrough: include_str!("kubernetes_89164.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/89164"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#89164"),
        review: "faithful after mends: Checked against GoKer `nonblocking/kubernetes/89164`, GoReal's revert patch and race reports \
                 (fix tree 2fa96eca) and the index's copy of the test: right race, upstream's one-line fix, \
                 honest detection; only the trace needs re-blessing.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A watcher of the cache (its contents do not matter here).
type CacheWatcher = ();

/// A `watchCacheEvent` (here, a bookmark; its contents do not matter).
type WatchCacheEvent = ();

/// The apiserver's watch `Cacher`, which embeds a `sync.RWMutex`. `watchersBuffer` is
/// scratch space reused by every dispatch: only the dispatching goroutine may touch it.
struct Cacher {
    rw_mutex: RwMutex,
    watchers_buffer: Shared<Vec<CacheWatcher>>,
    incoming: Chan<WatchCacheEvent>,
}

impl Deref for Cacher {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

impl Cacher {
    /// Collects, under the lock, the watchers the event must go to.
    fn start_dispatching(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        // `c.watchersBuffer = c.watchersBuffer[:0]`, then the interested watchers appended.
        self.watchers_buffer.write(|b| b.clear());
    }

    /// Sends the event to the collected watchers, without the lock.
    fn dispatch_event(&self, _event: WatchCacheEvent) {
        self.start_dispatching();
        let watchers = self.watchers_buffer.read(|b| b.len());
        for _watcher in 0..watchers {}
    }

    /// The dispatcher goroutine; GoKer keeps one dispatch of it (a bookmark, say).
    fn dispatch_events(&self) {
        self.dispatch_event(());
    }

    /// How events reach the dispatcher: through the `incoming` channel.
    fn process_event(&self, event: WatchCacheEvent) {
        self.incoming.send(event);
    }
}

fn new_cacher_from_config() -> Arc<Cacher> {
    let cacher = Arc::new(Cacher {
        rw_mutex: RwMutex::new().named("Cacher"),
        watchers_buffer: Shared::new(Vec::new()).named("c.watchersBuffer"),
        incoming: Chan::new(100).named("c.incoming"),
    });
    let c = cacher.clone();
    go_named("Cacher.dispatchEvents", move || c.dispatch_events());
    cacher
}

fn new_test_cacher() -> Arc<Cacher> {
    new_cacher_from_config()
}

/// `TestKubernetes89164` (`TestDispatchingBookmarkEventsWithConcurrentStop`, three rounds).
fn test_kubernetes89164(variant: Variant) {
    let cacher = new_test_cacher();
    for _ in 0..3 {
        let wg = WaitGroup::new().named("wg");
        wg.add(1);
        let (cacher, wg2) = (cacher.clone(), wg.clone());
        go_named("TestKubernetes89164.func1", move || {
            let bookmark: WatchCacheEvent = ();
            if variant.fixed() {
                // The fix: hand the event to the dispatcher instead of dispatching it here.
                cacher.process_event(bookmark);
            } else {
                cacher.dispatch_event(bookmark);
            }
            wg2.done();
        });
        wg.wait();
    }
}
