//! `sync.Mutex`: a mutual-exclusion lock with explicit `lock` and `unlock`.
//!
//! Go semantics kept: the lock is not re-entrant (a goroutine that locks twice blocks forever);
//! any goroutine may unlock it, not only the one that locked it; unlocking an unlocked mutex is
//! a fatal error (`sync: unlock of unlocked mutex`). An unlock wakes the longest waiter, which
//! then competes with newcomers for the lock (Go's normal mode). A woken waiter that loses that
//! race goes back to the head of the queue and puts the mutex in starvation mode: the next
//! unlock hands the lock straight to it. Go switches after a waiter has waited 1 ms; with no
//! wall clock, the first lost race stands for it (every schedule this allows, Go allows on a
//! slow enough machine), and it keeps a goroutine that unlocks and relocks in a loop from
//! starving the others forever under an unfair schedule.
//!
//! Happens-before: the n-th `unlock` happens before the (n+1)-th `lock` returns.

use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::trace::Op;
use crate::rt::{current_exec, Books, Ctx, Execution, Fired, Gid, ObjMeta, WaitReason, Waiter};

/// Go's `sync.Mutex`. Cloning gives another handle to the same mutex.
///
/// # Examples
///
/// ```
/// use primitives::sync::Mutex;
/// # primitives::run(|| {
/// let mu = Mutex::new();
/// mu.lock();
/// assert!(!mu.try_lock());
/// mu.unlock();
/// # });
/// ```
#[derive(Clone)]
pub struct Mutex {
    pub(crate) inner: Arc<MutexInner>,
}

pub(crate) struct MutexInner {
    pub(crate) exec: Arc<Execution>,
    pub(crate) meta: ObjMeta,
    state: RtCell<MutexState>,
}

struct MutexState {
    /// `true` while some goroutine holds the lock.
    locked: bool,
    /// Who locked it (for dumps); any goroutine may unlock.
    holder: Option<Gid>,
    /// Goroutines parked in `lock`, oldest first.
    waiters: VecDeque<Waiter>,
    /// Starvation mode: unlock hands the lock to the first waiter.
    starving: bool,
    /// The join of every unlocker's clock.
    clock: VClock,
}

impl fmt::Debug for Mutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mutex({})", self.inner.meta.label())
    }
}

impl Mutex {
    /// A new, unlocked mutex (Go's zero value).
    ///
    /// # Panics
    ///
    /// Outside an execution.
    #[track_caller]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let exec = current_exec();
        let meta = exec.new_obj("Mutex", Location::caller());
        let state = RtCell::new(
            exec.id,
            MutexState {
                locked: false,
                holder: None,
                waiters: VecDeque::new(),
                starving: false,
                clock: VClock::default(),
            },
        );
        Mutex {
            inner: Arc::new(MutexInner { exec, meta, state }),
        }
    }

    /// Names the mutex in traces and dumps.
    ///
    /// # Panics
    ///
    /// If the mutex has been cloned already.
    pub fn named(mut self, name: &str) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("name a mutex where it is made, before cloning it")
            .meta
            .name = Some(name.to_string());
        self
    }

    /// `m.Lock()`: blocks until the mutex is free, then holds it.
    #[track_caller]
    pub fn lock(&self) {
        let mut cx = self.inner.exec.enter(Location::caller());
        self.inner.lock_with(&mut cx);
    }

    /// `m.Unlock()`.
    ///
    /// # Panics
    ///
    /// `sync: unlock of unlocked mutex` (in Go a fatal error).
    #[track_caller]
    pub fn unlock(&self) {
        let mut cx = self.inner.exec.enter(Location::caller());
        let ok = {
            let mut b = cx.books();
            self.inner.unlock_with(&cx, &mut b)
        };
        if !ok && !mutant::on(Mutant::MutexUnlockUnlockedNoFatal) {
            cx.go_panic("fatal error: sync: unlock of unlocked mutex");
        }
    }

    /// `m.TryLock()`: takes the lock if it is free, without blocking.
    #[track_caller]
    pub fn try_lock(&self) -> bool {
        let cx = self.inner.exec.enter(Location::caller());
        let mut b = cx.books();
        let mut st = self.inner.state.borrow(&cx);
        let acquired = !st.locked;
        if acquired {
            st.locked = true;
            st.holder = Some(cx.gid);
            if b.trace.on {
                b.goroutines[cx.gid].clock.join(&st.clock);
            }
        }
        drop(st);
        cx.event(
            &mut b,
            Op::TryLock,
            Some(&self.inner.meta),
            i64::from(acquired),
        );
        acquired
    }
}

/// How a parked `Lock` learns that an unlock in starvation mode gave it the lock.
const HANDED_OVER: Fired = Fired {
    case: 1,
    closed: false,
};

impl MutexInner {
    /// The locking loop of `Lock`, also used by `Cond.Wait` to take the lock back.
    pub(crate) fn lock_with(&self, cx: &mut Ctx<'_>) {
        let mut lost_race = false;
        loop {
            {
                let mut b = cx.books();
                let mut st = self.state.borrow(cx);
                if !st.locked {
                    st.locked = true;
                    st.holder = Some(cx.gid);
                    if b.trace.on {
                        b.goroutines[cx.gid].clock.join(&st.clock);
                    }
                    drop(st);
                    cx.event(&mut b, Op::Lock, Some(&self.meta), 0);
                    return;
                }
                let w = cx.waiter(&mut b, 0);
                if lost_race && !mutant::on(Mutant::MutexNoStarvation) {
                    // Woken, but a newcomer took the lock first: back to the head of the line,
                    // and the next unlock hands the lock over.
                    st.waiters.push_front(w);
                    st.starving = true;
                } else {
                    st.waiters.push_back(w);
                }
            }
            if cx.park(WaitReason::MutexLock, Some(&self.meta), Op::Lock) == HANDED_OVER {
                let mut b = cx.books();
                let st = self.state.borrow(cx);
                if b.trace.on {
                    b.goroutines[cx.gid].clock.join(&st.clock);
                }
                drop(st);
                cx.event(&mut b, Op::Lock, Some(&self.meta), 0);
                return;
            }
            lost_race = true;
        }
    }

    /// Releases the lock and wakes the longest waiter; `false` if it was not locked.
    pub(crate) fn unlock_with(&self, cx: &Ctx<'_>, b: &mut Books) -> bool {
        let mut st = self.state.borrow(cx);
        if !st.locked {
            return false;
        }
        st.locked = false;
        st.holder = None;
        if b.trace.on && !mutant::on(Mutant::HbMutexUnlockLock) {
            let c = cx.release_clock(b);
            st.clock.join(&c);
        }
        if st.starving {
            if let Some(w) = b.pop_waiter(&mut st.waiters) {
                // Starvation mode: the lock goes straight to the first waiter.
                st.locked = true;
                st.holder = Some(w.g);
                st.starving = !st.waiters.is_empty();
                b.fire(w, HANDED_OVER, None);
                drop(st);
                cx.event(b, Op::Unlock, Some(&self.meta), 0);
                return true;
            }
            st.starving = false;
        }
        if mutant::on(Mutant::MutexUnlockWakesNobody) {
            drop(st);
            cx.event(b, Op::Unlock, Some(&self.meta), 0);
            return true;
        }
        if let Some(w) = b.pop_waiter(&mut st.waiters) {
            b.fire(
                w,
                Fired {
                    case: 0,
                    closed: false,
                },
                None,
            );
        }
        drop(st);
        cx.event(b, Op::Unlock, Some(&self.meta), 0);
        true
    }
}
