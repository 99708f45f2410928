//! The trace: every Go-level operation of an execution, in the order the runtime saw them.

use std::collections::VecDeque;
use std::panic::Location;

use super::{Gid, ObjId};

/// A Go-level operation, as it appears in traces and swimlanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Go,
    Exit,
    Return,
    Send,
    Recv,
    Close,
    Select,
    /// A select that completed with a send case.
    SelectSend,
    /// A select that completed with a receive case.
    SelectRecv,
    Lock,
    Unlock,
    TryLock,
    RLock,
    RUnlock,
    WgAdd,
    WgWait,
    CondWait,
    Signal,
    Broadcast,
    OnceDo,
    Read,
    Write,
    AtomicLoad,
    AtomicStore,
    AtomicRmw,
    Cancel,
    Sleep,
    TimerStart,
    TimerStop,
    TimerFire,
    MapRead,
    MapWrite,
    Rand,
    Panic,
    Recover,
    Goexit,
}

impl Op {
    /// The operation's name as a Go reader would say it; `arg` refines a few (Done is Add(-1)).
    pub(crate) fn name(self, arg: i64) -> &'static str {
        match self {
            Op::Go => "go",
            Op::Exit => "exit",
            Op::Return => "return",
            Op::Send => "send",
            Op::Recv => "recv",
            Op::Close => "close",
            Op::Select => "select",
            Op::SelectSend => "select send",
            Op::SelectRecv => "select recv",
            Op::Lock => "Lock",
            Op::Unlock => "Unlock",
            Op::TryLock => "TryLock",
            Op::RLock => "RLock",
            Op::RUnlock => "RUnlock",
            Op::WgAdd if arg == -1 => "Done",
            Op::WgAdd => "Add",
            Op::WgWait => "Wait",
            Op::CondWait => "Cond.Wait",
            Op::Signal => "Signal",
            Op::Broadcast => "Broadcast",
            Op::OnceDo => "Once.Do",
            Op::Read => "read",
            Op::Write => "write",
            Op::AtomicLoad => "atomic load",
            Op::AtomicStore => "atomic store",
            Op::AtomicRmw => "atomic update",
            Op::Cancel => "cancel",
            Op::Sleep => "Sleep",
            Op::TimerStart => "timer start",
            Op::TimerStop => "timer stop",
            Op::TimerFire => "timer fires",
            Op::MapRead => "map read",
            Op::MapWrite => "map write",
            Op::Rand => "rand",
            Op::Panic => "panic",
            Op::Recover => "recover",
            Op::Goexit => "Goexit",
        }
    }

    /// Whether the operation can make a goroutine wait (drawn as a blocking operation).
    pub(crate) fn can_block(self) -> bool {
        matches!(
            self,
            Op::Send
                | Op::Recv
                | Op::Select
                | Op::SelectSend
                | Op::SelectRecv
                | Op::Lock
                | Op::RLock
                | Op::WgWait
                | Op::CondWait
                | Op::OnceDo
                | Op::Sleep
        )
    }
}

/// What an event records about its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The operation completed at this step.
    Done,
    /// The operation parked its goroutine at this step.
    Blocked,
}

/// One entry of the trace.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) step: u64,
    pub(crate) g: Gid,
    pub(crate) op: Op,
    pub(crate) obj: Option<ObjId>,
    /// An operation-specific number: the chosen select case, an Add delta, a goroutine id.
    pub(crate) arg: i64,
    pub(crate) at: &'static Location<'static>,
    pub(crate) phase: Phase,
}

/// The last `limit` events of an execution (a ring: the end of a long run is what explains it).
pub(crate) struct Trace {
    pub(crate) events: VecDeque<Event>,
    pub(crate) limit: usize,
    /// How many early events the ring has let go.
    pub(crate) dropped: u64,
    /// `false` when the books are off: nothing is recorded.
    pub(crate) on: bool,
}

impl Trace {
    pub(crate) fn new(limit: usize, on: bool) -> Self {
        Trace {
            // The first events of every execution go in without a reallocation.
            events: if on {
                VecDeque::with_capacity(limit.clamp(1, 64))
            } else {
                VecDeque::new()
            },
            limit: limit.max(1),
            dropped: 0,
            on,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, event: Event) {
        if !self.on {
            return;
        }
        if self.events.len() == self.limit {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }
}
