//! `sync.Cond`: a condition variable over any [`Locker`] (a [`Mutex`], an [`RwMutex`], the
//! read side of one from [`RwMutex::rlocker`]).
//!
//! Go's algorithm, as its runtime's `notifyList` has it: `Wait` takes a ticket, unlocks `L`,
//! then waits until its ticket is notified, and locks `L` again before returning; `Signal`
//! notifies the oldest ticket not yet notified, `Broadcast` all of them. A ticket notified
//! between the unlock and the wait is not lost (the waiter does not park); a signal with no
//! ticket outstanding is lost. Go's `Cond` does not wake spuriously, and neither does this
//! one. `Wait` without holding `L` fails as `L.Unlock` does (`sync: unlock of unlocked mutex`).
//!
//! Happens-before: a `Signal` or `Broadcast` happens before the `Wait` it wakes returns.
//!
//! [`RwMutex`]: super::RwMutex
//! [`RwMutex::rlocker`]: super::RwMutex::rlocker

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use super::{Locker, Mutex};
use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::trace::Op;
use crate::rt::{current_exec, Execution, Fired, ObjMeta, WaitReason, Waiter};

/// Go's `sync.Cond`, made with `sync.NewCond(l)`; `L` is the type of its locker (a
/// [`Mutex`] unless said otherwise). Cloning gives another handle.
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
pub struct Cond<L: Locker = Mutex> {
    inner: Arc<CondInner<L>>,
}

impl<L: Locker> Clone for Cond<L> {
    fn clone(&self) -> Self {
        Cond {
            inner: self.inner.clone(),
        }
    }
}

struct CondInner<L> {
    l: L,
    exec: Arc<Execution>,
    meta: ObjMeta,
    state: RtCell<NotifyList>,
}

/// Go's `notifyList`: tickets handed out by `Wait`, notified in order by `Signal`.
#[derive(Default)]
struct NotifyList {
    /// The next ticket `Wait` hands out.
    wait: u64,
    /// The next ticket to notify; every ticket below it has been notified.
    notify: u64,
    /// Goroutines parked on their ticket, oldest ticket first.
    parked: VecDeque<(u64, Waiter)>,
    /// The signaller's clock for tickets notified before their waiter parked.
    early: BTreeMap<u64, VClock>,
}

impl<L: Locker> fmt::Debug for Cond<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cond({})", self.inner.meta.label())
    }
}

impl<L: Locker> Cond<L> {
    /// `sync.NewCond(l)`.
    ///
    /// # Panics
    ///
    /// Outside an execution.
    #[track_caller]
    pub fn new(l: &L) -> Self {
        let exec = current_exec();
        let meta = exec.new_obj("Cond", Location::caller());
        let state = RtCell::new(exec.id, NotifyList::default());
        Cond {
            inner: Arc::new(CondInner {
                l: l.clone(),
                exec,
                meta,
                state,
            }),
        }
    }

    /// `c.L`: the locker the condition is bound to.
    pub fn l(&self) -> &L {
        &self.inner.l
    }

    /// `c.Wait()`: unlocks `c.L`, waits for a signal, locks `c.L` again.
    #[track_caller]
    pub fn wait(&self) {
        let inner = &*self.inner;
        let ticket = {
            let cx = inner.exec.enter(Location::caller());
            let mut st = inner.state.borrow(&cx);
            st.wait += 1;
            st.wait - 1
        };
        inner.l.unlock();
        {
            let mut cx = inner.exec.enter(Location::caller());
            let mut b = cx.books();
            let mut st = inner.state.borrow(&cx);
            if ticket < st.notify {
                // Notified between the unlock and now: no need to park.
                if let Some(c) = st.early.remove(&ticket) {
                    if b.trace.on && !mutant::on(Mutant::HbCond) {
                        b.goroutines[cx.gid].clock.join(&c);
                    }
                }
            } else {
                let w = cx.waiter(&mut b, 0);
                st.parked.push_back((ticket, w));
                drop(st);
                drop(b);
                cx.park(WaitReason::CondWait, Some(&inner.meta), Op::CondWait);
                b = cx.books();
            }
            cx.event(&mut b, Op::CondWait, Some(&inner.meta), 0);
        }
        inner.l.lock();
    }

    /// `c.Signal()`: wakes the longest waiter, if any.
    #[track_caller]
    pub fn signal(&self) {
        let n = if mutant::on(Mutant::CondSignalWakesNobody) {
            0
        } else if mutant::on(Mutant::CondSignalWakesAll) {
            u64::MAX
        } else {
            1
        };
        self.notify(Op::Signal, n);
    }

    /// `c.Broadcast()`: wakes every waiter.
    #[track_caller]
    pub fn broadcast(&self) {
        let n = if mutant::on(Mutant::CondBroadcastWakesOne) {
            1
        } else {
            u64::MAX
        };
        self.notify(Op::Broadcast, n);
    }

    /// Notifies up to `n` outstanding tickets, oldest first.
    #[track_caller]
    fn notify(&self, op: Op, n: u64) {
        let inner = &*self.inner;
        let cx = inner.exec.enter(Location::caller());
        let mut b = cx.books();
        let mut clock = cx.release_clock(&mut b);
        if mutant::on(Mutant::HbCond) {
            clock = VClock::default();
        }
        let mut st = inner.state.borrow(&cx);
        let outstanding = st.wait - st.notify;
        for _ in 0..n.min(outstanding) {
            let ticket = st.notify;
            st.notify += 1;
            match st.parked.iter().position(|(t, _)| *t == ticket) {
                Some(k) => {
                    let (_, w) = st.parked.remove(k).expect("found above");
                    if b.is_waiting(w) {
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
                None => {
                    st.early.insert(ticket, clock.clone());
                }
            }
        }
        drop(st);
        cx.event(&mut b, op, Some(&inner.meta), 0);
    }
}
