//! Race-directed executions for `shuttle-pct`, after RaceFuzzer (Sen, "Race Directed Random
//! Testing of Concurrent Programs", PLDI'08).
//!
//! Every execution logs the plain accesses (`Shared`, `GoMap`) the race detector checks. Two
//! accesses of one variable by two goroutines, at least one of them a write, make a *pair*,
//! named by their two call sites; the first execution that shows a pair is its *witness*. A
//! pair the detector did not report there was ordered in it (a lock, a channel, a WaitGroup
//! between the two). A race-directed execution tries to take that order away: it replays the
//! witness (its choices of task and its data seed) up to just after the first access, then
//! *holds* that goroutine at its next Go operation and runs the others at random until one of
//! them makes a conflicting access to the variable (which the detector then checks without the
//! order the held goroutine would have given it), nothing else can run, or the runtime's
//! fairness hands the held goroutine its turn (it has waited more than `STARVE_STEPS` steps
//! while others ran: Go's scheduler would run it too). From there the execution goes on at
//! random. Accesses are seen only with the race detector on (they are its hook).
//!
//! While some pair has not had its directed execution, every second execution is one; the
//! others are PCT's, which keep finding the bugs that are not races, and new pairs.
//!
//! What is left out: a pair is tried once, from its first witness, and a goroutine's accesses
//! to a variable are noted only the first time per call site and kind (read or write) in an
//! execution, so the prefix is the shortest that shows the pair in that witness. Pairs whose
//! two accesses hold a common mutex are kept: pruning them (RaceFuzzer's lockset filter) was
//! measured, and found grpc_1662 later (median 268 schedules over seeds 1-10, against 90).

use std::collections::{HashMap, HashSet};
use std::panic::Location;
use std::sync::Arc;

use shuttle::scheduler::{DataSource, RandomDataSource, Schedule, Scheduler, Task, TaskId};

use super::shuttle_driver::splitmix64;
use crate::engine::{self, PlainAccess};

/// A call site, by the address of its `Location`: one static per `#[track_caller]` site (a
/// site copied into two codegen units may have two, which only makes its pairs tried twice).
type Site = usize;

fn site(at: &'static Location<'static>) -> Site {
    std::ptr::from_ref(at) as usize
}

/// One access a goroutine made in the execution under way, the first at its site and kind.
struct Seen {
    task: usize,
    site: Site,
    write: bool,
    /// The choices of task made before the access.
    prefix: usize,
}

/// A pair to try, with the execution that showed it.
struct Witness {
    /// The goroutine of the first access, to be held right after it.
    task: usize,
    /// The variable, by its identity in the execution (the same in a replay of its prefix).
    object: u32,
    /// The first access writes: any access of the other goroutines then conflicts with it.
    write: bool,
    /// The witness's data seed and its choices of task, up to at least `prefix`.
    seed: u64,
    choices: Arc<[TaskId]>,
    prefix: usize,
}

/// The directed execution under way.
struct Directed {
    witness: Witness,
    /// The witness's choices replayed so far.
    replayed: usize,
    /// Holding `witness.task`; `Some(false)` while the hold has not yet been offered a choice.
    holding: Option<bool>,
    data: RandomDataSource,
    rng: u64,
}

/// `S` (PCT), interleaved with race-directed executions.
pub(super) struct RaceDirected<S> {
    inner: S,
    rng: u64,
    executions: u64,
    /// The execution under way: its data seed, its choices, what it has shown.
    seed: u64,
    choices: Vec<TaskId>,
    seen: HashMap<u32, Vec<Seen>>,
    found: Vec<(usize, u32, bool, usize)>,
    log: Vec<PlainAccess>,
    /// Every pair seen so far, by its two sites in order.
    known: HashSet<(Site, Site)>,
    untried: Vec<Witness>,
    directed: Option<Directed>,
}

impl<S: Scheduler> RaceDirected<S> {
    pub(super) fn new(inner: S, seed: u64) -> Self {
        RaceDirected {
            inner,
            rng: seed ^ 0x5851_F42D_4C95_7F2D,
            executions: 0,
            seed: 0,
            choices: Vec::new(),
            seen: HashMap::new(),
            found: Vec::new(),
            log: Vec::new(),
            known: HashSet::new(),
            untried: Vec::new(),
            directed: None,
        }
    }

    /// Takes in the accesses logged since the last choice, which came after `self.choices`.
    fn absorb(&mut self) {
        engine::take_plain_accesses(&mut self.log);
        let prefix = self.choices.len();
        for a in self.log.drain(..) {
            // Only during the hold: in the prefix other goroutines may touch the variable too.
            // (At the hold's first choice the accesses taken in are the held goroutine's own:
            // one goroutine runs between two choices.)
            if let Some(d) = self.directed.as_mut() {
                let w = &d.witness;
                let conflicting = a.object == w.object && a.task != w.task && (a.write || w.write);
                if conflicting && d.holding == Some(true) {
                    d.holding = None;
                }
            }
            let (task, site) = (a.task, site(a.site));
            let earlier = self.seen.entry(a.object).or_default();
            if earlier
                .iter()
                .any(|s| s.task == task && s.site == site && s.write == a.write)
            {
                continue;
            }
            for s in earlier.iter() {
                if s.task != task && (s.write || a.write) && self.known.insert((s.site, site)) {
                    self.found.push((s.task, a.object, s.write, s.prefix));
                }
            }
            earlier.push(Seen {
                task,
                site,
                write: a.write,
                prefix,
            });
        }
    }

    /// Files the pairs the finished execution showed as witnesses, and forgets the rest.
    fn end_execution(&mut self) {
        self.absorb();
        if let Some(longest) = self.found.iter().map(|f| f.3).max() {
            let choices: Arc<[TaskId]> = self.choices[..longest].into();
            for (task, object, write, prefix) in self.found.drain(..) {
                self.untried.push(Witness {
                    task,
                    object,
                    write,
                    seed: self.seed,
                    choices: choices.clone(),
                    prefix,
                });
            }
        }
        self.choices.clear();
        self.seen.clear();
        self.directed = None;
    }
}

impl<S: Scheduler> Scheduler for RaceDirected<S> {
    fn new_execution(&mut self) -> Option<Schedule> {
        self.end_execution();
        // The inner scheduler counts the budget, and its draws go on as if alone.
        let schedule = self.inner.new_execution()?;
        self.executions += 1;
        if self.executions.is_multiple_of(2) && !self.untried.is_empty() {
            let pick = (splitmix64(&mut self.rng) % self.untried.len() as u64) as usize;
            let witness = self.untried.swap_remove(pick);
            self.seed = witness.seed;
            self.directed = Some(Directed {
                data: RandomDataSource::initialize(witness.seed),
                rng: splitmix64(&mut self.rng),
                witness,
                replayed: 0,
                holding: Some(false),
            });
            return Some(Schedule::new(self.seed));
        }
        self.seed = schedule.seed;
        Some(schedule)
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> Option<TaskId> {
        self.absorb();
        let next = match self.directed.as_mut() {
            Some(d) => d.next_task(runnable, current, is_yielding),
            None => self.inner.next_task(runnable, current, is_yielding)?,
        };
        // The scheduler's own choice: the runtime may hand the turn to a starving goroutine
        // instead, the same one again when the prefix is replayed.
        self.choices.push(next);
        Some(next)
    }

    fn next_u64(&mut self) -> u64 {
        match self.directed.as_mut() {
            Some(d) => d.data.next_u64(),
            None => self.inner.next_u64(),
        }
    }
}

impl Directed {
    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        is_yielding: bool,
    ) -> TaskId {
        let w = &self.witness;
        if self.replayed < w.prefix {
            let want = w.choices[self.replayed];
            self.replayed += 1;
            if runnable.iter().any(|t| t.id() == want) {
                return want;
            }
            // Not the witness's execution after all (it cannot be, but a kernel that is not
            // deterministic would do it): no hold, the rest at random.
            self.replayed = w.prefix;
            self.holding = None;
        }
        let held = TaskId::from(w.task);
        match self.holding {
            // The held goroutine ran: the runtime handed it a fair turn.
            Some(true) if current == Some(held) => self.holding = None,
            Some(false) => self.holding = Some(true),
            _ => {}
        }
        let holding = self.holding.is_some();
        let other = |t: TaskId| t != held || !holding;
        // A goroutine that yields (polls) lets the others go first, as under PCT.
        let fair = |t: TaskId| !is_yielding || Some(t) != current;
        let z = splitmix64(&mut self.rng);
        if let Some(t) =
            pick(runnable, z, |t| other(t) && fair(t)).or_else(|| pick(runnable, z, other))
        {
            return t;
        }
        // Nothing else can run: the hold ends.
        self.holding = None;
        pick(runnable, z, |_| true).expect("a runnable task")
    }
}

/// The runnable task that `z` picks uniformly among those `keep` keeps, if any.
fn pick(runnable: &[&Task], z: u64, keep: impl Fn(TaskId) -> bool) -> Option<TaskId> {
    let n = runnable.iter().filter(|t| keep(t.id())).count() as u64;
    let i = z.checked_rem(n)? as usize;
    runnable.iter().map(|t| t.id()).filter(|&t| keep(t)).nth(i)
}
