#![doc = include_str!("grpc_3017.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, time, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_3017",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/3017",
        category: "Double locking",
        expected: primitives::Verdict::Leak,
        kernel: test_grpc3017,
        walkthrough: include_str!("grpc_3017.md"),
        goker: Some("gobench/goker/blocking/grpc/3017"),
        source: Source::Goker,
        fix: Fix::Upstream("ac35b677"),
        review: "faithful: Checked against ac35b677 (= 8cb6baca), balancer/grpclb/grpclb_util.go at 4ccf24ac, the test TestLBCache_RemoveTimer_New_Race, GoKer's kernel and GoReal's backtrace: the removal timer's early return on abortDeleting leaks ccc.mu; fix mapped at both lines; GoReal's backtrace (loop blocked in NewSubConn) worth citing.",
        file: file!(),
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// Remove/re-add rounds of the test (upstream and GoKer: 1000; two can deadlock).
const ROUNDS: usize = 2;

type Address = i32;
type SubConn = i32;

type CancelFn = Arc<dyn Fn() + Send + Sync>;

/// A SubConn kept alive for a while after its removal (`subConnCacheEntry`).
struct SubConnCacheEntry {
    sc: SubConn,
    cancel: Shared<Option<CancelFn>>,
    abort_deleting: Shared<bool>,
}

/// grpclb's connection cache (`lbCacheClientConn`).
struct LbCacheClientConn {
    mu: Mutex,
    timeout: Duration,
    sub_conn_cache: GoMap<Address, Arc<SubConnCacheEntry>>,
    sub_conn_to_addr: GoMap<SubConn, Address>,
    variant: Variant,
}

impl LbCacheClientConn {
    fn new_sub_conn(&self, addrs: &[Address]) -> SubConn {
        if addrs.len() != 1 {
            return 1; // upstream returns an error; GoKer a SubConn
        }
        let addr_without_md = addrs[0];
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if let Some(entry) = self.sub_conn_cache.get(&addr_without_md) {
            // Reuse the cached SubConn: stop its removal timer.
            let cancel = entry.cancel.get().expect("set by RemoveSubConn");
            cancel();
            self.sub_conn_cache.remove(&addr_without_md);
            return entry.sc;
        }
        let sc_new = 1;
        self.sub_conn_to_addr.insert(sc_new, addr_without_md);
        sc_new
    }

    fn remove_sub_conn(self: &Arc<Self>, sc: SubConn) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let Some(addr) = self.sub_conn_to_addr.get(&sc) else {
            return;
        };
        if let Some(entry) = self.sub_conn_cache.get(&addr) {
            if entry.sc != sc {
                self.sub_conn_to_addr.remove(&sc);
            }
            return;
        }
        let entry = Arc::new(SubConnCacheEntry {
            sc,
            cancel: Shared::new(None).named("entry.cancel"),
            abort_deleting: Shared::new(false).named("entry.abortDeleting"),
        });
        self.sub_conn_cache.insert(addr, entry.clone());

        let (ccc, e) = (self.clone(), entry.clone());
        let timer = time::after_func(self.timeout, move || {
            ccc.mu.lock();
            // The fix adds `defer ccc.mu.Unlock()` here...
            let _unlock = ccc.variant.fixed().then(|| defer(|| ccc.mu.unlock()));
            if e.abort_deleting.get() {
                return; // buggy: returns with ccc.mu still locked
            }
            // `ccc.cc.RemoveSubConn(sc)`: the mock ClientConn is left out.
            ccc.sub_conn_to_addr.remove(&sc);
            ccc.sub_conn_cache.remove(&addr);
            // ...and removes this `Unlock`.
            if !ccc.variant.fixed() {
                ccc.mu.unlock();
            }
        });

        let e = entry.clone();
        entry.cancel.set(Some(Arc::new(move || {
            if !timer.stop() {
                // Too late: the timer's function is running or about to; tell it to do nothing.
                e.abort_deleting.set(true);
            }
        })));
    }
}

/// `TestGrpc3017` (upstream's `TestLBCache_RemoveTimer_New_Race`).
fn test_grpc3017(variant: Variant) {
    let done: Chan<()> = Chan::new(0).named("done");
    let ccc = Arc::new(LbCacheClientConn {
        mu: Mutex::new().named("lbCacheClientConn.mu"),
        timeout: Duration::from_nanos(1),
        sub_conn_cache: GoMap::new().named("subConnCache"),
        sub_conn_to_addr: GoMap::new().named("subConnToAddr"),
        variant,
    });

    let mut sc = ccc.new_sub_conn(&[1]);
    let finished = done.clone();
    go_named("TestGrpc3017.func1", move || {
        for _ in 0..ROUNDS {
            // RemoveSubConn starts a 1 ns timer that races with NewSubConn.
            ccc.remove_sub_conn(sc);
            sc = ccc.new_sub_conn(&[1]);
        }
        finished.close();
    });

    select! {
        // Upstream fails the test here ("Deadlock"); the kernel returns and leaves the verdict
        // to the goroutines still blocked.
        recv(time::after(Duration::from_secs(1))) => {},
        recv(done) => {},
    }
}
