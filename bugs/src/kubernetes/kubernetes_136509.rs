#![doc = include_str!("kubernetes_136509.md")]

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, Context};
use primitives::sync::{Cond, RLocker, RwMutex, WaitGroup};
use primitives::time::{self, Instant, Timer};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_136509",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/136509",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_listener_resync_periods,
        walkthrough: include_str!("kubernetes_136509.md"),
        source: Source::Test(
            "kubernetes/client-go tools/cache/shared_informer_test.go (testListenerResyncPeriods) @ 889b95a76, over tools/cache/shared_informer.go @ 889b95a76^",
        ),
        fix: Fix::Upstream("kubernetes/client-go 889b95a76 (Kubernetes-commit e6ef79b2f6bb)"),
        review: "faithful after mends: Checked against client-go 889b95a76 (Kubernetes e6ef79b2f6bb), its parent, 3590eb7f4 and the merge f651faf89 (tools/cache/shared_informer.go, controller.go, reflector.go, shared_informer_test.go), PR #136509 and issue #136049: right bug and shape (distribute's RLock then its blocked addCh send, shouldResync's Lock, run's RLock queued behind it), exact fix, deadlock verdict, honest failure; mended: the fix's delayed test provokes the schedule rather than forcing it, the writer argued from the Lock callers and blockDeltas, three deviations added (blockDeltas, cacheMutationDetector, s.stopped), citations and dates.",
        file: file!(),
        loom: Loom::DoesNotApply(
            "more goroutines than loom's threads: the test, the informer's Run, \
             sharedProcessor.run, the resync goroutine, the listener's pop and run, and the \
             timer goroutine",
        ),
        ..Bug::DEFAULT
    }
}

/// How often the reflector asks `ShouldResync` (the test's `NewSharedInformer(..., 1*time.Second)`).
const RESYNC_CHECK_PERIOD: Duration = Duration::from_secs(1);

/// `addNotification`; the channels carry `interface{}`, and `None` is Go's `nil`.
#[derive(Clone, Copy, Debug)]
struct AddNotification {
    new_obj: &'static str,
    is_in_initial_list: bool,
}

type Notification = Option<AddNotification>;

/// The test's `testListener`: the handler, recording the names it was handed.
struct TestListener {
    lock: RwMutex,
    received_item_names: Shared<Vec<&'static str>>,
}

impl TestListener {
    fn new(name: &str) -> TestListener {
        TestListener {
            lock: RwMutex::new().named(&format!("{name}.lock")),
            received_item_names: Shared::new(Vec::new())
                .named(&format!("{name}.receivedItemNames")),
        }
    }

    fn on_add(&self, obj: &'static str, _is_in_initial_list: bool) {
        self.handle(obj);
    }

    fn handle(&self, obj: &'static str) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.received_item_names.write(|r| r.push(obj));
    }
}

/// `processorListener`: relays notifications from `addCh` to the handler through `pop` and `run`.
struct ProcessorListener {
    next_ch: Chan<Notification>,
    add_ch: Chan<Notification>,
    handler: TestListener,
    /// `pendingNotifications`, the unbounded ring buffer `pop` alone uses.
    pending_notifications: Shared<VecDeque<AddNotification>>,
    /// `resyncPeriod`: 0 for the test's listener1 ("never resync").
    resync_period: Shared<Duration>,
    next_resync: Shared<Instant>,
    resync_lock: primitives::sync::Mutex,
}

impl ProcessorListener {
    /// `newProcessListener`.
    fn new(handler: TestListener, resync_period: Duration, now: Instant) -> ProcessorListener {
        let ret = ProcessorListener {
            next_ch: Chan::new(0).named("listener1.nextCh"),
            add_ch: Chan::new(0).named("listener1.addCh"),
            handler,
            pending_notifications: Shared::new(VecDeque::new())
                .named("listener1.pendingNotifications"),
            resync_period: Shared::new(resync_period).named("listener1.resyncPeriod"),
            next_resync: Shared::new(now).named("listener1.nextResync"),
            resync_lock: primitives::sync::Mutex::new().named("listener1.resyncLock"),
        };
        ret.determine_next_resync(now);
        ret
    }

    fn add(&self, notification: Notification) {
        self.add_ch.send(notification);
    }

    fn pop(&self) {
        let _close = defer(|| self.next_ch.close()); // Tell .run() to stop

        let mut next_ch: Chan<Notification> = Chan::nil();
        let mut notification: Notification = None;
        loop {
            select! {
                send(next_ch, notification) => {
                    // Notification dispatched
                    notification = self.pending_notifications.write(VecDeque::pop_front);
                    if notification.is_none() {
                        // Nothing to pop
                        next_ch = Chan::nil(); // Disable this select case
                    }
                },
                recv(self.add_ch) -> notification_to_add => {
                    let Some(notification_to_add) = notification_to_add else {
                        return;
                    };
                    if notification.is_none() {
                        // No notification to pop (and pendingNotifications is empty)
                        notification = notification_to_add;
                        next_ch = self.next_ch.clone();
                    } else if let Some(n) = notification_to_add {
                        // There is already a notification waiting to be dispatched
                        self.pending_notifications.write(|p| p.push_back(n));
                    }
                },
            }
        }
    }

    fn run(&self) {
        // for next := range p.nextCh
        while let Some(next) = self.next_ch.recv() {
            if let Some(notification) = next {
                self.handler
                    .on_add(notification.new_obj, notification.is_in_initial_list);
            }
        }
    }

    fn should_resync(&self, now: Instant) -> bool {
        self.resync_lock.lock();
        let _unlock = defer(|| self.resync_lock.unlock());

        if self.resync_period.get() == Duration::ZERO {
            return false;
        }

        now >= self.next_resync.get()
    }

    fn determine_next_resync(&self, now: Instant) {
        self.resync_lock.lock();
        let _unlock = defer(|| self.resync_lock.unlock());

        self.next_resync.set(now + self.resync_period.get());
    }
}

/// `*processorListener` as a map key: Go compares the pointers, the kernel the identities.
#[derive(Clone)]
struct ListenerPtr(Arc<ProcessorListener>);

impl ListenerPtr {
    fn id(&self) -> u64 {
        self.0.next_resync.identity()
    }
}

impl PartialEq for ListenerPtr {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for ListenerPtr {}

impl PartialOrd for ListenerPtr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ListenerPtr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.id().cmp(&other.id())
    }
}

/// `wait.Group` (apimachinery): goroutines started with `Start` and waited for with `Wait`.
#[derive(Clone)]
struct Group {
    wg: WaitGroup,
}

impl Group {
    fn new(name: &str) -> Group {
        Group {
            wg: WaitGroup::new().named(name),
        }
    }

    /// `g.Start(f)`; the goroutine is named after `f`.
    #[track_caller]
    fn start(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        self.wg.add(1);
        let wg = self.wg.clone();
        go_named(name, move || {
            let _done = defer(|| wg.done());
            f();
        });
    }

    #[track_caller]
    fn wait(&self) {
        self.wg.wait();
    }
}

/// `sharedProcessor`.
struct SharedProcessor {
    listeners_started: Shared<bool>,
    listeners_lock: RwMutex,
    /// `listenersRCond`, added by the fix over `listenersLock.RLocker()`; made in both
    /// variants, used by the fixed one only.
    listeners_r_cond: Cond<RLocker>,
    /// Map from listeners to whether or not they are currently syncing.
    listeners: GoMap<ListenerPtr, bool>,
    wg: Group,
    variant: Variant,
}

impl SharedProcessor {
    fn new(variant: Variant) -> SharedProcessor {
        let listeners_lock = RwMutex::new().named("p.listenersLock");
        SharedProcessor {
            listeners_started: Shared::new(false).named("p.listenersStarted"),
            listeners_r_cond: Cond::new(&listeners_lock.rlocker()),
            listeners_lock,
            listeners: GoMap::new().named("p.listeners"),
            wg: Group::new("p.wg"),
            variant,
        }
    }

    fn listener_keys(&self) -> Vec<ListenerPtr> {
        self.listeners.with(|m| m.keys().cloned().collect())
    }

    fn add_listener(&self, listener: ListenerPtr) {
        self.listeners_lock.lock();
        let _unlock = defer(|| self.listeners_lock.unlock());

        self.listeners.insert(listener.clone(), true);

        if self.listeners_started.get() {
            self.start_listener(&listener);
        }
    }

    /// `p.wg.Start(listener.run); p.wg.Start(listener.pop)`.
    fn start_listener(&self, listener: &ListenerPtr) {
        let l = listener.0.clone();
        self.wg.start("processorListener.run", move || l.run());
        let l = listener.0.clone();
        self.wg.start("processorListener.pop", move || l.pop());
    }

    fn distribute(&self, obj: AddNotification, sync: bool) {
        self.listeners_lock.rlock();
        let _runlock = defer(|| self.listeners_lock.runlock());

        if self.variant.fixed() {
            // Wait, with the read lock released, until run has started the listeners (or
            // has cleared them on its way out).
            while !self.listeners_started.get() && !self.listeners.is_empty() {
                self.listeners_r_cond.wait();
            }
        }

        let listeners: Vec<(ListenerPtr, bool)> = self
            .listeners
            .with(|m| m.iter().map(|(l, s)| (l.clone(), *s)).collect());
        for (listener, is_syncing) in listeners {
            if !sync {
                // non-sync messages are delivered to every listener
                listener.0.add(Some(obj));
            } else if is_syncing {
                // sync messages are delivered to every syncing listener
                listener.0.add(Some(obj));
            }
            // otherwise: skipping a sync obj for a non-syncing listener
        }
    }

    fn run(&self, ctx: &Context) {
        {
            if self.variant.fixed() {
                // Changing listenersStarted needs a write lock.
                self.listeners_lock.lock();
            } else {
                self.listeners_lock.rlock();
            }
            let _unlock = defer(|| {
                if self.variant.fixed() {
                    self.listeners_lock.unlock();
                } else {
                    self.listeners_lock.runlock();
                }
            });
            for listener in self.listener_keys() {
                self.start_listener(&listener);
            }
            self.listeners_started.set(true);
            if self.variant.fixed() {
                self.listeners_r_cond.signal();
            }
        }
        ctx.done().recv();

        self.listeners_lock.lock();
        let _unlock = defer(|| self.listeners_lock.unlock());
        for listener in self.listener_keys() {
            listener.0.add_ch.close(); // Tell .pop() to stop. .pop() will tell .run() to stop
        }

        // Wipe out list of listeners since they are now closed
        self.listeners.with_mut(|m| m.clear());

        // Reset to false since no listeners are running
        self.listeners_started.set(false);

        if self.variant.fixed() {
            // Wake up sharedProcessor.distribute.
            self.listeners_r_cond.signal();
        }

        self.wg.wait(); // Wait for all .pop() and .run() to stop
    }

    /// Called by the reflector's resync goroutine (`Config.ShouldResync`).
    fn should_resync(&self) -> bool {
        self.listeners_lock.lock();
        let _unlock = defer(|| self.listeners_lock.unlock());

        let mut resync_needed = false;
        let now = time::now();
        for listener in self.listener_keys() {
            let should_resync = listener.0.should_resync(now);
            self.listeners.insert(listener.clone(), should_resync);

            if should_resync {
                resync_needed = true;
                listener.0.determine_next_resync(now);
            }
        }
        resync_needed
    }
}

/// `sharedIndexInformer`, with its `controller` and `Reflector` folded in (see the walkthrough).
struct SharedIndexInformer {
    processor: Arc<SharedProcessor>,
    resync_check_period: Duration,
}

impl SharedIndexInformer {
    /// `NewSharedInformer(source, &v1.Pod{}, 1*time.Second)`.
    fn new(variant: Variant) -> SharedIndexInformer {
        SharedIndexInformer {
            processor: Arc::new(SharedProcessor::new(variant)),
            resync_check_period: RESYNC_CHECK_PERIOD,
        }
    }

    /// `AddEventHandlerWithResyncPeriod` before the informer started: `addListener` only.
    fn add_event_handler_with_resync_period(&self, handler: TestListener, resync_period: Duration) {
        let listener = ProcessorListener::new(handler, resync_period, time::now());
        self.processor.add_listener(ListenerPtr(Arc::new(listener)));
    }

    /// `Run(stopCh)`, that is `RunWithContext` with `stop` as the context's `Done`.
    fn run(&self, stop: &Chan<()>) {
        // Separate stop context because Processor should be stopped strictly after controller.
        let (processor_stop_ctx, stop_processor) = context::with_cancel(&context::background());
        let wg = Group::new("wg");
        let _wait = defer(|| wg.wait()); // Wait for Processor to stop
        let _stop = defer(|| stop_processor.call()); // Tell Processor to stop
        let processor = self.processor.clone();
        wg.start("sharedProcessor.run", move || {
            processor.run(&processor_stop_ctx)
        });

        self.controller_run(stop);
    }

    /// `controller.RunWithContext`: the reflector's resync goroutine, then `processLoop`.
    fn controller_run(&self, stop: &Chan<()>) {
        let wg = Group::new("controller.wg");
        let (processor, stop2, period) = (
            self.processor.clone(),
            stop.clone(),
            self.resync_check_period,
        );
        wg.start("Reflector.startResync", move || {
            start_resync(&processor, &stop2, period)
        });

        self.process_loop(stop);
        wg.wait();
    }

    /// `controller.processLoop` over a queue that holds what the reflector's list put in it.
    fn process_loop(&self, stop: &Chan<()>) {
        let mut queue: VecDeque<&'static str> = VecDeque::from(["pod1", "pod2"]);
        loop {
            select! {
                recv(stop) => return,
                default => {
                    // Pop: an item, or (the queue empty) wait until the queue is closed on
                    // ctx.Done() and return ErrFIFOClosed.
                    let Some(obj) = queue.pop_front() else {
                        stop.recv();
                        return;
                    };
                    self.handle_deltas(obj, true);
                },
            }
        }
    }

    /// `HandleDeltas` of an `Added` delta: `processDeltas` calls `OnAdd`.
    fn handle_deltas(&self, obj: &'static str, is_in_initial_list: bool) {
        self.on_add(obj, is_in_initial_list);
    }

    fn on_add(&self, obj: &'static str, is_in_initial_list: bool) {
        self.processor.distribute(
            AddNotification {
                new_obj: obj,
                is_in_initial_list,
            },
            false,
        );
    }
}

/// `Reflector.startResync`: every `resync_period`, asks `ShouldResync`.
fn start_resync(processor: &SharedProcessor, ctx: &Chan<()>, resync_period: Duration) {
    // resyncChan: r.clock.NewTimer(r.resyncPeriod)
    let mut resync_ch = Timer::new(resync_period);
    loop {
        select! {
            recv(resync_ch.c()) => {},
            recv(ctx) => {
                resync_ch.stop(); // the deferred cleanup()
                return;
            },
        }
        // r.store.Resync() would follow a true answer: listener1 never resyncs.
        processor.should_resync();
        resync_ch.stop(); // cleanup()
        resync_ch = Timer::new(resync_period);
    }
}

/// `testListenerResyncPeriods` as `TestListenerResyncPeriods` runs it against the parent
/// code, with listener1 only and without the checks between start and stop.
fn test_listener_resync_periods(variant: Variant) {
    // create the shared informer and resync every 1s
    let informer = Arc::new(SharedIndexInformer::new(variant));

    // listener 1, never resync
    let listener1 = TestListener::new("listener1");
    informer.add_event_handler_with_resync_period(listener1, Duration::ZERO);

    let wg = Group::new("wg");
    let stop: Chan<()> = Chan::new(0).named("stop");
    {
        let (informer, stop) = (informer.clone(), stop.clone());
        // wg.StartWithChannel(stop, informer.Run)
        wg.start("sharedIndexInformer.Run", move || informer.run(&stop));
    }
    let _stop = defer(|| {
        stop.close();
        wg.wait();
    });

    // time.Sleep(startupDelay) is 0 here. Advance so listener2 gets a resync, then so listener3
    // gets one (each followed upstream by synctest.Wait() and checks, left out here).
    time::sleep(Duration::from_secs(2));
    time::sleep(Duration::from_secs(1));
}
