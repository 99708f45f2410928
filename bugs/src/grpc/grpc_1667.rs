#![doc = include_str!("grpc_1667.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::explore::Engine;
use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1667",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1688",
        category: "Traditional / Data race",
        expected: primitives::Verdict::Race,
        kernel: test_grpc1667,
        walkthrough: include_str!("grpc_1667.md"),
        asplos: Some("non-blocking-bugs/grpc-go/a62701e4aa1d276bec70311251d62a478404d63f.txt"),
        source: Source::Diff("a62701e4"),
        fix: Fix::Upstream("a62701e4"),
        review: "faithful: Checked against a62701e4 (#1688) and its parent 1e1a47f0 (`balancer_conn_wrappers.go`, `balancer_v1_wrapper.go`, `balancer.go`, `clientconn.go`, `resolver_conn_wrapper.go`, `passthrough.go`): same insert-vs-walk race on `ccb.subConns`, all cuts admitted, fix hunks mapped one to one.",
        file: file!(),
        // loom finds the race at execution 906 with bound 2, not within 20,000 with bound 3;
        // PCT (depth 5) finds it within 325 schedules at each of seeds 1-10.
        budget: Budget {
            shuttle: 2_000,
            pct_depth: 5,
            preemption_bound: Some(2),
            ..Budget::DEFAULT
        },
        // The random walk was listed here too while every plain access was a scheduling point:
        // it needed 325 to 11,201 schedules over seeds 1-10 (harness run, budget 20,000). With
        // the race detector on, plain accesses are no scheduling points any more, and it needs
        // 54 to 1,199: within the budget at every seed. The uniform random walk still misses
        // the race at three seeds, so it stays.
        not_found_by: &[
            (
                Engine::ShuttleUrw,
                "uniform random walk misses it within 20,000 schedules at three of seeds 1-10 (2 \
                 to 399 at the others): the race needs three goroutines to build the balancer and \
                 its SubConn before main, which only closes, takes its second step",
            ),
        ],
        ..Bug::DEFAULT
    }
}

/// The errors the kernel needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Error {
    /// `ErrClientConnClosing`.
    ClientConnClosing,
    /// `errConnClosing`.
    ConnClosing,
    /// `errConnDrain`.
    ConnDrain,
}

/// `connectivity.State`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Shutdown,
}

/// `resolver.Address`: its `Addr`.
type Address = &'static str;

/// A SubConn, as the balancer sees it: an `*acBalancerWrapper`, by identity.
type SubConn = Arc<AcBalancerWrapper>;

/// `ClientConn`.
struct ClientConn {
    ctx: Context,
    cancel: CancelFunc,
    target: Address,

    mu: RwMutex,
    /// `conns`: nil once the ClientConn is closed.
    conns: Shared<Option<GoMap<usize, Arc<AddrConn>>>>,
    resolver_wrapper: Shared<Option<Arc<CcResolverWrapper>>>,
    cur_addresses: Shared<Vec<Address>>,
    balancer_wrapper: Shared<Option<Arc<CcBalancerWrapper>>>,

    variant: Variant,
}

impl ClientConn {
    /// `DialContext` with `WithBalancer(RoundRobin(nil))` and a passthrough target: builds
    /// the resolver wrapper and starts it. The dial does not block.
    fn dial(target: Address, variant: Variant) -> Arc<ClientConn> {
        let (ctx, cancel) = context::with_cancel(&context::background());
        let cc = Arc::new(ClientConn {
            ctx,
            cancel,
            target,
            mu: RwMutex::new().named("cc.mu"),
            conns: Shared::new(Some(GoMap::new().named("cc.conns"))).named("cc.conns(field)"),
            resolver_wrapper: Shared::new(None).named("cc.resolverWrapper"),
            cur_addresses: Shared::new(Vec::new()).named("cc.curAddresses"),
            balancer_wrapper: Shared::new(None).named("cc.balancerWrapper"),
            variant,
        });
        // Build the resolver.
        let rw = CcResolverWrapper::new(&cc);
        cc.resolver_wrapper.set(Some(rw.clone()));
        // Start the resolver wrapper goroutine after resolverWrapper is created.
        rw.start();
        cc
    }

    fn handle_resolved_addrs(self: &Arc<Self>, addrs: Vec<Address>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.conns.get().is_none() {
            // cc was closed.
            return;
        }
        if self.cur_addresses.get() == addrs {
            return;
        }
        if self.balancer_wrapper.get().is_none() {
            // First time handling resolved addresses: build the balancer given by the dial
            // option.
            let ccb = CcBalancerWrapper::new(self);
            self.balancer_wrapper.set(Some(ccb));
        }
        self.cur_addresses.set(addrs.clone());
        if let Some(ccb) = self.balancer_wrapper.get() {
            ccb.handle_resolved_addrs(addrs);
        }
    }

    fn handle_sub_conn_state_change(&self, sc: Option<SubConn>, s: State) {
        self.mu.lock();
        if self.conns.get().is_none() {
            self.mu.unlock();
            return;
        }
        if let Some(ccb) = self.balancer_wrapper.get() {
            ccb.handle_sub_conn_state_change(sc, s);
        }
        self.mu.unlock();
    }

    /// `newAddrConn`: creates an addrConn for addrs and adds it to cc.conns.
    fn new_addr_conn(self: &Arc<Self>, addrs: Vec<Address>) -> Result<Arc<AddrConn>, Error> {
        let (_ctx, cancel) = context::with_cancel(&self.ctx);
        // Track ac in cc. This needs to be done before any getTransport(...) is called.
        self.mu.lock();
        let Some(conns) = self.conns.get() else {
            self.mu.unlock();
            return Err(Error::ClientConnClosing);
        };
        let ac = Arc::new(AddrConn {
            cancel,
            cc: self.clone(),
            addrs,
            mu: Mutex::new().named("ac.mu"),
            state: Shared::new(State::Idle).named("ac.state"),
            acbw: Shared::new(None).named("ac.acbw"),
            tear_down_err: Shared::new(None).named("ac.tearDownErr"),
        });
        conns.insert(ac.key(), ac.clone());
        self.mu.unlock();
        Ok(ac)
    }

    /// `removeAddrConn`: removes the addrConn from cc and tears it down.
    fn remove_addr_conn(&self, ac: &Arc<AddrConn>, err: Error) {
        self.mu.lock();
        let Some(conns) = self.conns.get() else {
            self.mu.unlock();
            return;
        };
        conns.remove(&ac.key());
        self.mu.unlock();
        ac.tear_down(err);
    }

    /// `Close`: tears down the ClientConn and all underlying connections.
    fn close(&self) -> Result<(), Error> {
        self.cancel.call();

        self.mu.lock();
        let Some(conns) = self.conns.get() else {
            self.mu.unlock();
            return Err(Error::ClientConnClosing);
        };
        self.conns.set(None);
        // cc.csMgr.updateState(connectivity.Shutdown) is left out.
        let r_wrapper = self.resolver_wrapper.get();
        self.resolver_wrapper.set(None);
        let b_wrapper = self.balancer_wrapper.get();
        self.balancer_wrapper.set(None);
        self.mu.unlock();
        // cc.blockingpicker.close() is left out.
        if let Some(rw) = r_wrapper {
            rw.close();
        }
        if let Some(bw) = b_wrapper {
            bw.close();
        }
        for ac in conns.with(|m| m.values().cloned().collect::<Vec<_>>()) {
            ac.tear_down(Error::ClientConnClosing);
        }
        Ok(())
    }
}

/// `ccResolverWrapper`, over the passthrough resolver.
struct CcResolverWrapper {
    cc: Arc<ClientConn>,
    addr_ch: Chan<Vec<Address>>,
    done: Chan<()>,
}

impl CcResolverWrapper {
    /// `newCCResolverWrapper`: builds the passthrough resolver, which reports the target as
    /// the only address at once (`passthroughResolver.start` → `NewAddress`).
    fn new(cc: &Arc<ClientConn>) -> Arc<CcResolverWrapper> {
        let ccr = Arc::new(CcResolverWrapper {
            cc: cc.clone(),
            addr_ch: Chan::new(1).named("ccr.addrCh"),
            done: Chan::new(0).named("ccr.done"),
        });
        ccr.new_address(vec![cc.target]);
        ccr
    }

    fn start(self: &Arc<Self>) {
        let ccr = self.clone();
        go_named("ccResolverWrapper.watcher", move || ccr.watcher());
    }

    fn watcher(&self) {
        loop {
            select! {
                recv(self.done) => return,
                default => {},
            }
            select! {
                recv(self.addr_ch) -> addrs => {
                    select! {
                        recv(self.done) => return,
                        default => {},
                    }
                    if let Some(addrs) = addrs {
                        self.cc.handle_resolved_addrs(addrs);
                    }
                },
                recv(self.done) => return,
            }
        }
    }

    fn close(&self) {
        // ccr.resolver.Close(): the passthrough resolver's does nothing.
        self.done.close();
    }

    fn new_address(&self, addrs: Vec<Address>) {
        select! {
            recv(self.addr_ch) => {},
            default => {},
        }
        self.addr_ch.send(addrs);
    }
}

/// `scStateUpdate`.
#[derive(Clone)]
struct ScStateUpdate {
    sc: SubConn,
    state: State,
}

/// `scStateUpdateBuffer`: an unbounded channel of state updates.
struct ScStateUpdateBuffer {
    c: Chan<ScStateUpdate>,
    mu: Mutex,
    backlog: Shared<Vec<ScStateUpdate>>,
}

impl ScStateUpdateBuffer {
    fn put(&self, t: ScStateUpdate) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.backlog.read(|b| b.is_empty()) {
            select! {
                send(self.c, t.clone()) => return,
                default => {},
            }
        }
        self.backlog.write(|b| b.push(t));
    }

    fn load(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if let Some(t) = self.backlog.read(|b| b.first().cloned()) {
            select! {
                send(self.c, t) => {
                    self.backlog.write(|b| {
                        b.remove(0);
                    });
                },
                default => {},
            }
        }
    }
}

/// `ccBalancerWrapper`: what the balancer sees of the ClientConn.
struct CcBalancerWrapper {
    cc: Arc<ClientConn>,
    balancer: Shared<Option<Arc<BalancerWrapper>>>,
    state_change_queue: ScStateUpdateBuffer,
    resolver_update_ch: Chan<Vec<Address>>,
    done: Chan<()>,

    /// The fix: guards `subConns`.
    mu: RwMutex,
    sub_conns: GoMap<usize, SubConn>,
    variant: Variant,
}

impl CcBalancerWrapper {
    /// `newCCBalancerWrapper`: starts the watcher, then builds the balancer.
    fn new(cc: &Arc<ClientConn>) -> Arc<CcBalancerWrapper> {
        let ccb = Arc::new(CcBalancerWrapper {
            cc: cc.clone(),
            balancer: Shared::new(None).named("ccb.balancer"),
            state_change_queue: ScStateUpdateBuffer {
                c: Chan::new(1).named("stateChangeQueue.c"),
                mu: Mutex::new().named("stateChangeQueue.mu"),
                backlog: Shared::new(Vec::new()).named("stateChangeQueue.backlog"),
            },
            resolver_update_ch: Chan::new(1).named("resolverUpdateCh"),
            done: Chan::new(0).named("ccb.done"),
            mu: RwMutex::new().named("ccb.mu"),
            sub_conns: GoMap::new().named("ccb.subConns"),
            variant: cc.variant,
        });
        let w = ccb.clone();
        go_named("ccBalancerWrapper.watcher", move || w.watcher());
        let b = BalancerWrapper::build(&ccb);
        ccb.balancer.set(Some(b));
        ccb
    }

    fn balancer(&self) -> Arc<BalancerWrapper> {
        self.balancer.get().expect("built before any update")
    }

    /// `watcher`: calls the balancer's functions sequentially.
    fn watcher(&self) {
        loop {
            select! {
                recv(self.state_change_queue.c) -> t => {
                    self.state_change_queue.load();
                    select! {
                        recv(self.done) => {
                            self.balancer().close();
                            return;
                        },
                        default => {},
                    }
                    if let Some(t) = t {
                        self.balancer().handle_sub_conn_state_change(&t.sc, t.state);
                    }
                },
                recv(self.resolver_update_ch) => {
                    select! {
                        recv(self.done) => {
                            self.balancer().close();
                            return;
                        },
                        default => {},
                    }
                    self.balancer().handle_resolved_addrs();
                },
                recv(self.done) => {},
            }

            select! {
                recv(self.done) => {
                    self.balancer().close();
                    if self.variant.fixed() {
                        self.mu.rlock();
                    }
                    for acbw in self.sub_conns.with(|m| m.values().cloned().collect::<Vec<_>>()) {
                        self.cc.remove_addr_conn(&acbw.get_addr_conn(), Error::ConnDrain);
                    }
                    if self.variant.fixed() {
                        self.mu.runlock();
                    }
                    return;
                },
                default => {},
            }
        }
    }

    fn close(&self) {
        self.done.close();
    }

    fn handle_sub_conn_state_change(&self, sc: Option<SubConn>, s: State) {
        // A nil SubConn is an old addrConn being torn down: the balancer does not hear of it.
        let Some(sc) = sc else {
            return;
        };
        self.state_change_queue.put(ScStateUpdate { sc, state: s });
    }

    fn handle_resolved_addrs(&self, addrs: Vec<Address>) {
        select! {
            recv(self.resolver_update_ch) => {},
            default => {},
        }
        self.resolver_update_ch.send(addrs);
    }

    /// `NewSubConn`, called by the balancer.
    fn new_sub_conn(&self, addrs: Vec<Address>) -> Result<SubConn, Error> {
        let ac = self.cc.new_addr_conn(addrs)?;
        let acbw = Arc::new(AcBalancerWrapper {
            mu: Mutex::new().named("acbw.mu"),
            ac: Shared::new(ac.clone()).named("acbw.ac"),
        });
        ac.mu.lock();
        ac.acbw.set(Some(acbw.clone()));
        ac.mu.unlock();
        if self.variant.fixed() {
            self.mu.lock();
        }
        self.sub_conns.insert(acbw.key(), acbw.clone());
        if self.variant.fixed() {
            self.mu.unlock();
        }
        Ok(acbw)
    }
}

/// `acBalancerWrapper`: the SubConn the balancer holds.
struct AcBalancerWrapper {
    mu: Mutex,
    ac: Shared<Arc<AddrConn>>,
}

impl AcBalancerWrapper {
    /// The wrapper's identity, as Go's map keys `*acBalancerWrapper` (a pointer; `identity` stands for it).
    fn key(&self) -> usize {
        self.ac.identity() as usize
    }

    fn connect(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let _ = self.ac.get().connect();
    }

    fn get_addr_conn(&self) -> Arc<AddrConn> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.ac.get()
    }
}

/// `addrConn`: a network connection to a given address.
struct AddrConn {
    cancel: CancelFunc,
    cc: Arc<ClientConn>,
    addrs: Vec<Address>,

    mu: Mutex,
    state: Shared<State>,
    acbw: Shared<Option<SubConn>>,
    tear_down_err: Shared<Option<Error>>,
}

impl AddrConn {
    /// The addrConn's identity, as Go's map keys `*addrConn` (a pointer; `identity` stands for it).
    fn key(&self) -> usize {
        self.state.identity() as usize
    }

    /// `connect`: moves to Connecting and would start the connecting goroutine.
    fn connect(&self) -> Result<(), Error> {
        self.mu.lock();
        if self.state.get() == State::Shutdown {
            self.mu.unlock();
            return Err(Error::ConnClosing);
        }
        if self.state.get() != State::Idle {
            self.mu.unlock();
            return Ok(());
        }
        self.state.set(State::Connecting);
        self.cc
            .handle_sub_conn_state_change(self.acbw.get(), self.state.get());
        self.mu.unlock();
        // The goroutine that dials `self.addrs` (`resetTransport`, then `transportMonitor`) is
        // left out.
        let _ = &self.addrs;
        Ok(())
    }

    /// `tearDown`: starts to tear down the addrConn.
    fn tear_down(&self, err: Error) {
        self.cancel.call();
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        // There is no transport to close gracefully: it never connected.
        if self.state.get() == State::Shutdown {
            return;
        }
        self.state.set(State::Shutdown);
        self.tear_down_err.set(Some(err));
        self.cc
            .handle_sub_conn_state_change(self.acbw.get(), self.state.get());
    }
}

/// `scState`: what the v1 wrapper keeps per SubConn.
#[derive(Clone, Copy)]
struct ScState {
    s: State,
}

/// `roundRobin` without a name resolver (`RoundRobin(nil)`): the target is its only address.
struct RoundRobin {
    mu: Mutex,
    addrs: Shared<Vec<Address>>,
    done: Shared<bool>,
}

impl RoundRobin {
    fn start(&self, target: Address) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.done.get() {
            return;
        }
        // No name resolver: the target is the only address, and addrCh stays nil.
        self.addrs.write(|a| a.push(target));
    }

    /// `Notify`: nil without a name resolver.
    fn notify(&self) -> Option<Chan<Vec<Address>>> {
        None
    }

    fn close(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.done.get() {
            return;
        }
        self.done.set(true);
    }
}

/// `balancerWrapper`: a v1 `Balancer` behind the v2 balancer API.
struct BalancerWrapper {
    balancer: RoundRobin,
    cc: Arc<CcBalancerWrapper>,
    target_addr: Address,

    mu: Mutex,
    conns: GoMap<Address, SubConn>,
    conn_st: GoMap<usize, ScState>,
    /// Closed when handling the first resolver result.
    start_ch: Chan<()>,
}

impl BalancerWrapper {
    /// `balancerWrapperBuilder.Build`: starts the v1 balancer and its watcher goroutine.
    fn build(cc: &Arc<CcBalancerWrapper>) -> Arc<BalancerWrapper> {
        let target_addr = cc.cc.target;
        let rr = RoundRobin {
            mu: Mutex::new().named("rr.mu"),
            addrs: Shared::new(Vec::new()).named("rr.addrs"),
            done: Shared::new(false).named("rr.done"),
        };
        rr.start(target_addr);
        let bw = Arc::new(BalancerWrapper {
            balancer: rr,
            cc: cc.clone(),
            target_addr,
            mu: Mutex::new().named("bw.mu"),
            conns: GoMap::new().named("bw.conns"),
            conn_st: GoMap::new().named("bw.connSt"),
            start_ch: Chan::new(0).named("bw.startCh"),
        });
        // cc.UpdateBalancerState(connectivity.Idle, bw) is left out.
        let w = bw.clone();
        go_named("balancerWrapper.lbWatcher", move || w.lb_watcher());
        bw
    }

    /// `lbWatcher`: manages the connections the v1 balancer asks for.
    fn lb_watcher(&self) {
        self.start_ch.recv();
        if self.balancer.notify().is_none() {
            // There's no resolver in the balancer. Connect directly.
            let a = self.target_addr;
            match self.cc.new_sub_conn(vec![a]) {
                Err(_err) => {
                    // grpclog.Warningf("Error creating connection to %v. Err: %v", a, err)
                }
                Ok(sc) => {
                    self.mu.lock();
                    self.conns.insert(a, sc.clone());
                    self.conn_st.insert(sc.key(), ScState { s: State::Idle });
                    self.mu.unlock();
                    sc.connect();
                }
            }
        }
        // The loop over Notify's channel (a balancer with a name resolver) is left out.
    }

    fn handle_sub_conn_state_change(&self, sc: &SubConn, s: State) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let Some(sc_st) = self.conn_st.get(&sc.key()) else {
            return;
        };
        if s == State::Idle {
            sc.connect();
        }
        let _old_s = sc_st.s;
        self.conn_st.with_mut(|m| {
            if let Some(st) = m.get_mut(&sc.key()) {
                st.s = s;
            }
        });
        // Up/down of the v1 balancer, the aggregated state and UpdateBalancerState are left
        // out: the SubConn never becomes Ready here.
        if s == State::Shutdown {
            // Remove state for this sc.
            self.conn_st.remove(&sc.key());
        }
    }

    fn handle_resolved_addrs(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        select! {
            recv(self.start_ch) => {},
            default => self.start_ch.close(),
        }
        // There should be a resolver inside the balancer; the update is ignored.
    }

    fn close(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        select! {
            recv(self.start_ch) => {},
            default => self.start_ch.close(),
        }
        self.balancer.close();
    }
}

/// A client dials through a v1 balancer with no name resolver and closes the connection while
/// the balancer is still creating its SubConn.
fn test_grpc1667(variant: Variant) {
    let cc = ClientConn::dial("localhost:50051", variant);
    let _ = cc.close();
}
