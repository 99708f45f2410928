//! Whether an execution is getting anywhere: livelock is a lack of progress, not a long run.
//!
//! A run that keeps completing operations (locks taken and released, values sent and received,
//! variables written) makes progress, however long it is: only the hard step cap
//! ([`ExecConfig::max_steps`]) ends it, and then undecided ([`Verdict::BoundReached`]), never
//! with a verdict on the program. An execution is a **livelock** when, before main returns,
//! either
//!
//! - **only polls** happen for [`ExecConfig::livelock_window`] steps: a `select` that takes its
//!   `default`, a `TryLock` that fails, reads of variables and atomics, `rand`, arming and
//!   stopping timers, sleeping; or
//! - **only the clock moves**: [`ExecConfig::stale_ticks`] timer firings in a row find the
//!   goroutines exactly where they were at an earlier firing (same states, same lines) and the
//!   pending one-shot timers set for the same lengths, no one-shot timer (a sleep, a deadline)
//!   has stayed pending through all of them, and there is no lasting change in between (no
//!   goroutine started or ended, no channel closed, no context cancelled, no variable, map or
//!   atomic written, no WaitGroup counted, no `Once` run). Ticks passed along channels are sent
//!   and received, but they change nothing: a raft node that ticks forever without electing
//!   itself is such a livelock. The lengths tell a back-off that waits longer each round (by
//!   `Sleep` or by a timer's channel) from a poll that waits the same. Known gap: a wait that
//!   changes length every round without end (jitter) can escape the rule and end at the step
//!   cap, undecided.
//!
//! After main returns, goroutines that still run [`ExecConfig::livelock_window`] steps later
//! are a leak, progress or not: that is what a leak checker sees when the test has returned.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::goroutine::{Goroutine, Status};
use super::timer::{TimerId, Timers};
use super::trace::{Op, Phase};
use super::ExecConfig;
use crate::report::Verdict;

/// The books of progress.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// `bounded_steps` at the last operation that was not a poll.
    last_progress: u64,
    /// `bounded_steps` when main returned.
    main_returned_at: Option<u64>,
    /// Lasting changes so far (see the module docs).
    lasting: u64,
    /// `lasting` at the last timer firing.
    lasting_at_last_tick: u64,
    /// Where the goroutines were at each timer firing since the last lasting change.
    seen: HashSet<u64>,
    /// Timer firings in a row that found the goroutines where an earlier one did.
    stale_ticks: u32,
    /// The last timer armed when that run of firings began: a one-shot timer armed no later
    /// and still pending has waited through the whole run.
    stale_since: TimerId,
}

impl Progress {
    /// Books one operation of the trace (whether or not the trace is kept).
    pub(crate) fn saw(&mut self, op: Op, arg: i64, phase: Phase, now: u64) {
        if phase != Phase::Done {
            return;
        }
        if !is_poll(op, arg) {
            self.last_progress = now;
        }
        if is_lasting(op) {
            self.lasting += 1;
        }
    }

    pub(crate) fn main_returned(&mut self, now: u64) {
        self.main_returned_at = Some(now);
    }

    /// Books the firing of timer `id`, given where the goroutines are, the timers still pending,
    /// the length of the firing timer if it fires once (`None` for a ticker), and the last
    /// timer armed so far.
    pub(crate) fn tick(
        &mut self,
        goroutines: &[Goroutine],
        timers: &Timers,
        id: TimerId,
        one_shot: Option<Duration>,
        last_armed: TimerId,
    ) {
        crate::engine::shuttle_clock_moved();
        // A one-shot timer that waited through the run of stale firings ends it: its firing is
        // the change that run was waiting for. The places seen stay known: a loop whose every
        // round ends with such a firing is still a loop.
        let awaited = one_shot.is_some() && self.stale_ticks > 0 && id <= self.stale_since;
        if self.lasting != self.lasting_at_last_tick {
            self.lasting_at_last_tick = self.lasting;
            self.seen.clear();
            self.stale_ticks = 0;
        } else if awaited {
            self.stale_ticks = 0;
        }
        // The firing timer is no longer pending; its own length counts with the others'.
        if self.seen.insert(whereabouts(goroutines, timers, one_shot)) {
            self.stale_ticks = 0;
        } else {
            if self.stale_ticks == 0 {
                self.stale_since = last_armed;
            }
            self.stale_ticks += 1;
        }
    }

    /// The verdict the execution has earned by now, if any: `now` is the count of steps that
    /// count toward the bounds; `oldest_one_shot` is the oldest pending timer that fires once
    /// (a sleep, `time.After`, a deadline), if any.
    pub(crate) fn judge(
        &self,
        now: u64,
        main_returned: bool,
        config: &ExecConfig,
        oldest_one_shot: impl FnOnce() -> Option<TimerId>,
    ) -> Option<(Verdict, String)> {
        if now > config.max_steps {
            return Some((
                Verdict::BoundReached,
                format!(
                    "the step cap ({}) was reached while the goroutines kept making progress: \
                     no verdict; raise the bug's max_steps if its correct run is this long",
                    config.max_steps
                ),
            ));
        }
        let window = config.livelock_window;
        match self.main_returned_at {
            Some(at) if main_returned && now - at > window => Some((
                Verdict::Leak,
                format!("goroutines still running {window} steps after main returned"),
            )),
            Some(_) => None,
            None if now - self.last_progress > window => Some((
                Verdict::Livelock,
                format!(
                    "for {window} steps the running goroutines only polled (select default, \
                     failed TryLock, reads) and nothing else happened"
                ),
            )),
            // A one-shot timer that has stayed pending through every one of those firings
            // (a goroutine's long sleep while another ticks idly) will still change something.
            None if self.stale_ticks >= config.stale_ticks
                && oldest_one_shot().is_none_or(|t| t > self.stale_since) =>
            {
                Some((
                    Verdict::Livelock,
                    format!(
                        "only the clock moves: {} timer firings in a row found every goroutine \
                         where an earlier one had, with nothing changed in between",
                        self.stale_ticks
                    ),
                ))
            }
            None => None,
        }
    }
}

/// Operations that look without changing anything: a loop of only these is polling.
fn is_poll(op: Op, arg: i64) -> bool {
    match op {
        // A select that took its default (`arg` -1); a TryLock that failed (`arg` 0).
        Op::Select => arg == -1,
        Op::TryLock => arg != 1,
        Op::Read
        | Op::AtomicLoad
        | Op::MapRead
        | Op::Rand
        | Op::TimerStart
        | Op::TimerStop
        | Op::TimerFire
        | Op::Sleep => true,
        _ => false,
    }
}

/// Operations that leave the program changed for good (not undone by the next round of a
/// loop the way a send is by its receive, or a Lock by its Unlock).
fn is_lasting(op: Op) -> bool {
    matches!(
        op,
        Op::Go
            | Op::Exit
            | Op::Return
            | Op::Close
            | Op::Cancel
            | Op::Write
            | Op::MapWrite
            | Op::AtomicStore
            | Op::AtomicRmw
            | Op::WgAdd
            | Op::OnceDo
            | Op::Panic
    )
}

/// Where every goroutine is (its state and, when blocked, the line and reason), and how long
/// each pending one-shot timer, and the one `firing` now, was set for: a wait at one line that
/// is longer each round (a back-off, by `Sleep` or by a timer's channel) is not a return to the
/// same place.
fn whereabouts(goroutines: &[Goroutine], timers: &Timers, firing: Option<Duration>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    goroutines.len().hash(&mut h);
    for g in goroutines {
        match &g.status {
            Status::Runnable => 0u8.hash(&mut h),
            Status::Blocked(w) => {
                1u8.hash(&mut h);
                (w.at.file(), w.at.line(), w.at.column()).hash(&mut h);
                std::mem::discriminant(&w.reason).hash(&mut h);
            }
            Status::Returned => 2u8.hash(&mut h),
            Status::Finished => 3u8.hash(&mut h),
        }
    }
    timers.one_shot_lengths().hash(&mut h);
    firing.hash(&mut h);
    h.finish()
}
