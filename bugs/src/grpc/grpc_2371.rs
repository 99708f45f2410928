#![doc = include_str!("grpc_2371.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::explore::Engine;
use primitives::sync::RwMutex;
use primitives::{go_named, select, time, Chan, Shared};

use crate::{deref, Bug, Fix, Source, Variant};

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
        source: Source::Diff("cb116274"),
        fix: Fix::Upstream("cb116274"),
        review: "faithful: Checked against the fix cb116274, clientconn.go / resolver_conn_wrapper.go / balancer_conn_wrappers.go at c1fc9faf and GoKer nonblocking/grpc/2371: same nil balancer wrapper after Close, fix at the one hunk; faithful (reports lag the trace by one regeneration).",
        not_found_by: &[(
            Engine::Loom,
            "loom's search at preemption bound 3 finds the panic only at execution 56,706 (harness \
             run, budget 150,000), past its budget of 20,000: a woken goroutine's first steps are \
             loom steps of their own, which multiplies the orders to run",
        )],
        file: file!(),
        // The default loom budget: the 56,706 executions it needs would take 15 s a variant.
        ..Bug::DEFAULT
    }
}

/// Dials of the test (upstream and GoKer: 10; one is enough).
const DIALS: usize = 1;

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

/// `newCCBalancerWrapper` (building the balancer and its goroutine is left out).
fn new_cc_balancer_wrapper() -> Arc<CcBalancerWrapper> {
    Arc::new(CcBalancerWrapper {
        resolver_update_ch: Chan::new(1).named("resolverUpdateCh"),
    })
}

/// The ClientConn's side of the resolver (`ccResolverWrapper`).
struct CcResolverWrapper {
    cc: Arc<ClientConn>,
    /// `scCh`: service configs from the resolver, the latest one kept.
    sc_ch: Chan<()>,
    /// `done`: closed by `close`.
    done: Chan<()>,
}

impl CcResolverWrapper {
    fn start(self: &Arc<Self>) {
        let ccr = self.clone();
        go_named("ccResolverWrapper.watcher", move || ccr.watcher());
    }

    /// Hands the resolver's updates to the ClientConn, one at a time, until `done`.
    fn watcher(&self) {
        loop {
            select! {
                recv(self.done) => return,
                default => {},
            }
            select! {
                recv(self.sc_ch) => {
                    select! {
                        recv(self.done) => return,
                        default => {},
                    }
                    self.cc.handle_service_config();
                },
                recv(self.done) => return,
            }
        }
    }

    fn close(&self) {
        // Closing the resolver itself is left out.
        self.done.close();
    }

    /// `NewServiceConfig`: what the resolver calls to deliver a service config.
    fn new_service_config(&self) {
        select! {
            recv(self.sc_ch) => {},
            default => {},
        }
        self.sc_ch.send(());
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
        // Parsing the config is left out.
        self.mu.lock();
        if self.variant.fixed() && self.conns.read(|c| c.is_none()) {
            // The fix: the ClientConn is closed; its wrappers are nil.
            self.mu.unlock();
            return;
        }
        // The config names a new balancer: switch to it and tell it the current addresses.
        self.switch_balancer();
        deref(self.balancer_wrapper.get()).handle_resolved_addrs();
        self.mu.unlock();
    }

    fn switch_balancer(&self) {
        if self.conns.read(|c| c.is_none()) {
            return;
        }
        // Closing the old balancer (none here) is left out.
        self.balancer_wrapper.set(Some(new_cc_balancer_wrapper()));
    }

    fn close(&self) {
        self.mu.lock();
        if self.conns.read(|c| c.is_none()) {
            self.mu.unlock();
            return;
        }
        self.conns.set(None);
        let r_wrapper = self.resolver_wrapper.get();
        self.resolver_wrapper.set(None);
        self.balancer_wrapper.set(None);
        self.mu.unlock();
        if let Some(r_wrapper) = r_wrapper {
            r_wrapper.close();
        }
        // Closing the balancer wrapper and the connections is left out.
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
    let ccr = Arc::new(CcResolverWrapper {
        cc: cc.clone(),
        sc_ch: Chan::new(1).named("scCh"),
        done: Chan::new(0).named("done"),
    });
    cc.resolver_wrapper.set(Some(ccr.clone()));
    // No balancer yet: the first address list or service config builds one.
    ccr.start();
    cc
}

/// Upstream's `TestResolverServiceConfigWhileClosingNotPanic`, added by the fix, with GoKer's
/// sleep (GoKer's `TestGrpc2371`).
fn test_grpc2371(variant: Variant) {
    for _ in 0..DIALS {
        let cc = dial_context(variant);
        // The manual resolver the test registers reaches the ClientConn through its wrapper.
        let r = cc.resolver_wrapper.get().expect("dialed");
        go_named("Close", move || cc.close());
        go_named("NewServiceConfig", move || r.new_service_config());
    }
    time::sleep(Duration::from_millis(100));
}
