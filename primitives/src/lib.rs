//! Go's concurrency primitives, with Go's semantics, on three engines.
//!
//! Kernels — small ports of real Go concurrency bugs — are written once against this crate's
//! Go-shaped API ([`go`], [`Chan`], [`select!`], [`sync::Mutex`], [`sync::RwMutex`],
//! [`sync::WaitGroup`], [`context`], [`time`], [`Shared`], [`GoMap`], ...) and run, unchanged,
//! on real OS threads, under loom's exhaustive exploration, or under shuttle's randomized
//! schedulers (see [`explore`]). Each execution ends in one [`Verdict`]: `deadlock`, `leak`,
//! `race`, `panic`, `assert`, `livelock` or `clean`, with a Go-style goroutine dump and a trace
//! of every Go operation. The race detector checks what `go test -race` checks: accesses to
//! [`Shared`] variables and [`GoMap`]s, plain accesses to an atomic word (`plain_load`,
//! `plain_store`) against its atomic operations, and a [`sync::WaitGroup`]'s `Add` from zero
//! against its blocking `Wait`.
//!
//! ```
//! use primitives::explore::{explore, Engine, Settings};
//! use primitives::{go, sync::RwMutex, Verdict};
//! use std::sync::Arc;
//!
//! // kubernetes#62464 in miniature: a reader takes the read lock twice while a writer waits.
//! let kernel = Arc::new(|| {
//!     let rw = RwMutex::new();
//!     let writer = rw.clone();
//!     go(move || {
//!         writer.lock();
//!         writer.unlock();
//!     });
//!     rw.rlock();
//!     rw.rlock(); // blocks if the writer is waiting: Go's RWMutex prefers writers
//!     rw.runlock();
//!     rw.runlock();
//! });
//! let found = explore(&Settings::new(Engine::ShuttlePct), kernel);
//! assert_eq!(found.first_failure.unwrap().report.verdict, Verdict::Deadlock);
//! ```
//!
//! The layers, as in loom: this facade (one file per primitive, its Go semantics stated at the
//! top) over the runtime in `rt` (goroutine table, parking, clocks, timers, trace) over the
//! engine shim in `engine`, the one place that names std, loom and shuttle.

mod chan;
pub mod context;
mod engine;
pub mod explore;
mod go;
mod map;
pub mod mutant;
mod panic;
pub mod rand;
mod report;
mod rt;
pub mod select;
mod shared;
pub mod sync;
pub mod time;

pub use chan::Chan;
pub use explore::run;
pub use go::{defer, go, go_named, goexit, gosched, Defer};
pub use map::GoMap;
pub use panic::{panic, recover, Recovered};
pub use report::{AccessInfo, ExecutionReport, GoroutineInfo, RaceReport, TraceEvent, Verdict};
pub use rt::TimerMode;
pub use shared::Shared;
