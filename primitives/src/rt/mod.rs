//! The runtime behind the Go-shaped facade: one execution's books and the rules that keep them.
//!
//! Every Go operation enters the runtime through [`Execution::enter`], which takes the
//! execution's one lock and yields a [`Ctx`]. Under that lock the operation reads and updates
//! the [`Books`] (goroutine table, trace, clocks, timers) and the state of the objects it
//! touches; if it must wait, it queues a [`Waiter`] on the object and [`Ctx::park`]s on its
//! own condition variable until another goroutine [`Books::fire`]s it. Whenever the last
//! runnable goroutine parks or exits, [`Ctx::settle`] decides what happens next: a timer
//! fires, or the execution is over (clean, deadlock or leak).

pub(crate) mod cell;
pub(crate) mod clock;
pub(crate) mod goroutine;
pub(crate) mod progress;
pub(crate) mod race;
pub(crate) mod timer;
pub(crate) mod trace;

use std::any::Any;
use std::fmt::Write as _;
use std::panic::{self, Location};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{self, Current, EngineKind, Parker, RawGuard, RawMutex};
use crate::report::{ExecutionReport, GoroutineInfo, RaceReport, TraceEvent, Verdict};
use cell::{RtCell, RtMut};
use clock::VClock;
pub(crate) use goroutine::{Fired, Gid, Goroutine, Status, Wait, WaitReason, Waiter, MAIN};
use timer::Timers;
use trace::{Event, Op, Phase, Trace};

/// An object's index in its execution (channels, mutexes, variables, ...).
pub(crate) type ObjId = u32;

/// How virtual time advances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// A timer fires only when every goroutine is blocked, earliest first: as if every
    /// operation took no time at all. The native baseline, and the default on `std`.
    Lazy,
    /// A runtime goroutine fires the earliest pending timer at any scheduling point after it
    /// was armed, so a timeout racing a completion is explored both ways. Costs one engine
    /// thread (under loom, one of the five).
    Eager,
}

/// The per-execution settings the runtime obeys.
#[derive(Clone, Debug)]
pub(crate) struct ExecConfig {
    /// The hard cap on Go operations: an execution that reaches it ends undecided
    /// ([`Verdict::BoundReached`]), never with a verdict on the program.
    pub(crate) max_steps: u64,
    /// Steps without progress after which running goroutines are judged a livelock, and steps
    /// after main returned after which goroutines still running are a leak (see `progress.rs`).
    pub(crate) livelock_window: u64,
    /// Timer firings in a row that find the goroutines where they were at an earlier firing,
    /// with nothing changed in between, after which the execution is judged a livelock.
    pub(crate) stale_ticks: u32,
    /// Check `Shared` and `GoMap` accesses against happens-before.
    pub(crate) race_detector: bool,
    /// Keep the trace and the vector clocks; off, only the goroutine table is kept.
    pub(crate) books: bool,
    pub(crate) timers: TimerMode,
    pub(crate) trace_limit: usize,
    /// Seeds the runtime's own choices on `std` (which ready select case to take).
    pub(crate) seed: u64,
}

/// Static facts about an object, kept in the object and copied into the books on first use.
#[derive(Clone, Debug)]
pub(crate) struct ObjMeta {
    pub(crate) id: ObjId,
    /// `chan`, `Mutex`, `RWMutex`, ...
    pub(crate) kind: &'static str,
    /// The name the kernel gave it, if any.
    pub(crate) name: Option<String>,
    pub(crate) created_at: &'static Location<'static>,
}

impl ObjMeta {
    pub(crate) fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{}#{}", self.kind, self.id),
        }
    }
}

/// The failure an execution ended in, recorded by whoever found it.
pub(crate) struct Failure {
    pub(crate) verdict: Verdict,
    pub(crate) message: String,
    pub(crate) dump: String,
    pub(crate) race: Option<RaceReport>,
}

/// The panic payload that unwinds goroutines once the execution is over.
pub(crate) struct Abort;

/// The payload of a Go runtime panic (`send on closed channel`, ...).
pub(crate) struct GoPanic {
    pub(crate) message: String,
    pub(crate) at: &'static Location<'static>,
}

/// Everything the runtime knows about one execution.
pub(crate) struct Books {
    pub(crate) goroutines: Vec<Goroutine>,
    /// Objects by id, filled in when first used.
    pub(crate) objects: Vec<Option<ObjMeta>>,
    /// Go operations so far.
    pub(crate) step: u64,
    pub(crate) trace: Trace,
    /// Virtual time since the execution started.
    pub(crate) now: Duration,
    pub(crate) timers: Timers,
    /// Goroutines of the kernel (not the timer helper) that are runnable; `main` counts until
    /// it returns.
    pub(crate) running: usize,
    /// Threads started by the execution that have not exited (goroutines and the helper).
    pub(crate) live: usize,
    pub(crate) failure: Option<Failure>,
    /// The execution is over: parked goroutines unwind when they wake.
    pub(crate) aborting: bool,
    /// Teardown has begun: the timer helper exits.
    pub(crate) ending: bool,
    pub(crate) main_returned: bool,
    /// The timer helper, once started.
    pub(crate) helper: Option<Gid>,
    /// The runtime's own random state (`std` only).
    pub(crate) rng: u64,
    /// Set when the engine cannot hold the kernel.
    pub(crate) engine_error: Option<String>,
    /// What to do once the lock is released: wake goroutines, start the timer goroutine.
    pub(crate) deferred: Vec<Deferred>,
    /// The goroutine that took the last step, and how many it took in a row.
    pub(crate) last_stepper: Gid,
    pub(crate) streak: u32,
    /// Goroutines of the kernel that have not taken their first step yet.
    pub(crate) unstarted: usize,
    /// Steps that count toward the step bound (see `count_step`).
    pub(crate) bounded_steps: u64,
    /// At the last check, a runnable goroutine had waited long for its turn.
    pub(crate) starving: bool,
    /// Choices Go leaves to chance that loom took by rule instead of branching (see
    /// `Ctx::choose`).
    pub(crate) unexplored_choices: u64,
    /// Whether the goroutines are getting anywhere (livelock detection).
    pub(crate) progress: progress::Progress,
}

/// An action the runtime takes only after releasing the lock. Under shuttle, waking a thread
/// and starting one are scheduling points; outside the lock, no goroutine is ever switched out
/// in the middle of the runtime, which is what lets a woken goroutine resume without
/// re-locking (see `RawGuard::Resumed`). On `std` it spares the woken thread a contended lock.
pub(crate) enum Deferred {
    Wake(Arc<Parker>),
    StartTimerGoroutine(timer::HelperStart),
    /// A goroutine the runtime itself starts (`time.AfterFunc`).
    StartGoroutine(Gid, Arc<Parker>, Box<dyn FnOnce() + Send>),
}

static NEXT_EXECUTION: AtomicU64 = AtomicU64::new(1);

/// One run of a kernel.
pub(crate) struct Execution {
    /// The `Arc` this execution lives in (to start threads from deferred actions).
    me: std::sync::Weak<Execution>,
    /// Unique across the process; objects carry it to catch use in another execution.
    pub(crate) id: u64,
    pub(crate) kind: EngineKind,
    pub(crate) config: ExecConfig,
    lock: RawMutex,
    books: RtCell<Books>,
    next_obj: AtomicU32,
    /// Join handles of the `std` threads the execution started.
    handles: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Proof that the execution's lock is held, and who holds it.
pub(crate) struct Ctx<'e> {
    pub(crate) exec: &'e Execution,
    guard: Option<RawGuard<'e>>,
    pub(crate) gid: Gid,
    /// The source line of the operation in progress.
    pub(crate) at: &'static Location<'static>,
    /// The goroutine has run long enough: it gives way once it releases the lock (preemption:
    /// on `std` it hands the lock to a waiting thread, everywhere it yields).
    preempt: Option<()>,
}

/// Steps a goroutine may take in a row before it is preempted (and, below, steps a runnable
/// goroutine may wait for its turn before whoever runs yields to it). Go's scheduler preempts a goroutine
/// that runs for about 10 ms without blocking, so a busy loop (or a loop fed by a timer) cannot
/// keep a runnable goroutine from running; loom and shuttle schedule cooperatively and would
/// explore exactly that starvation. A yield gives the others their turn (and, with lazy
/// timers, a long run of the only runnable goroutine lets time pass). The schedules these
/// yields leave out are the unfair ones, which Go's scheduler does not produce.
const PREEMPT_STEPS: u32 = 256;

/// Steps a runnable goroutine may wait for its turn before whoever runs yields to it.
const STARVE_STEPS: u32 = 32;

impl Execution {
    pub(crate) fn new(
        kind: EngineKind,
        config: ExecConfig,
        main_at: &'static Location<'static>,
        main_parker: Arc<Parker>,
    ) -> Self {
        let id = NEXT_EXECUTION.fetch_add(1, Ordering::Relaxed);
        let mut clock = VClock::default();
        clock.tick(MAIN);
        let main = Goroutine {
            name: "main".to_string(),
            created_at: main_at,
            system: false,
            status: Status::Runnable,
            parker: main_parker,
            token: 0,
            fired: None,
            clock,
            deposit: None,
            last_step: 0,
            selects: 0,
            steps: 0,
        };
        let books = Books {
            goroutines: vec![main],
            objects: Vec::new(),
            step: 0,
            trace: Trace::new(config.trace_limit, config.books),
            now: Duration::ZERO,
            timers: Timers::default(),
            running: 1,
            live: 0,
            failure: None,
            aborting: false,
            ending: false,
            main_returned: false,
            helper: None,
            rng: config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            engine_error: None,
            deferred: Vec::new(),
            last_stepper: MAIN,
            streak: 0,
            unstarted: 0,
            bounded_steps: 0,
            starving: false,
            unexplored_choices: 0,
            progress: progress::Progress::default(),
        };
        Execution {
            me: std::sync::Weak::new(),
            id,
            kind,
            lock: RawMutex::new(kind),
            books: RtCell::new(id, books),
            next_obj: AtomicU32::new(0),
            handles: std::sync::Mutex::new(Vec::new()),
            config,
        }
    }

    /// A fresh object id.
    pub(crate) fn new_obj(
        &self,
        kind: &'static str,
        created_at: &'static Location<'static>,
    ) -> ObjMeta {
        ObjMeta {
            id: self.next_obj.fetch_add(1, Ordering::Relaxed),
            kind,
            name: None,
            created_at,
        }
    }

    /// Starts a Go operation at `at` by the goroutine running on this thread.
    ///
    /// Unwinds the goroutine if the execution is already over, and ends the execution as a
    /// livelock (or leak) when the step bound runs out.
    #[inline]
    pub(crate) fn enter(&self, at: &'static Location<'static>) -> Ctx<'_> {
        let gid = self.current_gid(at);
        let mut cx = self.enter_as(gid, at);
        if !cx.count_step() {
            cx.unwind();
        }
        cx
    }

    /// Takes the lock on behalf of `gid` without counting a step.
    pub(crate) fn enter_as(&self, gid: Gid, at: &'static Location<'static>) -> Ctx<'_> {
        Ctx {
            exec: self,
            guard: Some(self.lock.lock()),
            gid,
            at,
            preempt: None,
        }
    }

    /// The goroutine this thread runs in this execution; panics with the reason otherwise.
    fn current_gid(&self, at: &'static Location<'static>) -> Gid {
        engine::with_current(|c| match c {
            Some(c) if std::ptr::eq(Arc::as_ptr(&c.exec), self) => c.gid,
            Some(_) => panic!(
                "primitives: the object used at {} was made in another execution; \
                 objects belong to the execution that made them",
                Site(at)
            ),
            None => panic!(
                "primitives: Go operation at {} outside an execution; \
                 run kernels through primitives::explore",
                Site(at)
            ),
        })
    }
}

/// The execution the calling goroutine belongs to; panics outside any execution.
#[track_caller]
pub(crate) fn current_exec() -> Arc<Execution> {
    let at = Location::caller();
    engine::with_current(|c| match c {
        Some(c) => c.exec.clone(),
        None => panic!(
            "primitives: Go primitive used at {} outside an execution; \
             run kernels through primitives::explore",
            Site(at)
        ),
    })
}

impl<'e> Ctx<'e> {
    /// The books, for as long as this borrow lives.
    #[inline]
    pub(crate) fn books(&self) -> RtMut<'_, Books> {
        self.exec.books.borrow(self)
    }

    /// Counts one step; `false` when the execution is over and the goroutine must unwind.
    pub(crate) fn count_step(&mut self) -> bool {
        let mut b = self.books();
        if b.aborting {
            return false;
        }
        b.step += 1;
        if b.last_stepper == self.gid {
            b.streak += 1;
        } else {
            b.last_stepper = self.gid;
            b.streak = 1;
        }
        let gid = self.gid;
        let step = b.step;
        b.goroutines[gid].last_step = step;
        b.goroutines[gid].steps += 1;
        if b.goroutines[gid].steps == 1 && !b.goroutines[gid].system && gid != MAIN {
            b.unstarted -= 1;
        }
        // Steps taken while a goroutine's thread is still starting, or (on std) while a runnable
        // goroutine waits for the operating system to run it, do not count toward the step
        // bound: a loop waiting for such a goroutine is not a livelock, only early.
        if b.unstarted == 0 && !(self.exec.kind == crate::engine::EngineKind::Std && b.starving) {
            b.bounded_steps += 1;
        }
        if b.helper.is_some()
            && b.goroutines[gid].steps % timer::TICK_STEPS == 0
            && b.timers.ticking()
        {
            // A ticker's next tick may have been waiting for this goroutine to run a while.
            b.wake_helper();
        }
        // Preempted after a long run while others could run, or when another goroutine has
        // waited long for its turn (checked every few steps: it is a scan of the table).
        let long_run = b.streak >= PREEMPT_STEPS;
        if long_run {
            b.streak = 0;
            if self.exec.config.timers == TimerMode::Lazy && b.running <= 1 {
                // Nothing else can run: the poller's time passes.
                if let Some(t) = b.timers.next_due(self, &b.goroutines) {
                    self.fire_timer(&mut b, t);
                }
            }
        }
        let others = b.running > 1 || b.helper.is_some();
        let starving = if others && step % 8 == 0 {
            b.goroutines
                .iter()
                .enumerate()
                .find(|(i, g)| {
                    *i != gid
                        && !g.system
                        && matches!(g.status, Status::Runnable)
                        && step - g.last_step > u64::from(STARVE_STEPS)
                })
                .map(|_| ())
        } else {
            None
        };
        if step % 8 == 0 {
            b.starving = starving.is_some();
        }
        let preempt = starving.or((long_run && others).then_some(()));
        if let Some((verdict, message)) =
            b.progress
                .judge(b.bounded_steps, b.main_returned, &self.exec.config)
        {
            self.fail(&mut b, verdict, message, None);
            return false;
        }
        drop(b);
        if preempt.is_some() {
            self.preempt = preempt;
        }
        true
    }

    /// Releases the lock and unwinds this goroutine: the execution is over.
    pub(crate) fn unwind(&mut self) -> ! {
        self.release();
        panic::resume_unwind(Box::new(Abort))
    }

    /// Raises a Go runtime panic (`send on closed channel`, ...) in this goroutine.
    pub(crate) fn go_panic(&mut self, message: impl Into<String>) -> ! {
        let at = self.at;
        {
            let mut b = self.books();
            let step = b.step;
            let g = self.gid;
            b.trace.push(Event {
                step,
                g,
                op: Op::Panic,
                obj: None,
                arg: 0,
                at,
                phase: Phase::Done,
            });
        }
        self.release();
        engine::with_current(|c| {
            if let Some(c) = c {
                c.go_panicking.set(true);
            }
        });
        panic::resume_unwind(Box::new(GoPanic {
            message: message.into(),
            at,
        }))
    }

    /// Records a completed (or blocking) operation of this goroutine in the trace.
    #[inline]
    pub(crate) fn event(&self, b: &mut Books, op: Op, obj: Option<&ObjMeta>, arg: i64) {
        self.event_phase(b, op, obj, arg, Phase::Done);
    }

    pub(crate) fn event_phase(
        &self,
        b: &mut Books,
        op: Op,
        obj: Option<&ObjMeta>,
        arg: i64,
        phase: Phase,
    ) {
        b.progress.saw(op, arg, phase, b.bounded_steps);
        if !b.trace.on {
            return;
        }
        if let Some(meta) = obj {
            b.note(meta);
        }
        let step = b.step;
        b.trace.push(Event {
            step,
            g: self.gid,
            op,
            obj: obj.map(|m| m.id),
            arg,
            at: self.at,
            phase,
        });
    }

    /// This goroutine's next waiter: queue it on an object, then [`Ctx::park`].
    pub(crate) fn waiter(&self, b: &mut Books, case: usize) -> Waiter {
        let g = &mut b.goroutines[self.gid];
        Waiter {
            g: self.gid,
            token: g.token + 1,
            case,
        }
    }

    /// Parks this goroutine until another fires it; returns how its operation completed.
    ///
    /// `waiter` must have come from [`Ctx::waiter`] and be queued wherever a completion can
    /// come from. A goroutine that queued nowhere (a nil channel) parks forever.
    pub(crate) fn park(&mut self, reason: WaitReason, obj: Option<&ObjMeta>, op: Op) -> Fired {
        {
            let mut b = self.books();
            let gid = self.gid;
            let since = b.step;
            let g = &mut b.goroutines[gid];
            g.token += 1;
            g.fired = None;
            g.status = Status::Blocked(Wait {
                reason,
                obj: obj.map(|m| m.id),
                at: self.at,
                since,
            });
            if !g.system {
                b.running -= 1;
            }
            if b.helper.is_some() && b.timers.ticking() {
                // A ticker's next tick may have been waiting for this goroutine to block.
                b.wake_helper();
            }
            self.event_phase(&mut b, op, obj, 0, Phase::Blocked);
            self.settle(&mut b);
        }
        self.wait_until_fired()
    }

    /// Releases the lock (and runs the deferred actions) until `parker` is notified (or wakes
    /// spuriously), then holds the runtime again.
    pub(crate) fn wait_on(&mut self, parker: &Parker) {
        let deferred = self.take_deferred();
        let guard = self
            .guard
            .take()
            .expect("a waiting goroutine holds the lock");
        self.guard = Some(parker.wait(guard, deferred, &self.exec.lock, |d| {
            self.exec.run_deferred(d)
        }));
    }

    fn take_deferred(&self) -> Vec<Deferred> {
        if self.guard.is_none() {
            return Vec::new();
        }
        std::mem::take(&mut self.books().deferred)
    }

    /// Releases the lock, then runs the deferred actions.
    fn release(&mut self) {
        let deferred = self.take_deferred();
        let preempt = self.preempt.take().is_some() && !std::thread::panicking();
        match self.guard.take() {
            Some(g) if preempt => g.release_fairly(),
            g => drop(g),
        }
        self.exec.run_deferred(deferred);
        if preempt {
            crate::engine::yield_now(self.exec.kind);
        }
    }

    /// Waits on this goroutine's condition variable until it is fired (or the execution ends).
    fn wait_until_fired(&mut self) -> Fired {
        loop {
            let parker = {
                let mut b = self.books();
                let gid = self.gid;
                let g = &mut b.goroutines[gid];
                if let Some(fired) = g.fired.take() {
                    if let Some(deposit) = g.deposit.take() {
                        g.clock.join(&deposit);
                    }
                    // Its clock as it parked may have been published (a buffered slot, a
                    // receive): what it does from here on is not covered by that.
                    g.clock.tick(gid);
                    drop(b);
                    // Resuming is a step of its own: the trace shows the operation completing
                    // where the goroutine runs again, after whatever ran in between.
                    if !self.count_step() {
                        self.unwind();
                    }
                    return fired;
                }
                let parker = g.parker.clone();
                if b.aborting {
                    drop(b);
                    self.unwind();
                }
                parker
            };
            self.wait_on(&parker);
        }
    }

    /// Called whenever a goroutine of the kernel stops being runnable: when none is left,
    /// fires timers (lazy mode), wakes the timer helper (eager mode), or ends the execution.
    pub(crate) fn settle(&self, b: &mut Books) {
        if b.running > 0 || b.aborting {
            return;
        }
        match self.exec.config.timers {
            TimerMode::Lazy => {
                while let Some(t) = b.timers.next_due(self, &b.goroutines) {
                    self.fire_timer(b, t);
                    if b.running > 0 {
                        return;
                    }
                }
            }
            TimerMode::Eager => {
                if b.timers.has_due(self, &b.goroutines) {
                    b.wake_helper();
                    return;
                }
            }
        }
        if b.main_returned {
            let unfinished = b.unfinished();
            if unfinished == 0 {
                // Clean: main is waiting for this.
                b.wake(MAIN);
            } else {
                let message = format!(
                    "{} goroutine{} still blocked after main returned",
                    unfinished,
                    if unfinished == 1 { " is" } else { "s are" }
                );
                self.fail(b, Verdict::Leak, message, None);
            }
        } else {
            self.fail(
                b,
                Verdict::Deadlock,
                "all goroutines are asleep - deadlock!".to_string(),
                None,
            );
        }
    }

    /// Ends the execution with `verdict` (the first failure wins) and wakes everyone so the
    /// goroutines unwind.
    pub(crate) fn fail(
        &self,
        b: &mut Books,
        verdict: Verdict,
        message: String,
        race: Option<RaceReport>,
    ) {
        if b.failure.is_none() {
            let dump = b.render_dump(Some((self.gid, self.at)));
            b.failure = Some(Failure {
                verdict,
                message,
                dump,
                race,
            });
        }
        b.abort();
    }
}

impl Drop for Ctx<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Execution {
    /// Runs actions deferred until the lock was released.
    fn run_deferred(&self, deferred: Vec<Deferred>) {
        for d in deferred {
            match d {
                Deferred::Wake(parker) => parker.notify(),
                Deferred::StartTimerGoroutine(start) => {
                    let me = self
                        .me
                        .upgrade()
                        .expect("an execution outlives its operations");
                    timer::start_timer_goroutine(&me, start);
                }
                Deferred::StartGoroutine(gid, parker, f) => {
                    let me = self
                        .me
                        .upgrade()
                        .expect("an execution outlives its operations");
                    start_thread(&me, gid, parker, f);
                }
            }
        }
    }
}

impl Books {
    /// Copies an object's facts into the books the first time the object is used.
    pub(crate) fn note(&mut self, meta: &ObjMeta) {
        let i = meta.id as usize;
        if self.objects.len() <= i {
            self.objects.resize(i + 1, None);
        }
        if self.objects[i].is_none() {
            self.objects[i] = Some(meta.clone());
        }
    }

    pub(crate) fn label(&self, obj: ObjId) -> String {
        match self.objects.get(obj as usize) {
            Some(Some(meta)) => meta.label(),
            _ => format!("object#{obj}"),
        }
    }

    /// An object as a dump names it: its name, or its kind and where it was made.
    pub(crate) fn describe(&self, obj: ObjId) -> String {
        match self.objects.get(obj as usize) {
            Some(Some(meta)) if meta.name.is_some() => format!("{} {}", meta.kind, meta.label()),
            Some(Some(meta)) => format!("{} made at {}", meta.label(), Site(meta.created_at)),
            _ => format!("object#{obj}"),
        }
    }

    /// Whether `w` still stands for a park of its goroutine that nobody has completed.
    #[inline]
    pub(crate) fn is_waiting(&self, w: Waiter) -> bool {
        let g = &self.goroutines[w.g];
        g.token == w.token && g.fired.is_none() && matches!(g.status, Status::Blocked(_))
    }

    /// Completes the parked operation of `w`'s goroutine and makes it runnable. `deposit` is a
    /// clock it joins when it resumes (the waker's release). The caller checked `is_waiting`.
    pub(crate) fn fire(&mut self, w: Waiter, fired: Fired, deposit: Option<&VClock>) {
        let g = &mut self.goroutines[w.g];
        debug_assert!(g.token == w.token && g.fired.is_none());
        g.fired = Some(fired);
        g.status = Status::Runnable;
        if let Some(c) = deposit {
            match &mut g.deposit {
                Some(d) => d.join(c),
                None => g.deposit = Some(c.clone()),
            }
        }
        let parker = g.parker.clone();
        let system = g.system;
        self.deferred.push(Deferred::Wake(parker));
        if !system {
            self.running += 1;
        }
    }

    /// The first still-valid waiter of `queue`, removed from it.
    pub(crate) fn pop_waiter(
        &self,
        queue: &mut std::collections::VecDeque<Waiter>,
    ) -> Option<Waiter> {
        while let Some(w) = queue.pop_front() {
            if self.is_waiting(w) {
                return Some(w);
            }
        }
        None
    }

    /// Marks the execution over and wakes every goroutine that could be waiting.
    pub(crate) fn abort(&mut self) {
        self.aborting = true;
        for i in 0..self.goroutines.len() {
            if !matches!(self.goroutines[i].status, Status::Finished) {
                self.wake(i);
            }
        }
    }

    /// Wakes goroutine `g` (once the lock is released) to look at the books again.
    pub(crate) fn wake(&mut self, g: Gid) {
        let parker = self.goroutines[g].parker.clone();
        self.deferred.push(Deferred::Wake(parker));
    }

    pub(crate) fn wake_helper(&mut self) {
        if let Some(h) = self.helper {
            self.wake(h);
        }
    }

    /// Goroutines of the kernel, other than main, that have not finished.
    pub(crate) fn unfinished(&self) -> usize {
        self.goroutines
            .iter()
            .skip(1)
            .filter(|g| !g.system && !matches!(g.status, Status::Finished))
            .count()
    }

    /// A uniformly random index below `n`, from the runtime's own generator (`std`).
    pub(crate) fn random(&mut self, n: usize) -> usize {
        // xorshift64*: fast, and good enough to pick among a handful of ready cases.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    /// The goroutine dump: one entry per goroutine, blocked ones with their wait and line.
    /// `failing` is the goroutine that found the failure and where, shown as running.
    pub(crate) fn render_dump(&self, failing: Option<(Gid, &'static Location<'static>)>) -> String {
        let mut out = String::new();
        let mut order: Vec<Gid> = (0..self.goroutines.len()).collect();
        // Go lists live goroutines; finished ones go last so the interesting ones lead.
        order.sort_by_key(|&i| matches!(self.goroutines[i].status, Status::Finished));
        for i in order {
            let g = &self.goroutines[i];
            let _ = write!(out, "goroutine {i} \"{}\"", g.name);
            match &g.status {
                Status::Blocked(w) => {
                    let _ = writeln!(out, " [{}]:", w.reason);
                    let on = w
                        .obj
                        .map(|o| format!(" on {}", self.describe(o)))
                        .unwrap_or_default();
                    let _ = writeln!(out, "\t{} (blocked since step {}{on})", Site(w.at), w.since);
                }
                Status::Runnable => {
                    let state = if failing.map(|f| f.0) == Some(i) {
                        "running"
                    } else {
                        "runnable"
                    };
                    let _ = writeln!(out, " [{state}]:");
                    if let Some((_, at)) = failing.filter(|f| f.0 == i) {
                        let _ = writeln!(out, "\t{}", Site(at));
                    }
                }
                Status::Returned => {
                    let _ = writeln!(out, " [returned]");
                }
                Status::Finished => {
                    let _ = writeln!(out, " [finished]");
                }
            }
            if g.system {
                // The helper is the runtime's; say so rather than let it pass for the kernel's.
                let _ = writeln!(out, "\t(runtime timer goroutine)");
            } else if i != MAIN {
                let _ = writeln!(out, "\tcreated at {}", Site(g.created_at));
            }
        }
        out
    }

    fn goroutine_infos(&self) -> Vec<GoroutineInfo> {
        self.goroutines
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let (state, blocked_at) = match &g.status {
                    Status::Runnable => ("runnable".to_string(), None),
                    Status::Returned => ("returned".to_string(), None),
                    Status::Finished => ("finished".to_string(), None),
                    Status::Blocked(w) => (w.reason.to_string(), Some(Site(w.at).to_string())),
                };
                GoroutineInfo {
                    id: i,
                    name: g.name.clone(),
                    created_at: Site(g.created_at).to_string(),
                    state,
                    blocked_at,
                    system: g.system,
                }
            })
            .collect()
    }

    fn trace_events(&self) -> Vec<TraceEvent> {
        self.trace
            .events
            .iter()
            .map(|e| TraceEvent {
                step: e.step,
                g: e.g,
                op: e.op.name(e.arg),
                obj: e.obj.map(|o| self.label(o)),
                at: match e.op {
                    Op::Exit | Op::Return => String::new(),
                    _ => Site(e.at).to_string(),
                },
                blocked: e.phase == Phase::Blocked,
                blocking_kind: e.op.can_block(),
                detail: match e.op {
                    Op::Go => Some(format!("starts goroutine {}", e.arg)),
                    Op::Select if e.phase == Phase::Done => Some("default".to_string()),
                    Op::Recv | Op::SelectRecv if e.arg == -2 => Some("closed".to_string()),
                    Op::WgAdd if e.arg != -1 => Some(format!("delta {}", e.arg)),
                    Op::TryLock => Some(if e.arg == 1 { "acquired" } else { "busy" }.to_string()),
                    Op::Rand => Some(format!("drew {}", e.arg)),
                    _ => None,
                },
            })
            .collect()
    }
}

/// Runs `kernel` as the main goroutine of a new execution on the calling thread (which, for
/// loom and shuttle, is already inside the engine's execution) and reports how it ended.
pub(crate) fn run_execution(
    kind: EngineKind,
    config: ExecConfig,
    kernel: &(dyn Fn() + Send + Sync),
    main_at: &'static Location<'static>,
) -> ExecutionReport {
    let parker = Arc::new(Parker::new(kind));
    parker.bind_current();
    let exec = Arc::new_cyclic(|me| Execution {
        me: me.clone(),
        ..Execution::new(kind, config, main_at, parker)
    });
    engine::set_current(kind, Some(Current::new(exec.clone(), MAIN)));
    let result = panic::catch_unwind(panic::AssertUnwindSafe(kernel)).map_err(settle_unwind);
    let report = finish_main(&exec, result);
    engine::set_current(kind, None);
    report
}

/// Starts a goroutine running `f`.
pub(crate) fn spawn_goroutine(
    name: Option<String>,
    at: &'static Location<'static>,
    f: Box<dyn FnOnce() + Send>,
) {
    let exec = current_exec();
    let mut cx = exec.enter(at);
    let added = {
        let mut b = cx.books();
        let parent_clock = cx.release_clock(&mut b);
        cx.add_goroutine(&mut b, name, parent_clock)
    };
    let Some((child, parker)) = added else {
        cx.unwind()
    };
    drop(cx);
    start_thread(&exec, child, parker, f);
}

impl Ctx<'_> {
    /// A choice among `n` alternatives that Go leaves to chance: which ready `select` case
    /// runs, which of a parked `select`'s cases on one channel a partner completes, what
    /// `rand.Intn` draws. shuttle's scheduler makes it (it is part of the schedule, so a replay
    /// makes it again); `std` draws it from the execution's seeded generator. loom cannot branch
    /// on a value (loom#84): there `loom_rule` decides, deterministically, and the books count
    /// the choice as one loom's search did not explore, so reports can say which bugs loom's
    /// answer depends on such a rule for.
    pub(crate) fn choose(&self, n: usize, loom_rule: impl FnOnce(&mut Books) -> usize) -> usize {
        if n <= 1 {
            return 0;
        }
        match self.exec.kind {
            EngineKind::Std => self.books().random(n),
            EngineKind::Loom => {
                let mut b = self.books();
                b.unexplored_choices += 1;
                loom_rule(&mut b) % n
            }
            kind => engine::scheduler_choice(kind, n).expect("shuttle's scheduler chooses"),
        }
    }

    /// Adds a goroutine of the kernel to the table, runnable, started by this goroutine (or by
    /// the runtime, for `time.AfterFunc`) whose clock at the `go` statement was `parent_clock`.
    /// `None` (and the execution fails) when the engine cannot hold another thread.
    pub(crate) fn add_goroutine(
        &self,
        b: &mut Books,
        name: Option<String>,
        parent_clock: VClock,
    ) -> Option<(Gid, Arc<Parker>)> {
        let child = b.goroutines.len();
        if self.exec.kind == EngineKind::Loom && child >= loom::MAX_THREADS {
            let message = format!(
                "loom holds at most {} threads (main and {} goroutines); this kernel starts more",
                loom::MAX_THREADS,
                loom::MAX_THREADS - 1
            );
            b.engine_error = Some(message.clone());
            self.fail(b, Verdict::Panic, message, None);
            return None;
        }
        let mut clock = parent_clock;
        clock.tick(child);
        let parker = Arc::new(Parker::new(self.exec.kind));
        b.goroutines.push(Goroutine {
            name: name.unwrap_or_else(|| format!("g{child}")),
            created_at: self.at,
            system: false,
            status: Status::Runnable,
            parker: parker.clone(),
            token: 0,
            fired: None,
            clock,
            deposit: None,
            last_step: b.step,
            selects: 0,
            steps: 0,
        });
        b.running += 1;
        b.live += 1;
        b.unstarted += 1;
        self.event(b, Op::Go, None, child as i64);
        Some((child, parker))
    }
}

/// Starts the engine thread of goroutine `gid` (already in the table, with `parker`).
pub(crate) fn start_thread(
    exec: &Arc<Execution>,
    gid: Gid,
    parker: Arc<Parker>,
    f: Box<dyn FnOnce() + Send>,
) {
    let kind = exec.kind;
    let thread_exec = exec.clone();
    let name = format!("goroutine-{gid}");
    let handle = engine::spawn(kind, &name, move || {
        if kind == EngineKind::Std {
            engine::set_active_engine(Some(EngineKind::Std));
        }
        engine::set_current(kind, Some(Current::new(thread_exec.clone(), gid)));
        parker.bind_current();
        let result = panic::catch_unwind(panic::AssertUnwindSafe(f)).map_err(settle_unwind);
        goroutine_exit(&thread_exec, gid, result);
        engine::set_current(kind, None);
        if kind == EngineKind::Std {
            engine::set_active_engine(None);
        }
    });
    if let Some(h) = handle {
        exec.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(h);
    }
}

/// Books the end of a goroutine: a panic fails the execution; the last one out wakes main.
fn goroutine_exit(exec: &Execution, gid: Gid, result: Result<(), Box<dyn Any + Send>>) {
    let cx = exec.enter_as(gid, Location::caller());
    let mut b = cx.books();
    match result {
        Ok(()) => {
            if !b.aborting {
                b.step += 1;
                cx.event(&mut b, Op::Exit, None, 0);
            }
        }
        Err(payload) => record_panic(&cx, &mut b, payload),
    }
    let g = &mut b.goroutines[gid];
    let was_runnable = matches!(g.status, Status::Runnable);
    let system = g.system;
    let never_stepped = g.steps == 0;
    g.steps += 1;
    g.status = Status::Finished;
    if was_runnable && !system {
        b.running -= 1;
    }
    if never_stepped && !system {
        b.unstarted -= 1;
    }
    b.live -= 1;
    // main may be waiting for this goroutine, for all of them, or for the execution to settle.
    b.wake(MAIN);
    cx.settle(&mut b);
}

/// Whether the calling goroutine is unwinding a Go panic (its deferred calls run then).
pub(crate) fn go_panicking() -> bool {
    engine::with_current(|c| c.is_some_and(|c| c.go_panicking.get()))
}

/// Keeps a panic raised by a deferred call while the goroutine unwinds a Go panic: it cannot
/// unwind from inside the unwinding, and replaces the panic in flight once that is caught.
pub(crate) fn replace_panic(payload: Box<dyn Any + Send>) {
    engine::with_current(|c| {
        if let Some(c) = c {
            *c.replaced.borrow_mut() = Some(payload);
        }
    });
}

/// The payload a caught unwinding ends with (a replacement raised by a deferred call, if any);
/// the goroutine is no longer panicking.
pub(crate) fn settle_unwind(payload: Box<dyn Any + Send>) -> Box<dyn Any + Send> {
    engine::with_current(|c| match c {
        Some(c) => {
            c.go_panicking.set(false);
            c.replaced.borrow_mut().take().unwrap_or(payload)
        }
        None => payload,
    })
}

/// Turns a goroutine's unwinding payload into the execution's failure (unless it is `Abort`).
fn record_panic(cx: &Ctx<'_>, b: &mut Books, payload: Box<dyn Any + Send>) {
    if payload.is::<Abort>() {
        return;
    }
    let name = b.goroutines[cx.gid].name.clone();
    let (verdict, message, at) = match payload.downcast::<GoPanic>() {
        Ok(p) => (Verdict::Panic, p.message, Some(Site(p.at).to_string())),
        Err(payload) => {
            let caught = crate::explore::take_panic();
            let message = caught
                .as_ref()
                .map(|c| c.message.clone())
                .unwrap_or_else(|| payload_message(&*payload));
            let verdict = if message.starts_with("assertion") {
                Verdict::Assert
            } else {
                Verdict::Panic
            };
            (verdict, message, caught.and_then(|c| c.location))
        }
    };
    let at = at.map(|a| format!(" at {a}")).unwrap_or_default();
    let message = format!("panic: {message} [goroutine {} \"{name}\"{at}]", cx.gid);
    cx.fail(b, verdict, message, None);
}

/// The text of a panic payload, as the default hook would print it.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// Main has returned (or unwound): judge the execution, tear it down, and write the report.
fn finish_main(exec: &Arc<Execution>, result: Result<(), Box<dyn Any + Send>>) -> ExecutionReport {
    let mut cx = exec.enter_as(MAIN, Location::caller());
    {
        let mut b = cx.books();
        match result {
            Ok(()) => {
                if !b.aborting {
                    b.step += 1;
                    cx.event(&mut b, Op::Return, None, 0);
                }
            }
            Err(payload) => record_panic(&cx, &mut b, payload),
        }
        if matches!(b.goroutines[MAIN].status, Status::Runnable) {
            b.running -= 1;
        }
        b.goroutines[MAIN].status = Status::Returned;
        b.main_returned = true;
        let now = b.bounded_steps;
        b.progress.main_returned(now);
    }
    // Let the others run to their end: clean if they all finish, a leak if they block for good.
    loop {
        let parker = {
            let mut b = cx.books();
            if b.aborting || b.unfinished() == 0 {
                break;
            }
            cx.settle(&mut b);
            if b.aborting {
                break;
            }
            b.goroutines[MAIN].parker.clone()
        };
        cx.wait_on(&parker);
    }
    // Teardown: blocked goroutines unwind, the helper exits; wait until every thread is gone.
    loop {
        let parker = {
            let mut b = cx.books();
            if !b.ending {
                b.ending = true;
                b.abort();
            }
            if b.live == 0 {
                break;
            }
            b.goroutines[MAIN].parker.clone()
        };
        cx.wait_on(&parker);
    }
    let report = {
        let mut b = cx.books();
        // Timers hold channels and contexts, which hold the execution: break the cycle.
        b.timers.clear();
        b.report()
    };
    drop(cx);
    let handles = std::mem::take(
        &mut *exec
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for h in handles {
        // The thread has booked its exit; joining only reaps it.
        let _ = h.join();
    }
    report
}

impl Books {
    fn report(&mut self) -> ExecutionReport {
        let (verdict, message, dump, race) = match self.failure.take() {
            Some(f) => (f.verdict, f.message, f.dump, f.race),
            None => (Verdict::Clean, String::new(), String::new(), None),
        };
        // A clean execution's trace is read by nobody; rendering it is most of an execution's
        // cost on the model checkers, so only failures carry theirs.
        let failed = verdict.is_failure() || self.engine_error.is_some();
        ExecutionReport {
            verdict,
            message,
            dump,
            trace: if failed {
                self.trace_events()
            } else {
                Vec::new()
            },
            trace_dropped: self.trace.dropped,
            goroutines: self.goroutine_infos(),
            steps: self.step,
            virtual_time: self.now,
            race,
            engine_error: self.engine_error.take(),
            unexplored_choices: self.unexplored_choices,
        }
    }
}

/// A source location as reports show it: `file:line:col`, the file relative to the workspace
/// root (kernels compiled from absolute paths would otherwise name this machine's folders).
pub(crate) struct Site(pub(crate) &'static Location<'static>);

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = workspace_relative(self.0.file());
        write!(f, "{file}:{}:{}", self.0.line(), self.0.column())
    }
}

/// A panic hook's location, shown like a [`Site`].
pub(crate) fn site_of(file: &str, line: u32) -> String {
    format!("{}:{line}", workspace_relative(file))
}

/// `file` with the workspace root taken off its front, when it lies below the root.
fn workspace_relative(file: &str) -> &str {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|p| p.to_str())
        .unwrap_or("");
    file.strip_prefix(root)
        .map(|f| f.trim_start_matches('/'))
        .unwrap_or(file)
}
