#![doc = include_str!("kubernetes_82550.md")]

use std::collections::BTreeMap;
use std::sync::Arc;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_82550",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/82550",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes82550,
        loom: Loom::DoesNotApply("ten LazyProvide goroutines besides main: more threads than loom's five"),
        walkthrough: include_str!("kubernetes_82550.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/82550"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#82550"),
        review: "faithful after mends: Checked against GoKer `nonblocking/kubernetes/82550`, GoReal's revert patch and race reports (fix tree 25074a19) and the PR description: right race, upstream's lock at the right place, honest detection; only the trace needs re-blessing.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A registry credential (its fields do not matter here).
#[derive(Clone, Default)]
struct DockerConfigEntry;

/// `DockerConfig`: credentials by registry URL.
type DockerConfig = BTreeMap<String, DockerConfigEntry>;

/// `credentialprovider.CachingDockerConfigProvider`: in the real code it caches the ECR
/// provider's credentials for `Lifetime` (11 h 55 min for ECR).
struct CachingDockerConfigProvider;

impl CachingDockerConfigProvider {
    fn provide(&self) -> DockerConfig {
        DockerConfig::new()
    }
}

/// The ECR credential provider's lazy front (`lazyEcrProvider`): the real provider is made on
/// the first image pull that needs it.
struct LazyEcrProvider {
    /// `mu sync.RWMutex`, added by the fix (only its write lock is used).
    mu: RwMutex,
    actual_provider: Shared<Option<Arc<CachingDockerConfigProvider>>>,
    variant: Variant,
}

impl LazyEcrProvider {
    fn lazy_provide(&self) -> DockerConfigEntry {
        // The fix: `p.mu.Lock()` and `defer p.mu.Unlock()` at the top of `LazyProvide`.
        let locked = self.variant.fixed();
        if locked {
            self.mu.lock();
        }
        let _unlock = defer(|| {
            if locked {
                self.mu.unlock()
            }
        });
        if self.actual_provider.get().is_none() {
            self.actual_provider
                .set(Some(Arc::new(CachingDockerConfigProvider)));
        }
        let actual = self.actual_provider.get().expect("set just above");
        actual.provide().get("0").cloned().unwrap_or_default()
    }
}

/// `TestKubernetes82550` (upstream `TestConcurrentEcrLazyProvide`): ten goroutines ask the
/// same lazy provider for credentials at once.
fn test_kubernetes82550(variant: Variant) {
    let provider = Arc::new(LazyEcrProvider {
        mu: RwMutex::new().named("p.mu"),
        actual_provider: Shared::new(None).named("p.actualProvider"),
        variant,
    });
    for _ in 0..10 {
        let provider = provider.clone();
        go_named("LazyProvide", move || {
            provider.lazy_provide();
        });
    }
}
