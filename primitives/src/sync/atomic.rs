//! `sync/atomic`: atomic integers, booleans and `atomic.Value`.
//!
//! Go's atomics are sequentially consistent: all of them, on every variable, appear in one
//! total order, and an atomic that observes another's effect is synchronized after it. Here
//! each atomic operation is one step under the execution's lock (which gives the total order),
//! and each variable keeps the join of the clocks of the operations that wrote it, which every
//! later operation on it joins (which gives the happens-before edges the race detector needs).
//!
//! Go also lets code touch an atomically used word without `sync/atomic`: `n` read as `n`
//! while other goroutines `atomic.AddInt32(&n, 1)`. The integer types and [`AtomicBool`] have
//! `plain_load` and `plain_store` for those accesses; they synchronize nothing, and the race
//! detector checks them against the atomic operations on the same word as `go test -race`
//! does: a plain access races with an unordered atomic write, a plain write with any unordered
//! access, and atomic operations never race among themselves.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::race::{AccessHistory, Kind};
use crate::rt::trace::Op;
use crate::rt::{current_exec, Ctx, Execution, ObjMeta};

struct AtomicInner<T> {
    exec: Arc<Execution>,
    meta: ObjMeta,
    state: RtCell<AtomicState<T>>,
}

struct AtomicState<T> {
    value: T,
    /// The join of the clocks of the operations that wrote the value.
    clock: VClock,
    /// Every access, atomic or plain, as the race detector sees the word.
    history: AccessHistory,
}

impl<T: Send + 'static> AtomicInner<T> {
    #[track_caller]
    fn new(kind: &'static str, value: T) -> Arc<Self> {
        let exec = current_exec();
        let meta = exec.new_obj(kind, Location::caller());
        let state = RtCell::new(
            exec.id,
            AtomicState {
                value,
                clock: VClock::default(),
                history: AccessHistory::default(),
            },
        );
        Arc::new(AtomicInner { exec, meta, state })
    }

    /// Names the variable in traces, dumps and race reports.
    fn named(mut this: Arc<Self>, name: &str) -> Arc<Self> {
        Arc::get_mut(&mut this)
            .expect("name an atomic where it is made, before cloning it")
            .meta
            .name = Some(name.to_string());
        this
    }

    /// One atomic operation, Go's `name`: `f` sees the value; `writes` says whether it may
    /// change it.
    fn op<R>(
        &self,
        at: &'static Location<'static>,
        op: Op,
        name: &'static str,
        writes: bool,
        f: impl FnOnce(&mut T) -> R,
    ) -> R {
        let kind = Kind {
            write: writes,
            atomic: true,
            op: Some(name),
        };
        let mut cx = self.exec.enter(at);
        // As ThreadSanitizer does, the access is checked before the operation synchronizes.
        self.check(&mut cx, kind, op);
        let mut b = cx.books();
        let mut st = self.state.borrow(&cx);
        let AtomicState { value, clock, .. } = &mut *st;
        if b.trace.on {
            if !mutant::on(Mutant::HbAtomic) {
                b.goroutines[cx.gid].clock.join(clock);
            }
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

    /// A plain access to the word: one step, no synchronization, checked by the race detector.
    fn plain<R>(
        &self,
        at: &'static Location<'static>,
        write: bool,
        f: impl FnOnce(&mut T) -> R,
    ) -> R {
        let op = if write { Op::Write } else { Op::Read };
        let mut cx = self.exec.enter(at);
        self.check(&mut cx, Kind::plain(write), op);
        let mut b = cx.books();
        let r = f(&mut self.state.borrow(&cx).value);
        cx.event(&mut b, op, Some(&self.meta), 0);
        r
    }

    /// The race detector's check of this goroutine's access of kind `kind`.
    fn check(&self, cx: &mut Ctx<'_>, kind: Kind, op: Op) {
        if !self.exec.config.race_detector {
            return;
        }
        let race = {
            let b = cx.books();
            let mut st = self.state.borrow(cx);
            st.history.access_as(cx, &b, kind, &self.meta)
        };
        if let Some(r) = race {
            cx.race(r, op, &self.meta);
        }
    }
}

macro_rules! atomic_int {
    ($(#[$doc:meta])* $name:ident, $t:ty, $go:literal, $plain:literal) => {
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

            /// Names the variable in traces, dumps and race reports (the Go variable's name).
            ///
            /// # Panics
            ///
            /// If the atomic has been cloned already.
            pub fn named(self, name: &str) -> Self {
                $name { inner: AtomicInner::named(self.inner, name) }
            }

            /// `Load`.
            #[track_caller]
            pub fn load(&self) -> $t {
                self.inner.op(Location::caller(), Op::AtomicLoad, "Load", false, |v| *v)
            }

            /// `Store`.
            #[track_caller]
            pub fn store(&self, new: $t) {
                self.inner.op(Location::caller(), Op::AtomicStore, "Store", true, |v| *v = new)
            }

            /// `Add`: adds `delta` (wrapping, as Go does) and returns the new value.
            #[track_caller]
            pub fn add(&self, delta: $t) -> $t {
                self.inner.op(Location::caller(), Op::AtomicRmw, "Add", true, |v| {
                    *v = v.wrapping_add(delta);
                    *v
                })
            }

            /// `Swap`: stores `new`, returns the old value.
            #[track_caller]
            pub fn swap(&self, new: $t) -> $t {
                self.inner.op(Location::caller(), Op::AtomicRmw, "Swap", true, |v| std::mem::replace(v, new))
            }

            /// `CompareAndSwap` (a write for the race detector even when it fails, as in Go).
            #[track_caller]
            pub fn compare_and_swap(&self, old: $t, new: $t) -> bool {
                self.inner.op(Location::caller(), Op::AtomicRmw, "CompareAndSwap", true, |v| {
                    if *v == old {
                        *v = new;
                        true
                    } else {
                        false
                    }
                })
            }

            #[doc = concat!("Reads the word without `sync/atomic`: Go's plain `n` where `n` is a `",
                $plain, "` that other code passes to the `atomic` functions.")]
            ///
            /// It synchronizes nothing. The race detector reports it if an atomic write or a
            /// plain write of another goroutine to the word is not ordered before it.
            #[track_caller]
            pub fn plain_load(&self) -> $t {
                self.inner.plain(Location::caller(), false, |v| *v)
            }

            #[doc = concat!("Writes the word without `sync/atomic`: Go's plain `n = v` where `n` is a `",
                $plain, "` that other code passes to the `atomic` functions.")]
            ///
            /// It synchronizes nothing. The race detector reports it if any access of another
            /// goroutine to the word, atomic or plain, is not ordered before it.
            #[track_caller]
            pub fn plain_store(&self, new: $t) {
                self.inner.plain(Location::caller(), true, |v| *v = new)
            }
        }
    };
}

atomic_int!(
    /// Go's `atomic.Int32`, and an `int32` used with the `atomic.*Int32` functions.
    AtomicI32, i32, "atomic.Int32", "int32"
);
atomic_int!(
    /// Go's `atomic.Int64`, and an `int64` used with the `atomic.*Int64` functions.
    AtomicI64, i64, "atomic.Int64", "int64"
);
atomic_int!(
    /// Go's `atomic.Uint32`, and a `uint32` used with the `atomic.*Uint32` functions.
    AtomicU32, u32, "atomic.Uint32", "uint32"
);
atomic_int!(
    /// Go's `atomic.Uint64`, and a `uint64` used with the `atomic.*Uint64` functions.
    AtomicU64, u64, "atomic.Uint64", "uint64"
);

/// Go's `atomic.Bool` (or a flag word used with the `atomic` functions, read or written
/// plainly elsewhere).
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
    /// A new atomic holding `v`.
    #[track_caller]
    pub fn new(v: bool) -> Self {
        AtomicBool {
            inner: AtomicInner::new("atomic.Bool", v),
        }
    }

    /// Names the variable in traces, dumps and race reports (the Go variable's name).
    ///
    /// # Panics
    ///
    /// If the atomic has been cloned already.
    pub fn named(self, name: &str) -> Self {
        AtomicBool {
            inner: AtomicInner::named(self.inner, name),
        }
    }

    /// `Load`.
    #[track_caller]
    pub fn load(&self) -> bool {
        self.inner
            .op(Location::caller(), Op::AtomicLoad, "Load", false, |v| *v)
    }

    /// `Store`.
    #[track_caller]
    pub fn store(&self, new: bool) {
        self.inner
            .op(Location::caller(), Op::AtomicStore, "Store", true, |v| {
                *v = new
            })
    }

    /// `Swap`: stores `new`, returns the old value.
    #[track_caller]
    pub fn swap(&self, new: bool) -> bool {
        self.inner
            .op(Location::caller(), Op::AtomicRmw, "Swap", true, |v| {
                std::mem::replace(v, new)
            })
    }

    /// `CompareAndSwap` (a write for the race detector even when it fails, as in Go).
    #[track_caller]
    pub fn compare_and_swap(&self, old: bool, new: bool) -> bool {
        self.inner.op(
            Location::caller(),
            Op::AtomicRmw,
            "CompareAndSwap",
            true,
            |v| {
                if *v == old {
                    *v = new;
                    true
                } else {
                    false
                }
            },
        )
    }

    /// Reads the flag without `sync/atomic` (Go's plain read of a word that other code sets
    /// atomically). It synchronizes nothing; the race detector reports it if an atomic or
    /// plain write of another goroutine is not ordered before it.
    #[track_caller]
    pub fn plain_load(&self) -> bool {
        self.inner.plain(Location::caller(), false, |v| *v)
    }

    /// Writes the flag without `sync/atomic` (Go's plain write of a word that other code reads
    /// or sets atomically). It synchronizes nothing; the race detector reports it if any
    /// access of another goroutine is not ordered before it.
    #[track_caller]
    pub fn plain_store(&self, new: bool) {
        self.inner.plain(Location::caller(), true, |v| *v = new)
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
    /// A new value holding nothing (Go's zero `atomic.Value`).
    #[track_caller]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        AtomicValue {
            inner: AtomicInner::new("atomic.Value", None),
        }
    }

    /// Names the variable in traces and dumps (the Go variable's name).
    ///
    /// # Panics
    ///
    /// If the value has been cloned already.
    pub fn named(self, name: &str) -> Self {
        AtomicValue {
            inner: AtomicInner::named(self.inner, name),
        }
    }

    /// `Load`: `None` before the first `Store`.
    #[track_caller]
    pub fn load(&self) -> Option<T> {
        self.inner
            .op(Location::caller(), Op::AtomicLoad, "Load", false, |v| {
                v.clone()
            })
    }

    /// `Store`.
    #[track_caller]
    pub fn store(&self, new: T) {
        self.inner
            .op(Location::caller(), Op::AtomicStore, "Store", true, |v| {
                *v = Some(new)
            })
    }
}
