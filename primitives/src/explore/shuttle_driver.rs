//! The shuttle engines: PCT, random and uniform-random-walk schedulers, with every execution's
//! schedule recorded so a failing one can be replayed from its string; and the bounded
//! depth-first search (`shuttle-dfs`, in `dfs.rs`), whose schedule strings are its own.

use std::panic::{self, Location};
use std::sync::{Arc, Mutex, PoisonError};

use shuttle::scheduler::{
    DataSource, RandomDataSource, ReplayScheduler, Schedule, Scheduler, Task, TaskId,
    UrwRandomScheduler,
};
use shuttle::{Config, FailurePersistence, MaxSteps};
use shuttle_engine::scheduler::serialization::{deserialize_schedule, serialize_schedule};

use super::dfs::{self, Dfs, End};
use super::race_directed::RaceDirected;
use super::{quietly, take_panic, Engine, Exploration, Kernel, ReplayError, Settings};
use crate::engine::{self, EngineKind, PlainWatch};
use crate::report::ExecutionReport;
use crate::rt;

/// What the recorder shares with the execution body and the caller; touched once per
/// execution, never per step.
#[derive(Default)]
struct Record {
    executions: u64,
    /// No more executions.
    stop: bool,
    /// Keep the schedule of this execution when it completes.
    capture: Option<u64>,
    captured: Option<Schedule>,
    /// Stopped because the kernel has a single schedule.
    single_schedule: bool,
}

/// Wraps a shuttle scheduler and records each execution's schedule, the way shuttle's own
/// failure persistence would, but without printing anything.
struct Recorder {
    inner: Box<dyn Scheduler>,
    record: Arc<Mutex<Record>>,
    /// The schedule of the execution in progress, the recorder's own: a step takes no lock.
    current: Option<Schedule>,
    /// Some execution had more than one runnable goroutine at a step.
    task_choice_seen: bool,
    /// Some execution drew a scheduler-chosen value.
    data_choice_seen: bool,
}

impl Recorder {
    fn new(inner: Box<dyn Scheduler>, record: Arc<Mutex<Record>>) -> Self {
        Recorder {
            inner,
            record,
            current: None,
            task_choice_seen: false,
            data_choice_seen: false,
        }
    }
}

impl Scheduler for Recorder {
    fn new_execution(&mut self) -> Option<Schedule> {
        let mut r = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        // The finished execution's schedule is kept if asked for, else its room is reused.
        let mut spare = None;
        if let Some(done) = self.current.take() {
            if r.capture == Some(r.executions) {
                r.captured = Some(done);
            } else {
                spare = Some(done);
            }
        }
        if r.stop {
            return None;
        }
        if r.executions >= 1 && !self.task_choice_seen && !self.data_choice_seen {
            r.single_schedule = true;
            return None;
        }
        let schedule = self.inner.new_execution()?;
        self.current = Some(match spare {
            Some(mut s) => {
                s.seed = schedule.seed;
                s.steps.clear();
                s
            }
            None => Schedule::new(schedule.seed),
        });
        r.executions += 1;
        Some(schedule)
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let next = self.inner.next_task(runnable, current, is_yielding)?;
        // Taken after the scheduler's say: a race-directed hold may refuse it (see
        // `race_directed`).
        let fair_turn = engine::take_fair_turn();
        // The scheduler has had its say (PCT has dropped the yielder); a goroutine that has
        // waited long for its turn gets it.
        let next = fair_turn
            .map(TaskId::from)
            .filter(|&t| runnable.iter().any(|r| r.id() == t))
            .unwrap_or(next);
        self.task_choice_seen |= runnable.len() > 1;
        if let Some(s) = self.current.as_mut() {
            s.push_task(next);
        }
        Some(next)
    }

    fn next_u64(&mut self) -> u64 {
        self.data_choice_seen = true;
        if let Some(s) = self.current.as_mut() {
            s.push_random();
        }
        self.inner.next_u64()
    }
}

/// The next number of the splitmix64 generator whose state is `state`.
pub(super) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniformly random runnable task at every step: shuttle's random scheduler, minus its habit
/// of printing a "failing seed" when it is dropped before its last iteration (which is every
/// time an exploration stops at a failure).
struct UniformScheduler(Draws);

/// The random state of this crate's schedulers: the executions left, and per execution a seed
/// for the scheduler's own choices and the data source the values come from.
struct Draws {
    iterations: usize,
    max_iterations: usize,
    /// Picks tasks; kept apart from the data source, so a replay, which draws only the data,
    /// gets the same values.
    rng: u64,
    data: RandomDataSource,
}

impl Draws {
    fn new(seed: u64, max_iterations: usize) -> Self {
        Draws {
            iterations: 0,
            max_iterations,
            rng: seed,
            data: RandomDataSource::initialize(seed),
        }
    }

    /// The next execution's schedule, seeded; `None` once the budget is spent.
    fn next_execution(&mut self) -> Option<Schedule> {
        if self.iterations >= self.max_iterations {
            return None;
        }
        self.iterations += 1;
        let seed = self.data.reinitialize();
        self.rng = seed;
        Some(Schedule::new(seed))
    }

    fn next(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }
}

impl UniformScheduler {
    fn new(seed: u64, max_iterations: usize) -> Self {
        UniformScheduler(Draws::new(seed, max_iterations))
    }
}

impl Scheduler for UniformScheduler {
    fn new_execution(&mut self) -> Option<Schedule> {
        self.0.next_execution()
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        _current: Option<TaskId>,
        _is_yielding: bool,
    ) -> Option<TaskId> {
        let z = self.0.next();
        Some(runnable[(z % runnable.len() as u64) as usize].id())
    }

    fn next_u64(&mut self) -> u64 {
        self.0.data.next_u64()
    }
}

/// PCT (Burckhardt et al., "A Randomized Scheduler with Probabilistic Guarantees of Finding
/// Bugs", ASPLOS'10): each task gets a random priority when it appears, the highest-priority
/// runnable task always runs, and at `depth - 1` steps drawn at random from the longest run seen
/// so far the task that has just run drops below every other.
///
/// shuttle has one; this one differs where a task blocks. shuttle's counts only the steps with
/// more than one runnable task, so the step at which a task blocks while one other can run is
/// not a step to it. Here every step after which the task that ran can no longer go on counts
/// too, and that task drops below the others, as one that yields does: shuttle's own PCT did
/// the same through its `park`, which asks to yield and which the runtime no longer uses (see
/// `engine::ShuttleParker`). A goroutine that waits and must then lose the race for what comes
/// after its wakeup (a WaitGroup reused before the waiter returns) is found that way.
struct Pct {
    depth: usize,
    /// Draws priorities and change points.
    draws: Draws,
    /// Each task's priority, by task id; the highest runs.
    priorities: Vec<u64>,
    /// The priority the next change point gives: below every first priority, and falling.
    low: u64,
    change_points: Vec<usize>,
    steps: usize,
    /// The most steps an execution has taken so far, where change points are drawn from.
    max_steps: usize,
}

/// First priorities are drawn from the upper half of `u64`; change points hand out the lower.
const PCT_FIRST: u64 = 1 << 63;

impl Pct {
    fn new(seed: u64, depth: usize, max_iterations: usize) -> Self {
        Pct {
            depth: depth.max(1),
            draws: Draws::new(seed, max_iterations),
            priorities: Vec::new(),
            low: PCT_FIRST - 1,
            change_points: Vec::new(),
            steps: 0,
            max_steps: 1,
        }
    }
}

impl Scheduler for Pct {
    fn new_execution(&mut self) -> Option<Schedule> {
        let schedule = self.draws.next_execution()?;
        self.priorities.clear();
        self.low = PCT_FIRST - 1;
        self.steps = 0;
        let span = self.max_steps as u64;
        self.change_points = (1..self.depth)
            .map(|_| 1 + (self.draws.next() % span) as usize)
            .collect();
        Some(schedule)
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        for t in runnable {
            let id = usize::from(t.id());
            while self.priorities.len() <= id {
                let p = PCT_FIRST | self.draws.next();
                self.priorities.push(p);
            }
        }
        let current = current.map(usize::from);
        let stopped = current.is_some_and(|c| runnable.iter().all(|t| usize::from(t.id()) != c));
        // A step with no choice, where the task that ran goes on alone, is not one.
        if runnable.len() > 1 || stopped {
            if let Some(c) = current.filter(|&c| c < self.priorities.len()) {
                // A goroutine that yields, or blocks, drops below the others (as under shuttle's
                // PCT, whose park asks to yield): woken, it runs after them unless a change
                // point drops them in turn.
                let yielded = (is_yielding && runnable.len() > 1) || stopped;
                if yielded || self.change_points.contains(&self.steps) {
                    self.priorities[c] = self.low;
                    self.low -= 1;
                }
            }
            self.steps += 1;
            self.max_steps = self.max_steps.max(self.steps);
        }
        runnable
            .iter()
            .max_by_key(|t| self.priorities[usize::from(t.id())])
            .map(|t| t.id())
    }

    fn next_u64(&mut self) -> u64 {
        self.draws.data.next_u64()
    }
}

/// How plain accesses are watched: only `shuttle-pct` directs executions at races (`watch`
/// while exploring, its points alone in a replay); the other engines' schedules stay as
/// they were.
fn plain_watch(settings: &Settings, watch: PlainWatch) -> PlainWatch {
    match settings.engine {
        Engine::ShuttlePct => watch,
        _ => PlainWatch::Off,
    }
}

fn config() -> Config {
    let mut config = Config::new();
    config.failure_persistence = FailurePersistence::None;
    // The runtime's own step bound ends runaway executions first, with a verdict.
    config.max_steps = MaxSteps::FailAfter(10_000_000);
    config.silence_warnings = true;
    config.stack_size = 0x8_0000;
    config
}

pub(super) fn explore(settings: &Settings, kernel: Kernel) -> Exploration {
    let record = Arc::new(Mutex::new(Record::default()));
    let found = Arc::new(Mutex::new(Exploration::new(settings.engine)));
    let iterations = usize::try_from(settings.budget).unwrap_or(usize::MAX);
    let exec_config = settings.exec_config(settings.seed);
    let stop_at_failure = settings.stop_at_first_failure;
    let at = Location::caller();
    let body = {
        let (record, found) = (record.clone(), found.clone());
        move || {
            let report = rt::run_execution(EngineKind::Shuttle, exec_config.clone(), &*kernel, at);
            let failed = report.verdict.is_failure() || report.engine_error.is_some();
            let mut f = found.lock().unwrap_or_else(PoisonError::into_inner);
            let first = f.first_failure.is_none();
            let stop = f.record(report, None, stop_at_failure);
            let mut r = record.lock().unwrap_or_else(PoisonError::into_inner);
            if failed && first {
                r.capture = Some(r.executions);
            }
            r.stop |= stop;
        }
    };
    let inner: Box<dyn Scheduler> = match settings.engine {
        Engine::ShuttlePct => Box::new(RaceDirected::new(
            Pct::new(settings.seed, settings.pct_depth, iterations),
            settings.seed,
        )),
        Engine::ShuttleUrw => {
            Box::new(UrwRandomScheduler::new_from_seed(settings.seed, iterations))
        }
        _ => Box::new(UniformScheduler::new(settings.seed, iterations)) as Box<dyn Scheduler>,
    };
    let recorder = Recorder::new(inner, record.clone());
    let run = move || shuttle::Runner::new(recorder, config()).run(body);
    engine::set_active_engine(Some(EngineKind::Shuttle));
    engine::set_plain_watch(plain_watch(settings, PlainWatch::Logged));
    let result = panic::catch_unwind(panic::AssertUnwindSafe(run));
    engine::set_plain_watch(PlainWatch::Off);
    engine::set_active_engine(None);
    let mut found = std::mem::replace(
        &mut *found.lock().unwrap_or_else(PoisonError::into_inner),
        Exploration::new(settings.engine),
    );
    let r = record.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(p) = result {
        let message = take_panic()
            .map(|c| c.message)
            .unwrap_or_else(|| rt::payload_message(&*p));
        found.error = Some(format!("shuttle: {message}"));
    }
    if r.single_schedule {
        found.exhaustive = true;
        found.limit = Some("the kernel has a single schedule".to_string());
    }
    if let (Some(failing), Some(schedule)) = (found.first_failure.as_mut(), r.captured.as_ref()) {
        failing.replay = Some(encode(schedule));
    }
    found
}

/// shuttle's schedule string, on one line.
fn encode(schedule: &Schedule) -> String {
    serialize_schedule(schedule).replace('\n', "")
}

pub(super) fn replay(
    settings: &Settings,
    schedule: &str,
    kernel: Kernel,
) -> Result<ExecutionReport, ReplayError> {
    let bad = |why: &str| {
        ReplayError::Malformed(format!(
            "{why}; expected the hexadecimal string of a shuttle schedule"
        ))
    };
    if schedule.trim().is_empty() || !schedule.trim().chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad("not a hexadecimal string"));
    }
    let decoded = quietly(|| deserialize_schedule(schedule))
        .ok()
        .flatten()
        .ok_or_else(|| bad("it does not decode"))?;
    let report = Arc::new(Mutex::new(None));
    let exec_config = settings.exec_config(settings.seed);
    let at = Location::caller();
    let sink = report.clone();
    let mut scheduler = ReplayScheduler::new_from_schedule(decoded);
    scheduler.set_allow_incomplete();
    engine::set_active_engine(Some(EngineKind::Shuttle));
    engine::set_plain_watch(plain_watch(settings, PlainWatch::Points));
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        shuttle::Runner::new(scheduler, config()).run(move || {
            let r = rt::run_execution(EngineKind::Shuttle, exec_config.clone(), &*kernel, at);
            *sink.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        })
    }));
    engine::set_plain_watch(PlainWatch::Off);
    engine::set_active_engine(None);
    if let Err(p) = result {
        let message = take_panic()
            .map(|c| c.message)
            .unwrap_or_else(|| rt::payload_message(&*p));
        return Err(ReplayError::Diverged(message));
    }
    let report = report.lock().unwrap_or_else(PoisonError::into_inner).take();
    report.ok_or_else(|| ReplayError::Diverged("the execution did not run to its end".to_string()))
}

/// `shuttle-dfs`: every schedule in rounds of growing preemption bound, up to the settings'
/// `preemption_bound`, within the budget.
pub(super) fn explore_dfs(settings: &Settings, kernel: Kernel) -> Exploration {
    let scheduler = Dfs::new(settings.budget, settings.preemption_bound);
    let state = scheduler.0.clone();
    let found = Arc::new(Mutex::new(Exploration::new(settings.engine)));
    let exec_config = settings.exec_config(settings.seed);
    let stop_at_failure = settings.stop_at_first_failure;
    let at = Location::caller();
    let body = {
        let (state, found) = (state.clone(), found.clone());
        move || {
            let report = rt::run_execution(EngineKind::Shuttle, exec_config.clone(), &*kernel, at);
            let failed = report.verdict.is_failure() || report.engine_error.is_some();
            let mut f = found.lock().unwrap_or_else(PoisonError::into_inner);
            let first = f.first_failure.is_none();
            let stop = f.record(report, None, stop_at_failure);
            let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
            s.capture |= failed && first;
            s.stop |= stop;
        }
    };
    let run = move || shuttle::Runner::new(scheduler, config()).run(body);
    engine::set_active_engine(Some(EngineKind::Shuttle));
    dfs::set_active(true);
    engine::set_plain_watch(PlainWatch::Off);
    let result = panic::catch_unwind(panic::AssertUnwindSafe(run));
    dfs::set_active(false);
    engine::set_active_engine(None);
    let mut found = std::mem::replace(
        &mut *found.lock().unwrap_or_else(PoisonError::into_inner),
        Exploration::new(settings.engine),
    );
    let s = state.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(p) = result {
        let message = take_panic()
            .map(|c| c.message)
            .unwrap_or_else(|| rt::payload_message(&*p));
        found.error = Some(format!("shuttle: {message}"));
    }
    let below = |bound: usize| bound.checked_sub(1);
    let bound_words = |k: usize| match k {
        1 => "1 preemption".to_string(),
        k => format!("{k} preemptions"),
    };
    match s.end.clone() {
        Some(End::Complete) => {
            found.exhaustive = true;
            found.limit = None;
        }
        Some(End::Bounded(k)) => {
            found.exhaustive = true;
            found.preemptions.explored_within = Some(k);
            found.limit = Some(format!("every schedule with at most {}", bound_words(k)));
        }
        Some(End::Budget(k)) => {
            found.preemptions.explored_within = below(k);
            found.limit = Some(match below(k) {
                Some(j) => format!(
                    "every schedule with at most {}; the budget ran out at {}",
                    bound_words(j),
                    bound_words(k)
                ),
                None => "the budget ran out before the schedules without preemption".into(),
            });
        }
        Some(End::Failure(k)) => found.preemptions.explored_within = below(k),
        Some(End::Diverged(why)) => {
            found.error = Some(format!(
                "shuttle-dfs: the kernel did not repeat itself on a replayed schedule ({why})"
            ));
        }
        None => {}
    }
    if s.unknown_arity && found.error.is_none() {
        found.error = Some("shuttle-dfs: a value was drawn without its range".into());
    }
    if let (Some(failing), Some((schedule, preemptions))) =
        (found.first_failure.as_mut(), s.captured.as_ref())
    {
        failing.replay = Some(schedule.clone());
        found.preemptions.first_failure = Some(*preemptions);
    }
    found
}

pub(super) fn replay_dfs(
    settings: &Settings,
    schedule: &str,
    kernel: Kernel,
) -> Result<ExecutionReport, ReplayError> {
    let scheduler = Dfs::replay(schedule.trim()).map_err(|why| {
        ReplayError::Malformed(format!(
            "{why}; expected a shuttle-dfs schedule (goroutines and `v` values, joined by `.`)"
        ))
    })?;
    let state = scheduler.0.clone();
    let report = Arc::new(Mutex::new(None));
    let exec_config = settings.exec_config(settings.seed);
    let at = Location::caller();
    let sink = report.clone();
    engine::set_active_engine(Some(EngineKind::Shuttle));
    dfs::set_active(true);
    engine::set_plain_watch(PlainWatch::Off);
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        shuttle::Runner::new(scheduler, config()).run(move || {
            let r = rt::run_execution(EngineKind::Shuttle, exec_config.clone(), &*kernel, at);
            *sink.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        })
    }));
    dfs::set_active(false);
    engine::set_active_engine(None);
    if let Err(p) = result {
        let message = take_panic()
            .map(|c| c.message)
            .unwrap_or_else(|| rt::payload_message(&*p));
        return Err(ReplayError::Diverged(message));
    }
    if let Some(End::Diverged(why)) = &state.lock().unwrap_or_else(PoisonError::into_inner).end {
        return Err(ReplayError::Diverged(why.clone()));
    }
    let report = report.lock().unwrap_or_else(PoisonError::into_inner).take();
    report.ok_or_else(|| ReplayError::Diverged("the execution did not run to its end".to_string()))
}
