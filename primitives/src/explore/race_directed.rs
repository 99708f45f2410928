//! Race-directed executions for `shuttle-pct`, after RaceFuzzer (Sen, "Race Directed Random
//! Testing of Concurrent Programs", PLDI'08), and lock-order reversals in the same frame.
//!
//! Every execution logs the plain accesses (`Shared`, `GoMap`) the race detector checks and
//! the mutexes taken (`Lock`, `RLock`, a `TryLock` that takes it). Two accesses of one variable
//! by two goroutines, at least one of them a write, make a *pair*, named by their two call
//! sites; so do two goroutines taking one mutex (not both with `RLock`). The first execution
//! that shows a pair is its *witness*. A directed execution replays the witness (its choices
//! of task and its data seed) to a point, then *holds* the goroutine of the pair's first
//! access and runs the others at random:
//!
//! - a race pair, which the detector did not report in the witness, was ordered there (a lock,
//!   a channel, a WaitGroup between the two). The hold begins just after the first access, to
//!   take that order away, and lasts until another goroutine makes a conflicting access to
//!   the variable (which the detector then checks without the order the held goroutine would
//!   have given it);
//! - a lock pair is tried the other way round: the hold begins just before the first goroutine
//!   takes the mutex, and lasts until another goroutine takes it at the pair's second site.
//!   A goroutine that waits for a lock the other took first is the order a bug often needs
//!   (grpc_1662: the balancer's watcher must register its new addrConn before `Close` takes
//!   `cc.mu`).
//!
//! A hold also ends when nothing else can run, when a timer fires (a goroutine is held up for
//! some operations, not for a timer's period: held through ticks, it would look stuck to the
//! livelock rule), or at the first fairness hand-over to the held goroutine after
//! `HOLD_CHOICES` choices; until then the hold refuses the hand-over, which the runtime gives
//! after `STARVE_STEPS` (32) steps, too soon for a path of a few dozen operations in the
//! others. Real Go lets a runnable goroutine wait that long. From there the execution goes on
//! at random. Plain accesses are seen only with the race detector on (they are its hook); the
//! mutexes taken are seen either way. A `TryRLock` that takes the lock counts as a write lock
//! (the runtime books it as a `TryLock`), and `Cond.Wait`'s re-lock as a `Lock` at the `Wait`.
//!
//! Where a mutex was handed to its goroutine while it was parked (a `Mutex` in starvation
//! mode, an `RWMutex` whose readers or writer the other side's unlock let in), the goroutine
//! owns the mutex before the choice that resumes it, so a lock pair's hold there comes too
//! late to reverse the order: the partner then waits, and the hold ends when nothing else can
//! run, or at the hand-over.
//!
//! While some pair has not had its directed execution, every second execution is one; the
//! others are PCT's, which keep finding the bugs that are not races, and new pairs.
//!
//! What is left out: a pair is tried once, from its first witness; a goroutine's accesses at
//! one call site and kind are stored once per execution (the first, whose prefix is the
//! shortest), though each is checked against the others' stored accesses. Pairs whose two
//! accesses hold a common mutex are kept: pruning them (RaceFuzzer's lockset filter) was
//! measured, and found grpc_1662 later (median 268 schedules over seeds 1-10, against 90).
//! Channel operations make no pairs: a send and a receive meet rather than compete.

use std::collections::{HashMap, HashSet};
use std::panic::Location;
use std::sync::Arc;

use shuttle::scheduler::{DataSource, RandomDataSource, Schedule, Scheduler, Task, TaskId};

use super::shuttle_driver::splitmix64;
use crate::engine::{self, PlainAccess};

/// How many choices a hold refuses the runtime's fairness hand-over for: as many as the steps
/// the runtime lets one goroutine run before it preempts it (`PREEMPT_STEPS` in `rt::ctx`).
const HOLD_CHOICES: u32 = 256;

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
    lock: bool,
    /// The choices of task made before the access.
    prefix: usize,
}

/// A pair to try, with the execution that showed it.
struct Witness {
    /// The goroutine of the first access, to be held right after it (before it, for a lock).
    task: usize,
    /// The variable, by its identity in the execution (the same in a replay of its prefix).
    object: u32,
    /// The first access writes: any access of the other goroutines then conflicts with it.
    write: bool,
    /// A lock-order reversal: the pair is two goroutines taking one mutex, held *before* the
    /// first takes it, until another goroutine takes it at `partner`.
    lock: bool,
    partner: Site,
    /// The witness's data seed and its choices of task, up to at least `prefix`.
    seed: u64,
    choices: Arc<[TaskId]>,
    prefix: usize,
}

/// A pair the execution under way showed first: a witness once it ends.
struct Found {
    task: usize,
    object: u32,
    write: bool,
    lock: bool,
    partner: Site,
    prefix: usize,
}

/// The directed execution under way.
struct Directed {
    witness: Witness,
    /// The witness's choices replayed so far.
    replayed: usize,
    /// Holding `witness.task`; `Some(false)` while the hold has not yet been offered a choice.
    holding: Option<bool>,
    /// Choices made during the hold.
    held_for: u32,
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
    found: Vec<Found>,
    log: Vec<PlainAccess>,
    /// Every pair seen so far, by its two sites in order (and whether they take a lock).
    known: HashSet<(Site, Site, bool)>,
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
            // (At the hold's first choice the accesses taken in are those of the witness's last
            // step before it, which must not end the hold: `holding` is not yet `Some(true)`.)
            if let Some(d) = self.directed.as_mut() {
                let w = &d.witness;
                let conflicting = a.object == w.object
                    && a.task != w.task
                    && a.lock == w.lock
                    && if w.lock {
                        site(a.site) == w.partner
                    } else {
                        a.write || w.write
                    };
                if conflicting && d.holding == Some(true) {
                    d.holding = None;
                }
            }
            let (task, site) = (a.task, site(a.site));
            let earlier = self.seen.entry(a.object).or_default();
            for s in earlier.iter() {
                if s.task != task
                    && s.lock == a.lock
                    && (s.write || a.write)
                    && self.known.insert((s.site, site, a.lock))
                {
                    self.found.push(Found {
                        task: s.task,
                        object: a.object,
                        write: s.write,
                        lock: a.lock,
                        partner: site,
                        // A lock is held before it is taken: the choice that ran it is left out.
                        prefix: if a.lock {
                            s.prefix.saturating_sub(1)
                        } else {
                            s.prefix
                        },
                    });
                }
            }
            if earlier
                .iter()
                .any(|s| s.task == task && s.site == site && s.write == a.write)
            {
                continue;
            }
            earlier.push(Seen {
                task,
                site,
                write: a.write,
                lock: a.lock,
                prefix,
            });
        }
    }

    /// Files the pairs the finished execution showed as witnesses, and forgets the rest.
    fn end_execution(&mut self) {
        self.absorb();
        if let Some(longest) = self.found.iter().map(|f| f.prefix).max() {
            let choices: Arc<[TaskId]> = self.choices[..longest].into();
            for f in self.found.drain(..) {
                self.untried.push(Witness {
                    task: f.task,
                    object: f.object,
                    write: f.write,
                    lock: f.lock,
                    partner: f.partner,
                    seed: self.seed,
                    choices: choices.clone(),
                    prefix: f.prefix,
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
                held_for: 0,
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
        let clock_moved = engine::take_clock_moved();
        let next = match self.directed.as_mut() {
            Some(d) => d.next_task(runnable, current, is_yielding, clock_moved),
            None => self.inner.next_task(runnable, current, is_yielding)?,
        };
        // The task that runs: the runtime's fairness may hand the turn to a goroutine that
        // has waited long, instead of the scheduler's pick.
        let runs = engine::peek_fair_turn()
            .map(TaskId::from)
            .filter(|&t| runnable.iter().any(|r| r.id() == t))
            .unwrap_or(next);
        self.choices.push(runs);
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
        clock_moved: bool,
    ) -> TaskId {
        let w = &self.witness;
        if self.replayed < w.prefix {
            let want = w.choices[self.replayed];
            self.replayed += 1;
            if runnable.iter().any(|t| t.id() == want) {
                // The witness ran `want` here, over any fair turn (a hold it made refused one).
                if engine::peek_fair_turn().is_some_and(|t| TaskId::from(t) != want) {
                    engine::take_fair_turn();
                }
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
            // A hold delays a goroutine by some operations, not by a timer's period.
            Some(true) if clock_moved => self.holding = None,
            // The hold begins (what ran before this choice was the witness's own).
            Some(false) => self.holding = Some(true),
            _ => {}
        }
        if self.holding == Some(true) {
            self.held_for += 1;
            // The runtime hands a turn to a goroutine that has waited STARVE_STEPS; a hold
            // outlasts that, for up to HOLD_CHOICES choices.
            if self.held_for <= HOLD_CHOICES && engine::peek_fair_turn() == Some(w.task) {
                engine::take_fair_turn();
            }
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
