//! Semantic faults ("mutants") for measuring how well the corpus and the semantics tests catch a
//! wrong primitive (`harness mutants`, `reports/MUTANTS.md`).
//!
//! Each mutant is one small, named deviation from Go that an implementation of a primitive
//! could plausibly make: a panic Go raises and it skips, a happens-before edge of the Go memory
//! model it drops, a wakeup it loses or multiplies, a choice it makes always the same way. It is
//! built into the real source as a switch at the one place the deviation lives
//! (`if mutant::on(Mutant::X) { ... }`).
//!
//! The switches exist only with the cargo feature `mutants`; without it, [`on`] is a constant
//! `false` and the compiler removes them, so the default build pays nothing. With the feature,
//! the mutant in force is read once per process from the environment variable
//! [`ENV`] (`PRIMITIVES_MUTANT=chan-close-closed-no-panic`); none when it is unset.

macro_rules! mutants {
    ($($variant:ident $name:literal $primitive:literal $what:literal;)*) => {
        /// A semantic fault of the primitives: see the [module docs](self).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Mutant {
            $(#[doc = $what] $variant,)*
        }

        /// Every mutant, grouped by primitive.
        pub const ALL: &[Mutant] = &[$(Mutant::$variant,)*];

        impl Mutant {
            /// Its name, as `harness mutants` and [`ENV`] take it.
            pub fn name(self) -> &'static str {
                match self { $(Mutant::$variant => $name,)* }
            }

            /// The primitive it breaks.
            pub fn primitive(self) -> &'static str {
                match self { $(Mutant::$variant => $primitive,)* }
            }

            /// What it does differently from Go.
            pub fn describe(self) -> &'static str {
                match self { $(Mutant::$variant => $what,)* }
            }
        }
    };
}

mutants! {
    ChanCloseClosedNoPanic "chan-close-closed-no-panic" "chan"
        "`close` of a closed channel does nothing instead of panicking.";
    ChanCloseNilNoPanic "chan-close-nil-no-panic" "chan"
        "`close` of a nil channel does nothing instead of panicking.";
    ChanSendClosedNoPanic "chan-send-closed-no-panic" "chan"
        "A send on a closed channel (or one closed while the send waits) drops the value instead of panicking.";
    ChanUnbufferedSendWithoutReceiver "chan-unbuffered-send-without-receiver" "chan"
        "An unbuffered channel completes a send with no receiver, as if it had a buffer of one.";
    ChanBufferOneTooMany "chan-buffer-one-too-many" "chan"
        "A buffered channel holds one value more than its capacity before a send blocks.";
    ChanCloseWakesOneReceiver "chan-close-wakes-one-receiver" "chan"
        "`close` wakes only the first parked receiver; the others stay parked.";
    ChanClosedRecvBlocks "chan-closed-recv-blocks" "chan"
        "A receive from a closed, drained channel blocks instead of returning the zero value (receivers parked at the close are still woken).";
    HbChanSendRecv "hb-chan-send-recv" "chan"
        "Drops the edge: a send happens before the receive that takes its value.";
    HbChanUnbufferedRecvSend "hb-chan-unbuffered-recv-send" "chan"
        "Drops the edge: a receive from an unbuffered channel happens before the send completes.";
    HbChanSlot "hb-chan-slot" "chan"
        "Drops the edge: the k-th receive from a channel of capacity C happens before the (k+C)-th send completes.";
    HbChanCloseRecv "hb-chan-close-recv" "chan"
        "Drops the edge: a close happens before a receive that returns because the channel is closed.";
    SelectFirstReady "select-first-ready" "select"
        "`select` always takes the first ready case in source order instead of a random one.";
    SelectNeverDefault "select-never-default" "select"
        "`select` with a `default` blocks when no case is ready instead of taking the default.";
    SelectDefaultFirst "select-default-first" "select"
        "`select` with a `default` takes it even when a case is ready.";
    SelectSameChannelInOrder "select-same-channel-in-order" "select"
        "A parked `select` queues its cases on one channel in source order, so a partner always completes the first of them.";
    MutexUnlockUnlockedNoFatal "mutex-unlock-unlocked-no-fatal" "Mutex"
        "`Unlock` of an unlocked `Mutex` does nothing instead of the fatal error.";
    MutexUnlockWakesNobody "mutex-unlock-wakes-nobody" "Mutex"
        "`Unlock` frees the lock but does not wake a parked `Lock`.";
    MutexNoStarvation "mutex-no-starvation" "Mutex"
        "`Mutex` has no starvation mode: a woken waiter that loses the lock to a newcomer queues at the back, and the lock is never handed over.";
    HbMutexUnlockLock "hb-mutex-unlock-lock" "Mutex"
        "Drops the edge: `Unlock` happens before the next `Lock` returns.";
    RwMutexNoWriterPreference "rwmutex-no-writer-preference" "RWMutex"
        "New readers pass a waiting writer (`RLock` blocks only while a writer holds the lock).";
    RwMutexUnlockAdmitsNoReaders "rwmutex-unlock-admits-no-readers" "RWMutex"
        "A writer's `Unlock` wakes the next writer but not the readers that queued behind it.";
    RwMutexRUnlockUnlockedNoFatal "rwmutex-runlock-unlocked-no-fatal" "RWMutex"
        "`RUnlock` without a read lock does nothing instead of the fatal error.";
    RwMutexUnlockUnlockedNoFatal "rwmutex-unlock-unlocked-no-fatal" "RWMutex"
        "`Unlock` of an unlocked `RWMutex` does nothing instead of the fatal error.";
    HbRwMutexUnlockRLock "hb-rwmutex-unlock-rlock" "RWMutex"
        "Drops the edge: a writer's `Unlock` happens before a later `RLock` returns.";
    HbRwMutexRUnlockLock "hb-rwmutex-runlock-lock" "RWMutex"
        "Drops the edge: `RUnlock` happens before a later writer's `Lock` returns.";
    WaitGroupNegativeNoPanic "waitgroup-negative-no-panic" "WaitGroup"
        "The `WaitGroup` counter may go negative, without the panic.";
    WaitGroupReuseNotDetected "waitgroup-reuse-not-detected" "WaitGroup"
        "A `WaitGroup` reused before a previous `Wait` has returned is not reported.";
    HbWaitGroupDoneWait "hb-waitgroup-done-wait" "WaitGroup"
        "Drops the edge: `Done` happens before the `Wait` it unblocks returns.";
    OnceNoWait "once-no-wait" "Once"
        "A `Do` that finds another call running `f` returns at once instead of waiting for `f` to return.";
    OncePanicNotDone "once-panic-not-done" "Once"
        "A `Do` whose `f` panics does not count as done: the goroutines waiting on it park for good.";
    HbOnce "hb-once" "Once"
        "Drops the edge: the return of `f` happens before any `Do` returns.";
    CondSignalWakesNobody "cond-signal-wakes-nobody" "Cond"
        "`Signal` wakes no waiter.";
    CondSignalWakesAll "cond-signal-wakes-all" "Cond"
        "`Signal` wakes every waiter, as `Broadcast` does.";
    CondBroadcastWakesOne "cond-broadcast-wakes-one" "Cond"
        "`Broadcast` wakes only the longest waiter, as `Signal` does.";
    HbCond "hb-cond" "Cond"
        "Drops the edge: `Signal` or `Broadcast` happens before the `Wait` it wakes returns (the lock still orders them).";
    HbAtomic "hb-atomic" "atomic"
        "Drops the edges of `sync/atomic`: an atomic load does not synchronize with the store it reads.";
    HbGoStart "hb-go-start" "go"
        "Drops the edge: the `go` statement happens before the new goroutine starts.";
    ContextCancelNotPropagated "context-cancel-not-propagated" "context"
        "Cancelling a context does not cancel the contexts derived from it.";
    ContextCancelledParentNotInherited "context-cancelled-parent-not-inherited" "context"
        "A context derived from an already cancelled parent starts uncancelled.";
    TimerStopWrongResult "timer-stop-wrong-result" "time"
        "`Timer.Stop` reports the opposite of whether it stopped the timer.";
    TimerStopDoesNotStop "timer-stop-does-not-stop" "time"
        "`Timer.Stop` reports that it stopped the timer, but the timer still fires.";
    MapConcurrentWritesNotDetected "map-concurrent-writes-not-detected" "map"
        "Without the race detector, concurrent map writes are not a fatal error.";
    RaceReadWriteMissed "race-read-write-missed" "race detector"
        "The race detector reports only write/write races, not an unordered read and write.";
}

/// The environment variable naming the mutant in force (with the feature `mutants`).
pub const ENV: &str = "PRIMITIVES_MUTANT";

/// Whether this build has the switches (the cargo feature `mutants`).
pub const ENABLED: bool = cfg!(feature = "mutants");

/// The mutant called `name`.
pub fn from_name(name: &str) -> Option<Mutant> {
    ALL.iter().copied().find(|m| m.name() == name)
}

/// The mutant in force: read once from [`ENV`]; always `None` without the feature.
///
/// # Panics
///
/// With the feature, when [`ENV`] names no mutant.
pub fn active() -> Option<Mutant> {
    #[cfg(feature = "mutants")]
    {
        static ACTIVE: std::sync::OnceLock<Option<Mutant>> = std::sync::OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let name = std::env::var(ENV).ok().filter(|n| !n.is_empty())?;
            Some(from_name(&name).unwrap_or_else(|| panic!("{ENV}={name}: no such mutant")))
        })
    }
    #[cfg(not(feature = "mutants"))]
    None
}

/// Whether mutant `m` is in force. A constant `false` without the feature.
#[inline(always)]
pub(crate) fn on(m: Mutant) -> bool {
    #[cfg(feature = "mutants")]
    {
        active() == Some(m)
    }
    #[cfg(not(feature = "mutants"))]
    {
        let _ = m;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for m in ALL {
            assert_eq!(from_name(m.name()), Some(*m));
        }
        let mut names: Vec<_> = ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
