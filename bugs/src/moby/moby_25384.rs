#![doc = include_str!("moby_25384.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_25384",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/25384",
        category: "Misuse WaitGroup",
        expected: primitives::Verdict::Leak,
        kernel: test_moby25384,
        walkthrough: include_str!("moby_25384.md"),
        goker: Some("gobench/goker/blocking/moby/25384"),
        asplos: Some("blocking-bugs/docker/42360d164b9f25fb4b150ef066fcf57fa39559a7.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("42360d16"),
        review: "faithful: Checked against GoKer blocking/moby/25384, the fix 42360d16 and plugin/manager.go at 87e48ecd: `WaitGroup.Wait` inside the loop that starts the goroutines, fixed by moving it after the loop, as upstream.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A plugin read back from `plugins.json`: its name and its ID.
struct Plugin {
    name: &'static str,
    id: &'static str,
}

/// The plugin `Manager`, which embeds a `sync.RWMutex` guarding `nameToID`.
struct Manager {
    rw_mutex: RwMutex,
    plugins: Vec<Arc<Plugin>>,
    name_to_id: GoMap<&'static str, &'static str>,
    variant: Variant,
}

impl Deref for Manager {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

impl Manager {
    /// Restores every plugin of `plugins.json`, one goroutine each.
    fn init(self: &Arc<Self>) {
        let group = WaitGroup::new().named("group");
        group.add(self.plugins.len() as i64);
        for p in &self.plugins {
            let (pm, p, wg) = (self.clone(), p.clone(), group.clone());
            go_named("restorePlugin", move || {
                let _done = defer(|| wg.done());
                // restorePlugin(p) succeeded: record the plugin's name.
                pm.lock();
                pm.name_to_id.insert(p.name, p.id);
                pm.unlock();
            });
            if !self.variant.fixed() {
                group.wait(); // inside the loop: waits for every plugin after starting one
            }
        }
        if self.variant.fixed() {
            group.wait();
        }
        // pm.save() would write plugins.json here.
    }
}

/// `TestMoby25384`.
fn test_moby25384(variant: Variant) {
    let pm = Arc::new(Manager {
        rw_mutex: RwMutex::new().named("Manager"),
        plugins: vec![
            Arc::new(Plugin {
                name: "p1",
                id: "id1",
            }),
            Arc::new(Plugin {
                name: "p2",
                id: "id2",
            }),
        ],
        name_to_id: GoMap::new().named("nameToID"),
        variant,
    });
    go_named("init", move || pm.init());
}
