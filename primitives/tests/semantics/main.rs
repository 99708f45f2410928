//! Go's semantics, checked on every engine: the channel table, select, the sync package,
//! context, virtual time, verdicts, and misuse. One test binary (the engines make test
//! binaries large).

mod chan;
mod context_time;
mod dfs;
mod goexit;
mod golang;
mod golang_runtime;
mod golang_sync;
mod harness;
mod hb;
mod misuse;
mod queue_model;
mod race;
mod race_directed;
mod recover;
mod select;
mod sync;
mod verdicts;
