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

use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, Location};
use std::sync::Arc;

use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::trace::Op;
use crate::rt::{current_exec, Execution, Fired, Gid, GoPanic, ObjMeta, WaitReason, Waiter};

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
}

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
            },
        );
        Once {
            inner: Arc::new(OnceInner { exec, meta, state }),
        }
    }

    /// `once.Do(f)`: runs `f` if no call has run it yet; otherwise waits until it has returned.
    #[track_caller]
    pub fn do_(&self, f: impl FnOnce()) {
        let at = Location::caller();
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(at);
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

    /// Marks the function returned and wakes the goroutines waiting for it.
    fn finish(&self, at: &'static Location<'static>) {
        let inner = &*self.inner;
        let cx = inner.exec.enter(at);
        let mut b = cx.books();
        let mut clock = cx.release_clock(&mut b);
        if mutant::on(Mutant::HbOnce) {
            clock = VClock::default();
        }
        let mut st = inner.state.borrow(&cx);
        st.done = true;
        st.running = None;
        st.clock = clock.clone();
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
