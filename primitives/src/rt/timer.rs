//! Virtual time: pending timers, and what happens when one fires.
//!
//! Time never comes from the wall clock. Each execution starts at virtual time zero; a timer
//! armed for `d` is due at `now + d` (at the end of time if that overflows: Go caps a timer's
//! due time too, so a very long sleep fires at the end of time instead of panicking); firing
//! moves `now` to the deadline. Timers fire in deadline order. *When* the earliest fires is the
//! [`TimerMode`]'s business: only once every goroutine is blocked (lazy), or at any scheduling
//! point (eager).
//!
//! A ticker is due only while its channel has room: Go drops the ticks nobody receives, so a
//! tick into a full channel changes nothing, and a ticker nobody reads cannot keep an
//! otherwise finished execution alive.

use std::collections::BTreeMap;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use super::clock::VClock;
use super::trace::Op;
use super::{
    Books, Ctx, Execution, Fired, Gid, Goroutine, Status, TimerMode, Wait, WaitReason, Waiter,
};
use crate::engine::{EngineKind, Parker};

pub(crate) type TimerId = u64;

/// Steps a goroutine that keeps running may take between two ticks of a ticker (see
/// `TimerEntry::after_tick`): a loop that polls never blocks, yet lets ticks come.
pub(crate) const TICK_STEPS: u64 = 4;

/// What a timer acts on when it fires, implemented by its owner above the runtime (a timer's
/// channel, a context), as tokio's time driver wakes a `Waker`: the runtime knows nothing of
/// channels or contexts. Called under the runtime lock.
pub(crate) trait TimerTarget: Send + Sync {
    /// The timer fired at virtual time `now`; `clock` is the arming goroutine's clock.
    fn fire(&self, cx: &Ctx<'_>, b: &mut Books, now: Duration, clock: &VClock);

    /// Whether a tick can be delivered now: Go drops the ticks a full channel cannot take, so
    /// a ticker into a full channel is not due.
    fn has_room(&self, _cx: &Ctx<'_>) -> bool {
        true
    }
}

/// What a timer does when it fires.
pub(crate) enum TimerKind {
    /// `time.After`, `time.NewTimer` (the fire time goes into the channel), or
    /// `context.WithTimeout` (the context is cancelled): the target acts.
    Once(Arc<dyn TimerTarget>),
    /// `time.NewTicker`, `time.Tick`: like `Once`, then due again one period later.
    Ticker {
        target: Arc<dyn TimerTarget>,
        period: Duration,
    },
    /// `time.Sleep`: the sleeper wakes.
    Sleep(Waiter),
    /// `time.AfterFunc`: the function starts in a goroutine of its own.
    Func(Box<dyn FnOnce() + Send>),
}

pub(crate) struct TimerEntry {
    pub(crate) deadline: Duration,
    /// How long it was set for (a ticker: its period).
    pub(crate) length: Duration,
    pub(crate) kind: TimerKind,
    /// The arming goroutine's clock: what it did before arming happens before the firing.
    pub(crate) clock: VClock,
    /// After a ticker's tick: each goroutine's step count at the tick. The next tick is due
    /// only once every goroutine of the kernel is blocked or has taken `TICK_STEPS` steps since:
    /// a period is long next to the work between two ticks, so time does not run ahead of the
    /// goroutines tick after tick (a ticker's first tick, like any timer, may come at once).
    pub(crate) after_tick: Option<Vec<u64>>,
}

/// The pending timers of an execution.
#[derive(Default)]
pub(crate) struct Timers {
    next: TimerId,
    entries: BTreeMap<TimerId, TimerEntry>,
}

impl Timers {
    pub(crate) fn arm(
        &mut self,
        now: Duration,
        length: Duration,
        kind: TimerKind,
        clock: VClock,
    ) -> TimerId {
        self.next += 1;
        self.entries.insert(
            self.next,
            TimerEntry {
                deadline: now.saturating_add(length),
                length,
                kind,
                clock,
                after_tick: None,
            },
        );
        self.next
    }

    /// The oldest pending timer that fires once (not a ticker), if any.
    pub(crate) fn oldest_one_shot(&self) -> Option<TimerId> {
        self.entries
            .iter()
            .find(|(_, e)| !matches!(e.kind, TimerKind::Ticker { .. }))
            .map(|(&id, _)| id)
    }

    /// Removes a pending timer; `true` if it was pending (so the stop prevented a firing).
    pub(crate) fn stop(&mut self, id: TimerId) -> bool {
        self.entries.remove(&id).is_some()
    }

    /// Moves a pending timer to a new deadline, or re-arms a fired one with `kind`.
    pub(crate) fn reset(
        &mut self,
        id: TimerId,
        now: Duration,
        length: Duration,
        kind: TimerKind,
        clock: VClock,
    ) -> bool {
        let was = self.entries.remove(&id).is_some();
        self.entries.insert(
            id,
            TimerEntry {
                deadline: now.saturating_add(length),
                length,
                kind,
                clock,
                after_tick: None,
            },
        );
        was
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// How long each pending timer that fires once was set for, shortest first.
    pub(crate) fn one_shot_lengths(&self) -> Vec<Duration> {
        let mut lengths: Vec<Duration> = self
            .entries
            .values()
            .filter(|e| !matches!(e.kind, TimerKind::Ticker { .. }))
            .map(|e| e.length)
            .collect();
        lengths.sort_unstable();
        lengths
    }

    /// The earliest timer that can fire now, if any.
    pub(crate) fn next_due(&self, cx: &Ctx<'_>, goroutines: &[Goroutine]) -> Option<TimerId> {
        self.entries
            .iter()
            .filter(|(_, e)| match &e.kind {
                TimerKind::Ticker { target, .. } => {
                    target.has_room(cx)
                        && e.after_tick.as_ref().is_none_or(|at| {
                            goroutines.iter().enumerate().all(|(i, g)| {
                                let since = g.steps - at.get(i).copied().unwrap_or(0);
                                g.system
                                    || !matches!(g.status, Status::Runnable)
                                    || since >= TICK_STEPS
                            })
                        })
                }
                _ => true,
            })
            .min_by_key(|(id, e)| (e.deadline, **id))
            .map(|(id, _)| *id)
    }

    /// Whether a ticker waits for the goroutines to settle before its next tick.
    pub(crate) fn ticking(&self) -> bool {
        self.entries.values().any(|e| e.after_tick.is_some())
    }

    pub(crate) fn has_due(&self, cx: &Ctx<'_>, goroutines: &[Goroutine]) -> bool {
        self.next_due(cx, goroutines).is_some()
    }
}

impl Ctx<'_> {
    /// Fires timer `id`: time moves to its deadline and its action runs.
    pub(crate) fn fire_timer(&self, b: &mut Books, id: TimerId) {
        let Some(entry) = b.timers.entries.remove(&id) else {
            return;
        };
        if entry.deadline > b.now {
            b.now = entry.deadline;
        }
        let lane = b.helper.unwrap_or(self.gid);
        let now = b.now;
        let step = b.step;
        b.trace.push(super::trace::Event {
            step,
            g: lane,
            op: Op::TimerFire,
            obj: None,
            arg: 0,
            at: self.at,
            phase: super::trace::Phase::Done,
        });
        let one_shot = (!matches!(entry.kind, TimerKind::Ticker { .. })).then_some(entry.length);
        let last_armed = b.timers.next;
        b.progress
            .tick(&b.goroutines, &b.timers, id, one_shot, last_armed);
        match entry.kind {
            TimerKind::Once(target) => target.fire(self, b, now, &entry.clock),
            TimerKind::Ticker { target, period } => {
                target.fire(self, b, now, &entry.clock);
                let after_tick = Some(b.goroutines.iter().map(|g| g.steps).collect());
                b.timers.entries.insert(
                    id,
                    TimerEntry {
                        deadline: now.saturating_add(period),
                        length: period,
                        kind: TimerKind::Ticker { target, period },
                        clock: entry.clock,
                        after_tick,
                    },
                );
            }
            TimerKind::Sleep(w) => {
                if b.is_waiting(w) {
                    b.fire(
                        w,
                        Fired {
                            case: 0,
                            closed: false,
                        },
                        None,
                    );
                }
            }
            TimerKind::Func(f) => {
                let lane_name = Some("AfterFunc".to_string());
                if let Some((gid, parker)) = self.add_goroutine(b, lane_name, entry.clock) {
                    b.deferred
                        .push(super::Deferred::StartGoroutine(gid, parker, f));
                }
            }
        }
    }

    /// Arms a timer, creating the execution's timer goroutine on first use (in eager mode its
    /// thread starts once the lock is released).
    pub(crate) fn arm_timer(&self, b: &mut Books, after: Duration, kind: TimerKind) -> TimerId {
        let clock = self.release_clock(b);
        let id = b.timers.arm(b.now, after, kind, clock);
        if let Some(start) = self.ensure_timer_goroutine(b) {
            b.deferred.push(super::Deferred::StartTimerGoroutine(start));
        }
        b.wake_helper();
        id
    }

    /// The arming goroutine's clock, ticked: a release.
    pub(crate) fn release_clock(&self, b: &mut Books) -> VClock {
        if !b.trace.on {
            return VClock::default();
        }
        let g = &mut b.goroutines[self.gid];
        let c = g.clock.clone();
        g.clock.tick(self.gid);
        c
    }

    /// Adds the timer goroutine to the table if it is not there yet; in eager mode its thread
    /// must then be started (see [`start_timer_goroutine`]).
    fn ensure_timer_goroutine(&self, b: &mut Books) -> Option<HelperStart> {
        if b.helper.is_some() {
            return None;
        }
        let gid = b.goroutines.len();
        let eager = self.exec.config.timers == TimerMode::Eager;
        if eager && self.exec.kind == EngineKind::Loom && gid >= loom::MAX_THREADS {
            let message = format!(
                "loom holds at most {} threads; this kernel's goroutines leave none for the timer \
                 goroutine (eager timers)",
                loom::MAX_THREADS
            );
            b.engine_error = Some(message.clone());
            self.fail(b, crate::report::Verdict::Panic, message, None);
            return None;
        }
        let parker = Arc::new(Parker::new(self.exec.kind));
        let since = b.step;
        b.goroutines.push(Goroutine {
            name: Some("timers".to_string()),
            created_at: self.at,
            system: true,
            status: if eager {
                Status::Runnable
            } else {
                Status::Blocked(Wait {
                    reason: WaitReason::TimerIdle,
                    obj: None,
                    at: Location::caller(),
                    since,
                })
            },
            parker: parker.clone(),
            token: 0,
            fired: None,
            clock: VClock::default(),
            deposit: None,
            last_step: 0,
            selects: 0,
            select_objs: Vec::new(),
            steps: 0,
        });
        b.helper = Some(gid);
        if eager {
            b.live += 1;
            Some(HelperStart { gid, parker })
        } else {
            None
        }
    }
}

/// The eager timer goroutine, in the table, whose thread is still to be started.
pub(crate) struct HelperStart {
    gid: Gid,
    parker: Arc<Parker>,
}

/// Starts the thread of the eager timer goroutine.
pub(crate) fn start_timer_goroutine(exec: &Arc<Execution>, start: HelperStart) {
    let body_exec = exec.clone();
    let gid = start.gid;
    super::execution::start_thread(
        exec,
        gid,
        start.parker,
        Box::new(move || timer_goroutine(&body_exec, gid)),
    );
}

/// The eager timer goroutine: fires the earliest due timer, one per scheduling step, until
/// the execution ends.
fn timer_goroutine(exec: &Execution, gid: Gid) {
    let at = Location::caller();
    loop {
        let mut cx = exec.enter_as(gid, at);
        let parker = {
            let mut b = cx.books();
            if b.ending || b.aborting {
                return;
            }
            if let Some(id) = b.timers.next_due(&cx, &b.goroutines) {
                drop(b);
                if !cx.count_step() {
                    return;
                }
                let mut b = cx.books();
                b.goroutines[gid].status = Status::Runnable;
                cx.fire_timer(&mut b, id);
                cx.settle(&mut b);
                continue;
            }
            let since = b.step;
            b.goroutines[gid].status = Status::Blocked(Wait {
                reason: WaitReason::TimerIdle,
                obj: None,
                at,
                since,
            });
            b.goroutines[gid].parker.clone()
        };
        cx.wait_on(&parker);
    }
}
