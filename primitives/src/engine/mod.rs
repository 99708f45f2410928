//! The one place that knows the three engines: std threads, loom and shuttle.
//!
//! Everything above this module is written once against [`RawMutex`], [`RawCondvar`],
//! [`spawn`] and the current-goroutine slot; each of those dispatches on the engine the
//! execution was created for. The runtime keeps all of its state behind a single
//! [`RawMutex`] per execution and parks every blocked goroutine on its own [`RawCondvar`], so
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
    Std(std::sync::Mutex<()>),
    Loom(loom::sync::Mutex<()>),
    Shuttle(shuttle::sync::Mutex<()>),
}

/// A held [`RawMutex`].
pub(crate) enum RawGuard<'a> {
    Std(std::sync::MutexGuard<'a, ()>),
    Loom(loom::sync::MutexGuard<'a, ()>),
    Shuttle(shuttle::sync::MutexGuard<'a, ()>),
}

impl RawMutex {
    pub(crate) fn new(kind: EngineKind) -> Self {
        match kind {
            EngineKind::Std => RawMutex::Std(std::sync::Mutex::new(())),
            EngineKind::Loom => RawMutex::Loom(loom::sync::Mutex::new(())),
            EngineKind::Shuttle => RawMutex::Shuttle(shuttle::sync::Mutex::new(())),
        }
    }

    /// Takes the lock. Poisoning is ignored: the runtime never panics while it holds the lock
    /// with its books half-updated (Go's own panics are raised after the guard is dropped).
    pub(crate) fn lock(&self) -> RawGuard<'_> {
        match self {
            RawMutex::Std(m) => RawGuard::Std(m.lock().unwrap_or_else(PoisonError::into_inner)),
            RawMutex::Loom(m) => RawGuard::Loom(m.lock().unwrap_or_else(PoisonError::into_inner)),
            RawMutex::Shuttle(m) => {
                RawGuard::Shuttle(m.lock().unwrap_or_else(PoisonError::into_inner))
            }
        }
    }
}

/// A condition variable on which exactly one goroutine parks.
pub(crate) enum RawCondvar {
    Std(std::sync::Condvar),
    Loom(loom::sync::Condvar),
    Shuttle(shuttle::sync::Condvar),
}

impl RawCondvar {
    pub(crate) fn new(kind: EngineKind) -> Self {
        match kind {
            EngineKind::Std => RawCondvar::Std(std::sync::Condvar::new()),
            EngineKind::Loom => RawCondvar::Loom(loom::sync::Condvar::new()),
            EngineKind::Shuttle => RawCondvar::Shuttle(shuttle::sync::Condvar::new()),
        }
    }

    /// Releases `guard`, waits for a notification (or a spurious wakeup) and takes the lock
    /// again. Callers always wait in a loop on a condition of the books.
    pub(crate) fn wait<'a>(&self, guard: RawGuard<'a>) -> RawGuard<'a> {
        match (self, guard) {
            (RawCondvar::Std(c), RawGuard::Std(g)) => {
                RawGuard::Std(c.wait(g).unwrap_or_else(PoisonError::into_inner))
            }
            (RawCondvar::Loom(c), RawGuard::Loom(g)) => {
                RawGuard::Loom(c.wait(g).unwrap_or_else(PoisonError::into_inner))
            }
            (RawCondvar::Shuttle(c), RawGuard::Shuttle(g)) => {
                RawGuard::Shuttle(c.wait(g).unwrap_or_else(PoisonError::into_inner))
            }
            _ => unreachable!("a condition variable waits only on the lock of its own engine"),
        }
    }

    pub(crate) fn notify(&self) {
        match self {
            RawCondvar::Std(c) => c.notify_one(),
            RawCondvar::Loom(c) => c.notify_one(),
            RawCondvar::Shuttle(c) => c.notify_one(),
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
#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) exec: Arc<Execution>,
    pub(crate) gid: Gid,
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
        EngineKind::Shuttle => {
            use shuttle::rand::Rng;
            Some(shuttle::rand::thread_rng().gen_range(0..n))
        }
        EngineKind::Std | EngineKind::Loom => None,
    }
}
