//! The book's chapters: one per primitive or pattern, in the order a course teaches them, and
//! the rule that puts each bug in one.

use bugs::Bug;

use crate::results::FirstFailure;

/// A chapter of the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Chapter {
    Mutex,
    RwMutex,
    WaitGroup,
    Cond,
    Once,
    Channels,
    Select,
    Context,
    Timers,
    Mixed,
    Memory,
    Order,
}

impl Chapter {
    /// In the order of the book.
    pub const ALL: [Chapter; 12] = [
        Chapter::Mutex,
        Chapter::RwMutex,
        Chapter::WaitGroup,
        Chapter::Cond,
        Chapter::Once,
        Chapter::Channels,
        Chapter::Select,
        Chapter::Context,
        Chapter::Timers,
        Chapter::Mixed,
        Chapter::Memory,
        Chapter::Order,
    ];

    /// The file name (and the filter value of index.html).
    pub fn slug(self) -> &'static str {
        match self {
            Chapter::Mutex => "mutex",
            Chapter::RwMutex => "rwmutex",
            Chapter::WaitGroup => "waitgroup",
            Chapter::Cond => "cond",
            Chapter::Once => "once",
            Chapter::Channels => "channels",
            Chapter::Select => "select",
            Chapter::Context => "context",
            Chapter::Timers => "timers",
            Chapter::Mixed => "mixed",
            Chapter::Memory => "memory-model",
            Chapter::Order => "order",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Chapter::Mutex => "sync.Mutex",
            Chapter::RwMutex => "sync.RWMutex",
            Chapter::WaitGroup => "sync.WaitGroup",
            Chapter::Cond => "sync.Cond",
            Chapter::Once => "sync.Once",
            Chapter::Channels => "Channels",
            Chapter::Select => "select",
            Chapter::Context => "context",
            Chapter::Timers => "Timers",
            Chapter::Mixed => "Channels and locks together",
            Chapter::Memory => "The memory model: data races",
            Chapter::Order => "Order and atomicity",
        }
    }

    /// What the primitive promises in Go, and the traps the chapter's bugs fall into.
    pub fn intro(self) -> &'static str {
        match self {
            Chapter::Mutex => {
                "A `sync.Mutex` admits one holder at a time. `Lock` waits while another goroutine \
                 holds it; `Unlock` wakes one waiter, which must still compete for the lock. Go's mutex is not reentrant: a goroutine \
                 that calls `Lock` again while it holds the lock waits for itself, forever. It \
                 is not tied to a goroutine either, so nothing stops one goroutine from \
                 unlocking what another locked, and `Unlock` of an unlocked mutex is a fatal \
                 error that `recover` cannot catch. Since Go 1.9 a waiter that has waited more \
                 than a millisecond switches the mutex to starvation mode, where the lock is \
                 handed to the waiters in turn (an implementation detail of Go's runtime, not a \
                 documented promise).\n\n\
                 The traps: locking twice on one path (often through a helper that locks \
                 again), returning early without the `Unlock` (an error path, a `continue`), \
                 and two locks taken in opposite orders by two goroutines (AB-BA)."
            }
            Chapter::RwMutex => {
                "A `sync.RWMutex` admits many readers or one writer. Its one rule that surprises \
                 people: once a writer waits in `Lock`, new `RLock` calls wait too, so that \
                 readers cannot starve the writer. A goroutine that already holds a read lock \
                 and asks for it again can therefore deadlock against a writer that arrived in \
                 between (the RWR deadlock), and taking `Lock` while holding `RLock` of the same \
                 mutex never succeeds.\n\n\
                 The traps: recursive read locking, upgrading a read lock to a write lock, and \
                 writing shared state under the read lock."
            }
            Chapter::WaitGroup => {
                "A `sync.WaitGroup` counts outstanding work: `Add(n)` raises the counter, `Done` \
                 lowers it, and `Wait` returns once it is zero. Every `Done` happens before the \
                 `Wait` it releases returns. The counter must never go negative (a panic). An \
                 `Add` that starts the counter from zero must happen before `Wait`; the race \
                 detector may report the races that follow when one does not (typically an `Add` \
                 inside the goroutine it counts, which lets `Wait` return early), and reusing a group before the last `Wait` has returned can panic.\n\n\
                 The traps: `Add` inside the goroutine instead of before `go`, a `Done` that an \
                 error path skips, a `Done` too many, and a `Wait` while holding what the \
                 counted goroutines need to finish."
            }
            Chapter::Cond => {
                "A `sync.Cond` lets goroutines wait for a condition guarded by a lock. `Wait` \
                 unlocks, parks and locks again before it returns; `Signal` wakes one waiter and \
                 `Broadcast` all of them. A signal sent when nobody waits is lost: a Cond keeps \
                 no memory of it, so the waiter must check its condition in a loop, under the \
                 lock.\n\n\
                 The traps: a signal sent before the waiter calls `Wait` (lost wakeup), `Signal` where \
                 several waiters need `Broadcast`, and waiting without re-checking the condition."
            }
            Chapter::Once => {
                "`sync.Once` runs only the first function passed to `Do`, once, and every `Do` returns only after that one \
                 call has returned, so a `Do` whose function calls `Do` on the same Once waits \
                 for itself. A function that panics still counts as done. A Once cannot be \
                 rearmed safely: zeroing it (`once = sync.Once{}`) races with any `Do` it is not \
                 ordered with, and if it lands while the function runs, that `Do`'s unlock of \
                 its mutex is a fatal error."
            }
            Chapter::Channels => {
                "An unbuffered channel hands a value from a sender to a receiver: each waits for \
                 the other. A buffered channel holds up to its capacity; a send waits when it is \
                 full, a receive when it is empty. `close` says no more values will come: \
                 receivers take what is left in the buffer, then get the zero value at once, \
                 while a send on a closed channel, and a second `close`, panic. Sends and receives on a nil channel block \
                 forever; closing it panics. The k-th receive \
                 happens before the (k+C)-th send completes, for capacity C.\n\n\
                 The traps: a sender whose receiver has gone (it returned early, on an error \
                 or a timeout), a receiver waiting for a close that never comes, closing a \
                 channel while another goroutine may still send on it, and closing it twice."
            }
            Chapter::Select => {
                "`select` waits on several channel operations and takes one that can proceed; \
                 when several can, it picks one uniformly at random, with no priority by source \
                 order. A `default` case runs only when no other case is ready.\n\n\
                 The traps: expecting the first listed case to win, a `default` that drops a \
                 value or a close, and a select whose every case can block forever."
            }
            Chapter::Context => {
                "A `context.Context` carries cancellation down a tree of calls: cancelling a \
                 context closes its `Done` channel and cancels every context derived from it \
                 (except through `WithoutCancel`). \
                 Cancellation is only a signal; it stops nothing by itself. A goroutine that \
                 blocks on a plain channel operation without also selecting on `ctx.Done()` \
                 never hears it.\n\n\
                 The traps: a send or receive that does not select on `Done`, a cancel function \
                 that is never called, and work that outlives the context it was given."
            }
            Chapter::Timers => {
                "`time.Timer`, `time.After` and `time.AfterFunc` fire once after a duration. \
                 `Stop` returns false if the timer already fired or was already stopped. When it \
                 fired: an `AfterFunc` function may be running on its own \
                 goroutine, and before Go 1.23 (or when go.mod says an older go) the value could already be \
                 in the timer's channel. A `time.After` inside a loop's `select` starts a new timer \
                 each round, so its timeout restarts every time.\n\n\
                 The traps: assuming `Stop` stops a function that has started, a timer that \
                 fires before the code that expects to stop it, and racing on state that an \
                 `AfterFunc` callback touches from another goroutine."
            }
            Chapter::Mixed => {
                "Some deadlocks are not within one primitive: a goroutine holds \
                 a lock and blocks on a channel whose partner waits for the same lock, or waits \
                 on a WaitGroup whose workers block on a send nobody receives. No primitive \
                 is misused on its own; the cycle only appears in the wait-for graph of the \
                 whole program, which is why these pages draw it.\n\n\
                 The trap: blocking on a channel (or a Wait) while holding a lock."
            }
            Chapter::Memory => {
                "Go's memory model says when a write is guaranteed to be seen by a read: only \
                 when a chain of happens-before edges (a channel send before its receive, an \
                 `Unlock` before the next `Lock`, a `go` statement before the goroutine's first \
                 step, a `Done` before the `Wait` it releases, an atomic write before the atomic \
                 read that sees it) leads \
                 from the write to the read. Two accesses to the same variable, at least one a \
                 write, with no such chain between them, are a data race (unless both are `sync/atomic` \
                 operations), and `go test -race` reports those that happen while the tests run. Maps written concurrently often fail at run time even without it \
                 (`concurrent map writes`).\n\n\
                 The traps: a loop variable captured by a goroutine, a field read after the \
                 lock is released, a map guarded on its write path only, a test helper shared \
                 by two goroutines, and mixing atomic and plain accesses to one word. Each page \
                 draws the two accesses and the synchronisation each goroutine did in between."
            }
            Chapter::Order => {
                "Some bugs break no rule of a primitive: every lock is paired and every channel \
                 has a partner, yet one goroutine's step lands between two steps of another \
                 that were meant to go together (an atomicity violation), or before a step it \
                 was meant to follow (an order violation). The program then fails a check, panics on \
                 the state it finds, or reads what it should not."
            }
        }
    }
}

/// What a goroutine waits on at the failure, by its wait in the dump.
fn wait_kind(state: &str) -> Option<Chapter> {
    Some(if state.starts_with("chan") {
        Chapter::Channels
    } else if state.starts_with("select") {
        Chapter::Select
    } else if state.starts_with("sync.RWMutex") {
        Chapter::RwMutex
    } else if state.starts_with("sync.Mutex") {
        Chapter::Mutex
    } else if state.starts_with("sync.WaitGroup") {
        Chapter::WaitGroup
    } else if state.starts_with("sync.Cond") {
        Chapter::Cond
    } else if state.starts_with("sync.Once") {
        Chapter::Once
    } else if state.starts_with("sleep") {
        Chapter::Timers
    } else {
        return None;
    })
}

/// The chapter of a bug, from how its buggy kernel failed (`failure`, the run the book shows)
/// and, where that does not tell, its category:
///
/// - a data race: the memory model;
/// - a panic: the primitive Go's message names (a channel, a WaitGroup, an RWMutex, an unlock;
///   an unlock in a bug whose category names `sync.Once` is the Once's own mutex);
/// - a deadlock or leak: what the blocked goroutines wait on. Channels (or a select) with a
///   context cancelled in the trace, or a category naming context: context; channels with a
///   lock, WaitGroup, Cond or Once: the mixed chapter; else the first of Cond, RWMutex, Mutex,
///   WaitGroup, Once, channels, select, timers (a sleep) that is waited on;
/// - anything these do not place (an assertion, a livelock, a panic or a wait not named
///   above): words of the category, else order and atomicity.
pub fn of(bug: &Bug, failure: Option<&FirstFailure>) -> Chapter {
    let verdict = failure.map_or(bug.expected.as_str(), |f| f.verdict.as_str());
    let category = bug.category.to_lowercase();
    match verdict {
        "race" => return Chapter::Memory,
        "panic" => {
            let message = failure
                .map(|f| f.message.to_lowercase())
                .unwrap_or_default();
            if message.contains("channel") {
                return Chapter::Channels;
            }
            if message.contains("waitgroup") {
                return Chapter::WaitGroup;
            }
            if message.contains("rwmutex") || message.contains("runlock") {
                return Chapter::RwMutex;
            }
            if message.contains("unlock") && category.contains("sync.once") {
                return Chapter::Once;
            }
            if message.contains("unlock") {
                return Chapter::Mutex;
            }
        }
        "deadlock" | "leak" => {
            if let Some(f) = failure {
                let kinds: Vec<Chapter> =
                    f.waits.iter().filter_map(|w| wait_kind(&w.state)).collect();
                let has = |c: Chapter| kinds.contains(&c);
                let chans = has(Chapter::Channels) || has(Chapter::Select);
                let locks = [
                    Chapter::Mutex,
                    Chapter::RwMutex,
                    Chapter::WaitGroup,
                    Chapter::Cond,
                    Chapter::Once,
                ]
                .into_iter()
                .any(has);
                let cancelled = f.trace.iter().any(|e| e.op == "cancel");
                if chans && (cancelled || category.contains("context")) {
                    return Chapter::Context;
                }
                if chans && locks {
                    return Chapter::Mixed;
                }
                for c in [
                    Chapter::Cond,
                    Chapter::RwMutex,
                    Chapter::Mutex,
                    Chapter::WaitGroup,
                    Chapter::Once,
                ] {
                    if has(c) {
                        return c;
                    }
                }
                if chans {
                    return if has(Chapter::Channels) {
                        Chapter::Channels
                    } else {
                        Chapter::Select
                    };
                }
                if has(Chapter::Timers) {
                    return Chapter::Timers;
                }
            }
        }
        _ => {}
    }
    by_category(&category)
}

fn by_category(category: &str) -> Chapter {
    let words: [(&str, Chapter); 11] = [
        ("timer", Chapter::Timers),
        ("select", Chapter::Select),
        ("context", Chapter::Context),
        ("waitgroup", Chapter::WaitGroup),
        ("condition variable", Chapter::Cond),
        ("rwmutex", Chapter::RwMutex),
        ("double locking", Chapter::Mutex),
        ("unlock", Chapter::Mutex),
        ("channel & lock", Chapter::Mixed),
        ("channel", Chapter::Channels),
        ("data race", Chapter::Memory),
    ];
    words
        .iter()
        .find(|(w, _)| category.contains(w))
        .map_or(Chapter::Order, |&(_, c)| c)
}
