#![doc = include_str!("moby_30408.md")]

use std::sync::Arc;

use primitives::sync::{Cond, Mutex};
use primitives::{go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_30408",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/30408",
        category: "Communication deadlock (condition variable)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_moby30408,
        walkthrough: include_str!("moby_30408.md"),
        goker: Some("gobench/goker/blocking/moby/30408"),
        asplos: Some("blocking-bugs/docker/f2d384fca6fa08da13fdc01c7991e8e35b081198.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("f2d384fc"),
        review: "faithful: Checked against GoKer blocking/moby/30408, upstream pkg/plugins at 34d06190 and fix f2d384fc (#30408, merge 113e9f07): same waitActive predicate missing the activation error, upstream's test and one-line fix; deviations admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The plugin's manifest (its contents do not matter here).
struct Manifest;

/// `plugins.Plugin`, a v1 plugin.
struct Plugin {
    activate_wait: Cond,
    /// The error activation ended with (Go's `error`; `None` is `nil`).
    activate_err: Shared<Option<&'static str>>,
    manifest: Shared<Option<Manifest>>,
    variant: Variant,
}

impl Plugin {
    /// Waits for activation to finish; returns its error.
    fn wait_active(&self) -> Option<&'static str> {
        self.activate_wait.l().lock();
        loop {
            let waiting = if self.variant.fixed() {
                !self.activated() && self.activate_err.get().is_none()
            } else {
                !self.activated()
            };
            if !waiting {
                break;
            }
            self.activate_wait.wait();
        }
        self.activate_wait.l().unlock();
        self.activate_err.get()
    }

    /// A plugin is activated once it has a manifest.
    fn activated(&self) -> bool {
        self.manifest.read(|m| m.is_some())
    }
}

/// `testActive`: waits, in a goroutine of its own, for the plugin to be active.
fn test_active(p: &Arc<Plugin>) {
    let done = Chan::<()>::new(0).named("done");
    let (p2, done2) = (p.clone(), done.clone());
    go_named("testActive.func1", move || {
        let _ = p2.wait_active();
        done2.close();
    });
    done.recv();
}

/// `TestPluginWaitBadPlugin` (GoKer's `TestMoby30408`).
fn test_moby30408(variant: Variant) {
    let p = Arc::new(Plugin {
        activate_wait: Cond::new(&Mutex::new().named("activateWait.L")),
        activate_err: Shared::new(None).named("activateErr"),
        manifest: Shared::new(None).named("Manifest"),
        variant,
    });
    // Activation failed: no manifest will ever come.
    p.activate_err.set(Some("some junk happened"));

    test_active(&p);
}
