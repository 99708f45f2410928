//! `sync/atomic`: atomic integers, booleans and `atomic.Value`.
//!
//! Go's atomics are sequentially consistent: all of them, on every variable, appear in one
//! total order, and an atomic that observes another's effect is synchronized after it. Here
//! each atomic operation is one step under the execution's lock (which gives the total order),
//! and each variable keeps the join of the clocks of the operations that wrote it, which every
//! later operation on it joins (which gives the happens-before edges the race detector needs).

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::trace::Op;
use crate::rt::{current_exec, Execution, ObjMeta};

struct AtomicInner<T> {
    exec: Arc<Execution>,
    meta: ObjMeta,
    state: RtCell<(T, VClock)>,
}

impl<T: Send + 'static> AtomicInner<T> {
    #[track_caller]
    fn new(kind: &'static str, value: T) -> Arc<Self> {
        let exec = current_exec();
        let meta = exec.new_obj(kind, Location::caller());
        let state = RtCell::new(exec.id, (value, VClock::default()));
        Arc::new(AtomicInner { exec, meta, state })
    }

    /// One atomic operation: `f` sees the value; `writes` says whether it may change it.
    fn op<R>(
        &self,
        at: &'static Location<'static>,
        op: Op,
        writes: bool,
        f: impl FnOnce(&mut T) -> R,
    ) -> R {
        let cx = self.exec.enter(at);
        let mut b = cx.books();
        let mut st = self.state.borrow(&cx);
        let (value, clock) = &mut *st;
        if b.trace.on {
            b.goroutines[cx.gid].clock.join(clock);
            if writes {
                let c = cx.release_clock(&mut b);
                clock.join(&c);
            }
        }
        let r = f(value);
        drop(st);
        cx.event(&mut b, op, Some(&self.meta), 0);
        r
    }
}

macro_rules! atomic_int {
    ($(#[$doc:meta])* $name:ident, $t:ty, $go:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            inner: Arc<AtomicInner<$t>>,
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.inner.meta.label())
            }
        }

        impl $name {
            /// A new atomic holding `v`.
            #[track_caller]
            pub fn new(v: $t) -> Self {
                $name { inner: AtomicInner::new($go, v) }
            }

            /// `Load`.
            #[track_caller]
            pub fn load(&self) -> $t {
                self.inner.op(Location::caller(), Op::AtomicLoad, false, |v| *v)
            }

            /// `Store`.
            #[track_caller]
            pub fn store(&self, new: $t) {
                self.inner.op(Location::caller(), Op::AtomicStore, true, |v| *v = new)
            }

            /// `Add`: adds `delta` (wrapping, as Go does) and returns the new value.
            #[track_caller]
            pub fn add(&self, delta: $t) -> $t {
                self.inner.op(Location::caller(), Op::AtomicRmw, true, |v| {
                    *v = v.wrapping_add(delta);
                    *v
                })
            }

            /// `Swap`: stores `new`, returns the old value.
            #[track_caller]
            pub fn swap(&self, new: $t) -> $t {
                self.inner.op(Location::caller(), Op::AtomicRmw, true, |v| std::mem::replace(v, new))
            }

            /// `CompareAndSwap`.
            #[track_caller]
            pub fn compare_and_swap(&self, old: $t, new: $t) -> bool {
                self.inner.op(Location::caller(), Op::AtomicRmw, true, |v| {
                    if *v == old {
                        *v = new;
                        true
                    } else {
                        false
                    }
                })
            }
        }
    };
}

atomic_int!(
    /// Go's `atomic.Int32` (and the `atomic.*Int32` functions).
    AtomicI32, i32, "atomic.Int32"
);
atomic_int!(
    /// Go's `atomic.Int64` (and the `atomic.*Int64` functions).
    AtomicI64, i64, "atomic.Int64"
);
atomic_int!(
    /// Go's `atomic.Uint32` (and the `atomic.*Uint32` functions).
    AtomicU32, u32, "atomic.Uint32"
);
atomic_int!(
    /// Go's `atomic.Uint64` (and the `atomic.*Uint64` functions).
    AtomicU64, u64, "atomic.Uint64"
);

/// Go's `atomic.Bool`.
#[derive(Clone)]
pub struct AtomicBool {
    inner: Arc<AtomicInner<bool>>,
}

impl fmt::Debug for AtomicBool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AtomicBool({})", self.inner.meta.label())
    }
}

impl AtomicBool {
    #[track_caller]
    pub fn new(v: bool) -> Self {
        AtomicBool {
            inner: AtomicInner::new("atomic.Bool", v),
        }
    }

    #[track_caller]
    pub fn load(&self) -> bool {
        self.inner
            .op(Location::caller(), Op::AtomicLoad, false, |v| *v)
    }

    #[track_caller]
    pub fn store(&self, new: bool) {
        self.inner
            .op(Location::caller(), Op::AtomicStore, true, |v| *v = new)
    }

    #[track_caller]
    pub fn swap(&self, new: bool) -> bool {
        self.inner.op(Location::caller(), Op::AtomicRmw, true, |v| {
            std::mem::replace(v, new)
        })
    }

    #[track_caller]
    pub fn compare_and_swap(&self, old: bool, new: bool) -> bool {
        self.inner.op(Location::caller(), Op::AtomicRmw, true, |v| {
            if *v == old {
                *v = new;
                true
            } else {
                false
            }
        })
    }
}

/// Go's `atomic.Value`: `load` gives `None` until the first `store`.
#[derive(Clone)]
pub struct AtomicValue<T> {
    inner: Arc<AtomicInner<Option<T>>>,
}

impl<T> fmt::Debug for AtomicValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AtomicValue({})", self.inner.meta.label())
    }
}

impl<T: Clone + Send + 'static> AtomicValue<T> {
    #[track_caller]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        AtomicValue {
            inner: AtomicInner::new("atomic.Value", None),
        }
    }

    #[track_caller]
    pub fn load(&self) -> Option<T> {
        self.inner
            .op(Location::caller(), Op::AtomicLoad, false, |v| v.clone())
    }

    #[track_caller]
    pub fn store(&self, new: T) {
        self.inner
            .op(Location::caller(), Op::AtomicStore, true, |v| {
                *v = Some(new)
            })
    }
}
