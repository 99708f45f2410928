//! `sync.Cond`: a condition variable over a [`Mutex`].
//!
//! Go semantics kept: `wait` atomically queues the goroutine and unlocks the mutex, and takes
//! the mutex again before returning; `signal` wakes the longest waiter, `broadcast` all of them;
//! a signal with nobody waiting is lost. Go's `Cond` does not wake spuriously, and neither does
//! this one. `wait` without holding the mutex fails like Go's (`sync: unlock of unlocked
//! mutex`).
//!
//! Happens-before: a `signal` or `broadcast` happens before the `wait` it wakes returns.

use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use super::mutex::{Mutex, MutexInner};
use crate::rt::cell::RtCell;
use crate::rt::trace::Op;
use crate::rt::{Books, Ctx, Fired, ObjMeta, WaitReason, Waiter};

/// Go's `sync.Cond`, made with `sync.NewCond(&m)`. Cloning gives another handle.
///
/// # Examples
///
/// ```
/// use primitives::{go, sync::{Cond, Mutex}, Shared};
/// # primitives::run(|| {
/// let mu = Mutex::new();
/// let cond = Cond::new(&mu);
/// let ready = Shared::new(false);
/// let (c, r) = (cond.clone(), ready.clone());
/// go(move || {
///     c.l().lock();
///     r.set(true);
///     c.l().unlock();
///     c.signal();
/// });
/// mu.lock();
/// while !ready.get() {
///     cond.wait();
/// }
/// mu.unlock();
/// # });
/// ```
#[derive(Clone)]
pub struct Cond {
    inner: Arc<CondInner>,
}

struct CondInner {
    l: Mutex,
    meta: ObjMeta,
    state: RtCell<VecDeque<Waiter>>,
}

impl fmt::Debug for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cond({})", self.inner.meta.label())
    }
}

impl Cond {
    /// `sync.NewCond(l)`.
    #[track_caller]
    pub fn new(l: &Mutex) -> Self {
        let exec = l.inner.exec.clone();
        let meta = exec.new_obj("Cond", Location::caller());
        let state = RtCell::new(exec.id, VecDeque::new());
        Cond {
            inner: Arc::new(CondInner {
                l: l.clone(),
                meta,
                state,
            }),
        }
    }

    /// `c.L`: the mutex the condition is bound to.
    pub fn l(&self) -> &Mutex {
        &self.inner.l
    }

    fn mutex(&self) -> &MutexInner {
        &self.inner.l.inner
    }

    /// `c.Wait()`: unlocks `c.L`, waits for a signal, locks `c.L` again.
    #[track_caller]
    pub fn wait(&self) {
        let mut cx = self.mutex().exec.enter(Location::caller());
        let unlocked = {
            let mut b = cx.books();
            let w = cx.waiter(&mut b, 0);
            self.inner.state.borrow(&cx).push_back(w);
            self.mutex().unlock_with(&cx, &mut b)
        };
        if !unlocked {
            cx.go_panic("fatal error: sync: unlock of unlocked mutex");
        }
        cx.park(WaitReason::CondWait, Some(&self.inner.meta), Op::CondWait);
        {
            let mut b = cx.books();
            cx.event(&mut b, Op::CondWait, Some(&self.inner.meta), 0);
        }
        self.mutex().lock_with(&mut cx);
    }

    /// `c.Signal()`: wakes the longest waiter, if any.
    #[track_caller]
    pub fn signal(&self) {
        let cx = self.mutex().exec.enter(Location::caller());
        let mut b = cx.books();
        self.wake(&cx, &mut b, 1);
        cx.event(&mut b, Op::Signal, Some(&self.inner.meta), 0);
    }

    /// `c.Broadcast()`: wakes every waiter.
    #[track_caller]
    pub fn broadcast(&self) {
        let cx = self.mutex().exec.enter(Location::caller());
        let mut b = cx.books();
        self.wake(&cx, &mut b, usize::MAX);
        cx.event(&mut b, Op::Broadcast, Some(&self.inner.meta), 0);
    }

    fn wake(&self, cx: &Ctx<'_>, b: &mut Books, mut n: usize) {
        let clock = cx.release_clock(b);
        let mut queue = self.inner.state.borrow(cx);
        while n > 0 {
            let Some(w) = b.pop_waiter(&mut queue) else {
                break;
            };
            b.fire(
                w,
                Fired {
                    case: 0,
                    closed: false,
                },
                Some(&clock),
            );
            n -= 1;
        }
    }
}
