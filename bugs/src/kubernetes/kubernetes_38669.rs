#![doc = include_str!("kubernetes_38669.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_38669",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/38669",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes38669,
        walkthrough: include_str!("kubernetes_38669.md"),
        goker: Some("gobench/goker/blocking/kubernetes/38669"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#38669"),
        review: "faithful: Checked against GoKer blocking/kubernetes/38669, issue #38670 and PR #38669 (and #39078 for the later check): GoKer's kernel, the PR's done-channel fix as a switch, leak verdict right; the fix's commit is not pinned (admitted).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `watch.Event`.
type Event = i32;
/// `watchCacheEvent`.
type WatchCacheEvent = i32;

/// The watch cache's watcher (`cacheWatcher`), which embeds a `sync.Mutex`.
struct CacheWatcher {
    mutex: Mutex,
    input: Chan<WatchCacheEvent>,
    result: Chan<Event>,
    /// Added by the fix: closed by `stop`, so a blocked send on `result` can give up.
    done: Chan<()>,
    stopped: Shared<bool>,
    variant: Variant,
}

impl Deref for CacheWatcher {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

impl CacheWatcher {
    fn process(&self, init_events: Vec<WatchCacheEvent>) {
        for event in init_events {
            self.send_watch_cache_event(&event);
        }
        let _close = defer(|| self.result.close());
        let _stop = defer(|| self.stop());
        loop {
            if self.input.recv().is_none() {
                return;
            }
        }
    }

    fn send_watch_cache_event(&self, event: &WatchCacheEvent) {
        if self.variant.fixed() {
            // The fix: do not block on `result` once the watcher is stopped.
            select! {
                send(self.result, *event) => {},
                recv(self.done) => {},
            }
        } else {
            self.result.send(*event);
        }
    }

    /// `Stop`, of `watch.Interface`.
    fn stop(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        if !self.stopped.get() {
            self.stopped.set(true);
            if self.variant.fixed() {
                self.done.close();
            }
            self.input.close();
        }
    }
}

fn new_cache_watcher(
    chan_size: usize,
    init_events: Vec<WatchCacheEvent>,
    variant: Variant,
) -> Arc<CacheWatcher> {
    let watcher = Arc::new(CacheWatcher {
        mutex: Mutex::new().named("cacheWatcher"),
        input: Chan::new(chan_size).named("input"),
        result: Chan::new(chan_size).named("result"),
        done: Chan::new(0).named("done"),
        stopped: Shared::new(false).named("stopped"),
        variant,
    });
    let w = watcher.clone();
    go_named("process", move || w.process(init_events));
    watcher
}

/// `TestKubernetes38669`.
fn test_kubernetes38669(variant: Variant) {
    let init_events = vec![1, 2];
    let w = new_cache_watcher(0, init_events, variant);
    w.stop();
}
