#![doc = include_str!("grpc_2371.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::RwMutex;
use primitives::{go_named, select, time, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_2371",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/2371",
        category: "Misuse channel",
        expected: primitives::Verdict::Panic,
        kernel: test_grpc2371,
        walkthrough: include_str!("grpc_2371.md"),
        goker: Some("gobench/goker/nonblocking/grpc/2371"),
        source: Source::Goker,
        fix: Fix::Upstream("#2371"),
        file: file!(),
        budget: Budget { loom: 25_000, ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// Dials of the test (upstream and GoKer: 10; one is enough).
const DIALS: usize = 1;

/// Go's `x.f()` on a nil pointer `x`.
#[track_caller]
fn deref<T>(p: Option<T>) -> T {
    match p {
        Some(v) => v,
        None => panic!("runtime error: invalid memory address or nil pointer dereference"),
    }
}

/// The ClientConn's side of the balancer (`ccBalancerWrapper`).
struct CcBalancerWrapper {
    resolver_update_ch: Chan<()>,
}

impl CcBalancerWrapper {
    fn handle_resolved_addrs(&self) {
        // Keep only the latest update.
        select! {
            recv(self.resolver_update_ch) => {},
            default => {},
        }
        self.resolver_update_ch.send(());
    }
}

/// The ClientConn's side of the resolver (`ccResolverWrapper`).
struct CcResolverWrapper {
    cc: Arc<ClientConn>,
}

impl CcResolverWrapper {
    fn start(self: &Arc<Self>) {
        let ccr = self.clone();
        go_named("ccResolverWrapper.watcher", move || ccr.watcher());
    }

    /// The resolver delivers a new service config.
    fn watcher(&self) {
        self.cc.handle_service_config();
    }
}

/// The client connection (`ClientConn`).
struct ClientConn {
    mu: RwMutex,
    /// `nil` once the ClientConn is closed.
    conns: Shared<Option<()>>,
    balancer_wrapper: Shared<Option<Arc<CcBalancerWrapper>>>,
    resolver_wrapper: Shared<Option<Arc<CcResolverWrapper>>>,
    variant: Variant,
}

impl ClientConn {
    fn handle_service_config(&self) {
        self.mu.lock();
        if self.variant.fixed() && self.conns.read(|c| c.is_none()) {
            // The fix: the ClientConn is closed; its wrappers are nil.
            self.mu.unlock();
            return;
        }
        // The new config switches balancer; the new one is told the current addresses.
        deref(self.balancer_wrapper.get()).handle_resolved_addrs();
        self.mu.unlock();
    }

    fn close(&self) {
        self.mu.lock();
        self.conns.set(None);
        self.resolver_wrapper.set(None);
        self.balancer_wrapper.set(None);
        self.mu.unlock();
    }
}

fn dial_context(variant: Variant) -> Arc<ClientConn> {
    let cc = Arc::new(ClientConn {
        mu: RwMutex::new().named("ClientConn.mu"),
        conns: Shared::new(Some(())).named("ClientConn.conns"),
        balancer_wrapper: Shared::new(None).named("ClientConn.balancerWrapper"),
        resolver_wrapper: Shared::new(None).named("ClientConn.resolverWrapper"),
        variant,
    });
    let ccr = Arc::new(CcResolverWrapper { cc: cc.clone() });
    cc.resolver_wrapper.set(Some(ccr.clone()));
    cc.balancer_wrapper.set(Some(Arc::new(CcBalancerWrapper {
        resolver_update_ch: Chan::new(1).named("resolverUpdateCh"),
    })));
    ccr.start();
    cc
}

/// `TestGrpc2371` (upstream's `TestResolverServiceConfigWhileClosingNotPanic`).
fn test_grpc2371(variant: Variant) {
    for _ in 0..DIALS {
        let cc = dial_context(variant);
        go_named("Close", move || cc.close());
    }
    time::sleep(Duration::from_millis(100));
}
