#![doc = include_str!("kubernetes_80284.md")]

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
        fix: Fix::Upstream("7518a44b"),
        review: "faithful: Checked against GoKer nonblocking/kubernetes/80284, client-go 0dd469e4 (Kubernetes 7518a44b, merged in dac3b9c7) and exec.go at a56922ba, PR #80284 and GoReal's report: same unguarded `onRotate` write, fix switched; faithful.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// client-go's `connrotation.Dialer` (its `CloseAll` closes every connection it dialed).
struct Dialer;

fn new_dialer() -> Arc<Dialer> {
    Arc::new(Dialer)
}

/// `onRotateListWarningLength`, added by the fix.
const ON_ROTATE_LIST_WARNING_LENGTH: usize = 1000;

/// The exec credential plugin's `Authenticator`. Its `mu` guards the cached credentials (and,
/// after the fix, the rotation callbacks). A callback (the method value `d.CloseAll`) is kept
/// as the dialer it is bound to.
struct Authenticator {
    mu: Mutex,
    /// Before the fix: `onRotate func()`, the `CloseAll` of the last dialer made.
    on_rotate: Shared<Option<Arc<Dialer>>>,
    /// After the fix: `onRotateList []func()`, the `CloseAll` of every dialer made.
    on_rotate_list: Shared<Vec<Arc<Dialer>>>,
    variant: Variant,
}

impl Authenticator {
    fn update_transport_config(&self) {
        let d = new_dialer();
        if self.variant.fixed() {
            // The fix: append to the list under the authenticator's lock.
            self.mu.lock();
            let _unlock = defer(|| self.mu.unlock());
            self.on_rotate_list.write(|l| l.push(d));
            let on_rotate_list_length = self.on_rotate_list.read(|l| l.len());
            if on_rotate_list_length > ON_ROTATE_LIST_WARNING_LENGTH {
                // klog.Warningf: many clients built from one exec auth config.
            }
        } else {
            self.on_rotate.set(Some(d));
        }
    }
}

fn new_authenticator(variant: Variant) -> Arc<Authenticator> {
    Arc::new(Authenticator {
        mu: Mutex::new().named("a.mu"),
        on_rotate: Shared::new(None).named("a.onRotate"),
        on_rotate_list: Shared::new(Vec::new()).named("a.onRotateList"),
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
