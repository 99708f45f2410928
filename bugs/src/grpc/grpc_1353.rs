#![doc = include_str!("grpc_1353.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1353",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1353",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Leak,
        kernel: test_grpc1353,
        walkthrough: include_str!("grpc_1353.md"),
        goker: Some("gobench/goker/blocking/grpc/1353"),
        asplos: Some("blocking-bugs/grpc-go/27b2052c9524abc45ae991d6a402ddb91f06ba03.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("27b2052c"),
        review: "faithful: Checked against GoKer blocking/grpc/1353, the fix 27b2052c (= 0662e89b, ASPLOS blocking-bugs/grpc-go/27b2052c…), balancer.go and clientconn.go at 8264d619: same lock-held send vs lock-taking receiver, both fix hunks switched; faithful.",
        file: file!(),
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// Address updates the kernel's `watchAddrUpdates` loop sends (upstream loops until the
/// watcher fails; GoKer sends 100; two are enough for the bug).
const UPDATES: usize = 2;

/// The round-robin balancer (`roundRobin`); its named field `mu` is reached through `Deref`.
struct RoundRobin {
    mu: Mutex,
    /// `addrCh`: made by `Start`, read by `Notify`.
    addr_ch: Shared<Chan<bool>>,
    /// GoKer's `HelpCh`: closed once the updates have all been sent.
    help_ch: Chan<()>,
    variant: Variant,
}

impl Deref for RoundRobin {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mu
    }
}

impl RoundRobin {
    fn start(self: &Arc<Self>) {
        // The fix gives the channel a buffer of one.
        let addr_ch = if self.variant.fixed() {
            Chan::new(1)
        } else {
            Chan::new(0)
        };
        self.addr_ch.set(addr_ch.named("addrCh"));
        let rr = self.clone();
        go_named("watchAddrUpdates", move || {
            for _ in 0..UPDATES {
                rr.watch_addr_updates();
            }
            rr.help_ch.close();
        });
    }

    /// `Up`: the `down` function an address connection calls when it is torn down.
    fn up(self: &Arc<Self>) -> Box<dyn Fn() + Send + Sync> {
        let rr = self.clone();
        Box::new(move || rr.down())
    }

    fn notify(&self) -> Chan<bool> {
        self.addr_ch.get()
    }

    fn close(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        let addr_ch = self.addr_ch.get();
        if !addr_ch.is_nil() {
            addr_ch.close();
        }
    }

    fn watch_addr_updates(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        let addr_ch = self.addr_ch.get();
        if self.variant.fixed() {
            // The fix: drop an update gRPC has not taken yet, so the send below never blocks.
            select! {
                recv(addr_ch) => {},
                default => {},
            }
        }
        addr_ch.send(true); // buggy: blocks, holding mu, while lbWatcher is busy
    }

    fn down(&self) {
        self.lock(); // lbWatcher waits here for the lock watchAddrUpdates holds
        let _unlock = defer(|| self.unlock());
    }
}

/// A connection to one address (`addrConn`).
struct AddrConn {
    mu: Mutex,
    down: Option<Box<dyn Fn() + Send + Sync>>,
}

impl AddrConn {
    fn tear_down(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if let Some(down) = &self.down {
            down();
        }
    }
}

/// The client connection (`ClientConn`), with `dopts.balancer`.
struct ClientConn {
    balancer: Arc<RoundRobin>,
    conns: Vec<Arc<AddrConn>>,
}

impl ClientConn {
    fn lb_watcher(&self) {
        let addr_ch = self.balancer.notify();
        while let Some(_addr) = addr_ch.recv() {
            // Every update removes every address: each connection is torn down.
            let del: Vec<Arc<AddrConn>> = self.conns.to_vec();
            for c in del {
                c.tear_down();
            }
        }
    }
}

fn new_client_conn(help_ch: Chan<()>, variant: Variant) -> ClientConn {
    let balancer = Arc::new(RoundRobin {
        mu: Mutex::new().named("roundRobin.mu"),
        addr_ch: Shared::new(Chan::nil()).named("roundRobin.addrCh"),
        help_ch,
        variant,
    });
    let ac1 = Arc::new(AddrConn {
        mu: Mutex::new().named("ac1.mu"),
        down: Some(balancer.up()),
    });
    let ac2 = Arc::new(AddrConn {
        mu: Mutex::new().named("ac2.mu"),
        down: Some(balancer.up()),
    });
    ClientConn {
        balancer,
        conns: vec![ac1, ac2],
    }
}

/// `TestGrpc1353`.
fn test_grpc1353(variant: Variant) {
    let help_ch = Chan::new(0).named("HelpCh");
    let cc = Arc::new(new_client_conn(help_ch.clone(), variant));
    cc.balancer.start();
    let watcher = cc.clone();
    go_named("lbWatcher", move || watcher.lb_watcher());
    go_named("closer", move || {
        help_ch.recv();
        cc.balancer.close();
    });
}
