//! `sync.RWMutex`: a reader/writer lock with Go's writer preference.
//!
//! Go semantics kept: once a writer is waiting in `Lock`, new `RLock` calls block until that
//! writer has had the lock and released it, even if readers hold the lock now. So a goroutine
//! that holds a read lock and takes it again while a writer waits deadlocks (the RWR
//! deadlock, kubernetes#62464). Writers queue for the right to be that waiting writer, as
//! behind Go's inner mutex; when the writer unlocks, the readers that queued behind it are
//! admitted together before the next writer may start waiting. `RUnlock` without a read lock
//! and `Unlock` without a write lock are fatal errors, in Go's words.
//!
//! Happens-before: the n-th `Unlock` happens before every `RLock` that returns after it and
//! before the (n+1)-th `Lock` returns; an `RUnlock` happens before the next `Lock` returns.

use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::trace::Op;
use crate::rt::{current_exec, Books, Execution, Fired, Gid, ObjMeta, WaitReason, Waiter};

/// Go's `sync.RWMutex`. Cloning gives another handle to the same lock.
///
/// # Examples
///
/// ```
/// use primitives::sync::RwMutex;
/// # primitives::run(|| {
/// let rw = RwMutex::new();
/// rw.rlock();
/// rw.rlock(); // readers share the lock while no writer waits
/// rw.runlock();
/// rw.runlock();
/// rw.lock();
/// rw.unlock();
/// # });
/// ```
#[derive(Clone)]
pub struct RwMutex {
    inner: Arc<RwInner>,
}

struct RwInner {
    exec: Arc<Execution>,
    meta: ObjMeta,
    state: RtCell<RwState>,
}

/// The one writer that is either waiting for readers to leave, or holding the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    None,
    /// Announced: new readers block; waits for `readers` to drain.
    Pending(Gid),
    Active(Gid),
}

struct RwState {
    /// Readers holding the lock.
    readers: u32,
    writer: Writer,
    /// The pending writer's parked `Lock`, fired when the last reader leaves.
    writer_wait: Option<Waiter>,
    /// Writers waiting for their turn to become the pending writer.
    writers: VecDeque<Waiter>,
    /// Readers that arrived while a writer was pending or active.
    blocked_readers: VecDeque<Waiter>,
    /// The join of the clocks of every `Unlock`.
    write_clock: VClock,
    /// The join of the clocks of every `RUnlock`.
    read_clock: VClock,
}

impl fmt::Debug for RwMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RwMutex({})", self.inner.meta.label())
    }
}

const AWAKE: Fired = Fired {
    case: 0,
    closed: false,
};

impl RwMutex {
    /// A new, unlocked lock (Go's zero value).
    ///
    /// # Panics
    ///
    /// Outside an execution.
    #[track_caller]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let exec = current_exec();
        let meta = exec.new_obj("RWMutex", Location::caller());
        let state = RtCell::new(
            exec.id,
            RwState {
                readers: 0,
                writer: Writer::None,
                writer_wait: None,
                writers: VecDeque::new(),
                blocked_readers: VecDeque::new(),
                write_clock: VClock::default(),
                read_clock: VClock::default(),
            },
        );
        RwMutex {
            inner: Arc::new(RwInner { exec, meta, state }),
        }
    }

    /// Names the lock in traces and dumps.
    ///
    /// # Panics
    ///
    /// If the lock has been cloned already.
    pub fn named(mut self, name: &str) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("name a lock where it is made, before cloning it")
            .meta
            .name = Some(name.to_string());
        self
    }

    /// `rw.RLock()`: blocks while a writer is waiting or holds the lock.
    #[track_caller]
    pub fn rlock(&self) {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(Location::caller());
        {
            let mut b = cx.books();
            let mut st = inner.state.borrow(&cx);
            if st.writer == Writer::None || passes_pending_writer(st.writer) {
                st.readers += 1;
                join_write(&mut b, cx.gid, &st.write_clock);
                drop(st);
                cx.event(&mut b, Op::RLock, Some(&inner.meta), 0);
                return;
            }
            let w = cx.waiter(&mut b, 0);
            st.blocked_readers.push_back(w);
        }
        // Admitted (counted among the readers) by the writer's Unlock.
        cx.park(WaitReason::RwMutexRLock, Some(&inner.meta), Op::RLock);
        let mut b = cx.books();
        let st = inner.state.borrow(&cx);
        join_write(&mut b, cx.gid, &st.write_clock);
        drop(st);
        cx.event(&mut b, Op::RLock, Some(&inner.meta), 0);
    }

    /// `rw.TryRLock()`: takes a read lock if no writer holds the lock or waits for it, without
    /// blocking.
    #[track_caller]
    pub fn try_rlock(&self) -> bool {
        let inner = &*self.inner;
        let cx = inner.exec.enter(Location::caller());
        let mut b = cx.books();
        let mut st = inner.state.borrow(&cx);
        let acquired = st.writer == Writer::None || passes_pending_writer(st.writer);
        if acquired {
            st.readers += 1;
            join_write(&mut b, cx.gid, &st.write_clock);
        }
        drop(st);
        cx.event(&mut b, Op::TryLock, Some(&inner.meta), i64::from(acquired));
        acquired
    }

    /// `rw.TryLock()`: takes the write lock if nobody holds it or waits for it, without
    /// blocking.
    #[track_caller]
    pub fn try_lock(&self) -> bool {
        let inner = &*self.inner;
        let cx = inner.exec.enter(Location::caller());
        let mut b = cx.books();
        let mut st = inner.state.borrow(&cx);
        let acquired = st.writer == Writer::None && st.readers == 0;
        if acquired {
            st.writer = Writer::Active(cx.gid);
            join(&mut b, cx.gid, &st.write_clock);
            join_read(&mut b, cx.gid, &st.read_clock);
        }
        drop(st);
        cx.event(&mut b, Op::TryLock, Some(&inner.meta), i64::from(acquired));
        acquired
    }

    /// `rw.RUnlock()`.
    ///
    /// # Panics
    ///
    /// `sync: RUnlock of unlocked RWMutex` (in Go a fatal error).
    #[track_caller]
    pub fn runlock(&self) {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(Location::caller());
        {
            let mut b = cx.books();
            let mut st = inner.state.borrow(&cx);
            if st.readers > 0 {
                st.readers -= 1;
                if b.trace.on {
                    let c = cx.release_clock(&mut b);
                    st.read_clock.join(&c);
                }
                if let (Writer::Pending(g), 0) = (st.writer, st.readers) {
                    st.writer = Writer::Active(g);
                    if let Some(w) = st.writer_wait.take() {
                        if b.is_waiting(w) {
                            b.fire(w, AWAKE, None);
                        }
                    }
                }
                drop(st);
                cx.event(&mut b, Op::RUnlock, Some(&inner.meta), 0);
                return;
            }
        }
        if mutant::on(Mutant::RwMutexRUnlockUnlockedNoFatal) {
            return;
        }
        cx.go_panic("fatal error: sync: RUnlock of unlocked RWMutex");
    }

    /// `rw.Lock()`: waits for its turn among writers, then for the readers to leave.
    #[track_caller]
    pub fn lock(&self) {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(Location::caller());
        let mut lost_race = false;
        loop {
            {
                let mut b = cx.books();
                let mut st = inner.state.borrow(&cx);
                if st.writer == Writer::None {
                    if st.readers == 0 {
                        st.writer = Writer::Active(cx.gid);
                        break;
                    }
                    // Announce: from now on new readers wait behind this writer.
                    st.writer = Writer::Pending(cx.gid);
                    let w = cx.waiter(&mut b, 0);
                    st.writer_wait = Some(w);
                    drop(st);
                    drop(b);
                    cx.park(WaitReason::RwMutexLock, Some(&inner.meta), Op::Lock);
                    break;
                }
                let w = cx.waiter(&mut b, 0);
                if lost_race {
                    st.writers.push_front(w);
                } else {
                    st.writers.push_back(w);
                }
            }
            cx.park(WaitReason::RwMutexLock, Some(&inner.meta), Op::Lock);
            lost_race = true;
        }
        let mut b = cx.books();
        let st = inner.state.borrow(&cx);
        join(&mut b, cx.gid, &st.write_clock);
        join_read(&mut b, cx.gid, &st.read_clock);
        drop(st);
        cx.event(&mut b, Op::Lock, Some(&inner.meta), 0);
    }

    /// `rw.Unlock()`: admits the readers that waited behind this writer, then lets the next
    /// writer compete.
    ///
    /// # Panics
    ///
    /// `sync: Unlock of unlocked RWMutex` (in Go a fatal error).
    #[track_caller]
    pub fn unlock(&self) {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter(Location::caller());
        {
            let mut b = cx.books();
            let mut st = inner.state.borrow(&cx);
            if let Writer::Active(_) = st.writer {
                st.writer = Writer::None;
                if b.trace.on {
                    let c = cx.release_clock(&mut b);
                    st.write_clock.join(&c);
                }
                while let Some(w) = b.pop_waiter(&mut st.blocked_readers) {
                    if mutant::on(Mutant::RwMutexUnlockAdmitsNoReaders) {
                        st.blocked_readers.push_front(w);
                        break;
                    }
                    st.readers += 1;
                    b.fire(w, AWAKE, None);
                }
                if let Some(w) = b.pop_waiter(&mut st.writers) {
                    b.fire(w, AWAKE, None);
                }
                drop(st);
                cx.event(&mut b, Op::Unlock, Some(&inner.meta), 0);
                return;
            }
        }
        if mutant::on(Mutant::RwMutexUnlockUnlockedNoFatal) {
            return;
        }
        cx.go_panic("fatal error: sync: Unlock of unlocked RWMutex");
    }
}

/// With the mutant that drops writer preference, a new reader passes a writer that waits.
fn passes_pending_writer(w: Writer) -> bool {
    matches!(w, Writer::Pending(_)) && mutant::on(Mutant::RwMutexNoWriterPreference)
}

/// A reader acquires the last writer's release (unless a mutant drops the edge).
fn join_write(b: &mut Books, g: Gid, clock: &VClock) {
    if !mutant::on(Mutant::HbRwMutexUnlockRLock) {
        join(b, g, clock);
    }
}

/// A writer acquires the readers' releases (unless a mutant drops the edge).
fn join_read(b: &mut Books, g: Gid, clock: &VClock) {
    if !mutant::on(Mutant::HbRwMutexRUnlockLock) {
        join(b, g, clock);
    }
}

fn join(b: &mut Books, g: Gid, clock: &VClock) {
    if b.trace.on {
        b.goroutines[g].clock.join(clock);
    }
}
