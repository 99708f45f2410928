//! The `shuttle-dfs` engine's scheduler: a depth-first search of the schedules, in rounds of
//! growing preemption bound (iterative context bounding, as in CHESS: Musuvathi and Qadeer,
//! "Iterative Context Bounding for Systematic Testing of Multithreaded Programs", PLDI'07).
//!
//! Round `k` runs every schedule with at most `k` preemptions, a preemption being a switch away
//! from a goroutine that could have gone on (a switch at a block, at the goroutine's end or at a
//! yield is free). Values the scheduler chooses (which ready `select` case, which parked case a
//! channel serves) are branches too, with no bound. Rounds run `0, 1, ...` up to the bound of
//! the settings, so the first failing schedule found has the fewest preemptions any failing
//! schedule has: the simplest to read. A round that finishes without the bound having kept a
//! choice out has explored every schedule, and the search ends there.
//!
//! The search is stateless: each execution replays the path to its last open branch and takes
//! the next choice there. That needs the kernel to be deterministic but for the schedule, as
//! every kernel of the corpus is; a replayed prefix that no longer fits is reported, not
//! guessed around.
//!
//! There is no partial-order reduction (sleep sets, DPOR), on purpose. A reduction explores one
//! order of two turns that touch different objects, which is sound only if nothing else tells
//! the orders apart; but the runtime's fairness does: a goroutine gives way when another has
//! waited a number of steps for its turn, counted over all goroutines, so running a turn
//! earlier changes where later hand-overs fall. Tried with sleep sets over each turn's objects:
//! on grpc_1662 the reduced search ran "every schedule with at most 2 preemptions" in 1,783
//! schedules without the race that the plain search finds at 745 within that bound. Fairness
//! that counts each goroutine's own steps removes that obstacle (over the corpus the reduction
//! then saved 37% of the fixed kernels' schedules, with the same verdicts), but grpc_1662's race
//! then needs a third preemption, found after 8,245 schedules even with the reduction.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use shuttle::scheduler::{Schedule, Scheduler, Task, TaskId};

std::thread_local! {
    /// Set while this thread explores with [`Dfs`], so that the runtime hands it the number of
    /// values a choice has ([`with_arity`]).
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// The number of values the choice being drawn has; 0 when the draw is not the runtime's.
    static ARITY: Cell<usize> = const { Cell::new(0) };
    /// The next scheduling point is the start of a Go operation (the runtime lock's acquire).
    static OP_START: Cell<bool> = const { Cell::new(false) };
}

/// Marks the next scheduling point as the start of a Go operation: the only place the search
/// preempts. shuttle also switches where a goroutine parks, yields or starts another, but a
/// goroutine preempted there would only be run again, or the others would run the same Go
/// operations in the same order, as a preemption at the next operation's start gives: the code
/// between two Go operations touches nothing another goroutine sees.
pub(crate) fn op_start() {
    if active() {
        OP_START.with(|o| o.set(true));
    }
}

/// Whether the scheduler of this thread's exploration is [`Dfs`].
pub(crate) fn active() -> bool {
    ACTIVE.with(Cell::get)
}

pub(super) fn set_active(on: bool) {
    ACTIVE.with(|a| a.set(on));
}

/// Draws a value below `n` from the scheduler, telling it that there are `n` of them.
pub(crate) fn with_arity(n: usize, draw: impl FnOnce() -> u64) -> usize {
    ARITY.with(|a| a.set(n));
    let v = draw();
    ARITY.with(|a| a.set(0));
    (v % n as u64) as usize
}

/// One branch point of an execution.
#[derive(Clone, Debug)]
struct Branch {
    /// Goroutines (shuttle tasks) or values, in the order the search tries them.
    options: Vec<Step>,
    taken: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Task(usize),
    Value(u64),
}

/// How a search ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Every schedule was run.
    Complete,
    /// Every schedule with at most this many preemptions was run; the bound kept others out.
    Bounded(usize),
    /// The budget ran out in the round of this bound.
    Budget(usize),
    /// Stopped at a failure, in the round of this bound.
    Failure(usize),
    /// A replayed prefix did not fit: the kernel is not deterministic.
    Diverged(String),
}

#[derive(Debug)]
pub(super) struct State {
    path: Vec<Branch>,
    /// How far the execution in progress has got along `path`.
    depth: usize,
    preemptions: usize,
    /// The bound of this round, and the last round's.
    bound: usize,
    max_bound: Option<usize>,
    /// The bound kept some choice out in this round.
    cut: bool,
    executions: u64,
    budget: u64,
    started: bool,
    /// Set from outside: stop after this execution.
    pub(super) stop: bool,
    /// Set from outside: keep this execution's schedule and preemption count when it ends.
    pub(super) capture: bool,
    pub(super) captured: Option<(String, usize)>,
    pub(super) end: Option<End>,
    /// Replay only the given path, once.
    replay: bool,
    /// Executions in which the runtime drew a value without saying how many there are.
    pub(super) unknown_arity: bool,
}

/// The scheduler; its state is shared with the driver, which reads how the search ended.
pub(super) struct Dfs(pub(super) Arc<Mutex<State>>);

impl Dfs {
    /// A search of at most `budget` executions, in rounds of preemption bound `0..=max_bound`
    /// (`None`: no bound, a single round).
    pub(super) fn new(budget: u64, max_bound: Option<usize>) -> Self {
        Dfs(Arc::new(Mutex::new(State {
            path: Vec::new(),
            depth: 0,
            preemptions: 0,
            bound: max_bound.map_or(usize::MAX, |_| 0),
            max_bound,
            cut: false,
            executions: 0,
            budget,
            started: false,
            stop: false,
            capture: false,
            captured: None,
            end: None,
            replay: false,
            unknown_arity: false,
        })))
    }

    /// A scheduler that runs the one execution `schedule` (from [`State::captured`]) names.
    pub(super) fn replay(schedule: &str) -> Result<Self, String> {
        let mut path = Vec::new();
        for part in schedule.split('.') {
            let step = if let Some(v) = part.strip_prefix('v') {
                v.parse().map(Step::Value)
            } else {
                part.parse().map(Step::Task)
            }
            .map_err(|_| format!("`{part}` is neither a goroutine nor a value"))?;
            path.push(Branch {
                options: vec![step],
                taken: 0,
            });
        }
        let dfs = Dfs::new(1, None);
        {
            let mut s = dfs.0.lock().unwrap_or_else(PoisonError::into_inner);
            s.path = path;
            s.replay = true;
        }
        Ok(dfs)
    }
}

impl State {
    /// The schedule string of the execution in progress, up to where it has got.
    fn encode(&self) -> String {
        let mut out = String::new();
        for (i, b) in self.path[..self.depth].iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            match b.options[b.taken] {
                Step::Task(t) => write!(out, "{t}"),
                Step::Value(v) => write!(out, "v{v}"),
            }
            .expect("writing to a String");
        }
        out
    }

    /// Moves the path to the next schedule of the round; `false` when the round is over.
    fn advance(&mut self) -> bool {
        self.path.truncate(self.depth);
        while let Some(last) = self.path.last_mut() {
            if last.taken + 1 < last.options.len() {
                last.taken += 1;
                return true;
            }
            self.path.pop();
        }
        false
    }

    /// The next branch: the one the path replays, or a new one with `options`, first taken.
    fn branch(&mut self, options: impl FnOnce(&mut State) -> Vec<Step>) -> Result<Step, String> {
        if self.depth < self.path.len() {
            let b = &self.path[self.depth];
            let step = b.options[b.taken];
            if !self.replay {
                let fresh = options(self);
                if fresh != self.path[self.depth].options {
                    return Err(format!(
                        "branch {} offers {fresh:?} now and {:?} before",
                        self.depth, self.path[self.depth].options
                    ));
                }
            }
            self.depth += 1;
            return Ok(step);
        }
        if self.replay {
            // Past the end of a replayed schedule: keep to the first choice.
            let step = options(self)[0];
            self.depth += 1;
            self.path.push(Branch {
                options: vec![step],
                taken: 0,
            });
            return Ok(step);
        }
        let options = options(self);
        let step = options[0];
        self.path.push(Branch { options, taken: 0 });
        self.depth += 1;
        Ok(step)
    }
}

impl Scheduler for Dfs {
    fn new_execution(&mut self) -> Option<Schedule> {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if s.started {
            if s.capture {
                s.capture = false;
                let schedule = s.encode();
                let preemptions = s.preemptions;
                s.captured = Some((schedule, preemptions));
            }
            if s.end.is_some() {
                return None;
            }
            if s.stop {
                s.end = Some(End::Failure(s.bound));
                return None;
            }
            if s.replay {
                return None;
            }
            if !s.advance() {
                // The round is over.
                match s.max_bound {
                    Some(max) if s.cut && s.bound < max => {
                        s.bound += 1;
                        s.cut = false;
                    }
                    Some(_) if s.cut => {
                        s.end = Some(End::Bounded(s.bound));
                        return None;
                    }
                    _ => {
                        s.end = Some(End::Complete);
                        return None;
                    }
                }
            }
            if s.executions >= s.budget {
                s.end = Some(End::Budget(s.bound));
                return None;
            }
        }
        s.started = true;
        s.executions += 1;
        s.depth = 0;
        s.preemptions = 0;
        Some(Schedule::new(0))
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let ids: Vec<usize> = runnable.iter().map(|t| usize::from(t.id())).collect();
        let current = current.map(usize::from).filter(|c| ids.contains(c));
        let preemptible = OP_START.with(|o| o.replace(false));
        let fair_turn = crate::engine::take_fair_turn().filter(|t| ids.contains(t));
        // Staying with a goroutine that can go on is free, and tried first; switching away from
        // it is a preemption, offered only where a Go operation starts. A goroutine that yields
        // (the runtime yields where Go's scheduler would be fair: a poll, a long run, a starving
        // goroutine) hands over to the one that has waited long for its turn, if that is why it
        // yields, or else to the next one in turn, round robin, without a branch: a
        // branch there would let the search keep the starving goroutine waiting forever, which
        // Go's scheduler does not do; the orders it leaves out are reached by preemptions.
        let options = |s: &mut State| {
            let mut options = Vec::with_capacity(ids.len());
            match current {
                Some(c) if is_yielding && ids.len() > 1 => {
                    let next = fair_turn
                        .unwrap_or_else(|| ids.iter().copied().find(|&t| t > c).unwrap_or(ids[0]));
                    options.push(Step::Task(next));
                }
                Some(c) if !preemptible => options.push(Step::Task(c)),
                Some(c) => {
                    options.push(Step::Task(c));
                    if s.preemptions < s.bound {
                        options.extend(ids.iter().copied().filter(|&t| t != c).map(Step::Task));
                    } else if ids.len() > 1 {
                        s.cut = true;
                    }
                }
                None => match fair_turn {
                    Some(t) => options.push(Step::Task(t)),
                    None => options.extend(ids.iter().copied().map(Step::Task)),
                },
            }
            options
        };
        let step = match s.branch(options) {
            Ok(step) => step,
            Err(why) => {
                s.end.get_or_insert(End::Diverged(why));
                ids.first().map(|&t| Step::Task(t))?
            }
        };
        let Step::Task(next) = step else {
            s.end
                .get_or_insert(End::Diverged("a value where a goroutine was due".into()));
            return runnable.first().map(|t| t.id());
        };
        if !ids.contains(&next) {
            s.end.get_or_insert(End::Diverged(format!(
                "goroutine {next} is due but not runnable"
            )));
            return runnable.first().map(|t| t.id());
        }
        if matches!(current, Some(c) if c != next && !is_yielding) {
            s.preemptions += 1;
        }
        Some(TaskId::from(next))
    }

    fn next_u64(&mut self) -> u64 {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let arity = ARITY.with(Cell::get);
        if arity == 0 {
            s.unknown_arity = true;
        }
        let options = |_: &mut State| (0..arity.max(1) as u64).map(Step::Value).collect();
        match s.branch(options) {
            Ok(Step::Value(v)) => v,
            Ok(Step::Task(_)) => {
                s.end
                    .get_or_insert(End::Diverged("a goroutine where a value was due".into()));
                0
            }
            Err(why) => {
                s.end.get_or_insert(End::Diverged(why));
                0
            }
        }
    }
}
