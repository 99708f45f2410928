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
pub use once::Once;
#[cfg(not(feature = "rwmutex-go"))]
pub use rwmutex::RwMutex;
#[cfg(feature = "rwmutex-go")]
pub use rwmutex_go::RwMutex;
pub use waitgroup::WaitGroup;
