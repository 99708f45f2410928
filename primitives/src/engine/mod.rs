//! The one place that knows the three engines: std threads, loom and shuttle.
//!
//! Everything above this module is written once against [`RawMutex`], [`Parker`],
//! [`spawn`] and the current-goroutine slot; each of those dispatches on the engine the
//! execution was created for. The runtime keeps all of its state behind a single
//! [`RawMutex`] per execution and parks every blocked goroutine on its own [`Parker`], so
//! each Go operation is one scheduling step for loom and at most one for shuttle (none where
//! the scheduler has just chosen, see [`RawMutex::lock`]), and a goroutine blocked in Go is a
//! thread blocked on a condition variable in the engine.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, PoisonError};

use shuttle_engine::runtime::execution::{CurrentSchedule, ExecutionState};

use crate::rt::{Execution, Gid};

/// Which machinery runs the goroutines of an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// Real OS threads, scheduled by the operating system.
    Std,
    /// loom's exhaustive, DPOR-pruned exploration of interleavings.
    Loom,
    /// shuttle's randomized schedulers (PCT, random).
    Shuttle,
}

/// The execution-wide lock of one engine.
pub(crate) enum RawMutex {
    /// parking_lot's: its `unlock_fair` lets a preempted goroutine hand the lock on.
    Std(parking_lot::Mutex<()>),
    Loom(loom::sync::Mutex<()>),
    /// No lock: shuttle runs one thread at a time and switches only inside its own operations,
    /// none of which the runtime calls while it works on its books (see [`RawGuard::Resumed`]).
    /// Taking it is one scheduling point, the start of a Go operation, and releasing it is
    /// none, so each Go operation is one step for shuttle's schedulers (a lock of shuttle's
    /// would be two, its acquire and its release, and PCT's change points would fall between
    /// them as often as between Go operations).
    Shuttle,
}

impl<'a> RawGuard<'a> {
    /// Releases the lock; on `std`, hands it straight to a waiting thread if there is one
    /// (the preempted goroutine gives way to one that has waited for the lock).
    pub(crate) fn release_fairly(self) {
        match self {
            RawGuard::Std(g) => parking_lot::MutexGuard::unlock_fair(g),
            other => drop(other),
        }
    }
}

/// A held [`RawMutex`]. The guards are held for their `Drop`, which releases the lock.
#[allow(dead_code)]
pub(crate) enum RawGuard<'a> {
    Std(parking_lot::MutexGuard<'a, ()>),
    Loom(loom::sync::MutexGuard<'a, ()>),
    /// shuttle always, and loom at a plain access after a Go operation: the goroutine holds no
    /// engine lock, yet runs alone in the runtime. Both engines switch threads only inside
    /// their own operations, and inside the runtime (between taking the lock and releasing it)
    /// only operations that do not switch are called: waking and spawning are deferred until
    /// after the release. So no goroutine is ever switched out while it holds the runtime, and
    /// one that resumes from a park (or runs between two Go operations) is alone in it. Under
    /// shuttle a woken goroutine needs no lock: it resumes only where the scheduler picks it,
    /// a choice open to every runnable task. Under loom it takes the lock as it wakes (see
    /// [`Parker::wait`]): loom's search may run a step that holds no lock of ours in one order
    /// only against the others' steps, and what a woken goroutine does with the books is not
    /// always settled by its waker (a woken `Lock` tries again and may find the mutex taken).
    Resumed,
}

impl RawMutex {
    pub(crate) fn new(kind: EngineKind) -> Self {
        match kind {
            EngineKind::Std => RawMutex::Std(parking_lot::Mutex::new(())),
            EngineKind::Loom => RawMutex::Loom(loom::sync::Mutex::new(())),
            EngineKind::Shuttle => RawMutex::Shuttle,
        }
    }

    /// Takes the lock. Poisoning is ignored: the runtime never panics while it holds the lock
    /// with its books half-updated (Go's own panics are raised after the guard is dropped).
    pub(crate) fn lock(&self) -> RawGuard<'_> {
        match self {
            RawMutex::Std(m) => RawGuard::Std(m.lock()),
            RawMutex::Loom(m) => {
                let guard = m.lock().unwrap_or_else(PoisonError::into_inner);
                with_current(|c| c.map(|c| c.loom_unsynced.set(false)));
                RawGuard::Loom(guard)
            }
            RawMutex::Shuttle => {
                if !shuttle_chose_since_last_op() {
                    crate::explore::dfs::op_start();
                    shuttle_engine::runtime::thread::switch();
                }
                shuttle_op_begins();
                RawGuard::Resumed
            }
        }
    }

    /// Takes the lock for a `go` statement: under shuttle the operation begins without a
    /// scheduling point, since shuttle switches as it spawns the goroutine's thread.
    pub(crate) fn lock_for_spawn(&self) -> RawGuard<'_> {
        match self {
            RawMutex::Shuttle => {
                shuttle_op_begins();
                RawGuard::Resumed
            }
            other => other.lock(),
        }
    }

    /// Takes the lock for books that no other goroutine can observe the order of (a goroutine's
    /// end, main's return): no scheduling point under shuttle, where the engine's own switch
    /// follows at once (the task's end) or the books change nothing another goroutine sees.
    pub(crate) fn lock_quiet(&self) -> RawGuard<'_> {
        match self {
            RawMutex::Shuttle => RawGuard::Resumed,
            other => other.lock(),
        }
    }

    /// Takes the lock for a plain memory access that the race detector watches: no scheduling
    /// point under shuttle, nor under loom once the goroutine has taken the lock since loom last
    /// switched to it (see `Execution::enter_plain` for why none is needed). Under loom no lock
    /// is taken then: loom switches threads only inside its own operations, and the runtime
    /// calls none while it works on its books (see [`RawGuard::Resumed`]), so this goroutine is
    /// alone in the runtime, and the access is part of loom's step that began with that lock.
    /// After a start or a yield it takes the lock: its step changes the books, and loom may run
    /// a step that takes no lock of ours in one order only against the others'.
    pub(crate) fn lock_plain(&self) -> RawGuard<'_> {
        match self {
            RawMutex::Loom(_) if with_current(|c| c.is_some_and(|c| c.loom_unsynced.get())) => {
                self.lock()
            }
            RawMutex::Shuttle | RawMutex::Loom(_) => RawGuard::Resumed,
            other => other.lock(),
        }
    }
}

std::thread_local! {
    /// shuttle: the length of the execution's schedule (the scheduler's choices so far) when
    /// the latest Go operation of the execution on this OS thread began. shuttle runs all the
    /// tasks of an execution as coroutines of one OS thread, so this is the execution's.
    static SHUTTLE_LAST_OP: Cell<usize> = const { Cell::new(0) };
}

/// Whether shuttle's scheduler has chosen a task since the latest Go operation began: where a
/// task parked, ended or yielded. The next Go operation then
/// needs no scheduling point of its own: nothing another goroutine can see has happened since
/// that choice (under shuttle-pct a plain access counts as something, see
/// [`shuttle_plain_access`]), so any task it could pick here was open to that choice, with the same tasks
/// runnable. A second point would only repeat it, cost a step, and dilute PCT's change points.
fn shuttle_chose_since_last_op() -> bool {
    SHUTTLE_LAST_OP.get() != CurrentSchedule::len()
}

fn shuttle_op_begins() {
    SHUTTLE_LAST_OP.set(CurrentSchedule::len());
}

/// A new shuttle execution starts on this thread: its first choice (main) counts as one made
/// since the latest operation.
pub(crate) fn shuttle_execution_begins() {
    SHUTTLE_LAST_OP.set(0);
}

/// shuttle switched where not every choice was open: a task starting another (shuttle switches
/// before the new task exists, so it cannot be picked there), or yielding under `shuttle-dfs`
/// (which hands over in turn). The next Go operation keeps its own scheduling point.
fn shuttle_forced_switch() {
    shuttle_op_begins();
}

/// Where exactly one goroutine parks while it is blocked in a Go operation.
///
/// On `std` it is a condition variable of the execution's lock. Under loom and shuttle it is
/// the engine thread's park token: `unpark` is not a scheduling point there and `park` is the
/// one the goroutine needs anyway, where a condition variable would add three (wait, re-lock,
/// notify), and every scheduling point multiplies the interleavings to explore (under loom
/// the woken goroutine takes the lock again, see [`RawGuard::Resumed`]). The lock is
/// released just before parking; no scheduling point lies in between, and an `unpark` that
/// comes first is kept by the token, so no wakeup is lost.
pub(crate) enum Parker {
    Std(parking_lot::Condvar),
    Loom(std::sync::Mutex<Option<loom::thread::Thread>>),
    /// The shuttle task, blocked and unblocked through shuttle's execution state directly.
    Shuttle(std::sync::Mutex<ShuttleParker>),
}

/// A shuttle task's own park token. Not shuttle's `thread::park`, which lets the scheduler
/// wake a parked task spuriously at any step: a blocked goroutine would then be picked, find
/// itself still blocked and park again, a step that changes nothing yet is counted, replayed
/// and branched on (the depth-first search would try every blocked goroutine at every step).
/// A goroutine blocked in Go wakes only when an operation unblocks it, so the task is blocked
/// without spurious wakeups; and not `Thread::unpark` either, which is a scheduling point of
/// its own, where the waker's next Go operation starts with one anyway.
#[derive(Default)]
pub(crate) struct ShuttleParker {
    task: Option<shuttle_engine::runtime::task::TaskId>,
    /// Notified while not parked: the next park returns at once.
    token: bool,
    /// Blocked in [`Parker::wait`].
    parked: bool,
}

impl Parker {
    pub(crate) fn new(kind: EngineKind) -> Self {
        match kind {
            EngineKind::Std => Parker::Std(parking_lot::Condvar::new()),
            EngineKind::Loom => Parker::Loom(std::sync::Mutex::new(None)),
            EngineKind::Shuttle => Parker::Shuttle(std::sync::Mutex::default()),
        }
    }

    /// Binds the parker to the calling engine thread (loom, shuttle). Called by each goroutine
    /// before its first Go operation.
    pub(crate) fn bind_current(&self) {
        match self {
            Parker::Std(_) => {}
            Parker::Loom(t) => {
                let me = loom::thread::current();
                *t.lock().unwrap_or_else(PoisonError::into_inner) = Some(me);
            }
            Parker::Shuttle(p) => {
                let me = shuttle_engine::current::me();
                p.lock().unwrap_or_else(PoisonError::into_inner).task = Some(me);
            }
        }
    }

    /// Releases `guard`, runs `after_release(deferred)`, waits for a notification (or a
    /// spurious wakeup), and holds the runtime again. Callers wait in a loop on a condition of
    /// the books.
    pub(crate) fn wait<'a, D>(
        &self,
        guard: RawGuard<'a>,
        deferred: Vec<D>,
        lock: &'a RawMutex,
        after_release: impl FnOnce(Vec<D>),
    ) -> RawGuard<'a> {
        let has_actions = |d: &Vec<D>| !d.is_empty();
        match (self, guard) {
            (Parker::Std(c), RawGuard::Std(mut g)) => {
                if !has_actions(&deferred) {
                    c.wait(&mut g);
                    return RawGuard::Std(g);
                }
                drop(g);
                after_release(deferred);
                // Return as from a spurious wakeup: the condition may have changed while the
                // lock was released, and the caller checks it again before waiting.
                lock.lock()
            }
            (Parker::Loom(_), g @ (RawGuard::Loom(_) | RawGuard::Resumed)) => {
                drop(g);
                after_release(deferred);
                loom::thread::park();
                // The lock again, and with it a scheduling point: what the woken goroutine does
                // next with the books (a woken `Lock` tries again, and a newcomer may have
                // taken the mutex first) must be a step loom orders against the others'.
                lock.lock()
            }
            (Parker::Shuttle(p), g @ RawGuard::Resumed) => {
                drop(g);
                after_release(deferred);
                let mut st = p.lock().unwrap_or_else(PoisonError::into_inner);
                if std::mem::take(&mut st.token) {
                    return RawGuard::Resumed;
                }
                st.parked = true;
                drop(st);
                ExecutionState::with(|s| s.current_mut().block(false));
                shuttle_engine::runtime::thread::switch();
                RawGuard::Resumed
            }
            _ => unreachable!("a goroutine parks only under the lock of its own engine"),
        }
    }

    /// The shuttle task of the goroutine, once its thread has been spawned.
    pub(crate) fn shuttle_task(&self) -> Option<usize> {
        match self {
            Parker::Shuttle(p) => p
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .task
                .map(usize::from),
            _ => None,
        }
    }

    /// Wakes the goroutine if it is parked; otherwise its next park returns at once.
    pub(crate) fn notify(&self) {
        match self {
            Parker::Std(c) => {
                c.notify_one();
            }
            Parker::Loom(t) => {
                let t = t.lock().unwrap_or_else(PoisonError::into_inner).clone();
                if let Some(t) = t {
                    t.unpark();
                }
            }
            Parker::Shuttle(p) => {
                let mut st = p.lock().unwrap_or_else(PoisonError::into_inner);
                match (st.task, st.parked) {
                    (Some(t), true) => {
                        st.parked = false;
                        drop(st);
                        ExecutionState::with(|s| s.get_mut(t).unblock());
                    }
                    _ => st.token = true,
                }
            }
        }
    }
}

/// Starts `body` on a new thread of `kind` for goroutine `gid`. On `std` the join handle is
/// returned so the execution can join every thread it started before it reports; only there
/// is the thread named (`goroutine-<gid>`), for debuggers.
pub(crate) fn spawn(
    kind: EngineKind,
    gid: Gid,
    parker: &Parker,
    body: impl FnOnce() + Send + 'static,
) -> Option<std::thread::JoinHandle<()>> {
    match kind {
        EngineKind::Std => Some(
            std::thread::Builder::new()
                .name(format!("goroutine-{gid}"))
                .spawn(body)
                .expect("the operating system refused to start a goroutine thread"),
        ),
        EngineKind::Loom => {
            loom::thread::spawn(body);
            None
        }
        EngineKind::Shuttle => {
            let task = shuttle::thread::spawn(body).thread().id();
            // Known before the task first runs: a goroutine still waiting for its first turn
            // can be handed one (see `yield_to`).
            if let Parker::Shuttle(p) = parker {
                p.lock().unwrap_or_else(PoisonError::into_inner).task = Some(
                    shuttle_engine::runtime::task::TaskId::from(usize::from(task)),
                );
            }
            shuttle_forced_switch();
            None
        }
    }
}

/// The goroutine a thread is running, and the execution it belongs to.
pub(crate) struct Current {
    pub(crate) exec: Arc<Execution>,
    pub(crate) gid: Gid,
    /// The goroutine is unwinding a Go panic or a Goexit: its deferred calls run, as Go's do.
    pub(crate) go_unwinding: Cell<bool>,
    /// A panic raised by a deferred call during that unwinding: it replaces the one in flight
    /// (as in Go) when the unwinding is caught.
    pub(crate) replaced: RefCell<Option<Box<dyn std::any::Any + Send>>>,
    /// loom: loom has switched to this goroutine (its start, a yield) and it has not taken
    /// the lock since; its next plain access takes it (see [`RawMutex::lock_plain`]).
    pub(crate) loom_unsynced: Cell<bool>,
}

impl Current {
    pub(crate) fn new(exec: Arc<Execution>, gid: Gid) -> Self {
        Current {
            exec,
            gid,
            go_unwinding: Cell::new(false),
            replaced: RefCell::new(None),
            loom_unsynced: Cell::new(true),
        }
    }
}

std::thread_local! {
    /// The engine of the execution this OS thread takes part in, if any. loom and shuttle run
    /// every goroutine of an execution as a coroutine on the thread that started it, so the
    /// marker set there covers them all; on `std` each goroutine thread sets its own.
    static ENGINE: Cell<Option<EngineKind>> = const { Cell::new(None) };
    static STD_CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

loom::thread_local! {
    static LOOM_CURRENT: RefCell<Option<Current>> = RefCell::new(None);
}

std::thread_local! {
    /// shuttle: the goroutine of each task, by task id. The tasks of an execution are
    /// coroutines of one OS thread, so one table serves them all; a plain table is cheaper than
    /// shuttle's task-local storage, which hashes its key on every access.
    static SHUTTLE_CURRENT: RefCell<Vec<Option<Current>>> = const { RefCell::new(Vec::new()) };
}

fn shuttle_task() -> usize {
    usize::from(shuttle_engine::current::me())
}

/// The engine this OS thread is running an execution of, if any.
pub(crate) fn active_engine() -> Option<EngineKind> {
    ENGINE.with(Cell::get)
}

/// Marks (or unmarks) this OS thread as running executions of `kind`.
pub(crate) fn set_active_engine(kind: Option<EngineKind>) {
    ENGINE.with(|e| e.set(kind));
}

/// Calls `f` with the goroutine running on this thread, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Current>) -> R) -> R {
    match active_engine() {
        None => f(None),
        Some(EngineKind::Std) => STD_CURRENT.with(|c| f(c.borrow().as_ref())),
        Some(EngineKind::Loom) => LOOM_CURRENT.with(|c| f(c.borrow().as_ref())),
        Some(EngineKind::Shuttle) => match shuttle_engine::current::try_get_current_task() {
            Some(task) => SHUTTLE_CURRENT
                .with(|c| f(c.borrow().get(usize::from(task)).and_then(Option::as_ref))),
            None => f(None),
        },
    }
}

/// Records which goroutine this thread (or coroutine) runs.
pub(crate) fn set_current(kind: EngineKind, current: Option<Current>) {
    match kind {
        EngineKind::Std => STD_CURRENT.with(|c| *c.borrow_mut() = current),
        EngineKind::Loom => LOOM_CURRENT.with(|c| *c.borrow_mut() = current),
        EngineKind::Shuttle => {
            let task = shuttle_task();
            let old = SHUTTLE_CURRENT.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() <= task {
                    c.resize_with(task + 1, || None);
                }
                std::mem::replace(&mut c[task], current)
            });
            // Dropped out of the table's borrow: it may hold the last reference to an execution.
            drop(old);
        }
    }
}

/// Forgets the goroutines of earlier shuttle executions on this thread (those that were torn
/// down without ending), before a new execution starts.
pub(crate) fn clear_shuttle_current() {
    let old = SHUTTLE_CURRENT.with(|c| std::mem::take(&mut *c.borrow_mut()));
    drop(old);
}

/// A value the engine's scheduler chooses, recorded in the schedule so a replay makes the same
/// choice: shuttle's scheduler-controlled randomness. `None` where the engine has no such
/// choice (loom, see loom#84) or where the runtime draws its own (`std`).
pub(crate) fn scheduler_choice(kind: EngineKind, n: usize) -> Option<usize> {
    match kind {
        EngineKind::Shuttle => {
            // The draw is a step of the schedule, but not a choice of task.
            let in_op = !shuttle_chose_since_last_op();
            let v = if crate::explore::dfs::active() {
                use shuttle::rand::RngCore;
                crate::explore::dfs::with_arity(n, || shuttle::rand::thread_rng().next_u64())
            } else {
                use shuttle::rand::Rng;
                shuttle::rand::thread_rng().gen_range(0..n)
            };
            if in_op {
                shuttle_op_begins();
            }
            Some(v)
        }
        EngineKind::Std | EngineKind::Loom => None,
    }
}

/// Lets other threads run: the polling goroutine gives up its turn. Called outside the runtime.
///
/// Go's scheduler preempts a goroutine that spins, so a loop that polls (a `select` that takes
/// its `default`, a failed `TryLock`) cannot starve the goroutine it waits for. loom and
/// shuttle schedule cooperatively and would explore exactly that starvation; a yield there
/// deprioritizes the poller, as fairness would.
pub(crate) fn yield_now(kind: EngineKind) {
    yield_to(kind, None);
}

std::thread_local! {
    /// shuttle: the task a yield hands its turn to (see [`yield_to`]), until a scheduler takes it.
    static FAIR_TURN: Cell<Option<usize>> = const { Cell::new(None) };
}

/// [`yield_now`], handing the turn to shuttle task `to` (a goroutine that has waited long for
/// it): the schedulers run it next if it can run. Deprioritizing the yielder is not enough
/// where a third goroutine keeps coming back (a timer goroutine, say): it could then take every
/// turn the starving one needs, forever, as no scheduler of Go's would let it.
pub(crate) fn yield_to(kind: EngineKind, to: Option<usize>) {
    hand_turn_to(kind, to);
    yield_now_inner(kind);
}

/// Hands shuttle's next choice of task to task `to`, if it can run then.
pub(crate) fn hand_turn_to(kind: EngineKind, to: Option<usize>) {
    if kind == EngineKind::Shuttle {
        FAIR_TURN.set(to);
    }
}

/// The task a yield has just handed its turn to, if any, left in place.
pub(crate) fn peek_fair_turn() -> Option<usize> {
    FAIR_TURN.get()
}

/// The task a yield has just handed its turn to, if any (taken: it is for this choice only).
pub(crate) fn take_fair_turn() -> Option<usize> {
    FAIR_TURN.take()
}

fn yield_now_inner(kind: EngineKind) {
    match kind {
        EngineKind::Std => std::thread::yield_now(),
        EngineKind::Loom => {
            loom::thread::yield_now();
            with_current(|c| c.map(|c| c.loom_unsynced.set(true)));
        }
        EngineKind::Shuttle => {
            shuttle::thread::yield_now();
            if crate::explore::dfs::active() {
                shuttle_forced_switch();
            }
        }
    }
}

/// How shuttle-pct watches plain accesses (`Shared`, `GoMap`) for its race-directed
/// executions (see `explore::race_directed`). Off under every other engine, whose schedule
/// strings stay as they were.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum PlainWatch {
    #[default]
    Off,
    /// A plain access keeps the scheduling point of the goroutine's next Go operation (a
    /// replay of a shuttle-pct schedule must have the points its exploration had).
    Points,
    /// As `Points`, and each access is logged for the scheduler.
    Logged,
}

/// One logged access: a plain access, or a mutex taken.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlainAccess {
    /// The shuttle task (the goroutine) that made it.
    pub(crate) task: usize,
    pub(crate) site: &'static std::panic::Location<'static>,
    /// The variable or the mutex, by its identity in the execution.
    pub(crate) object: u32,
    /// A write, or a mutex taken for writing (`Lock`, a `TryLock` that took it).
    pub(crate) write: bool,
    /// A `Mutex` or `RWMutex` taken, not a plain access.
    pub(crate) lock: bool,
}

std::thread_local! {
    static PLAIN_WATCH: Cell<PlainWatch> = const { Cell::new(PlainWatch::Off) };
    /// The accesses since the scheduler last took them.
    static PLAIN_LOG: RefCell<Vec<PlainAccess>> = const { RefCell::new(Vec::new()) };
    /// A timer has fired since the scheduler last asked.
    static CLOCK_MOVED: Cell<bool> = const { Cell::new(false) };
}

/// Sets how plain accesses are watched on this thread; the log starts empty.
pub(crate) fn set_plain_watch(watch: PlainWatch) {
    PLAIN_WATCH.set(watch);
    PLAIN_LOG.with(|l| l.borrow_mut().clear());
    CLOCK_MOVED.set(false);
}

/// A timer fired: virtual time moved. Noted for shuttle-pct's holds, which end then.
pub(crate) fn shuttle_clock_moved() {
    if PLAIN_WATCH.get() == PlainWatch::Logged {
        CLOCK_MOVED.set(true);
    }
}

/// Whether a timer has fired since the last call.
pub(crate) fn take_clock_moved() -> bool {
    CLOCK_MOVED.take()
}

/// The current goroutine made a plain access the race detector checks. Under shuttle-pct its
/// next Go operation keeps its scheduling point even right after a choice of task (see
/// [`shuttle_chose_since_last_op`]): a plain access happened in between, so a hold placed after
/// it (or a change point) lands before that operation, not one operation later.
pub(crate) fn shuttle_plain_access(
    object: u32,
    site: &'static std::panic::Location<'static>,
    write: bool,
) {
    let watch = PLAIN_WATCH.get();
    if watch == PlainWatch::Off || active_engine() != Some(EngineKind::Shuttle) {
        return;
    }
    shuttle_op_begins();
    if watch == PlainWatch::Logged {
        log_access(object, site, write, false);
    }
}

/// The current goroutine took a `Mutex` or `RWMutex` (for writing, or with `RLock`). Logged for
/// shuttle-pct's lock-order reversals; unlike a plain access it changes no scheduling point (a
/// lock is a Go operation, which has its own).
pub(crate) fn shuttle_lock_taken(
    object: u32,
    site: &'static std::panic::Location<'static>,
    write: bool,
) {
    if PLAIN_WATCH.get() == PlainWatch::Logged && active_engine() == Some(EngineKind::Shuttle) {
        log_access(object, site, write, true);
    }
}

fn log_access(object: u32, site: &'static std::panic::Location<'static>, write: bool, lock: bool) {
    let task = shuttle_task();
    PLAIN_LOG.with(|l| {
        l.borrow_mut().push(PlainAccess {
            task,
            site,
            object,
            write,
            lock,
        })
    });
}

/// Takes the accesses logged since the last call, appending them to `into`.
pub(crate) fn take_plain_accesses(into: &mut Vec<PlainAccess>) {
    PLAIN_LOG.with(|l| into.append(&mut l.borrow_mut()));
}
