//! `sync.WaitGroup`: waits for a collection of goroutines to finish.
//!
//! Go semantics kept, with Go's panics: a negative counter (`sync: negative WaitGroup
//! counter`); an `Add` that raises the counter from zero while goroutines wait (`sync:
//! WaitGroup misuse: Add called concurrently with Wait`); and a WaitGroup reused before every
//! waiter released by the previous zero has returned (`sync: WaitGroup is reused before
//! previous Wait has returned`).
//!
//! Happens-before: every `Done` (an `Add` with a negative delta) happens before the `Wait`
//! that it lets return.
//!
//! Under the race detector, two accesses to a pseudo-variable of the group (Go's `wg.sema`),
//! as Go's own race annotations make them (`src/sync/waitgroup.go`): an `Add` that
//! raises the counter from zero reads it, and a `Wait` that is about to block, being the first
//! waiter, writes it. So an `Add` from zero not ordered with a blocking `Wait` (the classic
//! `wg.Add(1)` inside the goroutine) is a `DATA RACE on` the group, as `go test -race` reports
//! it; other `Add`s, a `Wait` that finds the counter at zero, and later waiters (which would
//! race each other) touch nothing.

use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::race::{AccessHistory, Kind};
use crate::rt::trace::Op;
use crate::rt::{current_exec, Ctx, Execution, Fired, ObjMeta, WaitReason, Waiter};

/// Go's `race.Read(&wg.sema)` in an `Add` that raises the counter from zero.
const ADD_FROM_ZERO: Kind = Kind {
    write: false,
    atomic: false,
    op: Some("Add"),
};

/// Go's `race.Write(&wg.sema)` in the first `Wait` to block.
const FIRST_WAIT: Kind = Kind {
    write: true,
    atomic: false,
    op: Some("Wait"),
};

/// Go's `sync.WaitGroup`. Cloning gives another handle to the same group.
///
/// # Examples
///
/// ```
/// use primitives::{go, sync::WaitGroup};
/// # primitives::run(|| {
/// let wg = WaitGroup::new();
/// for _ in 0..3 {
///     wg.add(1);
///     let wg = wg.clone();
///     go(move || wg.done());
/// }
/// wg.wait();
/// # });
/// ```
#[derive(Clone)]
pub struct WaitGroup {
    inner: Arc<WgInner>,
}

struct WgInner {
    exec: Arc<Execution>,
    meta: ObjMeta,
    state: RtCell<WgState>,
}

struct WgState {
    counter: i64,
    /// Goroutines inside `Wait` (Go's waiter count): released ones are no longer counted.
    waiters: u32,
    queue: VecDeque<Waiter>,
    /// The join of the clocks of every `Done`.
    clock: VClock,
    /// The race detector's view of Go's `wg.sema`: read by an `Add` from zero, written by the
    /// first `Wait` to block.
    sema: AccessHistory,
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WaitGroup({})", self.inner.meta.label())
    }
}

impl WaitGroup {
    /// A new WaitGroup with a zero counter.
    ///
    /// # Panics
    ///
    /// Outside an execution.
    #[track_caller]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let exec = current_exec();
        let meta = exec.new_obj("WaitGroup", Location::caller());
        let state = RtCell::new(
            exec.id,
            WgState {
                counter: 0,
                waiters: 0,
                queue: VecDeque::new(),
                clock: VClock::default(),
                sema: AccessHistory::default(),
            },
        );
        WaitGroup {
            inner: Arc::new(WgInner { exec, meta, state }),
        }
    }

    /// Names the group in traces and dumps.
    ///
    /// # Panics
    ///
    /// If the group has been cloned already.
    pub fn named(mut self, name: &str) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("name a WaitGroup where it is made, before cloning it")
            .meta
            .name = Some(name.to_string());
        self
    }

    /// `wg.Add(delta)`. Under the race detector, an `Add` that raises the counter from zero
    /// races with a blocking `Wait` it is not ordered with (see the module docs).
    ///
    /// # Panics
    ///
    /// `sync: negative WaitGroup counter`, `sync: WaitGroup misuse: Add called concurrently
    /// with Wait`.
    #[track_caller]
    pub fn add(&self, delta: i64) {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(Location::caller());
        if delta > 0 {
            self.sema_access(&mut cx, ADD_FROM_ZERO, Op::WgAdd, |st| st.counter == 0);
        }
        let problem = {
            let mut b = cx.books();
            let mut st = inner.state.borrow(&cx);
            if delta < 0 && b.trace.on && !mutant::on(Mutant::HbWaitGroupDoneWait) {
                let c = cx.release_clock(&mut b);
                st.clock.join(&c);
            }
            let v = st.counter + delta;
            st.counter = v;
            drop(st);
            cx.event(&mut b, Op::WgAdd, Some(&inner.meta), delta);
            let mut st = inner.state.borrow(&cx);
            if v < 0 && !mutant::on(Mutant::WaitGroupNegativeNoPanic) {
                Some("sync: negative WaitGroup counter")
            } else if st.waiters > 0 && delta > 0 && v == delta {
                // Go's window (a Done between its counter update and its reset of the
                // waiters) does not exist here, where each Add is one step: kept for Go's words.
                Some("sync: WaitGroup misuse: Add called concurrently with Wait")
            } else {
                if v == 0 && st.waiters > 0 {
                    // Release every waiter; they check, when they resume, that nobody reused
                    // the group in between.
                    st.waiters = 0;
                    let clock = st.clock.clone();
                    while let Some(w) = b.pop_waiter(&mut st.queue) {
                        b.fire(
                            w,
                            Fired {
                                case: 0,
                                closed: false,
                            },
                            Some(&clock),
                        );
                    }
                }
                None
            }
        };
        if let Some(message) = problem {
            cx.go_panic(message);
        }
    }

    /// `wg.Go(f)` (Go 1.25): `wg.Add(1)`, then `f` in a new goroutine that defers `wg.Done()`
    /// (so it runs also when `f` calls [`goexit`](crate::goexit)).
    #[track_caller]
    pub fn go(&self, f: impl FnOnce() + Send + 'static) {
        self.add(1);
        let wg = self.clone();
        crate::go(move || {
            let _done = crate::defer(move || wg.done());
            f();
        });
    }

    /// `wg.Done()`: `Add(-1)`.
    #[track_caller]
    pub fn done(&self) {
        self.add(-1);
    }

    /// `wg.Wait()`: blocks until the counter is zero. Under the race detector, the first
    /// waiter to block races with an `Add` from zero it is not ordered with (see the module
    /// docs).
    ///
    /// # Panics
    ///
    /// `sync: WaitGroup is reused before previous Wait has returned`.
    #[track_caller]
    pub fn wait(&self) {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(Location::caller());
        self.sema_access(&mut cx, FIRST_WAIT, Op::WgWait, |st| {
            st.counter != 0 && st.waiters == 0
        });
        {
            let mut b = cx.books();
            let mut st = inner.state.borrow(&cx);
            if st.counter == 0 {
                if b.trace.on {
                    b.goroutines[cx.gid].clock.join(&st.clock);
                }
                drop(st);
                cx.event(&mut b, Op::WgWait, Some(&inner.meta), 0);
                return;
            }
            st.waiters += 1;
            let w = cx.waiter(&mut b, 0);
            st.queue.push_back(w);
        }
        cx.park(WaitReason::WaitGroupWait, Some(&inner.meta), Op::WgWait);
        let reused = {
            let st = inner.state.borrow(&cx);
            st.counter != 0 || st.waiters != 0
        };
        if reused && !mutant::on(Mutant::WaitGroupReuseNotDetected) {
            cx.go_panic("sync: WaitGroup is reused before previous Wait has returned");
        }
        let mut b = cx.books();
        cx.event(&mut b, Op::WgWait, Some(&inner.meta), 0);
    }

    /// The race detector's access of kind `kind` to `wg.sema`, made when `when` holds of the
    /// group's state (Go annotates only some Adds and Waits).
    fn sema_access(
        &self,
        cx: &mut Ctx<'_>,
        kind: Kind,
        op: Op,
        when: impl FnOnce(&WgState) -> bool,
    ) {
        let inner = &*self.inner;
        if !inner.exec.config.race_detector {
            return;
        }
        let race = {
            let b = cx.books();
            let mut st = inner.state.borrow(cx);
            if !when(&st) {
                return;
            }
            st.sema.access_as(cx, &b, kind, &inner.meta)
        };
        if let Some(r) = race {
            cx.race(r, op, &inner.meta);
        }
    }
}
