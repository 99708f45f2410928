//! A Go operation's turn in the runtime: the step it counts, fairness, parking and waking,
//! and settling an execution when nothing can run.

use std::panic::{self, Location};
use std::sync::Arc;

use super::cell::RtMut;
use super::clock::VClock;
use super::trace::{Event, Op, Phase};
use super::verdict::Abort;
use super::{
    timer, Books, Deferred, Execution, Fired, Gid, Goroutine, ObjMeta, Status, TimerMode, Wait,
    WaitReason, Waiter, MAIN,
};
use crate::engine::{self, EngineKind, Parker, RawGuard};
use crate::mutant::{self, Mutant};
use crate::report::Verdict;

/// Proof that the execution's lock is held, and who holds it.
pub(crate) struct Ctx<'e> {
    pub(crate) exec: &'e Execution,
    pub(super) guard: Option<RawGuard<'e>>,
    pub(crate) gid: Gid,
    /// The source line of the operation in progress.
    pub(crate) at: &'static Location<'static>,
    /// The goroutine has run long enough: it gives way once it releases the lock (preemption:
    /// on `std` it hands the lock to a waiting thread, everywhere it yields).
    pub(crate) preempt: Option<Preempt>,
}

/// Why a goroutine gives way.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Preempt {
    /// It has run long.
    LongRun,
    /// A runnable goroutine has waited long for its turn: under shuttle, the scheduler hands
    /// the turn to it (its task, when it has started one), as Go's scheduler would in time.
    Starving(Option<usize>),
}

impl Preempt {
    /// Yields, outside the runtime.
    pub(crate) fn give_way(self, kind: EngineKind) {
        match self {
            Preempt::Starving(to) => crate::engine::yield_to(kind, to),
            Preempt::LongRun => crate::engine::yield_now(kind),
        }
    }
}

/// Steps a goroutine may take in a row before it is preempted (and, below, steps a runnable
/// goroutine may wait for its turn before whoever runs yields to it). Go's scheduler preempts a goroutine
/// that runs for about 10 ms without blocking, so a busy loop (or a loop fed by a timer) cannot
/// keep a runnable goroutine from running; loom and shuttle schedule cooperatively and would
/// explore exactly that starvation. A yield gives the others their turn (and, with lazy
/// timers, a long run of the only runnable goroutine lets time pass). The schedules these
/// yields leave out are the unfair ones, which Go's scheduler does not produce.
pub(super) const PREEMPT_STEPS: u32 = 256;

/// Steps a runnable goroutine may wait for its turn before whoever runs yields to it.
pub(super) const STARVE_STEPS: u32 = 32;

impl<'e> Ctx<'e> {
    /// The books, for as long as this borrow lives.
    #[inline]
    pub(crate) fn books(&self) -> RtMut<'_, Books> {
        self.exec.books.borrow(self)
    }

    /// Counts one step; `false` when the execution is over and the goroutine must unwind.
    pub(crate) fn count_step(&mut self) -> bool {
        let mut b = self.books();
        if b.aborting {
            return false;
        }
        b.step += 1;
        if b.last_stepper == self.gid {
            b.streak += 1;
        } else {
            b.last_stepper = self.gid;
            b.streak = 1;
        }
        let gid = self.gid;
        let step = b.step;
        b.goroutines[gid].last_step = step;
        b.goroutines[gid].steps += 1;
        if b.goroutines[gid].steps == 1 && !b.goroutines[gid].system && gid != MAIN {
            b.unstarted -= 1;
        }
        // Steps taken while a goroutine's thread is still starting, or (on std) while a runnable
        // goroutine waits for the operating system to run it, do not count toward the step
        // bound: a loop waiting for such a goroutine is not a livelock, only early.
        if b.unstarted == 0 && !(self.exec.kind == crate::engine::EngineKind::Std && b.starving) {
            b.bounded_steps += 1;
        }
        if b.helper.is_some()
            && b.goroutines[gid].steps.is_multiple_of(timer::TICK_STEPS)
            && b.timers.ticking()
        {
            // A ticker's next tick may have been waiting for this goroutine to run a while.
            b.wake_helper();
        }
        // Preempted after a long run while others could run, or when another goroutine has
        // waited long for its turn (checked every few steps: it is a scan of the table).
        let long_run = b.streak >= PREEMPT_STEPS;
        if long_run {
            b.streak = 0;
            if self.exec.config.timers == TimerMode::Lazy && b.running <= 1 {
                // Nothing else can run: the poller's time passes.
                if let Some(t) = b.timers.next_due(self, &b.goroutines) {
                    self.fire_timer(&mut b, t);
                }
            }
        }
        let others = b.running > 1 || b.helper.is_some();
        let starving = if others && step.is_multiple_of(8) {
            b.goroutines
                .iter()
                .enumerate()
                .find(|(i, g)| {
                    *i != gid
                        && !g.system
                        && matches!(g.status, Status::Runnable)
                        && step - g.last_step > u64::from(STARVE_STEPS)
                })
                .map(|(_, g)| Preempt::Starving(g.parker.shuttle_task()))
        } else {
            None
        };
        if step.is_multiple_of(8) {
            b.starving = starving.is_some();
        }
        let preempt = starving.or((long_run && others).then_some(Preempt::LongRun));
        let timers = &b.timers;
        if let Some((verdict, message)) =
            b.progress
                .judge(b.bounded_steps, b.main_returned, &self.exec.config, || {
                    timers.oldest_one_shot()
                })
        {
            self.fail(&mut b, verdict, message, None);
            return false;
        }
        drop(b);
        if preempt.is_some() {
            self.preempt = preempt;
        }
        true
    }

    /// Releases the lock and unwinds this goroutine: the execution is over.
    pub(crate) fn unwind(&mut self) -> ! {
        self.release();
        panic::resume_unwind(Box::new(Abort))
    }

    /// Records a completed (or blocking) operation of this goroutine in the trace.
    #[inline]
    pub(crate) fn event(&self, b: &mut Books, op: Op, obj: Option<&ObjMeta>, arg: i64) {
        self.event_phase(b, op, obj, arg, Phase::Done);
    }

    pub(crate) fn event_phase(
        &self,
        b: &mut Books,
        op: Op,
        obj: Option<&ObjMeta>,
        arg: i64,
        phase: Phase,
    ) {
        b.progress.saw(op, arg, phase, b.bounded_steps);
        if let (Phase::Done, Some(meta)) = (phase, obj) {
            match op {
                Op::Lock => crate::engine::shuttle_lock_taken(meta.id, self.at, true),
                Op::TryLock if arg == 1 => {
                    crate::engine::shuttle_lock_taken(meta.id, self.at, true)
                }
                Op::RLock => crate::engine::shuttle_lock_taken(meta.id, self.at, false),
                _ => {}
            }
        }
        if !b.trace.on {
            return;
        }
        if let Some(meta) = obj {
            b.note(meta);
        }
        let step = b.step;
        b.trace.push(Event {
            step,
            g: self.gid,
            op,
            obj: obj.map(|m| m.id),
            arg,
            at: self.at,
            phase,
        });
    }

    /// This goroutine's next waiter: queue it on an object, then [`Ctx::park`].
    pub(crate) fn waiter(&self, b: &mut Books, case: usize) -> Waiter {
        let g = &mut b.goroutines[self.gid];
        Waiter {
            g: self.gid,
            token: g.token + 1,
            case,
        }
    }

    /// Parks this goroutine until another fires it; returns how its operation completed.
    ///
    /// `waiter` must have come from [`Ctx::waiter`] and be queued wherever a completion can
    /// come from. A goroutine that queued nowhere (a nil channel) parks forever.
    pub(crate) fn park(&mut self, reason: WaitReason, obj: Option<&ObjMeta>, op: Op) -> Fired {
        {
            let mut b = self.books();
            let gid = self.gid;
            let since = b.step;
            let g = &mut b.goroutines[gid];
            g.token += 1;
            g.fired = None;
            g.status = Status::Blocked(Wait {
                reason,
                obj: obj.map(|m| m.id),
                at: self.at,
                since,
            });
            if !g.system {
                b.running -= 1;
            }
            if b.helper.is_some() && b.timers.ticking() {
                // A ticker's next tick may have been waiting for this goroutine to block.
                b.wake_helper();
            }
            self.event_phase(&mut b, op, obj, 0, Phase::Blocked);
            self.settle(&mut b);
        }
        self.wait_until_fired()
    }

    /// Releases the lock (and runs the deferred actions) until `parker` is notified (or wakes
    /// spuriously), then holds the runtime again.
    pub(crate) fn wait_on(&mut self, parker: &Parker) {
        // A goroutine that was to give way to a starving one does so as it parks: the choice
        // made there is the turn it owed.
        if let Some(Preempt::Starving(to)) = self.preempt {
            self.preempt = None;
            engine::hand_turn_to(self.exec.kind, to);
        }
        let deferred = self.take_deferred();
        let guard = self
            .guard
            .take()
            .expect("a waiting goroutine holds the lock");
        self.guard = Some(parker.wait(guard, deferred, &self.exec.lock, |d| {
            self.exec.run_deferred(d)
        }));
    }

    pub(super) fn take_deferred(&self) -> Vec<Deferred> {
        if self.guard.is_none() {
            return Vec::new();
        }
        std::mem::take(&mut self.books().deferred)
    }

    /// Releases the lock, then runs the deferred actions.
    pub(super) fn release(&mut self) {
        let deferred = self.take_deferred();
        let preempt = self.preempt.take().filter(|_| !std::thread::panicking());
        match self.guard.take() {
            Some(g) if preempt.is_some() => g.release_fairly(),
            g => drop(g),
        }
        self.exec.run_deferred(deferred);
        if let Some(p) = preempt {
            p.give_way(self.exec.kind);
        }
    }

    /// Waits on this goroutine's condition variable until it is fired (or the execution ends).
    pub(super) fn wait_until_fired(&mut self) -> Fired {
        loop {
            let parker = {
                let mut b = self.books();
                let gid = self.gid;
                let g = &mut b.goroutines[gid];
                if let Some(fired) = g.fired.take() {
                    if let Some(deposit) = g.deposit.take() {
                        g.clock.join(&deposit);
                    }
                    // Its clock as it parked may have been published (a buffered slot, a
                    // receive): what it does from here on is not covered by that.
                    g.clock.tick(gid);
                    drop(b);
                    // Resuming is a step of its own: the trace shows the operation completing
                    // where the goroutine runs again, after whatever ran in between.
                    if !self.count_step() {
                        self.unwind();
                    }
                    return fired;
                }
                let parker = g.parker.clone();
                if b.aborting {
                    drop(b);
                    self.unwind();
                }
                parker
            };
            self.wait_on(&parker);
        }
    }

    /// Called whenever a goroutine of the kernel stops being runnable: when none is left,
    /// fires timers (lazy mode), wakes the timer helper (eager mode), or ends the execution.
    pub(crate) fn settle(&self, b: &mut Books) {
        if b.running > 0 || b.aborting {
            return;
        }
        match self.exec.config.timers {
            TimerMode::Lazy => {
                while let Some(t) = b.timers.next_due(self, &b.goroutines) {
                    self.fire_timer(b, t);
                    if b.running > 0 {
                        return;
                    }
                }
            }
            TimerMode::Eager => {
                if b.timers.has_due(self, &b.goroutines) {
                    b.wake_helper();
                    return;
                }
            }
        }
        if b.main_returned {
            let unfinished = b.unfinished();
            if unfinished == 0 {
                // Clean: main is waiting for this.
                b.wake(MAIN);
            } else {
                let message = format!(
                    "{} goroutine{} still blocked after main returned",
                    unfinished,
                    if unfinished == 1 { " is" } else { "s are" }
                );
                self.fail(b, Verdict::Leak, message, None);
            }
        } else {
            self.fail(
                b,
                Verdict::Deadlock,
                "all goroutines are asleep - deadlock!".to_string(),
                None,
            );
        }
    }
}

impl Drop for Ctx<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Ctx<'_> {
    /// A choice among `n` alternatives that Go leaves to chance: which ready `select` case
    /// runs, which of a parked `select`'s cases on one channel a partner completes, what
    /// `rand.Intn` draws. shuttle's scheduler makes it (it is part of the schedule, so a replay
    /// makes it again); `std` draws it from the execution's seeded generator. loom cannot branch
    /// on a value (loom#84): there `loom_rule` decides, deterministically, and the books count
    /// the choice as one loom's search did not explore, so reports can say which bugs loom's
    /// answer depends on such a rule for.
    pub(crate) fn choose(&self, n: usize, loom_rule: impl FnOnce(&mut Books) -> usize) -> usize {
        if n <= 1 {
            return 0;
        }
        match self.exec.kind {
            EngineKind::Std => self.books().random(n),
            EngineKind::Loom => {
                let mut b = self.books();
                b.unexplored_choices += 1;
                loom_rule(&mut b) % n
            }
            kind => engine::scheduler_choice(kind, n).expect("shuttle's scheduler chooses"),
        }
    }

    /// Adds a goroutine of the kernel to the table, runnable, started by this goroutine (or by
    /// the runtime, for `time.AfterFunc`) whose clock at the `go` statement was `parent_clock`.
    /// `None` (and the execution fails) when the engine cannot hold another thread.
    pub(crate) fn add_goroutine(
        &self,
        b: &mut Books,
        name: Option<String>,
        parent_clock: VClock,
    ) -> Option<(Gid, Arc<Parker>)> {
        let child = b.goroutines.len();
        if self.exec.kind == EngineKind::Loom && child >= loom::MAX_THREADS {
            let message = format!(
                "loom holds at most {} threads (main and {} goroutines); this kernel starts more",
                loom::MAX_THREADS,
                loom::MAX_THREADS - 1
            );
            b.engine_error = Some(message.clone());
            self.fail(b, Verdict::Panic, message, None);
            return None;
        }
        let mut clock = parent_clock;
        if mutant::on(Mutant::HbGoStart) {
            clock = VClock::default();
        }
        clock.tick(child);
        let parker = Arc::new(Parker::new(self.exec.kind));
        b.goroutines.push(Goroutine {
            name,
            created_at: self.at,
            system: false,
            status: Status::Runnable,
            parker: parker.clone(),
            token: 0,
            fired: None,
            clock,
            deposit: None,
            last_step: b.step,
            selects: 0,
            select_objs: Vec::new(),
            steps: 0,
        });
        b.running += 1;
        b.live += 1;
        b.unstarted += 1;
        self.event(b, Op::Go, None, child as i64);
        Some((child, parker))
    }
}
