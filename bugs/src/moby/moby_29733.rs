#![doc = include_str!("moby_29733.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::{Cond, Mutex, RwMutex};
use primitives::{go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_29733",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/29733",
        category: "Communication deadlock (condition variable)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_moby29733,
        walkthrough: include_str!("moby_29733.md"),
        goker: Some("gobench/goker/blocking/moby/29733"),
        asplos: Some("blocking-bugs/docker/2938dce794be7559ba73b4e9630015020a7fa937.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("2938dce7"),
        review: "faithful: Checked against GoKer blocking/moby/29733, upstream pkg/plugins at d477a24e and fix 2938dce7 (#29733, merge 48ed4f06): same Cond predicate reset by Handle, upstream's regression test as the kernel's test, upstream's fix switched at the waitActive predicate and Handle's loop; all departures admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The plugin's manifest: the plugin types it implements.
struct Manifest {
    implements: Vec<&'static str>,
}

/// `plugins.Plugin`, a v1 plugin.
struct Plugin {
    /// The activation sequence has completed (the field the fix removed).
    activated: Shared<bool>,
    manifest: Shared<Option<Arc<Manifest>>>,
    /// The fix's field: the handlers have run against this plugin.
    handlers_run: Shared<bool>,
    activate_wait: Cond,
    variant: Variant,
}

impl Plugin {
    fn wait_active(&self) {
        self.activate_wait.l().lock();
        loop {
            let active = if self.variant.fixed() {
                self.activated()
            } else {
                self.activated.get()
            };
            if active {
                break;
            }
            self.activate_wait.wait();
        }
        self.activate_wait.l().unlock();
    }

    /// The fix's `activated()`: a plugin is activated once it has a manifest.
    fn activated(&self) -> bool {
        self.manifest.read(|m| m.is_some())
    }

    /// The fix's `implements`: no longer waits for activation, reads the manifest.
    fn implements(&self, kind: &str) -> bool {
        self.manifest.read(|m| match m {
            None => false,
            Some(m) => m.implements.contains(&kind),
        })
    }
}

/// The plugin registry (Go's global `storage`), which embeds a `sync.Mutex`.
struct Plugins {
    mutex: Mutex,
    plugins: Vec<Arc<Plugin>>,
}

impl Deref for Plugins {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

/// The registered handlers per plugin type (Go's global `handlers`), which embeds a
/// `sync.RWMutex`; the handler functions themselves are left out.
struct ExtpointHandlers {
    rw_mutex: RwMutex,
}

impl Deref for ExtpointHandlers {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

/// `plugins.Handle`: registers a handler for the plugin type `iface`.
fn handle(storage: &Plugins, handlers: &ExtpointHandlers, iface: &str, variant: Variant) {
    handlers.lock();
    if variant.fixed() {
        // Mark the handlers to be run again on the next activation; leave activation alone.
        storage.lock();
        for p in &storage.plugins {
            p.activate_wait.l().lock();
            if p.activated() && p.implements(iface) {
                p.handlers_run.set(false);
            }
            p.activate_wait.l().unlock();
        }
        storage.unlock();
    } else {
        // So that the handlers run on the next activation: but nothing activates it again.
        for p in &storage.plugins {
            p.activated.set(false);
        }
    }
    handlers.unlock();
}

/// `testActive`: waits, in a goroutine of its own, for the plugin to be active.
fn test_active(p: &Arc<Plugin>) {
    let done = Chan::<()>::new(0).named("done");
    let (p2, done2) = (p.clone(), done.clone());
    go_named("testActive.func1", move || {
        p2.wait_active();
        done2.close();
    });
    done.recv();
}

/// `TestPluginAddHandler` (GoKer's `TestMoby29733`).
fn test_moby29733(variant: Variant) {
    let handlers = ExtpointHandlers {
        rw_mutex: RwMutex::new().named("handlers"),
    };
    // A plugin that has been activated already.
    let p = Arc::new(Plugin {
        activated: Shared::new(true).named("activated"),
        manifest: Shared::new(Some(Arc::new(Manifest {
            implements: vec!["bananas"],
        })))
        .named("Manifest"),
        handlers_run: Shared::new(true).named("handlersRun"),
        activate_wait: Cond::new(&Mutex::new().named("activateWait.L")),
        variant,
    });
    let storage = Plugins {
        mutex: Mutex::new().named("storage"),
        plugins: vec![p.clone()],
    };

    test_active(&p);
    handle(&storage, &handlers, "bananas", variant);
    test_active(&p);
}
