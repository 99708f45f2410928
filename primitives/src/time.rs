//! `time`: sleeps, timers and tickers in virtual time.
//!
//! No wall clock is ever read or waited on: each execution has its own virtual clock, which
//! starts at zero and jumps to a timer's deadline when the timer fires (see
//! [`TimerMode`](crate::TimerMode) for when that may happen). A kernel that sleeps an hour
//! finishes in microseconds.
//!
//! Where this differs from real time, on purpose:
//! - every operation takes no virtual time; only timers move the clock;
//! - with eager timers, a timer may fire at any scheduling point after it was armed, however
//!   long its duration: a timeout can beat an operation that, in real time, would almost always
//!   come first. That is the point: such interleavings are the bugs;
//! - timers keep the semantics of the Go versions these bugs were found in (before Go 1.23): a
//!   timer's channel has a buffer of one, and `stop` or `reset` does not drain a value that was
//!   already sent.

use std::fmt;
use std::ops::{Add, Sub};
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::chan::Chan;
use crate::mutant::{self, Mutant};
use crate::rt::clock::VClock;
use crate::rt::timer::{TimerId, TimerKind, TimerTarget};
use crate::rt::trace::Op;
use crate::rt::{current_exec, Books, Ctx, Execution, WaitReason};

/// A timer's or ticker's channel, as the runtime's timers see it: a firing sends the time.
impl TimerTarget for Chan<Instant> {
    fn fire(&self, cx: &Ctx<'_>, b: &mut Books, now: Duration, clock: &VClock) {
        self.send_from_runtime(cx, b, Instant::from_virtual(now), clock);
    }

    fn has_room(&self, cx: &Ctx<'_>) -> bool {
        Chan::has_room(self, cx)
    }
}

/// The channel `c` as a timer's target.
fn target(c: &Chan<Instant>) -> Arc<dyn TimerTarget> {
    Arc::new(c.clone())
}

/// A point in an execution's virtual time (`time.Time`), measured from its start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    pub(crate) fn from_virtual(d: Duration) -> Self {
        Instant(d)
    }

    /// Virtual time elapsed since the execution started.
    pub fn since_start(self) -> Duration {
        self.0
    }
}

/// `t.Add(d)`: saturates at the end of virtual time rather than panicking, as
/// Go's `Time.Add` never panics and its timers cap an overflowing due time.
impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d))
    }
}

impl Sub for Instant {
    type Output = Duration;
    fn sub(self, other: Instant) -> Duration {
        self.0.saturating_sub(other.0)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:?}", self.0)
    }
}

/// `time.Now()`: the current virtual time.
#[track_caller]
pub fn now() -> Instant {
    now_at(Location::caller())
}

/// `time.Sleep(d)`: parks the goroutine until `d` of virtual time has passed.
#[track_caller]
pub fn sleep(d: Duration) {
    let exec = current_exec();
    let mut cx = exec.enter(Location::caller());
    if d.is_zero() {
        return;
    }
    {
        let mut b = cx.books();
        let w = cx.waiter(&mut b, 0);
        cx.arm_timer(&mut b, d, TimerKind::Sleep(w));
    }
    cx.park(WaitReason::Sleep, None, Op::Sleep);
    let mut b = cx.books();
    cx.event(&mut b, Op::Sleep, None, 0);
}

/// `time.After(d)`: a channel that receives the time once `d` has passed.
#[track_caller]
pub fn after(d: Duration) -> Chan<Instant> {
    Timer::start(d, Location::caller()).c
}

/// `time.Since(t)`: the virtual time elapsed since `t`.
#[track_caller]
pub fn since(t: Instant) -> Duration {
    now_at(Location::caller()) - t
}

fn now_at(at: &'static Location<'static>) -> Instant {
    let exec = current_exec();
    let cx = exec.enter(at);
    let now = cx.books().now;
    Instant(now)
}

/// `time.AfterFunc(d, f)`: once `d` has passed, `f` runs in a goroutine of its own. The timer
/// returned can stop it (its channel is never used).
#[track_caller]
pub fn after_func(d: Duration, f: impl FnOnce() + Send + 'static) -> Timer {
    let at = Location::caller();
    let exec = current_exec();
    let c = Chan::nil();
    let id = {
        let cx = exec.enter(at);
        let mut b = cx.books();
        cx.event(&mut b, Op::TimerStart, None, 0);
        cx.arm_timer(&mut b, d, TimerKind::Func(Box::new(f)))
    };
    Timer {
        exec,
        id,
        c,
        func: true,
    }
}

/// `time.Tick(d)`: the channel of a ticker that is never stopped.
#[track_caller]
pub fn tick(d: Duration) -> Chan<Instant> {
    Ticker::start(d, Location::caller()).c
}

/// `time.Timer`: sends the time on its channel once, when it fires.
pub struct Timer {
    exec: Arc<Execution>,
    id: TimerId,
    c: Chan<Instant>,
    /// Made by `after_func`: the timer runs a function; `reset` cannot re-arm it (Go's can,
    /// rarely used; not supported here).
    func: bool,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timer({:?})", self.c)
    }
}

impl Timer {
    /// `time.NewTimer(d)`.
    #[track_caller]
    pub fn new(d: Duration) -> Self {
        Timer::start(d, Location::caller())
    }

    fn start(d: Duration, at: &'static Location<'static>) -> Self {
        let exec = current_exec();
        let c = Chan::new(1);
        let id = {
            let cx = exec.enter(at);
            let mut b = cx.books();
            cx.event(&mut b, Op::TimerStart, None, 0);
            cx.arm_timer(&mut b, d, TimerKind::Once(target(&c)))
        };
        Timer {
            exec,
            id,
            c,
            func: false,
        }
    }

    /// `t.C`.
    pub fn c(&self) -> &Chan<Instant> {
        &self.c
    }

    /// `t.Stop()`: `true` if this call stopped the timer before it fired.
    #[track_caller]
    pub fn stop(&self) -> bool {
        let cx = self.exec.enter(Location::caller());
        let mut b = cx.books();
        cx.event(&mut b, Op::TimerStop, None, 0);
        if mutant::on(Mutant::TimerStopDoesNotStop) {
            return true;
        }
        let stopped = b.timers.stop(self.id);
        stopped != mutant::on(Mutant::TimerStopWrongResult)
    }

    /// `t.Reset(d)`: re-arms the timer; `true` if it had been active.
    ///
    /// # Panics
    ///
    /// On a timer made by [`after_func`] (not supported).
    #[track_caller]
    pub fn reset(&self, d: Duration) -> bool {
        assert!(
            !self.func,
            "primitives: Reset of an AfterFunc timer is not supported"
        );
        let cx = self.exec.enter(Location::caller());
        let mut b = cx.books();
        cx.event(&mut b, Op::TimerStart, None, 0);
        let clock = cx.release_clock(&mut b);
        let now = b.now;
        let was = b
            .timers
            .reset(self.id, now, d, TimerKind::Once(target(&self.c)), clock);
        b.wake_helper();
        was
    }
}

/// `time.Ticker`: sends the time on its channel every period; ticks nobody receives are dropped.
pub struct Ticker {
    exec: Arc<Execution>,
    id: TimerId,
    c: Chan<Instant>,
}

impl fmt::Debug for Ticker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticker({:?})", self.c)
    }
}

impl Ticker {
    /// `time.NewTicker(d)`.
    ///
    /// # Panics
    ///
    /// `non-positive interval for NewTicker` if `d` is zero.
    #[track_caller]
    pub fn new(d: Duration) -> Self {
        Ticker::start(d, Location::caller())
    }

    fn start(d: Duration, at: &'static Location<'static>) -> Self {
        let exec = current_exec();
        if d.is_zero() {
            let mut cx = exec.enter(at);
            cx.go_panic("non-positive interval for NewTicker");
        }
        let c = Chan::new(1);
        let id = {
            let cx = exec.enter(at);
            c.inner()
                .expect("a ticker's channel is made here")
                .state
                .borrow(&cx)
                .ticker = true;
            let mut b = cx.books();
            cx.event(&mut b, Op::TimerStart, None, 0);
            cx.arm_timer(
                &mut b,
                d,
                TimerKind::Ticker {
                    target: target(&c),
                    period: d,
                },
            )
        };
        Ticker { exec, id, c }
    }

    /// `t.C`.
    pub fn c(&self) -> &Chan<Instant> {
        &self.c
    }

    /// `t.Stop()`: no more ticks.
    #[track_caller]
    pub fn stop(&self) {
        let cx = self.exec.enter(Location::caller());
        let mut b = cx.books();
        cx.event(&mut b, Op::TimerStop, None, 0);
        b.timers.stop(self.id);
    }

    /// `t.Reset(d)`: the next tick comes `d` from now, then every `d`.
    #[track_caller]
    pub fn reset(&self, d: Duration) {
        let cx = self.exec.enter(Location::caller());
        let mut b = cx.books();
        cx.event(&mut b, Op::TimerStart, None, 0);
        let clock = cx.release_clock(&mut b);
        let now = b.now;
        b.timers.reset(
            self.id,
            now,
            d,
            TimerKind::Ticker {
                target: target(&self.c),
                period: d,
            },
            clock,
        );
        b.wake_helper();
    }
}
