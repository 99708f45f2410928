//! Go's `sync` and `sync/atomic`: locks, wait groups, conditions, once, atomics.

mod atomic;
mod cond;
mod mutex;
mod once;
#[cfg_attr(feature = "rwmutex-go", allow(dead_code))]
mod rwmutex;
#[cfg(feature = "rwmutex-go")]
mod rwmutex_go;
mod waitgroup;

pub use atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicValue};
pub use cond::Cond;
pub use mutex::Mutex;
pub use once::{once_func, once_value, once_values, Once};
#[cfg(not(feature = "rwmutex-go"))]
pub use rwmutex::RwMutex;
#[cfg(feature = "rwmutex-go")]
pub use rwmutex_go::RwMutex;
pub use waitgroup::WaitGroup;

/// Go's `sync.Locker`: anything that can be locked and unlocked ([`Mutex`], [`RwMutex`], the
/// [`RLocker`] of an `RwMutex`, or a type of the kernel's own). A [`Cond`] works over any.
pub trait Locker: Clone + Send + Sync + 'static {
    #[track_caller]
    fn lock(&self);
    #[track_caller]
    fn unlock(&self);
}

impl Locker for Mutex {
    #[track_caller]
    fn lock(&self) {
        Mutex::lock(self)
    }

    #[track_caller]
    fn unlock(&self) {
        Mutex::unlock(self)
    }
}

impl Locker for RwMutex {
    #[track_caller]
    fn lock(&self) {
        RwMutex::lock(self)
    }

    #[track_caller]
    fn unlock(&self) {
        RwMutex::unlock(self)
    }
}

/// What `rw.RLocker()` returns: a [`Locker`] whose `Lock` and `Unlock` are `rw`'s `RLock` and
/// `RUnlock`.
#[derive(Clone, Debug)]
pub struct RLocker(RwMutex);

impl RLocker {
    /// `l.Lock()`: `rw.RLock()`.
    #[track_caller]
    pub fn lock(&self) {
        self.0.rlock()
    }

    /// `l.Unlock()`: `rw.RUnlock()`.
    #[track_caller]
    pub fn unlock(&self) {
        self.0.runlock()
    }
}

impl Locker for RLocker {
    #[track_caller]
    fn lock(&self) {
        RLocker::lock(self)
    }

    #[track_caller]
    fn unlock(&self) {
        RLocker::unlock(self)
    }
}

impl RwMutex {
    /// `rw.RLocker()`: the read side of the lock, as a [`Locker`] (for a [`Cond`], say).
    pub fn rlocker(&self) -> RLocker {
        RLocker(self.clone())
    }
}
