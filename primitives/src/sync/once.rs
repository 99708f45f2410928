//! `sync.Once`: runs a function exactly once.
//!
//! Go semantics kept: concurrent callers of `do_` wait until the first call's function has
//! returned; a call of `do_` from inside the function (on the same `Once`) blocks forever, as
//! Go's does (its internal mutex is not re-entrant), which the runtime reports as a deadlock.
//! If the function panics, `do_` considers it returned: the panic goes on up the caller's stack,
//! and later calls return without calling anything (Go's `doSlow` marks the `Once` done in a
//! deferred call).
//!
//! Happens-before: the return of the function happens before every `do_` returns.
//!
//! [`Once::reset`] is Go's `once = sync.Once{}`: a plain write of a zero `Once` over this one.
//! Done while a call is inside `f`, it unlocks the mutex that call holds, and the call's own
//! `Unlock` when `f` returns is Go's fatal error `sync: unlock of unlocked mutex`; goroutines
//! parked in `Do` at the reset are forgotten by the zeroed mutex and stay parked. Under the race
//! detector the reset races with any `Do` it is not ordered with (Go's `Do` loads `done`
//! atomically and stores it atomically when `f` returns).

use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, Location};
use std::sync::Arc;

use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::race::{AccessHistory, Kind};
use crate::rt::trace::Op;
use crate::rt::{current_exec, Ctx, Execution, Fired, Gid, GoPanic, ObjMeta, WaitReason, Waiter};

/// Go's `sync.Once`. Cloning gives another handle to the same `Once`.
///
/// # Examples
///
/// ```
/// use primitives::{sync::Once, Shared};
/// # primitives::run(|| {
/// let once = Once::new();
/// let n = Shared::new(0);
/// for _ in 0..2 {
///     once.do_(|| n.set(n.get() + 1));
/// }
/// assert_eq!(n.get(), 1);
/// # });
/// ```
#[derive(Clone)]
pub struct Once {
    inner: Arc<OnceInner>,
}

struct OnceInner {
    exec: Arc<Execution>,
    meta: ObjMeta,
    state: RtCell<OnceState>,
}

struct OnceState {
    done: bool,
    /// The goroutine running the function, while it runs.
    running: Option<Gid>,
    waiters: VecDeque<Waiter>,
    /// The clock of the function's return.
    clock: VClock,
    /// The race detector's view of `o.done`.
    history: AccessHistory,
}

/// `atomic.LoadUint32(&o.done)` at the start of every `Do`.
const LOAD_DONE: Kind = Kind {
    write: false,
    atomic: true,
    op: Some("Once.Do"),
};

/// `atomic.StoreUint32(&o.done, 1)` when `f` returns.
const STORE_DONE: Kind = Kind {
    write: true,
    atomic: true,
    op: Some("Once.Do"),
};

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Once({})", self.inner.meta.label())
    }
}

impl Once {
    /// A new `Once` whose function has not run.
    ///
    /// # Panics
    ///
    /// Outside an execution.
    #[track_caller]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let exec = current_exec();
        let meta = exec.new_obj("Once", Location::caller());
        let state = RtCell::new(
            exec.id,
            OnceState {
                done: false,
                running: None,
                waiters: VecDeque::new(),
                clock: VClock::default(),
                history: AccessHistory::default(),
            },
        );
        Once {
            inner: Arc::new(OnceInner { exec, meta, state }),
        }
    }

    /// Names the `Once` in traces and reports (the Go variable's name).
    ///
    /// # Panics
    ///
    /// If the `Once` has been cloned already.
    pub fn named(mut self, name: &str) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("name a Once where it is made, before cloning it")
            .meta
            .name = Some(name.to_string());
        self
    }

    /// `once.Do(f)`: runs `f` if no call has run it yet; otherwise waits until it has returned.
    #[track_caller]
    pub fn do_(&self, f: impl FnOnce()) {
        let at = Location::caller();
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(at);
        self.race_check(&mut cx, LOAD_DONE, Op::OnceDo);
        loop {
            {
                let mut b = cx.books();
                let mut st = inner.state.borrow(&cx);
                if st.done {
                    if b.trace.on && !mutant::on(Mutant::HbOnce) {
                        b.goroutines[cx.gid].clock.join(&st.clock);
                    }
                    drop(st);
                    cx.event(&mut b, Op::OnceDo, Some(&inner.meta), 0);
                    return;
                }
                if st.running.is_some() && mutant::on(Mutant::OnceNoWait) {
                    drop(st);
                    cx.event(&mut b, Op::OnceDo, Some(&inner.meta), 0);
                    return;
                }
                if st.running.is_none() {
                    st.running = Some(cx.gid);
                    drop(st);
                    cx.event(&mut b, Op::OnceDo, Some(&inner.meta), 1);
                    break;
                }
                let w = cx.waiter(&mut b, 0);
                st.waiters.push_back(w);
            }
            cx.park(WaitReason::OnceDo, Some(&inner.meta), Op::OnceDo);
        }
        drop(cx);
        if let Err(payload) = panic::catch_unwind(panic::AssertUnwindSafe(f)) {
            // A Go panic or a Goexit counts as a return, as in Go; any other unwinding ends the
            // execution.
            if crate::rt::go_unwinding() && !mutant::on(Mutant::OncePanicNotDone) {
                self.finish(at);
            }
            panic::resume_unwind(payload);
        }
        self.finish(at);
    }

    /// Marks the function returned and unlocks: wakes the goroutines waiting for it.
    fn finish(&self, at: &'static Location<'static>) {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(at);
        self.race_check(&mut cx, STORE_DONE, Op::OnceDo);
        let mut b = cx.books();
        let mut clock = cx.release_clock(&mut b);
        if mutant::on(Mutant::HbOnce) {
            clock = VClock::default();
        }
        let mut st = inner.state.borrow(&cx);
        st.done = true;
        st.clock = clock.clone();
        if st.running.is_none() {
            // A reset zeroed the mutex this call locked: Go's deferred `o.m.Unlock()` finds it
            // unlocked.
            drop(st);
            drop(b);
            if !mutant::on(Mutant::MutexUnlockUnlockedNoFatal) {
                cx.go_panic_on(
                    Some(&inner.meta),
                    "fatal error: sync: unlock of unlocked mutex",
                );
            }
            return;
        }
        st.running = None;
        while let Some(w) = b.pop_waiter(&mut st.waiters) {
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

    /// `once = sync.Once{}`: writes a zero `Once` over this one (see the [module docs](self)).
    #[track_caller]
    pub fn reset(&self) {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(Location::caller());
        self.race_check(&mut cx, Kind::WRITE, Op::Write);
        let mut b = cx.books();
        let mut st = inner.state.borrow(&cx);
        st.done = false;
        st.running = None;
        st.clock = VClock::default();
        // The zeroed mutex has no record of its waiters: they are never woken.
        st.waiters.clear();
        drop(st);
        cx.event(&mut b, Op::Write, Some(&inner.meta), 0);
    }

    /// The race detector's check of an access of kind `kind` to `o.done`.
    fn race_check(&self, cx: &mut Ctx<'_>, kind: Kind, op: Op) {
        let inner = &*self.inner;
        if !inner.exec.config.race_detector {
            return;
        }
        let race = {
            let b = cx.books();
            let mut st = inner.state.borrow(cx);
            st.history.access_as(cx, &b, kind, &inner.meta)
        };
        if let Some(r) = race {
            cx.race(r, op, &inner.meta);
        }
    }
}

/// `sync.OnceFunc(f)`: a function that calls `f` the first time it is called; every call
/// returns once that first call of `f` has returned (Go 1.21). If `f` panics, every call
/// panics with the same value, as in Go.
///
/// # Examples
///
/// ```
/// use primitives::{sync::once_func, Shared};
/// # primitives::run(|| {
/// let n = Shared::new(0);
/// let m = n.clone();
/// let init = once_func(move || m.set(m.get() + 1));
/// init();
/// init();
/// assert_eq!(n.get(), 1);
/// # });
/// ```
#[track_caller]
pub fn once_func(f: impl FnOnce() + Send + 'static) -> impl Fn() + Clone + Send + Sync + 'static {
    let once = Once::new();
    let f = Arc::new(std::sync::Mutex::new(Some(f)));
    // The value `f` panicked with, if it did: every later call panics with it again.
    let panicked = Arc::new(std::sync::Mutex::new(None::<String>));
    move || {
        once.do_(|| {
            let f = f.lock().expect("not poisoned").take();
            if let Some(f) = f {
                if let Err(payload) = panic::catch_unwind(panic::AssertUnwindSafe(f)) {
                    if let Some(p) = payload.downcast_ref::<GoPanic>() {
                        *panicked.lock().expect("not poisoned") = Some(p.message.clone());
                    }
                    panic::resume_unwind(payload);
                }
            }
        });
        let value = panicked.lock().expect("not poisoned").clone();
        if let Some(value) = value {
            crate::panic(value);
        }
    }
}

/// `sync.OnceValue(f)`: a function that calls `f` the first time it is called and returns its
/// value on every call (Go 1.21).
#[track_caller]
pub fn once_value<T: Clone + Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl Fn() -> T + Clone + Send + Sync + 'static {
    let value = Arc::new(std::sync::Mutex::new(None));
    let slot = value.clone();
    let call = once_func(move || *slot.lock().expect("not poisoned") = Some(f()));
    move || {
        call();
        value
            .lock()
            .expect("not poisoned")
            .clone()
            .expect("set by the first call")
    }
}

/// `sync.OnceValues(f)`: as [`once_value`], for a function of two results (Go 1.21).
#[track_caller]
pub fn once_values<T: Clone + Send + 'static, U: Clone + Send + 'static>(
    f: impl FnOnce() -> (T, U) + Send + 'static,
) -> impl Fn() -> (T, U) + Clone + Send + Sync + 'static {
    once_value(f)
}
