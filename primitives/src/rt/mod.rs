//! The runtime behind the Go-shaped facade: one execution's books and the rules that keep them.
//!
//! Every Go operation enters the runtime through [`Execution::enter`], which takes the
//! execution's one lock and yields a [`Ctx`]. Under that lock the operation reads and updates
//! the [`Books`] (goroutine table, trace, clocks, timers) and the state of the objects it
//! touches; if it must wait, it queues a [`Waiter`] on the object and [`Ctx::park`]s on its
//! own condition variable until another goroutine [`Books::fire`]s it. Whenever the last
//! runnable goroutine parks or exits, [`Ctx::settle`] decides what happens next: a timer
//! fires, or the execution is over (clean, deadlock or leak).

//!
//! The files, by concern: `execution` (an execution's life: start, goroutines, the end and its
//! report), `books` (what the runtime knows: the goroutine table, objects, dumps), `ctx` (a Go
//! operation's turn: steps, fairness, parking and waking, settling), `verdict` (panics and
//! failures), `progress` (livelock), `timer`, `trace`, `clock` and `race`. Nothing here depends
//! on the facade above it: timers fire through [`timer::TimerTarget`].

mod books;
pub(crate) mod cell;
pub(crate) mod clock;
mod ctx;
mod execution;
pub(crate) mod goroutine;
pub(crate) mod progress;
pub(crate) mod race;
pub(crate) mod timer;
pub(crate) mod trace;
mod verdict;

pub(crate) use books::Books;
pub(crate) use ctx::Ctx;
pub(crate) use execution::{current_exec, run_execution, spawn_goroutine, Deferred, Execution};
pub(crate) use verdict::{
    go_unwinding, goexit_is_normal_end, keep_panic, payload_message, resume_goexit,
    run_deferred_call, settle_unwind, take_panic, CaughtPanic, GoPanic, Goexit,
};

use std::panic::Location;

pub(crate) use goroutine::{Fired, Gid, Goroutine, Status, Wait, WaitReason, Waiter, MAIN};

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
    /// Check `Shared` and `GoMap` accesses, plain accesses to atomics and a WaitGroup's Add
    /// from zero against its blocking Wait, against happens-before.
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
