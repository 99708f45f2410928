#![doc = include_str!("grpc_1424.md")]

use std::cell::RefCell;
use std::sync::Arc;

use primitives::{defer, go_named, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1424",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1424",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_grpc1424,
        walkthrough: include_str!("grpc_1424.md"),
        goker: Some("gobench/goker/blocking/grpc/1424"),
        asplos: Some("blocking-bugs/grpc-go/4e56696c6c5a8cd7b711a1eb8936463559361da5.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("4e56696c"),
        review: "faithful: Checked against GoKer blocking/grpc/1424, the fix 4e56696c (= 64bd0b04, ASPLOS 4e56696c…) and clientconn.go at 39c8c386: same missing close on the watcher's failure path, fix at the one hunk; faithful.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A server address (`Address`).
type Address = &'static str;

/// The balancer (`roundRobin`): it publishes address lists on `addrCh`.
struct RoundRobin {
    addr_ch: Chan<Vec<Address>>,
}

impl RoundRobin {
    fn notify(&self) -> Chan<Vec<Address>> {
        self.addr_ch.clone()
    }
}

/// The client connection (`ClientConn`), with `dopts.balancer`.
struct ClientConn {
    balancer: RoundRobin,
    variant: Variant,
}

impl ClientConn {
    /// Watches the balancer's address lists. `done_chan`, if not nil, is to be closed after
    /// the first successful connection.
    fn lb_watcher(&self, done_chan: Chan<()>) {
        let done_chan = RefCell::new(done_chan);
        let _notify = defer(|| {
            if self.variant.fixed() {
                // The fix: if the balancer's channel closes before any connection succeeded,
                // the caller is told all the same.
                let done_chan = done_chan.borrow();
                if !done_chan.is_nil() {
                    done_chan.close();
                }
            }
        });
        let addr_ch = self.balancer.notify();
        while let Some(addrs) = addr_ch.recv() {
            for a in addrs {
                let blocking = !done_chan.borrow().is_nil();
                if blocking && self.reset_addr_conn(a).is_ok() {
                    done_chan.borrow().close();
                    *done_chan.borrow_mut() = Chan::nil();
                }
            }
            // Tearing down the connections to addresses no longer listed is left out.
        }
    }

    /// Connects to `addr` (in the kernel, every connection succeeds at once).
    fn reset_addr_conn(&self, _addr: Address) -> Result<(), &'static str> {
        Ok(())
    }
}

fn new_client_conn(variant: Variant) -> Arc<ClientConn> {
    Arc::new(ClientConn {
        balancer: RoundRobin {
            addr_ch: Chan::new(0).named("addrCh"),
        },
        variant,
    })
}

/// `DialContext` with a blocking dial and a balancer; the balancer is closed (GoKer: its
/// channel is closed directly) before it ever published an address.
fn dial_context(variant: Variant) {
    let cc = new_client_conn(variant);
    let wait_c: Chan<Option<&'static str>> = Chan::new(1).named("waitC");
    let dialer = cc.clone();
    go_named("DialContext.func1", move || {
        let _close = defer(|| wait_c.close());
        let ch = dialer.balancer.notify();
        if !ch.is_nil() {
            let done_chan = Chan::new(0).named("doneChan");
            let watcher = dialer.clone();
            let done = done_chan.clone();
            go_named("lbWatcher", move || watcher.lb_watcher(done));
            done_chan.recv(); // buggy: nobody ever closes doneChan
        }
    });
    cc.balancer.addr_ch.close();
}

/// `TestGrpc1424`.
fn test_grpc1424(variant: Variant) {
    go_named("DialContext", move || dial_context(variant));
}
