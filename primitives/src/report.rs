//! What one execution ended in: its verdict, the goroutine dump and the trace.

use std::fmt;
use std::time::Duration;

/// How an execution ended. Exactly one per execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// No goroutine can move and `main` has not returned (Go: "all goroutines are asleep").
    Deadlock,
    /// `main` returned while other goroutines stayed blocked forever, or kept running.
    Leak,
    /// Two accesses to one variable (a `Shared`, a `GoMap`, an atomic read or written plainly,
    /// a WaitGroup's Add from zero and blocking Wait), at least one a write and not both
    /// atomic, unordered by happens-before.
    Race,
    /// A Go runtime panic, or a panic in the kernel.
    Panic,
    /// The kernel's own check of an invariant (`assert!`) failed.
    Assert,
    /// Goroutines kept running without progress: only polling, or only the clock moving
    /// (see `rt/progress.rs`).
    Livelock,
    /// None of the above.
    Clean,
    /// Not a verdict on the program: the execution reached the hard step cap while its
    /// goroutines kept making progress, so nothing was decided. Reports show it as "bound
    /// reached", never as a failure nor as clean.
    BoundReached,
}

impl Verdict {
    /// Every verdict but `Clean`, in the order reports list them.
    pub const FAILURES: [Verdict; 6] = [
        Verdict::Deadlock,
        Verdict::Leak,
        Verdict::Race,
        Verdict::Panic,
        Verdict::Assert,
        Verdict::Livelock,
    ];

    /// The verdict's name in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Deadlock => "deadlock",
            Verdict::Leak => "leak",
            Verdict::Race => "race",
            Verdict::Panic => "panic",
            Verdict::Assert => "assert",
            Verdict::Livelock => "livelock",
            Verdict::Clean => "clean",
            Verdict::BoundReached => "bound-reached",
        }
    }

    /// Reads a verdict's name back.
    pub fn parse(name: &str) -> Option<Verdict> {
        Verdict::FAILURES
            .into_iter()
            .chain([Verdict::Clean])
            .find(|v| v.as_str() == name)
    }

    /// A verdict that the program failed: neither clean nor undecided.
    pub fn is_failure(self) -> bool {
        !matches!(self, Verdict::Clean | Verdict::BoundReached)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Go-level operation of the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// The runtime step at which it happened (one step per Go operation).
    pub step: u64,
    /// The goroutine that performed it.
    pub g: usize,
    /// The operation, in Go's words (`send`, `RLock`, `Done`, ...).
    pub op: &'static str,
    /// The object it acted on (`chan#3`, or the name the kernel gave it).
    pub obj: Option<String>,
    /// `file:line` of the operation.
    pub at: String,
    /// The operation parked its goroutine here (it completes in a later event, if ever).
    pub blocked: bool,
    /// The operation can block in principle (a channel operation, a lock, a wait).
    pub blocking_kind: bool,
    /// A short refinement: the select case taken, the goroutine started, the Add delta.
    pub detail: Option<String>,
}

/// One goroutine as the execution left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoroutineInfo {
    pub id: usize,
    pub name: String,
    /// `file:line` of the `go` statement (or of the kernel for `main`).
    pub created_at: String,
    /// `finished`, `runnable`, `returned`, or the wait reason of a blocked goroutine.
    pub state: String,
    /// Where it is blocked, if it is.
    pub blocked_at: Option<String>,
    /// What a blocked goroutine waits on, named as the trace names objects: the channel,
    /// lock, WaitGroup or Cond; every channel of a `select`; empty for a sleep.
    pub waiting_on: Vec<String>,
    /// A runtime helper (the timer goroutine) rather than a goroutine of the kernel.
    pub system: bool,
}

/// One side of a data race.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessInfo {
    pub g: usize,
    pub goroutine: String,
    pub write: bool,
    /// A `sync/atomic` operation (the other side of the race is then a plain access).
    pub atomic: bool,
    /// The Go operation the access stands for when it is not a plain read or write: `Add` and
    /// `Wait` of a WaitGroup, `Add` or `Load` of an atomic.
    pub op: Option<&'static str>,
    pub at: String,
    pub step: u64,
}

/// Two conflicting accesses that happens-before does not order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaceReport {
    /// The variable, map, atomic or WaitGroup raced on (its name, or its kind and number).
    pub object: String,
    /// The earlier access.
    pub previous: AccessInfo,
    /// The access that revealed the race.
    pub current: AccessInfo,
}

/// Everything one execution leaves behind.
#[derive(Clone, Debug)]
pub struct ExecutionReport {
    pub verdict: Verdict,
    /// One line saying what went wrong; empty when clean.
    pub message: String,
    /// A Go-style goroutine dump taken when the failure was found; empty when clean.
    pub dump: String,
    /// The trace, oldest first (its beginning may have been dropped, see `trace_dropped`).
    /// Empty for a clean execution.
    pub trace: Vec<TraceEvent>,
    pub trace_dropped: u64,
    /// Every goroutine the execution started, `main` first, as they ended. Empty for a clean
    /// execution, as the trace is.
    pub goroutines: Vec<GoroutineInfo>,
    /// The goroutines when the failure was found, as its dump shows them (the execution then
    /// wakes and unwinds them, so `goroutines` shows where they ended); empty when clean.
    pub at_failure: Vec<GoroutineInfo>,
    /// Go operations performed.
    pub steps: u64,
    /// Virtual time when the execution ended.
    pub virtual_time: Duration,
    pub race: Option<RaceReport>,
    /// Set when the engine could not hold the kernel (loom's thread limit); no verdict then.
    pub engine_error: Option<String>,
    /// Choices Go leaves to chance (ready `select` cases, same-channel cases of a parked
    /// `select`, `rand`) that loom took by a fixed rule rather than exploring; 0 elsewhere.
    pub unexplored_choices: u64,
}
