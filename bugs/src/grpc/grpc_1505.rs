#![doc = include_str!("grpc_1505.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1505",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1505",
        category: "AB-BA deadlock",
        expected: primitives::Verdict::Deadlock,
        kernel: test_grpc1505,
        walkthrough: include_str!("grpc_1505.md"),
        asplos: Some("blocking-bugs/grpc-go/4bbe223b12805ab25acbb9d2cadfab2ec9d04bb6.txt"),
        source: Source::Diff("4bbe223b"),
        fix: Fix::Upstream("4bbe223b"),
        review: "faithful after mends: Checked against 4bbe223b (#1505) and its parent 91999f44 (`balancer_v1_wrapper.go`, `balancer_conn_wrappers.go`, `clientconn.go`, `balancer.go`, `balancer_test.go`): the same acbw.mu/ac.mu AB-BA through the log line's `getAddrConn`, exact fix; mend the test-order deviation, whose stated reason is wrong (upstream's WithBlock order also reaches the cycle via the Ready report).",
        file: file!(),
        loom: Loom::DoesNotApply(
            "main and five goroutines (the naming watcher, the test resolver's readDone reader, \
             lbWatcher and up to two connecting goroutines): more than loom's five threads",
        ),
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
    /// `errBalancerClosed`.
    BalancerClosed,
    /// The naming watcher's error once it is closed.
    WatcherClosed,
}

/// `connectivity.State`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Ready,
    TransientFailure,
    Shutdown,
}

/// `resolver.Address` and the v1 `Address`: their `Addr`.
type Address = &'static str;

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

/// `connectivityStateEvaluator`: the ClientConn's state from its addrConns' transitions.
struct ConnectivityStateEvaluator {
    cs_mgr: Arc<ConnectivityStateManager>,
    mu: Mutex,
    num_ready: Shared<u64>,
    num_connecting: Shared<u64>,
    num_transient_failure: Shared<u64>,
}

impl ConnectivityStateEvaluator {
    fn record_transition(&self, old_state: State, new_state: State) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        // Update counters: -1 for oldState and +1 for new.
        for (idx, state) in [old_state, new_state].into_iter().enumerate() {
            let update = |n: &Shared<u64>| {
                let v = n.get();
                n.set(if idx == 0 {
                    v.wrapping_sub(1)
                } else {
                    v.wrapping_add(1)
                });
            };
            match state {
                State::Ready => update(&self.num_ready),
                State::Connecting => update(&self.num_connecting),
                State::TransientFailure => update(&self.num_transient_failure),
                _ => {}
            }
        }
        // Evaluate.
        if self.num_ready.get() > 0 {
            self.cs_mgr.update_state(State::Ready);
            return;
        }
        if self.num_connecting.get() > 0 {
            self.cs_mgr.update_state(State::Connecting);
            return;
        }
        self.cs_mgr.update_state(State::TransientFailure);
    }
}

/// `ClientConn`.
struct ClientConn {
    ctx: Context,
    cancel: CancelFunc,
    target: Address,
    cs_mgr: Arc<ConnectivityStateManager>,
    cs_evltr: Arc<ConnectivityStateEvaluator>,

    balancer: Shared<Option<Arc<BalancerWrapper>>>,

    pmu: Mutex,
    /// `picker`: whether a balancer set one.
    picker: Shared<bool>,

    mu: RwMutex,
    /// `conns`: nil once the ClientConn is closed.
    conns: Shared<Option<GoMap<usize, Arc<AddrConn>>>>,
}

impl ClientConn {
    /// `DialContext` with `WithBalancer(pickFirstBalancer(r))`, without `WithBlock`: builds
    /// the balancer and unblocks it with a fake resolver update.
    fn dial(target: Address, r: &Arc<TestNameResolver>, variant: Variant) -> Arc<ClientConn> {
        let (ctx, cancel) = context::with_cancel(&context::background());
        let cs_mgr = Arc::new(ConnectivityStateManager {
            mu: Mutex::new().named("csMgr.mu"),
            state: Shared::new(State::Idle).named("csMgr.state"),
            notify_chan: Shared::new(None).named("csMgr.notifyChan(field)"),
        });
        let cc = Arc::new(ClientConn {
            ctx,
            cancel,
            target,
            cs_evltr: Arc::new(ConnectivityStateEvaluator {
                cs_mgr: cs_mgr.clone(),
                mu: Mutex::new().named("csEvltr.mu"),
                num_ready: Shared::new(0).named("csEvltr.numReady"),
                num_connecting: Shared::new(0).named("csEvltr.numConnecting"),
                num_transient_failure: Shared::new(0).named("csEvltr.numTransientFailure"),
            }),
            cs_mgr,
            balancer: Shared::new(None).named("cc.balancer"),
            pmu: Mutex::new().named("cc.pmu"),
            picker: Shared::new(false).named("cc.picker"),
            mu: RwMutex::new().named("cc.mu"),
            conns: Shared::new(Some(GoMap::new().named("cc.conns"))).named("cc.conns(field)"),
        });
        // Build should not take long time, so it runs here.
        let b = BalancerWrapper::build(
            CcBalancerWrapper { cc: cc.clone() },
            PickFirst::new(r.clone()),
            variant,
        );
        cc.balancer.set(Some(b.clone()));
        // Unblock balancer initialization with a fake resolver update.
        b.handle_resolved_addrs();
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

    fn get_state(&self) -> State {
        self.cs_mgr.get_state()
    }

    fn balancer(&self) -> Arc<BalancerWrapper> {
        self.balancer.get().expect("built in dial")
    }

    fn update_picker(&self) {
        self.pmu.lock();
        self.picker.set(true);
        self.pmu.unlock();
    }

    /// `newAddrConn`: creates an addrConn for addrs and adds it to cc.conns.
    fn new_addr_conn(self: &Arc<Self>, addrs: Vec<Address>) -> Result<Arc<AddrConn>, Error> {
        let (ctx, cancel) = context::with_cancel(&self.ctx);
        let ac = Arc::new(AddrConn {
            ctx,
            cancel,
            cc: self.clone(),
            cur_addr: Shared::new(None).named("ac.curAddr"),
            addrs: Shared::new(addrs).named("ac.addrs"),
            acbw: Shared::new(None).named("ac.acbw"),
            cs_evltr: self.cs_evltr.clone(),
            mu: Mutex::new().named("ac.mu"),
            state: Shared::new(State::Idle).named("ac.state"),
            transport: Shared::new(false).named("ac.transport"),
            tear_down_err: Shared::new(None).named("ac.tearDownErr"),
        });
        // Track ac in cc. This needs to be done before any getTransport(...) is called.
        self.mu.lock();
        let Some(conns) = self.conns.get() else {
            self.mu.unlock();
            return Err(Error::ClientConnClosing);
        };
        conns.insert(ac.key(), ac.clone());
        self.mu.unlock();
        Ok(ac)
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
        self.mu.unlock();
        self.balancer().close();
        for ac in conns.with(|m| m.values().cloned().collect::<Vec<_>>()) {
            ac.tear_down(Error::ClientConnClosing);
        }
        Ok(())
    }
}

/// `addrConn`: a network connection to a given address.
struct AddrConn {
    ctx: Context,
    cancel: CancelFunc,

    cc: Arc<ClientConn>,
    /// `curAddr`: `resolver.Address{}` is `None`.
    cur_addr: Shared<Option<Address>>,
    addrs: Shared<Vec<Address>>,
    acbw: Shared<Option<Arc<AcBalancerWrapper>>>,

    cs_evltr: Arc<ConnectivityStateEvaluator>,

    mu: Mutex,
    state: Shared<State>,
    /// `transport`: whether there is one.
    transport: Shared<bool>,
    tear_down_err: Shared<Option<Error>>,
}

impl AddrConn {
    /// The addrConn's identity, as Go's map keys `*addrConn` (a pointer; `identity` stands for it).
    fn key(&self) -> usize {
        self.state.identity() as usize
    }

    /// `connect(false)`: starts connecting in a goroutine.
    fn connect(self: &Arc<Self>) -> Result<(), Error> {
        self.mu.lock();
        if self.state.get() == State::Shutdown {
            self.mu.unlock();
            return Err(Error::ConnClosing);
        }
        self.mu.unlock();

        // Start a goroutine connecting to the server asynchronously.
        let ac = self.clone();
        go_named("addrConn.connect.func1", move || {
            if let Err(err) = ac.reset_transport() {
                // grpclog.Warningf("Failed to dial %s: %v; please retry.", ...)
                if err != Error::ConnClosing {
                    // Keep this ac in cc.conns, to get the reason it's torn down.
                    ac.tear_down(err);
                }
                return;
            }
            ac.transport_monitor();
        });
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

    /// `resetTransport(false)`: connects to the first address that answers (here, at once).
    fn reset_transport(&self) -> Result<(), Error> {
        self.mu.lock();
        if self.state.get() == State::Shutdown {
            self.mu.unlock();
            return Err(Error::ConnClosing);
        }
        let old_state = self.state.get();
        self.state.set(State::Connecting);
        self.cs_evltr.record_transition(old_state, self.state.get());
        self.cc
            .balancer()
            .handle_sub_conn_state_change(self.acbw.get(), self.state.get());
        let _t = self.transport.get();
        self.transport.set(false);
        self.mu.unlock();
        // There was no transport to close.
        loop {
            self.mu.lock();
            if self.state.get() == State::Shutdown {
                self.mu.unlock();
                return Err(Error::ConnClosing);
            }
            let old_state = self.state.get();
            self.state.set(State::Connecting);
            self.cs_evltr.record_transition(old_state, self.state.get());
            self.cc
                .balancer()
                .handle_sub_conn_state_change(self.acbw.get(), self.state.get());
            // Copy ac.addrs in case of race.
            let addrs_iter = self.addrs.get();
            self.mu.unlock();
            // The first address answers: the loop over addrsIter ends in its first round.
            if let Some(&addr) = addrs_iter.first() {
                self.mu.lock();
                if self.state.get() == State::Shutdown {
                    // ac.tearDown(...) has been invoked.
                    self.mu.unlock();
                    return Err(Error::ConnClosing);
                }
                self.mu.unlock();
                // transport.NewClientTransport succeeds at once: the server is up.
                self.mu.lock();
                if self.state.get() == State::Shutdown {
                    // ac.tearDown(...) has been invoked.
                    self.mu.unlock();
                    return Err(Error::ConnClosing);
                }
                let old_state = self.state.get();
                self.state.set(State::Ready);
                self.cs_evltr.record_transition(old_state, self.state.get());
                self.cc
                    .balancer()
                    .handle_sub_conn_state_change(self.acbw.get(), self.state.get());
                self.transport.set(true);
                self.cur_addr.set(Some(addr));
                self.mu.unlock();
                return Ok(());
            }
            // Every address failed: the TransientFailure state and the backoff are left out
            // (the dial never fails here).
        }
    }

    /// `transportMonitor`: here, only its wait for the addrConn's end.
    fn transport_monitor(&self) {
        self.mu.lock();
        let _t = self.transport.get();
        self.mu.unlock();
        select! {
            recv(self.ctx.done()) => {},
        }
    }

    /// `tearDown`: starts to tear down the addrConn.
    fn tear_down(&self, err: Error) {
        self.cancel.call();

        self.mu.lock();
        self.cur_addr.set(None);
        let _unlock = defer(|| self.mu.unlock());
        // The transport closes gracefully on errConnDrain: nothing to model.
        if self.state.get() == State::Shutdown {
            return;
        }
        let old_state = self.state.get();
        self.state.set(State::Shutdown);
        self.tear_down_err.set(Some(err));
        self.cs_evltr.record_transition(old_state, self.state.get());
        self.cc
            .balancer()
            .handle_sub_conn_state_change(self.acbw.get(), self.state.get());
        if self.transport.get() && err != Error::ConnDrain {
            // ac.transport.Close()
        }
    }

    fn get_state(&self) -> State {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.state.get()
    }
}

/// `ccBalancerWrapper`: what the balancer sees of the ClientConn.
struct CcBalancerWrapper {
    cc: Arc<ClientConn>,
}

impl CcBalancerWrapper {
    /// `NewSubConn`.
    fn new_sub_conn(&self, addrs: Vec<Address>) -> Result<Arc<AcBalancerWrapper>, Error> {
        let ac = self.cc.new_addr_conn(addrs)?;
        let acbw = Arc::new(AcBalancerWrapper {
            mu: Mutex::new().named("acbw.mu"),
            ac: Shared::new(ac.clone()).named("acbw.ac"),
        });
        ac.acbw.set(Some(acbw.clone()));
        Ok(acbw)
    }

    fn target(&self) -> Address {
        self.cc.target
    }

    fn update_balancer_state(&self) {
        self.cc.update_picker();
    }
}

/// `acBalancerWrapper`: the SubConn the balancer holds.
struct AcBalancerWrapper {
    mu: Mutex,
    ac: Shared<Arc<AddrConn>>,
}

impl AcBalancerWrapper {
    /// The wrapper's identity, as Go's map keys `balancer.SubConn` (a pointer; `identity` stands for it).
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
            // Under ac.mu, as 87bcb38f (grpc_1662's fix, two months later) has it.
            ac.mu.lock();
            ac.acbw.set(Some(self.clone()));
            ac.mu.unlock();
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

/// `naming.Update`: an `Add` of an address (the test adds only).
type Update = Address;

/// The test's `testWatcher`: a naming watcher fed by the test.
struct TestWatcher {
    /// The channel to receive name resolution updates.
    update: Chan<Update>,
    /// The side channel to get to know how many updates in a batch.
    side: Chan<usize>,
    /// The channel to notify the update injector that the update reading is done.
    read_done: Chan<usize>,
}

impl TestWatcher {
    fn next(&self) -> Result<Vec<Update>, Error> {
        let n = self.side.recv().unwrap_or(0);
        if n == 0 {
            return Err(Error::WatcherClosed);
        }
        let mut updates = Vec::new();
        for _ in 0..n {
            if let Some(u) = self.update.recv() {
                updates.push(u);
            }
        }
        self.read_done.send(0);
        Ok(updates)
    }

    /// `Close`: upstream's does nothing; here it closes `side`, so that `Next` returns.
    fn close(&self) {
        self.side.close();
    }

    /// Inject naming resolution updates to the testWatcher.
    fn inject(&self, updates: Vec<Update>) {
        self.side.send(updates.len());
        for u in updates {
            self.update.send(u);
        }
        self.read_done.recv();
    }
}

/// The test's `testNameResolver`.
struct TestNameResolver {
    w: Shared<Option<Arc<TestWatcher>>>,
    addr: Address,
}

impl TestNameResolver {
    fn resolve(&self, _target: Address) -> Arc<TestWatcher> {
        let w = Arc::new(TestWatcher {
            update: Chan::new(1).named("w.update"),
            side: Chan::new(1).named("w.side"),
            read_done: Chan::new(0).named("w.readDone"),
        });
        self.w.set(Some(w.clone()));
        w.side.send(1);
        w.update.send(self.addr);
        let w2 = w.clone();
        go_named("testNameResolver.Resolve.func1", move || {
            w2.read_done.recv();
        });
        w
    }

    fn w(&self) -> Arc<TestWatcher> {
        self.w.get().expect("resolved in dial")
    }
}

/// `addrInfo`.
#[derive(Clone)]
struct AddrInfo {
    addr: Address,
    connected: bool,
}

/// `roundRobin` with a name resolver, behind `pickFirst` (`pickFirstBalancer(r)`).
struct PickFirst {
    r: Arc<TestNameResolver>,
    w: Shared<Option<Arc<TestWatcher>>>,
    /// `addrs`: the addresses the name resolver gave, in order.
    addrs: Shared<Vec<AddrInfo>>,
    /// `addrCh`: nil until `Start`.
    addr_ch: Shared<Chan<Vec<Address>>>,
    mu: Mutex,
    done: Shared<bool>,
}

impl PickFirst {
    fn new(r: Arc<TestNameResolver>) -> Arc<PickFirst> {
        Arc::new(PickFirst {
            r,
            w: Shared::new(None).named("rr.w"),
            addrs: Shared::new(Vec::new()).named("rr.addrs"),
            addr_ch: Shared::new(Chan::nil()).named("rr.addrCh"),
            mu: Mutex::new().named("rr.mu"),
            done: Shared::new(false).named("rr.done"),
        })
    }

    /// `roundRobin.Start`: resolves the target and watches its updates in a goroutine.
    fn start(self: &Arc<Self>, target: Address) -> Result<(), Error> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.done.get() {
            return Err(Error::ClientConnClosing);
        }
        let w = self.r.resolve(target);
        self.w.set(Some(w));
        self.addr_ch.set(Chan::new(1).named("rr.addrCh"));
        let rr = self.clone();
        go_named("roundRobin.Start.func1", move || loop {
            if rr.watch_addr_updates().is_err() {
                return;
            }
        });
        Ok(())
    }

    fn watch_addr_updates(&self) -> Result<(), Error> {
        let w = self.w.get().expect("set in start");
        let updates = w.next()?;
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        for addr in updates {
            // naming.Add
            if self.addrs.read(|a| a.iter().any(|v| v.addr == addr)) {
                continue;
            }
            self.addrs.write(|a| {
                a.push(AddrInfo {
                    addr,
                    connected: false,
                })
            });
        }
        // Make a copy of rr.addrs and write it onto rr.addrCh so that gRPC internals gets
        // notified.
        let open: Vec<Address> = self.addrs.read(|a| a.iter().map(|v| v.addr).collect());
        if self.done.get() {
            return Err(Error::ClientConnClosing);
        }
        let addr_ch = self.addr_ch.get();
        select! {
            recv(addr_ch) => {},
            default => {},
        }
        addr_ch.send(open);
        Ok(())
    }

    /// `roundRobin.Up`: marks addr connected (`waitCh` and `down` are left out).
    fn up(&self, addr: Address) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.addrs.write(|a| {
            for v in a.iter_mut() {
                if v.addr == addr {
                    v.connected = true;
                }
            }
        });
    }

    fn notify(&self) -> Chan<Vec<Address>> {
        self.addr_ch.get()
    }

    fn close(&self) -> Result<(), Error> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.done.get() {
            return Err(Error::BalancerClosed);
        }
        self.done.set(true);
        if let Some(w) = self.w.get() {
            w.close();
        }
        let addr_ch = self.addr_ch.get();
        if !addr_ch.is_nil() {
            addr_ch.close();
        }
        Ok(())
    }
}

/// `scState`: what the v1 wrapper keeps per SubConn.
#[derive(Clone)]
struct ScState {
    addr: Address,
    s: State,
}

/// `balancerWrapper`: a v1 `Balancer` behind the v2 balancer API.
struct BalancerWrapper {
    balancer: Arc<PickFirst>,
    cc: CcBalancerWrapper,

    mu: Mutex,
    conns: GoMap<Option<Address>, Arc<AcBalancerWrapper>>,
    conn_st: GoMap<usize, ScState>,
    /// Closed when handling the first resolver result.
    start_ch: Chan<()>,
    variant: Variant,
}

impl BalancerWrapper {
    /// `balancerWrapperBuilder.Build`: starts the v1 balancer and the wrapper's goroutine.
    fn build(cc: CcBalancerWrapper, b: Arc<PickFirst>, variant: Variant) -> Arc<BalancerWrapper> {
        let _ = b.start(cc.target());
        let bw = Arc::new(BalancerWrapper {
            balancer: b,
            cc,
            mu: Mutex::new().named("bw.mu"),
            conns: GoMap::new().named("bw.conns"),
            conn_st: GoMap::new().named("bw.connSt"),
            start_ch: Chan::new(0).named("bw.startCh"),
            variant,
        });
        bw.cc.update_balancer_state();
        let w = bw.clone();
        go_named("balancerWrapper.lbWatcher", move || w.lb_watcher());
        bw
    }

    /// `lbWatcher`, for a pickfirst v1 balancer with a name resolver: one SubConn, whose
    /// addresses follow the resolver.
    fn lb_watcher(&self) {
        self.start_ch.recv();
        let notify_ch = self.balancer.notify();
        // notifyCh is not nil: the v1 balancer has a name resolver.
        while let Some(addrs) = notify_ch.recv() {
            // pickfirst
            self.mu.lock();
            let old_sc = self.conns.with(|m| m.values().next().cloned());
            self.mu.unlock();
            // The updates only add addresses: the list is never empty.
            let new_addrs = addrs.clone();
            match old_sc {
                None => match self.cc.new_sub_conn(new_addrs) {
                    Err(_err) => {
                        // grpclog.Warningf("Error creating connection to %v. Err: %v", ...)
                    }
                    Ok(sc) => {
                        self.mu.lock();
                        self.conns.insert(None, sc.clone());
                        self.conn_st.insert(
                            sc.key(),
                            ScState {
                                addr: addrs[0], // Use the first address.
                                s: State::Idle,
                            },
                        );
                        self.mu.unlock();
                        sc.connect();
                    }
                },
                Some(old_sc) => {
                    old_sc.update_addresses(new_addrs);
                    self.mu.lock();
                    self.conn_st.with_mut(|m| {
                        if let Some(st) = m.get_mut(&old_sc.key()) {
                            st.addr = addrs[0];
                        }
                    });
                    self.mu.unlock();
                }
            }
        }
    }

    fn handle_sub_conn_state_change(&self, sc: Option<Arc<AcBalancerWrapper>>, s: State) {
        // grpclog.Infof("balancerWrapper: handle subconn state change: %p, %v", sc, s)
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let Some(sc) = sc else {
            // connSt has no nil SubConn.
            return;
        };
        let Some(sc_st) = self.conn_st.get(&sc.key()) else {
            return;
        };
        if s == State::Idle {
            sc.connect();
        }
        let old_s = sc_st.s;
        self.conn_st.with_mut(|m| {
            if let Some(st) = m.get_mut(&sc.key()) {
                st.s = s;
            }
        });
        if !self.variant.fixed() {
            // grpclog.Infof("balancerWrapper: handle state change addr: %v, old state: %v,
            // new state: %v", sc.(*acBalancerWrapper).getAddrConn().addrs, oldS, s)
            let _ = (sc.get_addr_conn().addrs.get(), old_s, s);
        }
        if old_s != State::Ready && s == State::Ready {
            self.balancer.up(sc_st.addr);
        }
        // The down function of a SubConn leaving Ready is left out: none does here.
        self.cc.update_balancer_state();
    }

    fn handle_resolved_addrs(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        select! {
            recv(self.start_ch) => {},
            default => self.start_ch.close(),
        }
    }

    fn close(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        select! {
            recv(self.start_ch) => {},
            default => self.start_ch.close(),
        }
        let _ = self.balancer.close();
    }
}

/// A client dials through a pickfirst v1 balancer whose name resolver then adds a second
/// server while the first connection is being set up; the client waits until it is ready and
/// closes (after `TestPickFirstOrderAllServerUp`, `balancer_test.go` at 91999f44).
fn test_grpc1505(variant: Variant) {
    let r = Arc::new(TestNameResolver {
        w: Shared::new(None).named("r.w"),
        addr: "localhost:server0",
    });
    let cc = ClientConn::dial("foo.bar.com", &r, variant);
    // Wait until the first connection attempt has started.
    cc.wait_for_state_change(State::Idle);
    // Add servers[1] to the service discovery.
    r.w().inject(vec!["localhost:server1"]);
    // A blocking dial's loop: wait until the ClientConn is ready.
    loop {
        let s = cc.get_state();
        if s == State::Ready {
            break;
        }
        cc.wait_for_state_change(s);
    }
    let _ = cc.close();
}
