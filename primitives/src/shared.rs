//! `Shared<T>`: a plain Go variable, shared between goroutines without synchronisation of its
//! own, every access of which is checked by the race detector.
//!
//! Each `get`, `set`, `read` or `write` is one step, and a scheduling point unless the race
//! detector watches it under loom or shuttle (`Execution::enter_plain` says why). Go's `x++` is
//! a read, then a write: port it as `x.set(x.get() + 1)` (two steps), not as one `write`.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::rt::cell::RtCell;
use crate::rt::race::AccessHistory;
use crate::rt::trace::Op;
use crate::rt::{current_exec, Execution, ObjMeta};

/// A variable shared by goroutines, like any Go variable captured by two closures. Cloning
/// gives another handle to the same variable.
///
/// # Examples
///
/// ```
/// use primitives::{go, sync::WaitGroup, Shared};
/// # primitives::run(|| {
/// let x = Shared::new(0);
/// let wg = WaitGroup::new();
/// wg.add(1);
/// let (x2, wg2) = (x.clone(), wg.clone());
/// go(move || {
///     x2.set(1);
///     wg2.done(); // Done happens before Wait returns: no race
/// });
/// wg.wait();
/// assert_eq!(x.get(), 1);
/// # });
/// ```
pub struct Shared<T> {
    inner: Arc<SharedInner<T>>,
}

struct SharedInner<T> {
    exec: Arc<Execution>,
    meta: ObjMeta,
    state: RtCell<SharedState<T>>,
}

struct SharedState<T> {
    value: T,
    history: AccessHistory,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shared({})", self.inner.meta.label())
    }
}

impl<T: Send + 'static> Shared<T> {
    /// A new variable holding `value`.
    ///
    /// # Panics
    ///
    /// Outside an execution.
    #[track_caller]
    pub fn new(value: T) -> Self {
        let exec = current_exec();
        let meta = exec.new_obj("var", Location::caller());
        let state = RtCell::new(
            exec.id,
            SharedState {
                value,
                history: AccessHistory::default(),
            },
        );
        Shared {
            inner: Arc::new(SharedInner { exec, meta, state }),
        }
    }

    /// Names the variable in traces, dumps and race reports (the Go variable's name).
    ///
    /// # Panics
    ///
    /// If the variable has been cloned already.
    pub fn named(mut self, name: &str) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("name a variable where it is made, before cloning it")
            .meta
            .name = Some(name.to_string());
        self
    }

    /// The variable's identity, where Go would use its address (`&v`, a pointer used as a map
    /// key): distinct for every object of the execution, and the same in every execution that
    /// makes its objects in the same order, so that a map keyed by it iterates alike when a
    /// schedule is replayed (a real address would not). Not a Go operation: no scheduling point.
    pub fn identity(&self) -> u64 {
        u64::from(self.inner.meta.id)
    }

    /// Reads the variable through `f`.
    #[track_caller]
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        self.access(Location::caller(), false, |v| f(v))
    }

    /// Writes the variable through `f` (one step: `f` may read it too).
    #[track_caller]
    pub fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.access(Location::caller(), true, f)
    }

    /// Stores `value`.
    #[track_caller]
    pub fn set(&self, value: T) {
        self.access(Location::caller(), true, |v| *v = value)
    }

    fn access<R>(
        &self,
        at: &'static Location<'static>,
        write: bool,
        f: impl FnOnce(&mut T) -> R,
    ) -> R {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter_plain(at);
        let op = if write { Op::Write } else { Op::Read };
        if inner.exec.config.race_detector {
            let race = {
                let b = cx.books();
                let mut st = inner.state.borrow(&cx);
                st.history.access(&cx, &b, write, &inner.meta)
            };
            if let Some(r) = race {
                cx.race(r, op, &inner.meta);
            }
        }
        let mut b = cx.books();
        let r = f(&mut inner.state.borrow(&cx).value);
        cx.event(&mut b, op, Some(&inner.meta), 0);
        r
    }
}

impl<T: Clone + Send + 'static> Shared<T> {
    /// Loads the value.
    #[track_caller]
    pub fn get(&self) -> T {
        self.access(Location::caller(), false, |v| v.clone())
    }
}
