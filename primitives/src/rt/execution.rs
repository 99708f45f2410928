//! An execution's life: its start, its goroutines' threads, main's end, and its report.

use std::any::Any;
use std::panic::{self, Location};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::cell::RtCell;
use super::clock::VClock;
use super::timer::{self, Timers};
use super::trace::{Op, Trace};
use super::verdict::record_panic;
use super::{
    goexit_is_normal_end, settle_unwind, Books, Ctx, ExecConfig, Gid, Goroutine, ObjMeta, Site,
    Status, MAIN,
};
use crate::engine::{self, Current, EngineKind, Parker, RawGuard, RawMutex};
use crate::report::ExecutionReport;

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

pub(super) static NEXT_EXECUTION: AtomicU64 = AtomicU64::new(1);

/// One run of a kernel.
pub(crate) struct Execution {
    /// The `Arc` this execution lives in (to start threads from deferred actions).
    pub(super) me: std::sync::Weak<Execution>,
    /// Unique across the process; objects carry it to catch use in another execution.
    pub(crate) id: u64,
    pub(crate) kind: EngineKind,
    pub(crate) config: ExecConfig,
    pub(super) lock: RawMutex,
    pub(super) books: RtCell<Books>,
    pub(super) next_obj: AtomicU32,
    /// Join handles of the `std` threads the execution started.
    pub(super) handles: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

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
            name: None,
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
            select_objs: Vec::new(),
            steps: 0,
        };
        // Room for a kernel's usual few goroutines and objects, so that the books of a short
        // execution are not reallocated as it goes (they are built for every execution).
        let mut goroutines = Vec::with_capacity(8);
        goroutines.push(main);
        let books = Books {
            goroutines,
            objects: Vec::with_capacity(16),
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
            progress: super::progress::Progress::default(),
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

    /// [`Self::enter`] for a plain memory access (a `Shared` or a `GoMap`): with the race detector
    /// on, no scheduling point of its own under shuttle, nor under loom after a Go operation (see
    /// [`engine::RawMutex::lock_plain`]; std takes the lock as ever). The detector is exact (see
    /// [`super::race`]): an execution in which two conflicting plain accesses are unordered by
    /// happens-before is reported as a race whatever their order, and in one where every
    /// conflicting pair is ordered, switching at a plain access only reorders accesses that no
    /// other goroutine can tell apart. So switching at synchronizing operations alone loses no
    /// failure (the argument of CHESS's iterative context bounding, Musuvathi and Qadeer, PLDI
    /// 2007): loom's search and shuttle-dfs's rounds are smaller, and PCT's change points and the
    /// random walks' choices all fall where they can matter. Without the detector a racy access's
    /// order is what the kernel explores, so each access stays a point.
    pub(crate) fn enter_plain(&self, at: &'static Location<'static>) -> Ctx<'_> {
        if !self.config.race_detector {
            return self.enter(at);
        }
        let gid = self.current_gid(at);
        let mut cx = self.ctx(self.lock.lock_plain(), gid, at);
        if !cx.count_step() {
            cx.unwind();
        }
        cx
    }

    /// Takes the lock on behalf of `gid` without counting a step.
    pub(crate) fn enter_as(&self, gid: Gid, at: &'static Location<'static>) -> Ctx<'_> {
        self.ctx(self.lock.lock(), gid, at)
    }

    /// [`Self::enter_as`] for books whose order no other goroutine can observe (a goroutine's
    /// end, main's return): no scheduling point (see [`engine::RawMutex::lock_quiet`]).
    fn enter_quiet(&self, gid: Gid, at: &'static Location<'static>) -> Ctx<'_> {
        self.ctx(self.lock.lock_quiet(), gid, at)
    }

    /// A context for `gid` at `at` holding `guard`, the lock as one of the `enter` methods took it.
    fn ctx<'a>(&'a self, guard: RawGuard<'a>, gid: Gid, at: &'static Location<'static>) -> Ctx<'a> {
        Ctx {
            exec: self,
            guard: Some(guard),
            gid,
            at,
            preempt: None,
        }
    }

    /// The goroutine this thread runs in this execution; panics with the reason otherwise.
    pub(super) fn current_gid(&self, at: &'static Location<'static>) -> Gid {
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

impl Execution {
    /// Runs actions deferred until the lock was released.
    pub(super) fn run_deferred(&self, deferred: Vec<Deferred>) {
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

/// Runs `kernel` as the main goroutine of a new execution on the calling thread (which, for
/// loom and shuttle, is already inside the engine's execution) and reports how it ended.
pub(crate) fn run_execution(
    kind: EngineKind,
    config: ExecConfig,
    kernel: &(dyn Fn() + Send + Sync),
    main_at: &'static Location<'static>,
) -> ExecutionReport {
    if kind == EngineKind::Shuttle {
        engine::clear_shuttle_current();
        engine::shuttle_execution_begins();
    }
    let parker = Arc::new(Parker::new(kind));
    parker.bind_current();
    let exec = Arc::new_cyclic(|me| Execution {
        me: me.clone(),
        ..Execution::new(kind, config, main_at, parker)
    });
    engine::set_current(kind, Some(Current::new(exec.clone(), MAIN)));
    let result = panic::catch_unwind(panic::AssertUnwindSafe(kernel)).map_err(settle_unwind);
    let report = finish_main(&exec, goexit_is_normal_end(result));
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
    // Under shuttle the operation's scheduling point is the one shuttle makes as it spawns
    // the thread (before the new task exists, so with the same tasks to choose from): a
    // point of its own at the start would only repeat it.
    let gid = exec.current_gid(at);
    let mut cx = Ctx {
        exec: &exec,
        guard: Some(exec.lock.lock_for_spawn()),
        gid,
        at,
        preempt: None,
    };
    if !cx.count_step() {
        cx.unwind();
    }
    let added = {
        let mut b = cx.books();
        let parent_clock = cx.release_clock(&mut b);
        cx.add_goroutine(&mut b, name, parent_clock)
    };
    let Some((child, parker)) = added else {
        cx.unwind()
    };
    // A preemption due now waits until the child's thread exists: a parent that gave way
    // in between could be kept from starting it for as long as others run.
    let preempt = cx.preempt.take();
    drop(cx);
    if exec.kind == EngineKind::Shuttle {
        crate::explore::dfs::op_start();
    }
    start_thread(&exec, child, parker, f);
    if let Some(p) = preempt {
        p.give_way(exec.kind);
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
    let spawned_parker = parker.clone();
    let handle = engine::spawn(kind, gid, &spawned_parker, move || {
        if kind == EngineKind::Std {
            engine::set_active_engine(Some(EngineKind::Std));
        }
        engine::set_current(kind, Some(Current::new(thread_exec.clone(), gid)));
        parker.bind_current();
        let result = panic::catch_unwind(panic::AssertUnwindSafe(f)).map_err(settle_unwind);
        goroutine_exit(&thread_exec, gid, goexit_is_normal_end(result));
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
pub(super) fn goroutine_exit(exec: &Execution, gid: Gid, result: Result<(), Box<dyn Any + Send>>) {
    let cx = exec.enter_quiet(gid, Location::caller());
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

/// Main has returned (or unwound): judge the execution, tear it down, and write the report.
pub(super) fn finish_main(
    exec: &Arc<Execution>,
    result: Result<(), Box<dyn Any + Send>>,
) -> ExecutionReport {
    let mut cx = exec.enter_quiet(MAIN, Location::caller());
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
