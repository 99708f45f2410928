#![doc = include_str!("kubernetes_9926.md")]

use std::sync::Arc;

use primitives::sync::{Mutex, Once};
use primitives::{defer, go_named, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_9926",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/9926",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes9926,
        walkthrough: include_str!("kubernetes_9926.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/kubernetes/de1f246e891fd6794185373f3d3722f80e1048d5.txt"),
        source: Source::Diff("de1f246e"),
        fix: Fix::Upstream("de1f246e"),
        review: "faithful after mends: Checked against the de1f246e diff (system-pclub) and PR #9926's thread: the capabilities.go code and the lock fix are faithful; upstream's reported race is between pod workers each calling capabilities.Get() (nil check vs once.Do write), and the mends are made: the kernel now races two pod workers' Get on a never-set pointer, and the walkthrough cites the PR's report link, call path and reasons (trace block to be re-blessed).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `capabilities.Capabilities`.
#[derive(Clone, Debug, Default)]
struct Capabilities {
    #[allow(dead_code)] // upstream's field; the kernel's check reads only the sources
    allow_privileged: bool,
    host_network_sources: Vec<String>,
}

/// The package `capabilities`: its globals `once`, `lock` (added by the fix) and
/// `capabilities`.
struct Package {
    once: Once,
    lock: Mutex,
    capabilities: Shared<Option<Capabilities>>,
    variant: Variant,
}

impl Package {
    /// `Initialize`: sets the capabilities once per binary; later calls are ignored.
    fn initialize(&self, c: Capabilities) {
        self.once.do_(|| self.capabilities.set(Some(c)));
    }

    /// `SetForTests`. Not called by the kernel: the reported race is between pod workers in
    /// `Get`; the fix locks this setter too, and its switch is kept as the fix's hunk.
    #[allow(dead_code)]
    fn set_for_tests(&self, c: Capabilities) {
        if self.variant.fixed() {
            self.lock.lock();
        }
        let _unlock = defer(|| {
            if self.variant.fixed() {
                self.lock.unlock();
            }
        });
        self.capabilities.set(Some(c));
    }

    /// `Get`: a copy of the capabilities, set to the defaults on first use.
    fn get(&self) -> Capabilities {
        if self.variant.fixed() {
            self.lock.lock();
        }
        let _unlock = defer(|| {
            if self.variant.fixed() {
                self.lock.unlock();
            }
        });
        if self.capabilities.read(Option::is_none) {
            self.initialize(Capabilities {
                allow_privileged: false,
                host_network_sources: Vec::new(),
            });
        }
        self.capabilities
            .get()
            .expect("set by Initialize or SetForTests")
    }
}

/// The kubelet's `canRunPod`: a pod that asks for host networking must come from an allowed
/// source.
fn can_run_pod(capabilities: &Package, host_network: bool, source: &str) -> bool {
    if host_network {
        let allowed = capabilities.get().host_network_sources;
        return allowed.iter().any(|s| s == source);
    }
    true
}

/// The kubelet handing two new pods to its pod workers before anything has set the
/// capabilities: each pod gets its own worker goroutine, and each worker's `syncPod` asks
/// `Get` through `canRunPod`.
fn test_kubernetes9926(variant: Variant) {
    let capabilities = Arc::new(Package {
        once: Once::new(),
        lock: Mutex::new().named("lock"),
        capabilities: Shared::new(None).named("capabilities"),
        variant,
    });

    for _pod in ["pod-a", "pod-b"] {
        // podWorkers.UpdatePod: a new pod gets its own worker goroutine.
        let c = capabilities.clone();
        go_named("managePodLoop", move || {
            // syncPod → canRunPod
            let _ = can_run_pod(&c, true, "api");
        });
    }
}
