//! The one place that knows the three engines: std threads, loom and shuttle.
//!
//! Everything above this module is written once against [`RawMutex`], [`Parker`],
//! [`spawn`] and the current-goroutine slot; each of those dispatches on the engine the
//! execution was created for. The runtime keeps all of its state behind a single
//! [`RawMutex`] per execution and parks every blocked goroutine on its own [`Parker`], so
//! each Go operation is one scheduling step for loom and shuttle, and a goroutine blocked in
//! Go is a thread blocked on a condition variable in the engine.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, PoisonError};

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
    /// shuttle always, and loom after a park: the goroutine holds no engine lock, yet runs
    /// alone in the runtime. Both engines switch threads only inside their own operations, and inside
    /// the runtime (between taking the lock and releasing it) only operations that do not
    /// switch are called: waking and spawning are deferred until after the release. So no
    /// goroutine is ever switched out while it holds the runtime, and one that resumes from a
    /// park is alone in it. Re-locking after every wakeup would add a scheduling point that
    /// changes nothing, since the waker has already completed the woken goroutine's operation.
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
            RawMutex::Loom(m) => RawGuard::Loom(m.lock().unwrap_or_else(PoisonError::into_inner)),
            RawMutex::Shuttle => {
                crate::explore::dfs::op_start();
                shuttle_engine::runtime::thread::switch();
                RawGuard::Resumed
            }
        }
    }
}

/// Where exactly one goroutine parks while it is blocked in a Go operation.
///
/// On `std` it is a condition variable of the execution's lock. Under loom and shuttle it is
/// the engine thread's park token: `unpark` is not a scheduling point there and `park` is the
/// one the goroutine needs anyway, where a condition variable would add three (wait, re-lock,
/// notify), and every scheduling point multiplies the interleavings to explore. The lock is
/// released just before parking; no scheduling point lies in between, and an `unpark` that
/// comes first is kept by the token, so no wakeup is lost.
pub(crate) enum Parker {
    Std(parking_lot::Condvar),
    Loom(std::sync::Mutex<Option<loom::thread::Thread>>),
    /// The shuttle task; woken through shuttle's execution state directly, since
    /// `Thread::unpark` is a scheduling point of its own.
    Shuttle(std::sync::Mutex<Option<shuttle_engine::runtime::task::TaskId>>),
}

impl Parker {
    pub(crate) fn new(kind: EngineKind) -> Self {
        match kind {
            EngineKind::Std => Parker::Std(parking_lot::Condvar::new()),
            EngineKind::Loom => Parker::Loom(std::sync::Mutex::new(None)),
            EngineKind::Shuttle => Parker::Shuttle(std::sync::Mutex::new(None)),
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
            Parker::Shuttle(t) => {
                let me = shuttle_engine::current::me();
                *t.lock().unwrap_or_else(PoisonError::into_inner) = Some(me);
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
                RawGuard::Resumed
            }
            (Parker::Shuttle(_), g @ RawGuard::Resumed) => {
                drop(g);
                after_release(deferred);
                shuttle::thread::park();
                RawGuard::Resumed
            }
            _ => unreachable!("a goroutine parks only under the lock of its own engine"),
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
            // Not `Thread::unpark`, which switches first: the waker's next Go operation starts
            // with a scheduling point anyway, and the woken task's token is seen only by it.
            Parker::Shuttle(t) => {
                let t = *t.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(t) = t {
                    shuttle_engine::runtime::execution::ExecutionState::with(|s| {
                        s.get_mut(t).unpark();
                    });
                }
            }
        }
    }
}

/// Starts `body` on a new thread of `kind`. On `std` the join handle is returned so the
/// execution can join every thread it started before it reports.
pub(crate) fn spawn(
    kind: EngineKind,
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Option<std::thread::JoinHandle<()>> {
    match kind {
        EngineKind::Std => Some(
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(body)
                .expect("the operating system refused to start a goroutine thread"),
        ),
        EngineKind::Loom => {
            loom::thread::spawn(body);
            None
        }
        EngineKind::Shuttle => {
            shuttle::thread::Builder::new()
                .name(name.to_string())
                .spawn(body)
                .expect("shuttle refused to start a goroutine thread");
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
}

impl Current {
    pub(crate) fn new(exec: Arc<Execution>, gid: Gid) -> Self {
        Current {
            exec,
            gid,
            go_unwinding: Cell::new(false),
            replaced: RefCell::new(None),
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

shuttle::thread_local! {
    static SHUTTLE_CURRENT: RefCell<Option<Current>> = RefCell::new(None);
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
        Some(EngineKind::Shuttle) => SHUTTLE_CURRENT.with(|c| f(c.borrow().as_ref())),
    }
}

/// Records which goroutine this thread (or coroutine) runs.
pub(crate) fn set_current(kind: EngineKind, current: Option<Current>) {
    match kind {
        EngineKind::Std => STD_CURRENT.with(|c| *c.borrow_mut() = current),
        EngineKind::Loom => LOOM_CURRENT.with(|c| *c.borrow_mut() = current),
        EngineKind::Shuttle => SHUTTLE_CURRENT.with(|c| *c.borrow_mut() = current),
    }
}

/// A value the engine's scheduler chooses, recorded in the schedule so a replay makes the same
/// choice: shuttle's scheduler-controlled randomness. `None` where the engine has no such
/// choice (loom, see loom#84) or where the runtime draws its own (`std`).
pub(crate) fn scheduler_choice(kind: EngineKind, n: usize) -> Option<usize> {
    match kind {
        EngineKind::Shuttle if crate::explore::dfs::active() => {
            use shuttle::rand::RngCore;
            Some(crate::explore::dfs::with_arity(n, || {
                shuttle::rand::thread_rng().next_u64()
            }))
        }
        EngineKind::Shuttle => {
            use shuttle::rand::Rng;
            Some(shuttle::rand::thread_rng().gen_range(0..n))
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
    match kind {
        EngineKind::Std => std::thread::yield_now(),
        EngineKind::Loom => loom::thread::yield_now(),
        EngineKind::Shuttle => shuttle::thread::yield_now(),
    }
}
