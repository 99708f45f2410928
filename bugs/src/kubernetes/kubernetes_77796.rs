#![doc = include_str!("kubernetes_77796.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_77796",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/77796",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes77796,
        loom: Loom::DoesNotApply(
            "main, the dispatcher, three test goroutines and the timer goroutine: more \
             threads than loom's five",
        ),
        walkthrough: include_str!("kubernetes_77796.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/77796"),
        asplos: None,
        source: Source::Test(
            "kubernetes/apiserver pkg/storage/cacher/cacher_whitebox_test.go @ ecab80d4",
        ),
        fix: Fix::Upstream("3892f669"),
        review: "faithful after mends: Checked against the apiserver fix ef7e49ea (Kubernetes 3892f669) and cacher.go / cacher_whitebox_test.go at ecab80d4, issue #77451, GoReal's revert and report, and GoKer nonblocking/kubernetes/77796: same between-rounds race on `watchersBuffer`, fix switched; one wrong claim about GoKer's kernel to mend.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A watcher of the cache (its contents do not matter here).
type CacheWatcher = ();

/// A `watchCacheEvent` (here, a bookmark; its contents do not matter).
type WatchCacheEvent = ();

/// The apiserver's watch `Cacher`, which embeds a `sync.RWMutex`. `watchersBuffer` is
/// scratch space reused by every dispatch: only one goroutine at a time may dispatch.
struct Cacher {
    rw_mutex: RwMutex,
    incoming: Chan<WatchCacheEvent>,
    stop_ch: Chan<()>,
    /// Guarded by the lock.
    dispatching: Shared<bool>,
    watchers_buffer: Shared<Vec<CacheWatcher>>,
}

impl Deref for Cacher {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

impl Cacher {
    /// The dispatcher goroutine: dispatches what arrives on `incoming` until stopped.
    fn dispatch_events(&self) {
        loop {
            select! {
                recv(self.incoming) -> event => {
                    let Some(event) = event else { return };
                    self.dispatch_event(event);
                },
                recv(self.stop_ch) => return,
            }
        }
    }

    /// Sends the event to the watchers `startDispatching` collected, without the lock.
    fn dispatch_event(&self, _event: WatchCacheEvent) {
        self.start_dispatching();
        let _finish = defer(|| self.finish_dispatching());
        let watchers = self.watchers_buffer.read(|b| b.len());
        for _watcher in 0..watchers {}
    }

    /// Collects, under the lock, the watchers the event must go to.
    fn start_dispatching(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.dispatching.set(true);
        // `c.watchersBuffer = c.watchersBuffer[:0]`, then the interested watchers appended.
        self.watchers_buffer.write(|b| b.clear());
    }

    /// Ends a dispatch, under the lock (it also stops the watchers whose stop was deferred
    /// while dispatching; there are none here).
    fn finish_dispatching(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.dispatching.set(false);
    }

    fn stop(&self) {
        self.stop_ch.close();
    }
}

fn new_cacher_from_config() -> Arc<Cacher> {
    let cacher = Arc::new(Cacher {
        rw_mutex: RwMutex::new().named("Cacher"),
        incoming: Chan::new(100).named("c.incoming"),
        stop_ch: Chan::new(0).named("c.stopCh"),
        dispatching: Shared::new(false).named("c.dispatching"),
        watchers_buffer: Shared::new(Vec::new()).named("c.watchersBuffer"),
    });
    let c = cacher.clone();
    go_named("Cacher.dispatchEvents", move || c.dispatch_events());
    cacher
}

fn new_test_cacher() -> Arc<Cacher> {
    new_cacher_from_config()
}

/// `TestDispatchingBookmarkEventsWithConcurrentStop`, three rounds (GoKer's
/// `TestKubernetes77796`).
fn test_kubernetes77796(variant: Variant) {
    let cacher = new_test_cacher();
    let _stop = defer(|| cacher.stop());
    for _ in 0..3 {
        let wg = WaitGroup::new().named("wg");
        if variant.fixed() {
            wg.add(1); // upstream: wg.Add(2), with the w.Stop() goroutine
        }
        let (c, wg2) = (cacher.clone(), wg.clone());
        go_named(
            "TestDispatchingBookmarkEventsWithConcurrentStop.func1",
            move || {
                c.dispatch_event(());
                if variant.fixed() {
                    wg2.done();
                }
            },
        );
        // The round waits for its watcher's result channel (or a 1 s timeout).
        time::sleep(Duration::from_millis(10));
        if variant.fixed() {
            wg.wait();
        }
    }
}
