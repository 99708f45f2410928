//! The goroutine table: who exists, what each is doing, and what it waits on.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use super::clock::VClock;
use super::ObjId;
use crate::engine::Parker;

/// A goroutine's index in its execution's table. `main` is 0.
pub(crate) type Gid = usize;

/// The goroutine that runs the kernel itself.
pub(crate) const MAIN: Gid = 0;

/// One row of the goroutine table.
pub(crate) struct Goroutine {
    /// The name given at `go_named`; `None` for the default one (see [`Books::goroutine_name`],
    /// which makes it only when a report needs it).
    pub(crate) name: Option<String>,
    /// Where the `go` statement that started it stands.
    pub(crate) created_at: &'static Location<'static>,
    /// A runtime goroutine (the timer helper): never counted as blocked or leaked.
    pub(crate) system: bool,
    /// What the goroutine is doing now.
    pub(crate) status: Status,
    /// The condition variable it parks on; an `Arc` so it can be waited on while the table grows.
    pub(crate) parker: Arc<Parker>,
    /// Counts the goroutine's parks; a [`Waiter`] left in a queue is valid only for its park.
    pub(crate) token: u64,
    /// Set by whoever completes the goroutine's pending operation; taken when it resumes.
    pub(crate) fired: Option<Fired>,
    /// The goroutine's vector clock.
    pub(crate) clock: VClock,
    /// A clock the waker hands over; joined into `clock` when the goroutine resumes.
    pub(crate) deposit: Option<VClock>,
    /// The last step it took (or the step it was created at).
    pub(crate) last_step: u64,
    /// Steps it has taken.
    pub(crate) steps: u64,
    /// Selects it ran with a choice to make (loom rotates through their ready cases).
    pub(crate) selects: u64,
    /// The channels of the `select` it parked in last (for the dump's wait-for picture).
    pub(crate) select_objs: Vec<ObjId>,
}

/// What a goroutine is doing.
#[derive(Clone, Debug)]
pub(crate) enum Status {
    /// Running, or able to run.
    Runnable,
    /// Parked in a Go operation that has not completed.
    Blocked(Wait),
    /// `main` has returned and waits for the others to finish or block for good.
    Returned,
    /// The goroutine's function has returned (or unwound).
    Finished,
}

/// Why and where a goroutine is blocked.
#[derive(Clone, Debug)]
pub(crate) struct Wait {
    pub(crate) reason: WaitReason,
    /// The object waited on, if there is one (a select waits on several).
    pub(crate) obj: Option<ObjId>,
    /// The source line of the blocking operation.
    pub(crate) at: &'static Location<'static>,
    /// The step at which it blocked.
    pub(crate) since: u64,
}

/// The wait reasons of Go's goroutine dump, in Go's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitReason {
    ChanSend,
    ChanRecv,
    ChanSendNil,
    ChanRecvNil,
    Select,
    SelectNoCases,
    MutexLock,
    RwMutexRLock,
    RwMutexLock,
    WaitGroupWait,
    CondWait,
    OnceDo,
    Sleep,
    /// The timer helper, idle until a timer is armed.
    TimerIdle,
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitReason::ChanSend => "chan send",
            WaitReason::ChanRecv => "chan receive",
            WaitReason::ChanSendNil => "chan send (nil chan)",
            WaitReason::ChanRecvNil => "chan receive (nil chan)",
            WaitReason::Select => "select",
            WaitReason::SelectNoCases => "select (no cases)",
            WaitReason::MutexLock => "sync.Mutex.Lock",
            WaitReason::RwMutexRLock => "sync.RWMutex.RLock",
            WaitReason::RwMutexLock => "sync.RWMutex.Lock",
            WaitReason::WaitGroupWait => "sync.WaitGroup.Wait",
            WaitReason::CondWait => "sync.Cond.Wait",
            WaitReason::OnceDo => "sync.Once.Do",
            WaitReason::Sleep => "sleep",
            WaitReason::TimerIdle => "timer helper idle",
        })
    }
}

/// A parked goroutine's entry in some object's wait queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) g: Gid,
    /// The goroutine's park count when it queued; stale entries are skipped.
    pub(crate) token: u64,
    /// Which case of a `select` this entry stands for (0 outside a select).
    pub(crate) case: usize,
}

/// How a parked operation was completed by another goroutine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fired {
    /// The case that completed (0 outside a select).
    pub(crate) case: usize,
    /// The channel was closed rather than given or relieved of a value.
    pub(crate) closed: bool,
}
