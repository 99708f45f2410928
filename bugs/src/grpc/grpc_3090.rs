#![doc = include_str!("grpc_3090.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, time, Chan, Shared};

use crate::{deref, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_3090",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/3090",
        category: "Traditional / Data race",
        expected: primitives::Verdict::Race,
        also: &[primitives::Verdict::Panic],
        kernel: test_grpc3090,
        walkthrough: include_str!("grpc_3090.md"),
        goker: Some("gobench/goker/nonblocking/grpc/3090"),
        source: Source::Goker,
        fix: Fix::Upstream("027cd627"),
        review: "faithful: Checked against 027cd627, resolver_conn_wrapper.go and resolver/manual/manual.go at 0859afa3, GoKer's kernel and README, and GoReal's race report: ccr.resolver written after Build while Build's UpdateState→poll goroutine reads it under a lock the writer never takes; fix (resolverMu around Build, pollingMu) mapped at three switches.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The resolver the test dials with (`resolver.Builder` and `resolver.Resolver` in one type):
/// while it is built it reports a state at once, as a resolver that resolves synchronously does.
struct Resolver;

impl Resolver {
    /// `Build`: hands the new resolver its ClientConn (the wrapper), which it updates at once.
    fn build(self: &Arc<Self>, cc: &Arc<CcResolverWrapper>) -> Arc<Resolver> {
        self.update_state(cc);
        self.clone()
    }

    /// `ResolveNow`: a hint to resolve again; nothing to do for this resolver.
    fn resolve_now(&self) {}

    fn update_state(&self, cc: &Arc<CcResolverWrapper>) {
        cc.update_state();
    }
}

/// `ccResolverWrapper`: the ClientConn's side of the resolver.
struct CcResolverWrapper {
    /// Before the fix: the only lock, documented as protecting `polling` and also taken
    /// around calls into `resolver`.
    mu: Mutex,
    /// The fix's `resolverMu`, guarding `resolver`.
    resolver_mu: Mutex,
    /// `nil` (None) until `Build` returns.
    resolver: Shared<Option<Arc<Resolver>>>,
    /// The fix's `pollingMu`, guarding `polling`.
    polling_mu: Mutex,
    /// Non-nil while the wrapper polls the resolver.
    polling: Shared<Option<Chan<()>>>,
    variant: Variant,
}

impl CcResolverWrapper {
    fn resolve_now(&self) {
        let mu = if self.variant.fixed() {
            &self.resolver_mu
        } else {
            &self.mu
        };
        mu.lock();
        deref(self.resolver.get()).resolve_now();
        mu.unlock();
    }

    /// `poll`: starts polling the resolver (the backoff loop around `resolveNow` is left out).
    fn poll(self: &Arc<Self>) {
        let mu = if self.variant.fixed() {
            &self.polling_mu
        } else {
            &self.mu
        };
        mu.lock();
        let _unlock = defer(|| mu.unlock());
        if self.polling.read(|p| p.is_some()) {
            // A poller runs already.
            return;
        }
        let p = Chan::new(0).named("p");
        self.polling.set(Some(p));
        let ccr = self.clone();
        go_named("ccResolverWrapper.poll.func1", move || ccr.resolve_now());
    }

    /// `UpdateState`: the resolver reports a new state; the ClientConn asks for polling.
    fn update_state(self: &Arc<Self>) {
        self.poll();
    }
}

/// `dialOptions`: the resolver builder to use.
struct DialOptions {
    resolver_builder: Arc<Resolver>,
}

/// `ClientConn`.
struct ClientConn {
    dopts: DialOptions,
}

fn new_cc_resolver_wrapper(cc: &ClientConn, variant: Variant) {
    let rb = cc.dopts.resolver_builder.clone();
    let ccr = Arc::new(CcResolverWrapper {
        mu: Mutex::new().named("ccr.mu"),
        resolver_mu: Mutex::new().named("ccr.resolverMu"),
        resolver: Shared::new(None).named("ccr.resolver"),
        polling_mu: Mutex::new().named("ccr.pollingMu"),
        polling: Shared::new(None).named("ccr.polling"),
        variant,
    });
    if variant.fixed() {
        // The fix: hold resolverMu while Build runs and its result is stored, so that a
        // resolveNow started from inside Build waits for the field to be set.
        ccr.resolver_mu.lock();
        ccr.resolver.set(Some(rb.build(&ccr)));
        ccr.resolver_mu.unlock();
    } else {
        ccr.resolver.set(Some(rb.build(&ccr)));
    }
}

fn dial_context(variant: Variant) {
    // No resolver builder among the dial options: use the default one.
    let cc = ClientConn {
        dopts: DialOptions {
            resolver_builder: Arc::new(Resolver),
        },
    };
    new_cc_resolver_wrapper(&cc, variant);
}

fn dial(variant: Variant) {
    dial_context(variant);
}

/// `TestGrpc3090`: dial in a goroutine, and wait for it.
fn test_grpc3090(variant: Variant) {
    let wg = WaitGroup::new().named("wg");
    wg.add(1);
    let wg2 = wg.clone();
    go_named("TestGrpc3090.func1", move || {
        let _done = defer(|| wg2.done());
        dial(variant);
        time::sleep(Duration::from_millis(5));
    });
    wg.wait();
}
