//! `GoMap<K, V>`: a Go map, whose every operation is a read or a write checked by the race
//! detector.
//!
//! With the race detector off, the map checks what Go's runtime checks without `-race`: a
//! write is two steps (the map is marked as being written, a scheduling point, then the write
//! happens), and a write or read that finds another goroutine's write in progress fails with
//! Go's fatal errors `concurrent map writes` and `concurrent map read and map write`. With the
//! detector on, as with `go test -race`, the race is reported first.
//!
//! Iteration order is the keys' order (Go randomises it; kernels must not depend on either).
//! Closures passed to these methods must not perform Go operations.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::race::AccessHistory;
use crate::rt::trace::Op;
use crate::rt::{current_exec, Ctx, Execution, Gid, ObjMeta};

/// Go's `map[K]V`. Cloning gives another handle to the same map (Go maps are references).
///
/// # Examples
///
/// ```
/// use primitives::GoMap;
/// # primitives::run(|| {
/// let m = GoMap::new();
/// m.insert("a", 1);
/// assert_eq!(m.get(&"a"), Some(1));
/// assert_eq!(m.len(), 1);
/// # });
/// ```
pub struct GoMap<K, V> {
    inner: Arc<MapInner<K, V>>,
}

struct MapInner<K, V> {
    exec: Arc<Execution>,
    meta: ObjMeta,
    state: RtCell<MapState<K, V>>,
}

struct MapState<K, V> {
    map: BTreeMap<K, V>,
    history: AccessHistory,
    /// The goroutine between the two steps of a write (race detector off).
    writing: Option<Gid>,
}

impl<K, V> Clone for GoMap<K, V> {
    fn clone(&self) -> Self {
        GoMap {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> fmt::Debug for GoMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoMap({})", self.inner.meta.label())
    }
}

impl<K: Ord + Send + 'static, V: Send + 'static> GoMap<K, V> {
    /// `make(map[K]V)`.
    ///
    /// # Panics
    ///
    /// Outside an execution.
    #[track_caller]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let exec = current_exec();
        let meta = exec.new_obj("map", Location::caller());
        let state = RtCell::new(
            exec.id,
            MapState {
                map: BTreeMap::new(),
                history: AccessHistory::default(),
                writing: None,
            },
        );
        GoMap {
            inner: Arc::new(MapInner { exec, meta, state }),
        }
    }

    /// Names the map in traces, dumps and race reports.
    ///
    /// # Panics
    ///
    /// If the map has been cloned already.
    pub fn named(mut self, name: &str) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("name a map where it is made, before cloning it")
            .meta
            .name = Some(name.to_string());
        self
    }

    /// `m[k] = v`; returns the previous value.
    #[track_caller]
    pub fn insert(&self, k: K, v: V) -> Option<V> {
        self.write(Location::caller(), |m| m.insert(k, v))
    }

    /// `delete(m, k)`; returns the removed value.
    #[track_caller]
    pub fn remove(&self, k: &K) -> Option<V> {
        self.write(Location::caller(), |m| m.remove(k))
    }

    /// `_, ok := m[k]`.
    #[track_caller]
    pub fn contains_key(&self, k: &K) -> bool {
        self.read(Location::caller(), |m| m.contains_key(k))
    }

    /// `len(m)`.
    #[track_caller]
    pub fn len(&self) -> usize {
        self.read(Location::caller(), |m| m.len())
    }

    /// `len(m) == 0`.
    #[track_caller]
    pub fn is_empty(&self) -> bool {
        self.read(Location::caller(), |m| m.is_empty())
    }

    /// Reads the whole map through `f` (a `range` loop, say).
    #[track_caller]
    pub fn with<R>(&self, f: impl FnOnce(&BTreeMap<K, V>) -> R) -> R {
        self.read(Location::caller(), f)
    }

    /// Writes the whole map through `f`.
    #[track_caller]
    pub fn with_mut<R>(&self, f: impl FnOnce(&mut BTreeMap<K, V>) -> R) -> R {
        self.write(Location::caller(), f)
    }

    fn read<R>(&self, at: &'static Location<'static>, f: impl FnOnce(&BTreeMap<K, V>) -> R) -> R {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter_plain(at);
        self.check(&mut cx, Op::MapRead, false);
        let mut b = cx.books();
        let r = f(&inner.state.borrow(&cx).map);
        cx.event(&mut b, Op::MapRead, Some(&inner.meta), 0);
        r
    }

    fn write<R>(
        &self,
        at: &'static Location<'static>,
        f: impl FnOnce(&mut BTreeMap<K, V>) -> R,
    ) -> R {
        let inner = &*self.inner;
        let mut cx = inner.exec.enter_plain(at);
        self.check(&mut cx, Op::MapWrite, true);
        if !inner.exec.config.race_detector {
            // Go's map marks itself as being written for the length of the write: the write
            // is under way from here to the next scheduling point, and its event is here.
            {
                let mut b = cx.books();
                inner.state.borrow(&cx).writing = Some(cx.gid);
                cx.event(&mut b, Op::MapWrite, Some(&inner.meta), 0);
            }
            drop(cx);
            let cx = inner.exec.enter(at);
            let mut st = inner.state.borrow(&cx);
            st.writing = None;
            return f(&mut st.map);
        }
        let mut b = cx.books();
        let mut st = inner.state.borrow(&cx);
        let r = f(&mut st.map);
        drop(st);
        cx.event(&mut b, Op::MapWrite, Some(&inner.meta), 0);
        r
    }

    /// The race detector's check, or (detector off) Go's runtime check for a write in progress.
    fn check(&self, cx: &mut Ctx<'_>, op: Op, write: bool) {
        let inner = &*self.inner;
        if inner.exec.config.race_detector {
            let race = {
                let b = cx.books();
                let mut st = inner.state.borrow(cx);
                st.history.access(cx, &b, write, &inner.meta)
            };
            if let Some(r) = race {
                cx.race(r, op, &inner.meta);
            }
            return;
        }
        let busy = inner.state.borrow(cx).writing.is_some_and(|g| g != cx.gid);
        if busy && !mutant::on(Mutant::MapConcurrentWritesNotDetected) {
            cx.go_panic_on(
                Some(&inner.meta),
                if write {
                    "fatal error: concurrent map writes"
                } else {
                    "fatal error: concurrent map read and map write"
                },
            );
        }
    }
}

impl<K: Ord + Send + 'static, V: Clone + Send + 'static> GoMap<K, V> {
    /// `v, ok := m[k]`.
    #[track_caller]
    pub fn get(&self, k: &K) -> Option<V> {
        self.read(Location::caller(), |m| m.get(k).cloned())
    }
}
