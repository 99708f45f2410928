#![doc = include_str!("kubernetes_80284.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_80284",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/80284",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes80284,
        walkthrough: include_str!("kubernetes_80284.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/80284"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#80284"),
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// client-go's `connrotation.Dialer` (its `CloseAll` closes every connection it dialed).
struct Dialer;

fn new_dialer() -> Arc<Dialer> {
    Arc::new(Dialer)
}

/// The exec credential plugin's `Authenticator`. Its `mu` guards the plugin's state; the
/// `onRotate` callback (the method value `d.CloseAll`) is kept as the dialer it is bound to.
struct Authenticator {
    mu: Mutex,
    on_rotate: Shared<Option<Arc<Dialer>>>,
    variant: Variant,
}

impl Deref for Authenticator {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mu
    }
}

impl Authenticator {
    fn update_transport_config(&self) {
        let d = new_dialer();
        if self.variant.fixed() {
            // The fix: the assignment happens under the authenticator's lock.
            self.lock();
            let _unlock = defer(|| self.unlock());
            self.on_rotate.set(Some(d));
        } else {
            self.on_rotate.set(Some(d));
        }
    }
}

fn new_authenticator(variant: Variant) -> Arc<Authenticator> {
    Arc::new(Authenticator {
        mu: Mutex::new().named("a.mu"),
        on_rotate: Shared::new(None).named("a.onRotate"),
        variant,
    })
}

/// `TestKubernetes80284`.
fn test_kubernetes80284(variant: Variant) {
    let wg = WaitGroup::new().named("wg");
    wg.add(2);
    let a = new_authenticator(variant);
    for _ in 0..2 {
        let (a, wg) = (a.clone(), wg.clone());
        go_named("UpdateTransportConfig", move || {
            let _done = defer(|| wg.done());
            a.update_transport_config();
        });
    }
    wg.wait();
}
