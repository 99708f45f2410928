//! State that only the holder of its execution's lock may touch.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

use super::Ctx;

/// A value owned by one execution and guarded by that execution's runtime lock.
///
/// Borrowing it takes a [`Ctx`], which exists only while the lock is held, and checks that the
/// context belongs to the cell's execution; a second borrow while the first is alive is a bug
/// in the runtime and panics. Together these make the `Sync` impl sound: every access happens
/// under the one lock of the execution that made the cell.
pub(crate) struct RtCell<T> {
    /// The execution whose lock guards `value`.
    exec: u64,
    /// `true` while an [`RtMut`] is alive.
    borrowed: UnsafeCell<bool>,
    value: UnsafeCell<T>,
}

// SAFETY: `value` and `borrowed` are only reached through `borrow`, which requires a `Ctx` of
// the same execution, i.e. that the caller holds that execution's lock.
unsafe impl<T: Send> Sync for RtCell<T> {}
unsafe impl<T: Send> Send for RtCell<T> {}

impl<T> RtCell<T> {
    pub(crate) fn new(exec: u64, value: T) -> Self {
        RtCell {
            exec,
            borrowed: UnsafeCell::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Borrows the value for as long as `cx` (and so the lock) is held.
    #[inline]
    pub(crate) fn borrow<'a>(&'a self, cx: &'a Ctx<'_>) -> RtMut<'a, T> {
        if self.exec != cx.exec.id {
            panic!("primitives: runtime state reached under the lock of another execution");
        }
        // SAFETY: the lock of `self.exec` is held (see the type's docs).
        unsafe {
            if *self.borrowed.get() {
                panic!("primitives: runtime state borrowed twice");
            }
            *self.borrowed.get() = true;
        }
        RtMut { cell: self }
    }
}

/// An exclusive borrow of an [`RtCell`].
pub(crate) struct RtMut<'a, T> {
    cell: &'a RtCell<T>,
}

impl<T> Deref for RtMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this borrow is the only one alive and the lock is held.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for RtMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for RtMut<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the lock is still held: `RtMut` cannot outlive the `Ctx` it was made from.
        unsafe { *self.cell.borrowed.get() = false }
    }
}
