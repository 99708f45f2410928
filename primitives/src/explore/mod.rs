//! Running a kernel under an engine: one execution, many, or one replayed.
//!
//! [`explore`] runs a kernel (a closure written against this crate's Go primitives) as many
//! times as its [`Settings`] allow, on the chosen [`Engine`], and sums up what happened in an
//! [`Exploration`]; [`replay`] runs the one execution a schedule string names again. A kernel
//! never names an engine: the same closure runs on all four.
//!
//! ```
//! use primitives::explore::{explore, Engine, Settings};
//! use primitives::{go, Chan, Verdict};
//! use std::sync::Arc;
//!
//! // A goroutine that sends on a channel nobody receives from: a leak.
//! let kernel = Arc::new(|| {
//!     let ch = Chan::new(0);
//!     go(move || ch.send(1));
//! });
//! let found = explore(&Settings::new(Engine::ShuttlePct), kernel);
//! let failing = found.first_failure.expect("the leak is found");
//! assert_eq!(failing.report.verdict, Verdict::Leak);
//! ```

pub(crate) mod dfs;
mod loom_driver;
mod race_directed;
mod shuttle_driver;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, Location};
use std::sync::{Arc, Once};
use std::time::Instant;

use crate::engine::{self, EngineKind};
use crate::report::{ExecutionReport, Verdict};
use crate::rt::{self, take_panic, ExecConfig, TimerMode};

/// A kernel: the body of a Go test, run as the main goroutine of each execution.
pub type Kernel = Arc<dyn Fn() + Send + Sync>;

/// Where an exploration runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    /// loom: every interleaving, within the preemption bound.
    Loom,
    /// PCT on shuttle: random priorities with `pct_depth - 1` change points (this crate's PCT,
    /// which also counts the step at which a goroutine blocks; see `shuttle_driver::Pct`),
    /// every second execution directed while some pair of conflicting accesses (or of one
    /// mutex taken) by two goroutines has not been tried (after RaceFuzzer; see
    /// `race_directed`).
    ShuttlePct,
    /// shuttle's random scheduler: a uniformly random runnable goroutine at each step.
    ShuttleRandom,
    /// shuttle's uniform random walk (Zhao et al., "Selectively Uniform Concurrency Testing",
    /// ASPLOS'25): goroutines weighted by the operations they have left, estimated from a
    /// first run, so that interleavings are drawn about uniformly.
    ShuttleUrw,
    /// A depth-first search of shuttle's schedules in rounds of growing preemption bound
    /// (iterative context bounding, as in CHESS), up to `preemption_bound`: exhaustive within
    /// that bound where loom's five threads are too few, and the first failure it finds has the
    /// fewest preemptions.
    ShuttleDfs,
    /// Real OS threads, run over and over: the native baseline.
    Std,
}

impl Engine {
    /// Every engine, in the order reports list them.
    pub const ALL: [Engine; 6] = [
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std,
    ];

    /// The engine's name in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Loom => "loom",
            Engine::ShuttlePct => "shuttle-pct",
            Engine::ShuttleRandom => "shuttle-random",
            Engine::ShuttleUrw => "shuttle-urw",
            Engine::ShuttleDfs => "shuttle-dfs",
            Engine::Std => "std",
        }
    }

    /// Reads an engine's name back.
    pub fn parse(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Whether a failing execution can be replayed from a schedule string.
    pub fn replayable(self) -> bool {
        self != Engine::Std
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to explore.
#[derive(Clone, Debug)]
pub struct Settings {
    pub engine: Engine,
    /// The most executions to run: shuttle's iterations, `std`'s runs, and a cap on loom's
    /// executions (loom stops early, and says so, if its search is larger).
    pub budget: u64,
    /// Seeds shuttle's schedulers and the `std` runtime's own choices.
    pub seed: u64,
    /// PCT's bug depth: the number of priority change points, plus one.
    pub pct_depth: usize,
    /// loom's preemption bound; `None` explores every interleaving.
    pub preemption_bound: Option<usize>,
    /// loom's limit on branch points in one execution.
    pub max_branches: usize,
    /// The hard cap on Go operations per execution: one that reaches it ends undecided
    /// ([`Verdict::BoundReached`]). Long correct runs need it high; it bounds the cost of
    /// executions that make progress forever.
    pub max_steps: u64,
    /// Steps without progress (only polls) before running goroutines are judged a livelock,
    /// and steps after main returned before goroutines still running are a leak.
    pub livelock_window: u64,
    /// Timer firings in a row that find every goroutine where an earlier firing did, with
    /// nothing changed in between, before the execution is judged a livelock.
    pub stale_ticks: u32,
    /// Stop at the first failing execution (a buggy kernel's search), or run the whole budget
    /// (a fixed kernel's).
    pub stop_at_first_failure: bool,
    pub race_detector: bool,
    /// Keep the trace and the vector clocks. Off, the race detector is off too.
    pub books: bool,
    /// How timers fire; `None` takes the engine's default (lazy on `std`, eager elsewhere).
    pub timers: Option<TimerMode>,
    /// Trace events kept per execution (the last ones).
    pub trace_limit: usize,
}

impl Settings {
    /// Defaults for `engine`: a budget of 1,000 executions, seed 1, PCT depth 3, loom
    /// preemption bound 3, race detector and books on, stop at the first failure.
    pub fn new(engine: Engine) -> Self {
        Settings {
            engine,
            budget: 1_000,
            seed: 1,
            pct_depth: 3,
            preemption_bound: Some(3),
            max_branches: 100_000,
            max_steps: 100_000,
            livelock_window: 5_000,
            stale_ticks: 64,
            stop_at_first_failure: true,
            race_detector: true,
            books: true,
            timers: None,
            trace_limit: 10_000,
        }
    }

    fn exec_config(&self, seed: u64) -> ExecConfig {
        ExecConfig {
            max_steps: self.max_steps,
            livelock_window: self.livelock_window,
            stale_ticks: self.stale_ticks,
            race_detector: self.race_detector && self.books,
            books: self.books,
            timers: self.timers.unwrap_or(match self.engine {
                Engine::Std => TimerMode::Lazy,
                _ => TimerMode::Eager,
            }),
            trace_limit: self.trace_limit,
            seed,
        }
    }
}

/// What `shuttle-dfs`'s rounds of growing preemption bound covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Preemptions {
    /// Every schedule with at most this many preemptions was run.
    pub explored_within: Option<usize>,
    /// The first failing schedule's preemptions.
    pub first_failure: Option<usize>,
}

/// The first failing execution of an exploration.
#[derive(Clone, Debug)]
pub struct Failing {
    /// Which execution it was (1 for the first).
    pub schedule: u64,
    /// The string [`replay`] takes to run it again (`None` on `std`).
    pub replay: Option<String>,
    pub report: ExecutionReport,
}

/// What an exploration found.
#[derive(Clone, Debug)]
pub struct Exploration {
    pub engine: Engine,
    /// Executions run.
    pub schedules: u64,
    /// Failing executions, by verdict (every failing verdict has an entry).
    pub failures: BTreeMap<Verdict, u64>,
    pub first_failure: Option<Failing>,
    /// The search covered every schedule: loom finished (within its preemption bound, if
    /// any), or the kernel has a single schedule.
    pub exhaustive: bool,
    /// What cut the search short, or bounded it, in words (for reports).
    pub limit: Option<String>,
    pub seconds: f64,
    /// The engine could not run the kernel at all (the executions say nothing then).
    pub error: Option<String>,
    /// Executions that reached the hard step cap undecided ([`Verdict::BoundReached`]).
    pub bound_reached: u64,
    /// `shuttle-dfs`: the preemption bound within which every schedule was run (`None`: no
    /// round finished, or another engine), and the preemptions of the first failing schedule
    /// (the fewest any failing schedule has).
    pub preemptions: Preemptions,
    /// Executions in which loom took a choice Go leaves to chance by its fixed rule instead of
    /// exploring it (`ExecutionReport::unexplored_choices`); 0 on the other engines.
    pub unexplored_choices: u64,
}

impl Exploration {
    fn new(engine: Engine) -> Self {
        Exploration {
            engine,
            schedules: 0,
            failures: Verdict::FAILURES.into_iter().map(|v| (v, 0)).collect(),
            first_failure: None,
            exhaustive: false,
            limit: None,
            seconds: 0.0,
            error: None,
            bound_reached: 0,
            preemptions: Preemptions::default(),
            unexplored_choices: 0,
        }
    }

    /// Books one execution's report; `true` if the exploration should stop here.
    fn record(
        &mut self,
        report: ExecutionReport,
        replay: Option<String>,
        stop_at_failure: bool,
    ) -> bool {
        self.schedules += 1;
        if report.unexplored_choices > 0 {
            self.unexplored_choices += 1;
        }
        if let Some(e) = &report.engine_error {
            self.error = Some(e.clone());
            return true;
        }
        match report.verdict {
            Verdict::Clean => return false,
            Verdict::BoundReached => {
                self.bound_reached += 1;
                return false;
            }
            _ => {}
        }
        *self.failures.entry(report.verdict).or_insert(0) += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(Failing {
                schedule: self.schedules,
                replay,
                report,
            });
        }
        stop_at_failure
    }

    /// Failing executions, all verdicts together.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// Why [`replay`] could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The engine has no schedules to replay (`std`).
    NotReplayable(Engine),
    /// The string is not a schedule of this engine.
    Malformed(String),
    /// The schedule does not fit this kernel (it asks for a goroutine that cannot run).
    Diverged(String),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::NotReplayable(e) => {
                write!(
                    f,
                    "the {e} engine runs real threads; its executions cannot be replayed"
                )
            }
            ReplayError::Malformed(why) => write!(f, "malformed schedule: {why}"),
            ReplayError::Diverged(why) => write!(f, "the schedule does not fit this kernel: {why}"),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Runs `kernel` under `settings` and reports what the executions ended in.
pub fn explore(settings: &Settings, kernel: Kernel) -> Exploration {
    install_panic_hook();
    let start = Instant::now();
    let mut found = match settings.engine {
        Engine::Std => explore_std(settings, kernel),
        Engine::Loom => loom_driver::explore(settings, kernel, None).0,
        Engine::ShuttlePct | Engine::ShuttleRandom | Engine::ShuttleUrw => {
            shuttle_driver::explore(settings, kernel)
        }
        Engine::ShuttleDfs => shuttle_driver::explore_dfs(settings, kernel),
    };
    found.seconds = start.elapsed().as_secs_f64();
    found
}

/// Runs the one execution `schedule` names (a string from [`Failing::replay`]) again.
pub fn replay(
    settings: &Settings,
    schedule: &str,
    kernel: Kernel,
) -> Result<ExecutionReport, ReplayError> {
    install_panic_hook();
    match settings.engine {
        Engine::Std => Err(ReplayError::NotReplayable(Engine::Std)),
        Engine::Loom => loom_driver::replay(settings, schedule, kernel),
        Engine::ShuttlePct | Engine::ShuttleRandom | Engine::ShuttleUrw => {
            shuttle_driver::replay(settings, schedule, kernel)
        }
        Engine::ShuttleDfs => shuttle_driver::replay_dfs(settings, schedule, kernel),
    }
}

/// Runs `kernel` once on `std` threads and returns the report.
///
/// # Panics
///
/// If the execution does not end clean: the panic message holds the verdict and the dump.
/// Handy in examples and quick checks; use [`explore`] to look for failures.
#[track_caller]
pub fn run(kernel: impl Fn() + Send + Sync + 'static) -> ExecutionReport {
    install_panic_hook();
    let settings = Settings::new(Engine::Std);
    let report = run_std_once(&settings, &kernel, 1, Location::caller());
    if report.verdict != Verdict::Clean {
        panic!("{}: {}\n{}", report.verdict, report.message, report.dump);
    }
    report
}

fn explore_std(settings: &Settings, kernel: Kernel) -> Exploration {
    let mut found = Exploration::new(Engine::Std);
    let at = Location::caller();
    for i in 0..settings.budget {
        let report = run_std_once(settings, &*kernel, settings.seed.wrapping_add(i), at);
        if found.record(report, None, settings.stop_at_first_failure) {
            break;
        }
    }
    found
}

fn run_std_once(
    settings: &Settings,
    kernel: &(dyn Fn() + Send + Sync),
    seed: u64,
    at: &'static Location<'static>,
) -> ExecutionReport {
    engine::set_active_engine(Some(EngineKind::Std));
    let report = rt::run_execution(EngineKind::Std, settings.exec_config(seed), kernel, at);
    engine::set_active_engine(None);
    report
}

std::thread_local! {
    /// Set while the runtime calls code that may panic on bad input (a schedule decoder).
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(message)` without printing anything.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|p| {
        take_panic()
            .map(|c| c.message)
            .unwrap_or_else(|| rt::payload_message(&*p))
    })
}

/// Installs, once per process, a panic hook that keeps panics inside executions off the
/// terminal (they become verdicts) and lets every other panic through to the original hook.
///
/// shuttle installs its own hook the first time it runs an execution, and that hook prints on
/// every panic; it is made to install itself now, and then replaced.
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let original: Arc<dyn Fn(&panic::PanicHookInfo<'_>) + Send + Sync> =
            Arc::from(panic::take_hook());
        let ours = move |original: Arc<dyn Fn(&panic::PanicHookInfo<'_>) + Send + Sync>| {
            Box::new(move |info: &panic::PanicHookInfo<'_>| {
                if engine::active_engine().is_some() || QUIET.with(Cell::get) {
                    let message = rt::payload_message(info.payload());
                    let location = info.location().map(|l| rt::site_of(l.file(), l.line()));
                    rt::keep_panic(rt::CaughtPanic { message, location });
                    return;
                }
                original(info)
            })
        };
        panic::set_hook(ours(original.clone()));
        shuttle::check_random(|| {}, 1);
        drop(panic::take_hook());
        panic::set_hook(ours(original));
    });
}

impl Engine {
    /// The engines' names, for messages: `loom, shuttle-pct, ..., std`.
    pub fn names() -> String {
        Engine::ALL.map(Engine::as_str).join(", ")
    }
}
