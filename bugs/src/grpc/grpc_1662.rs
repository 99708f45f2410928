#![doc = include_str!("grpc_1662.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::explore::Engine;
use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1662",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1666",
        category: "Traditional / Data race",
        expected: primitives::Verdict::Race,
        kernel: test_grpc1662,
        walkthrough: include_str!("grpc_1662.md"),
        asplos: Some("non-blocking-bugs/grpc-go/87bcb38fba807cf2f45bc15756795923bd33b4ae.txt"),
        source: Source::Diff("87bcb38f"),
        fix: Fix::Upstream("87bcb38f"),
        review: "faithful after mends: Checked against 87bcb38f (#1666), its parent 5f2e2f99 (`clientconn.go`, `balancer_conn_wrappers.go`, `resolver_conn_wrapper.go`, `pickfirst.go`, `resolver/manual`) and issue #1662 / etcd#8855: right write, right reader, real (narrow) HB window, exact fix; mend the `start` mis-citation (a later-version split, undeclared).",
        file: file!(),
        // loom finds the race at execution 1,461 with bound 2; with the default bound 3 only
        // at 19,981.
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        // PCT finds it within the budget at each of seeds 1-10 (at schedule 26 to 140, median
        // 78, with --budget 2000), each time in a race-directed execution: the watcher is held
        // after its write, which an earlier execution (at 6 seeds a lock-order reversal) showed
        // with Close's read, while main runs Close. Without them PCT needed 382-15,011 at 7 of
        // the 10 seeds (with --budget 20000) and missed at the other 3.
        not_found_by: &[
            (
                Engine::ShuttleRandom,
                "random walk misses it in 20,000 schedules at each of seeds 1-10: main must run \
                 all of Close while the watcher is held in the two steps between newAddrConn and \
                 connect",
            ),
            (
                Engine::ShuttleUrw,
                "uniform random walk misses it in 20,000 schedules at each of seeds 1-10, for the \
                 same reason",
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

/// `connectivityStateManager`: the ClientConn's state.
struct ConnectivityStateManager {
    mu: Mutex,
    state: Shared<State>,
    notify_chan: Shared<Option<Chan<()>>>,
}

impl ConnectivityStateManager {
    fn update_state(&self, state: State) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.state.get() == State::Shutdown {
            return;
        }
        if self.state.get() == state {
            return;
        }
        self.state.set(state);
        if let Some(ch) = self.notify_chan.get() {
            // There are other goroutines waiting on this channel.
            ch.close();
            self.notify_chan.set(None);
        }
    }

    fn get_state(&self) -> State {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.state.get()
    }

    fn get_notify_chan(&self) -> Chan<()> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.notify_chan.read(|c| c.is_none()) {
            self.notify_chan
                .set(Some(Chan::new(0).named("csMgr.notifyChan")));
        }
        self.notify_chan.get().expect("just made")
    }
}

/// `ClientConn`.
struct ClientConn {
    ctx: Context,
    cancel: CancelFunc,
    target: Address,
    cs_mgr: ConnectivityStateManager,

    mu: RwMutex,
    /// `conns`: nil once the ClientConn is closed.
    conns: Shared<Option<GoMap<usize, Arc<AddrConn>>>>,
    resolver_wrapper: Shared<Option<Arc<CcResolverWrapper>>>,
    cur_addresses: Shared<Vec<Address>>,
    cur_balancer_name: Shared<&'static str>,
    balancer_wrapper: Shared<Option<Arc<CcBalancerWrapper>>>,

    variant: Variant,
}

impl ClientConn {
    /// `DialContext` with no balancer option, on a target of the manual resolver's scheme:
    /// builds the resolver wrapper and starts it. The dial does not block.
    fn dial(target: Address, r: &Arc<ManualResolver>, variant: Variant) -> Arc<ClientConn> {
        let (ctx, cancel) = context::with_cancel(&context::background());
        let cc = Arc::new(ClientConn {
            ctx,
            cancel,
            target,
            cs_mgr: ConnectivityStateManager {
                mu: Mutex::new().named("csMgr.mu"),
                state: Shared::new(State::Idle).named("csMgr.state"),
                notify_chan: Shared::new(None).named("csMgr.notifyChan(field)"),
            },
            mu: RwMutex::new().named("cc.mu"),
            conns: Shared::new(Some(GoMap::new().named("cc.conns"))).named("cc.conns(field)"),
            resolver_wrapper: Shared::new(None).named("cc.resolverWrapper"),
            cur_addresses: Shared::new(Vec::new()).named("cc.curAddresses"),
            cur_balancer_name: Shared::new("").named("cc.curBalancerName"),
            balancer_wrapper: Shared::new(None).named("cc.balancerWrapper"),
            variant,
        });
        // Build the resolver.
        let rw = CcResolverWrapper::new(&cc, r);
        cc.resolver_wrapper.set(Some(rw.clone()));
        // Started after the assignment (a later split); at 5f2e2f99 `new` starts it.
        rw.start();
        cc
    }

    /// `WaitForStateChange`, with a context that never ends.
    fn wait_for_state_change(&self, source_state: State) -> bool {
        let ch = self.cs_mgr.get_notify_chan();
        if self.cs_mgr.get_state() != source_state {
            return true;
        }
        ch.recv();
        true
    }

    fn handle_resolved_addrs(self: &Arc<Self>, addrs: Vec<Address>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.conns.get().is_none() {
            // cc was closed.
            return;
        }
        if self.balancer_wrapper.get().is_none() {
            // No customBalancer was specified by DialOption, and this is the first time
            // handling resolved addresses: create a pickfirst balancer.
            self.cur_balancer_name.set("pickfirst");
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
            addrs: Shared::new(addrs).named("ac.addrs"),
            mu: Mutex::new().named("ac.mu"),
            cur_addr: Shared::new(None).named("ac.curAddr"),
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
        self.cs_mgr.update_state(State::Shutdown);
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

/// `ccResolverWrapper`, over the manual resolver.
struct CcResolverWrapper {
    cc: Arc<ClientConn>,
    addr_ch: Chan<Vec<Address>>,
    done: Chan<()>,
}

impl CcResolverWrapper {
    /// `newCCResolverWrapper`: builds the manual resolver, which only keeps the wrapper.
    fn new(cc: &Arc<ClientConn>, r: &Arc<ManualResolver>) -> Arc<CcResolverWrapper> {
        let ccr = Arc::new(CcResolverWrapper {
            cc: cc.clone(),
            addr_ch: Chan::new(1).named("ccr.addrCh"),
            done: Chan::new(0).named("ccr.done"),
        });
        r.build(cc.target, &ccr);
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
        // ccr.resolver.Close(): the manual resolver's does nothing.
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
    balancer: Shared<Option<Arc<PickfirstBalancer>>>,
    state_change_queue: ScStateUpdateBuffer,
    resolver_update_ch: Chan<Vec<Address>>,
    done: Chan<()>,

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
            sub_conns: GoMap::new().named("ccb.subConns"),
            variant: cc.variant,
        });
        let w = ccb.clone();
        go_named("ccBalancerWrapper.watcher", move || w.watcher());
        let b = PickfirstBalancer::build(&ccb);
        ccb.balancer.set(Some(b));
        ccb
    }

    fn balancer(&self) -> Arc<PickfirstBalancer> {
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
                recv(self.resolver_update_ch) -> t => {
                    select! {
                        recv(self.done) => {
                            self.balancer().close();
                            return;
                        },
                        default => {},
                    }
                    if let Some(addrs) = t {
                        self.balancer().handle_resolved_addrs(addrs);
                    }
                },
                recv(self.done) => {},
            }

            select! {
                recv(self.done) => {
                    self.balancer().close();
                    for acbw in self.sub_conns.with(|m| m.values().cloned().collect::<Vec<_>>()) {
                        self.cc.remove_addr_conn(&acbw.get_addr_conn(), Error::ConnDrain);
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

    /// `UpdateBalancerState`: the picker is left out.
    fn update_balancer_state(&self, s: State) {
        self.cc.cs_mgr.update_state(s);
    }

    /// `NewSubConn`, called by the balancer.
    fn new_sub_conn(&self, addrs: Vec<Address>) -> Result<SubConn, Error> {
        let ac = self.cc.new_addr_conn(addrs)?;
        let acbw = Arc::new(AcBalancerWrapper {
            mu: Mutex::new().named("acbw.mu"),
            ac: Shared::new(ac.clone()).named("acbw.ac"),
            variant: self.variant,
        });
        ac.mu.lock();
        ac.acbw.set(Some(acbw.clone()));
        ac.mu.unlock();
        self.sub_conns.insert(acbw.key(), acbw.clone());
        Ok(acbw)
    }
}

/// `acBalancerWrapper`: the SubConn the balancer holds.
struct AcBalancerWrapper {
    mu: Mutex,
    ac: Shared<Arc<AddrConn>>,
    variant: Variant,
}

impl AcBalancerWrapper {
    /// The wrapper's identity, as Go's map keys `*acBalancerWrapper` (a pointer; `identity` stands for it).
    fn key(&self) -> usize {
        self.ac.identity() as usize
    }

    fn update_addresses(self: &Arc<Self>, addrs: Vec<Address>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if !self.ac.get().try_update_addrs(&addrs) {
            let cc = self.ac.get().cc.clone();
            self.ac.get().mu.lock();
            // Set old ac.acbw to nil so the Shutdown state update will be ignored by the
            // balancer.
            self.ac.get().acbw.set(None);
            self.ac.get().mu.unlock();
            let ac_state = self.ac.get().get_state();
            self.ac.get().tear_down(Error::ConnDrain);

            if ac_state == State::Shutdown {
                return;
            }

            let ac = match cc.new_addr_conn(addrs) {
                Ok(ac) => ac,
                Err(_err) => {
                    // grpclog.Warningf("acBalancerWrapper: UpdateAddresses: failed to newAddrConn: %v", err)
                    return;
                }
            };
            self.ac.set(ac.clone());
            if self.variant.fixed() {
                ac.mu.lock();
            }
            ac.acbw.set(Some(self.clone()));
            if self.variant.fixed() {
                ac.mu.unlock();
            }
            if ac_state != State::Idle {
                let _ = ac.connect();
            }
        }
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
    /// `curAddr`: `resolver.Address{}` is `None`; set once a transport is up.
    cur_addr: Shared<Option<Address>>,
    addrs: Shared<Vec<Address>>,

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
        Ok(())
    }

    /// `tryUpdateAddrs`: keeps the connection if its address is still in addrs.
    fn try_update_addrs(&self, addrs: &[Address]) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.state.get() == State::Shutdown {
            self.addrs.set(addrs.to_vec());
            return true;
        }
        let cur_addr_found = self.cur_addr.get().is_some_and(|c| addrs.contains(&c));
        if cur_addr_found {
            self.addrs.set(addrs.to_vec());
        }
        cur_addr_found
    }

    fn get_state(&self) -> State {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.state.get()
    }

    /// `tearDown`: starts to tear down the addrConn.
    fn tear_down(&self, err: Error) {
        self.cancel.call();
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.cur_addr.set(None);
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

/// `pickfirstBalancer`: one SubConn for all the addresses.
struct PickfirstBalancer {
    cc: Arc<CcBalancerWrapper>,
    sc: Shared<Option<SubConn>>,
}

impl PickfirstBalancer {
    /// `pickfirstBuilder.Build`.
    fn build(cc: &Arc<CcBalancerWrapper>) -> Arc<PickfirstBalancer> {
        Arc::new(PickfirstBalancer {
            cc: cc.clone(),
            sc: Shared::new(None).named("b.sc"),
        })
    }

    fn handle_resolved_addrs(&self, addrs: Vec<Address>) {
        match self.sc.get() {
            None => {
                let sc = match self.cc.new_sub_conn(addrs) {
                    Ok(sc) => sc,
                    Err(_err) => {
                        // grpclog.Errorf("pickfirstBalancer: failed to NewSubConn: %v", err)
                        return;
                    }
                };
                self.sc.set(Some(sc.clone()));
                self.cc.update_balancer_state(State::Idle);
                sc.connect();
            }
            Some(sc) => {
                sc.update_addresses(addrs);
                sc.connect();
            }
        }
    }

    fn handle_sub_conn_state_change(&self, sc: &SubConn, s: State) {
        if !self
            .sc
            .read(|b| b.as_ref().is_some_and(|b| Arc::ptr_eq(b, sc)))
        {
            // Ignored state change because sc is not recognized.
            return;
        }
        if s == State::Shutdown {
            self.sc.set(None);
            return;
        }
        self.cc.update_balancer_state(s);
    }

    fn close(&self) {}
}

/// `resolver/manual.Resolver`: the test gives the addresses.
struct ManualResolver {
    cc: Shared<Option<Arc<CcResolverWrapper>>>,
}

impl ManualResolver {
    fn build(&self, _target: Address, cc: &Arc<CcResolverWrapper>) {
        self.cc.set(Some(cc.clone()));
    }

    fn new_address(&self, addrs: Vec<Address>) {
        self.cc.get().expect("built by the dial").new_address(addrs);
    }
}

/// A client dials a target of a manual resolver, which gives one address; once the connection
/// is being made, the resolver gives another address, and the client closes the connection.
fn test_grpc1662(variant: Variant) {
    let r = Arc::new(ManualResolver {
        cc: Shared::new(None).named("r.cc"),
    });
    let cc = ClientConn::dial("manual:///test.server", &r, variant);
    r.new_address(vec!["server0"]);
    // Wait until the SubConn for server0 is connecting.
    cc.wait_for_state_change(State::Idle);
    r.new_address(vec!["server1"]);
    let _ = cc.close();
}
