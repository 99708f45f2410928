#![doc = include_str!("etcd_7283.md")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{Mutex, Once, RwMutex};
use primitives::{defer, go_named, select, time, Chan, Shared};

use primitives::explore::Engine;

use crate::{Budget, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_7283",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/7443",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Leak,
        kernel: test_balancer_do_not_block_on_close,
        walkthrough: include_str!("etcd_7283.md"),
        asplos: Some("blocking-bugs/etcd/8baaa06cce9e58548f60e6e9b21c9af3d42580bb.txt"),
        loom: Loom::DoesNotApply(
            "six goroutines (seven with the fix) and a timer: more than loom's five threads",
        ),
        budget: Budget { shuttle: 5_000, ..Budget::DEFAULT },
        not_found_by: &[(
            Engine::ShuttleUrw,
            "the uniform random walk misses it at six of seeds 1-10 within 5,000 schedules \
             (harness run; 827 to 1,229 at the others), where PCT and random find it at every seed: the failure needs one goroutine to run a few steps early in a long run, and \
             URW's weights favour the goroutines with most operations left",
        )],
        source: Source::Test("etcd-io/etcd clientv3/balancer_test.go @ 8baaa06c"),
        fix: Fix::Upstream("8baaa06c"),
        review: "faithful after mends: Checked against etcd 8baaa06c (the fix and its test) and 8baaa06c^ (`clientv3/balancer.go`, vendored grpc `clientconn.go`), issue #7283's stacks and PR #7443: right cycle, right test, upstream's fix line for line, honest leak; the fix table's line numbers are stale (maps_to_upstream fails), the trace needs re-blessing, and the URW miss should be stated.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// How many connections to each address the test's listener kills.
const KILLS: u32 = 1;

/// A `grpc.Address`: the host of an endpoint.
type Address = &'static str;

/// The handler gRPC calls when a connection that `Up` reported goes down.
type DownFn = Box<dyn FnOnce(&'static str) + Send>;

/// `errConnDrain`, `ErrClientConnClosing`, `errNetworkIO`, `errConnClosing`.
const ERR_CONN_CLOSING: &str = "grpc: the connection is closing";
const ERR_CONN_DRAIN: &str = "grpc: the connection is drained";
const ERR_CLIENT_CONN_CLOSING: &str = "grpc: the client connection is closing";
const ERR_NETWORK_IO: &str = "grpc: failed with network I/O error";

/// clientv3's `simpleBalancer`: tells gRPC which endpoints to connect to, and pins one.
struct SimpleBalancer {
    /// The client's endpoints for gRPC.
    addrs: Vec<Address>,
    /// Notifies gRPC of the set of addresses to connect to.
    notify_ch: Chan<Vec<Address>>,
    /// Closes once the first connection is up.
    readyc: Chan<()>,
    ready_once: Once,
    /// Protects upc, pinAddr and closed (and, with the fix, downc).
    mu: RwMutex,
    /// Closes when an address is pinned, or the balancer closes.
    upc: Shared<Chan<()>>,
    /// The currently pinned address ("" when none).
    pin_addr: Shared<Address>,
    closed: Shared<bool>,
    /// The fix: closes when gRPC calls down() on pinAddr.
    downc: Shared<Chan<()>>,
    /// The fix: closed to stop updateNotifyLoop.
    stopc: Chan<()>,
    /// The fix: closes when updateNotifyLoop has exited.
    donec: Chan<()>,
    variant: Variant,
}

fn new_simple_balancer(eps: &[Address], variant: Variant) -> Arc<SimpleBalancer> {
    let notify_ch = Chan::new(1).named("notifyCh");
    let addrs = eps.to_vec();
    notify_ch.send(addrs.clone());
    let sb = Arc::new(SimpleBalancer {
        addrs,
        notify_ch,
        readyc: Chan::new(0).named("readyc"),
        ready_once: Once::new(),
        mu: RwMutex::new().named("balancer.mu"),
        upc: Shared::new(Chan::new(0).named("upc")).named("balancer.upc"),
        pin_addr: Shared::new("").named("pinAddr"),
        closed: Shared::new(false).named("balancer.closed"),
        downc: Shared::new(Chan::new(0).named("downc")).named("balancer.downc"),
        stopc: Chan::new(0).named("balancer.stopc"),
        donec: Chan::new(0).named("balancer.donec"),
        variant,
    });
    if variant.fixed() {
        let b = sb.clone();
        go_named("updateNotifyLoop", move || b.update_notify_loop());
    }
    sb
}

impl SimpleBalancer {
    /// The fix's `updateNotifyLoop`: tells gRPC about pins and unpins, outside the lock.
    fn update_notify_loop(&self) {
        let _done = defer(|| self.donec.close());
        loop {
            self.mu.rlock();
            let upc = self.upc.get();
            self.mu.runlock();
            // Go's `var downc chan struct{}`: nil, but the one-case select below always sets it.
            let downc: Chan<()>;
            // select { case <-upc: ... }: one case, so a plain receive; `break` leaves only
            // this block, as Go's `break` leaves only the select.
            'select_upc: {
                upc.recv();
                self.mu.rlock();
                let addr = self.pin_addr.get();
                // Up() sets pinAddr and downc as a pair under b.mu
                downc = self.downc.get();
                self.mu.runlock();
                if addr.is_empty() {
                    break 'select_upc;
                }
                // close opened connections that are not pinAddr
                select! {
                    send(self.notify_ch, vec![addr]) => {},
                    recv(self.stopc) => return,
                }
            }
            select! {
                recv(downc) => {
                    self.mu.rlock();
                    let addrs = self.addrs.clone();
                    self.mu.runlock();
                    select! {
                        send(self.notify_ch, addrs) => {},
                        recv(self.stopc) => return,
                    }
                },
                recv(self.stopc) => return,
            }
        }
    }

    /// `Up`: gRPC reports a connection to `addr` is up; returns the handler for its going down.
    fn up(self: &Arc<Self>, addr: Address) -> DownFn {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        // gRPC might call Up after it called Close.
        if self.closed.get() {
            return Box::new(|_| {});
        }
        if self.pin_addr.get().is_empty() {
            // notify waiting Get()s and pin the first connected address
            self.upc.get().close();
            if self.variant.fixed() {
                self.downc.set(Chan::new(0).named("downc"));
            }
            self.pin_addr.set(addr);
            // notify the client that a connection is up
            self.ready_once.do_(|| self.readyc.close());
            if !self.variant.fixed() {
                // close opened connections that are not pinAddr
                self.notify_ch.send(vec![addr]);
            }
        }
        let b = self.clone();
        Box::new(move |_err| {
            b.mu.lock();
            if b.pin_addr.get() == addr {
                b.upc.set(Chan::new(0).named("upc"));
                if b.variant.fixed() {
                    b.downc.get().close();
                }
                b.pin_addr.set("");
                if !b.variant.fixed() {
                    b.notify_ch.send(b.addrs.clone());
                }
            }
            b.mu.unlock();
        })
    }

    fn notify(&self) -> &Chan<Vec<Address>> {
        &self.notify_ch
    }

    /// `Close` (gRPC may call it twice).
    fn close(&self) {
        self.mu.lock();
        if self.variant.fixed() {
            if self.closed.get() {
                self.mu.unlock();
                self.donec.recv();
                return;
            }
            self.closed.set(true);
            self.stopc.close();
        } else {
            if self.closed.get() {
                self.mu.unlock();
                return;
            }
            self.closed.set(true);
            self.notify_ch.close();
        }
        self.pin_addr.set("");
        // terminate all waiting Get()s
        let upc = self.upc.get();
        select! {
            recv(upc) => {},
            default => upc.close(),
        }
        self.mu.unlock();
        if self.variant.fixed() {
            // wait for updateNotifyLoop to finish
            self.donec.recv();
            self.notify_ch.close();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Ready,
    TransientFailure,
    Shutdown,
}

/// grpc's `addrConn`: the connection to one address.
struct AddrConn {
    addr: Address,
    balancer: Arc<SimpleBalancer>,
    ctx: Context,
    cancel: CancelFunc,
    mu: Mutex,
    state: Shared<State>,
    down: Shared<Option<DownFn>>,
    /// The test's listener kills the first connection to each address at once (the
    /// listener's doing, not the addrConn's state: a plain counter).
    kills_left: std::sync::atomic::AtomicU32,
}

impl AddrConn {
    /// `resetTransport`: (re)connects and reports the new connection to the balancer.
    fn reset_transport(&self) -> Result<(), &'static str> {
        self.mu.lock();
        if self.state.get() == State::Shutdown {
            self.mu.unlock();
            return Err(ERR_CONN_CLOSING);
        }
        if let Some(down) = self.down.write(|d| d.take()) {
            down(ERR_NETWORK_IO);
        }
        self.state.set(State::Connecting);
        self.mu.unlock();
        // transport.NewClientTransport: the listener accepts, unless the addrConn is torn
        // down (then the backoff's select sees ac.ctx.Done() and returns).
        if let Some(err) = self.ctx.err() {
            return Err(if err == context::ContextError::Canceled {
                "context canceled"
            } else {
                "context deadline exceeded"
            });
        }
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.state.get() == State::Shutdown {
            return Err(ERR_CONN_CLOSING);
        }
        self.state.set(State::Ready);
        let down = self.balancer.up(self.addr);
        self.down.set(Some(down));
        Ok(())
    }

    /// `transportMonitor`: reconnects when the transport fails, until the addrConn is closed.
    fn transport_monitor(&self) {
        loop {
            use std::sync::atomic::Ordering::Relaxed;
            let killed = self.kills_left.load(Relaxed) > 0;
            let t_error = if killed {
                self.kills_left.fetch_sub(1, Relaxed);
                let t_error = Chan::<()>::new(0).named("transport.Error()");
                t_error.close();
                t_error
            } else {
                Chan::nil()
            };
            select! {
                recv(self.ctx.done()) => return,
                recv(t_error) => {
                    select! {
                        recv(self.ctx.done()) => return,
                        default => {},
                    }
                    self.mu.lock();
                    if self.state.get() == State::Shutdown {
                        self.mu.unlock();
                        return;
                    }
                    self.state.set(State::TransientFailure);
                    self.mu.unlock();
                    if let Err(err) = self.reset_transport() {
                        if err != ERR_CONN_CLOSING {
                            // Keep this ac in cc.conns, to get the reason it's torn down.
                            self.tear_down(err);
                        }
                        return;
                    }
                },
            }
        }
    }

    /// `tearDown`: closes the addrConn and tells the balancer its connection is down.
    fn tear_down(&self, err: &'static str) {
        self.cancel.call();
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if let Some(down) = self.down.write(|d| d.take()) {
            down(err);
        }
        self.state.set(State::Shutdown);
    }
}

/// grpc's `ClientConn`.
struct ClientConn {
    ctx: Context,
    cancel: CancelFunc,
    mu: Mutex,
    conns: Shared<Option<BTreeMap<Address, Arc<AddrConn>>>>,
    balancer: Arc<SimpleBalancer>,
}

/// `grpc.Dial(..., grpc.WithBalancer(sb))`: connects to the balancer's first addresses and
/// starts watching it.
fn dial(balancer: Arc<SimpleBalancer>) -> Arc<ClientConn> {
    let (ctx, cancel) = context::with_cancel(&context::background());
    let cc = Arc::new(ClientConn {
        ctx,
        cancel,
        mu: Mutex::new().named("cc.mu"),
        conns: Shared::new(Some(BTreeMap::new())).named("cc.conns"),
        balancer,
    });
    let addrs = cc
        .balancer
        .notify()
        .recv()
        .expect("the balancer has addresses");
    for a in addrs {
        let _ = cc.reset_addr_conn(a);
    }
    let c = cc.clone();
    go_named("lbWatcher", move || c.lb_watcher());
    cc
}

impl ClientConn {
    fn lb_watcher(&self) {
        while let Some(addrs) = self.balancer.notify().recv() {
            let mut add = Vec::new();
            let mut del = Vec::new();
            self.mu.lock();
            self.conns.write(|conns| {
                let Some(conns) = conns else { return };
                add.extend(addrs.iter().filter(|a| !conns.contains_key(*a)));
                let gone: Vec<Address> = conns
                    .keys()
                    .filter(|k| !addrs.contains(k))
                    .copied()
                    .collect();
                for k in gone {
                    del.extend(conns.remove(k));
                }
            });
            self.mu.unlock();
            for a in add {
                let _ = self.reset_addr_conn(a);
            }
            for c in del {
                c.tear_down(ERR_CONN_DRAIN);
            }
        }
    }

    /// `resetAddrConn`: creates the addrConn for `addr` and connects it asynchronously.
    fn reset_addr_conn(&self, addr: Address) -> Result<(), &'static str> {
        let (ctx, cancel) = context::with_cancel(&self.ctx);
        let ac = Arc::new(AddrConn {
            addr,
            balancer: self.balancer.clone(),
            ctx,
            cancel,
            mu: Mutex::new().named("ac.mu"),
            state: Shared::new(State::Idle).named("ac.state"),
            down: Shared::new(None).named("ac.down"),
            kills_left: std::sync::atomic::AtomicU32::new(KILLS),
        });
        self.mu.lock();
        let Some(stale) = self
            .conns
            .write(|c| c.as_mut().map(|c| c.insert(addr, ac.clone())))
        else {
            self.mu.unlock();
            return Err(ERR_CLIENT_CONN_CLOSING);
        };
        self.mu.unlock();
        if let Some(stale) = stale {
            stale.tear_down(ERR_CONN_DRAIN);
        }
        go_named("addrConn", move || {
            if let Err(err) = ac.reset_transport() {
                if err != ERR_CONN_CLOSING {
                    ac.tear_down(err);
                }
                return;
            }
            ac.transport_monitor();
        });
        Ok(())
    }

    fn close(&self) {
        self.cancel.call();
        self.mu.lock();
        let Some(conns) = self.conns.write(|c| c.take()) else {
            self.mu.unlock();
            return;
        };
        self.mu.unlock();
        self.balancer.close();
        for ac in conns.values() {
            ac.tear_down(ERR_CLIENT_CONN_CLOSING);
        }
    }
}

/// `TestBalancerDoNotBlockOnClose`, one round with three endpoints whose listener kills each
/// address's first connection: the balancer and gRPC must not deadlock each other on Close.
fn test_balancer_do_not_block_on_close(variant: Variant) {
    let sb = new_simple_balancer(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], variant);
    let conn = dial(sb.clone());
    sb.readyc.recv();
    // balancer.Close() might block if balancer and grpc deadlock each other.
    let closec = Chan::<()>::new(0).named("closec");
    let c = closec.clone();
    go_named("sb.Close", move || {
        let _close = defer(|| c.close());
        sb.close();
    });
    go_named("conn.Close", move || conn.close());
    select! {
        recv(closec) => {},
        recv(time::after(Duration::from_secs(3))) => {}, // testutil.FatalStack: "balancer close timeout"
    }
}
