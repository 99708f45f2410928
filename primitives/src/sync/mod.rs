//! Go's `sync` and `sync/atomic`: locks, wait groups, conditions, once, atomics.

mod atomic;
mod cond;
mod mutex;
mod once;
mod rwmutex;
mod waitgroup;

pub use atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicValue};
pub use cond::Cond;
pub use mutex::Mutex;
pub use once::Once;
pub use rwmutex::RwMutex;
pub use waitgroup::WaitGroup;
