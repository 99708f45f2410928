#![doc = include_str!("moby_18196.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{AtomicI32, AtomicU32, Mutex, WaitGroup};
use primitives::{go_named, select, time, Chan, GoMap, TimerMode};

use crate::{Budget, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_18196",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/18196",
        category: "Atomicity violation (atomic decrement computed from a plain read)",
        expected: primitives::Verdict::Assert,
        also: &[primitives::Verdict::Panic],
        kernel: test_locker_concurrency,
        walkthrough: include_str!("moby_18196.md"),
        asplos: Some("non-blocking-bugs/docker/985175fd8f8f662d5067bd62a89330e9a437375c.txt"),
        source: Source::Test("moby/moby pkg/locker/locker_test.go @ 985175fd"),
        fix: Fix::Upstream("985175fd"),
        review: "faithful after mends: Checked against moby 985175fd (PR #18196, issue #18190), pkg/locker/locker.go at its parent and the test it adds: the kernel is upstream's test over upstream's locker and the fix is switched per function; one false minimality claim (three lockers suffice, not four, as the kernel's own trace shows) to correct, and the issue to cite.",
        file: file!(),
        loom: Loom::DoesNotApply(
            "four lockers, the goroutine waiting for them and main: six goroutines, more than \
             loom's main + 4",
        ),
        // The test's ten-second watchdog fires only when the lockers are stuck, as in Go.
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// `ErrNoSuchLock`.
#[derive(Debug)]
struct ErrNoSuchLock;

/// `lockCtr`: a named lock and the number of goroutines waiting for it.
struct LockCtr {
    mu: Mutex,
    /// `waiters uint32` (before the fix).
    waiters_u32: AtomicU32,
    /// `waiters int32` (after the fix).
    waiters: AtomicI32,
    variant: Variant,
}

impl LockCtr {
    fn new(variant: Variant) -> Arc<Self> {
        Arc::new(LockCtr {
            mu: Mutex::new().named("lockCtr.mu"),
            waiters_u32: AtomicU32::new(0),
            waiters: AtomicI32::new(0),
            variant,
        })
    }

    /// `inc`: one more waiter.
    fn inc(&self) {
        if self.variant.fixed() {
            self.waiters.add(1);
        } else {
            self.waiters_u32.add(1);
        }
    }

    /// `dec`: one waiter fewer.
    fn dec(&self) {
        if self.variant.fixed() {
            self.waiters.add(-1);
        } else {
            // atomic.AddUint32(&l.waiters, ^uint32(l.waiters-1)): the operand reads
            // `l.waiters` (a plain read in Go; see Deviations).
            let waiters = self.waiters_u32.load();
            self.waiters_u32.add(!(waiters.wrapping_sub(1)));
        }
    }

    /// `count`: the current number of waiters.
    fn count(&self) -> i64 {
        if self.variant.fixed() {
            i64::from(self.waiters.load())
        } else {
            i64::from(self.waiters_u32.load())
        }
    }

    /// `Lock`.
    fn lock(&self) {
        self.mu.lock();
    }

    /// `Unlock`.
    fn unlock(&self) {
        self.mu.unlock();
    }
}

/// `locker.Locker`: locks by name.
struct Locker {
    mu: Mutex,
    locks: GoMap<&'static str, Arc<LockCtr>>,
    variant: Variant,
}

impl Locker {
    /// `New`.
    fn new(variant: Variant) -> Arc<Self> {
        Arc::new(Locker {
            mu: Mutex::new().named("Locker.mu"),
            locks: GoMap::new().named("Locker.locks"),
            variant,
        })
    }

    /// `Lock`: locks the mutex of that name, made if there is none.
    fn lock(&self, name: &'static str) {
        self.mu.lock();
        let name_lock = match self.locks.get(&name) {
            Some(name_lock) => name_lock,
            None => {
                let name_lock = LockCtr::new(self.variant);
                self.locks.insert(name, name_lock.clone());
                name_lock
            }
        };

        // Counted as a waiter under `mu`, so a concurrent `Unlock` keeps the entry.
        name_lock.inc();
        self.mu.unlock();

        // Wait for the name's mutex outside `mu`; once held, no longer a waiter.
        name_lock.lock();
        name_lock.dec();
    }

    /// `Unlock`: unlocks the mutex of that name, deleting it if nobody waits for it.
    fn unlock(&self, name: &'static str) -> Result<(), ErrNoSuchLock> {
        self.mu.lock();
        let Some(name_lock) = self.locks.get(&name) else {
            self.mu.unlock();
            return Err(ErrNoSuchLock);
        };

        if name_lock.count() == 0 {
            self.locks.remove(&name);
        }
        name_lock.unlock();

        self.mu.unlock();
        Ok(())
    }
}

/// `TestLockerConcurrency` (`pkg/locker/locker_test.go`, added by the fix), with 4 lockers
/// instead of 10,001.
fn test_locker_concurrency(variant: Variant) {
    const LOCKERS: usize = 4;
    let l = Locker::new(variant);

    let wg = WaitGroup::new();
    for _ in 0..LOCKERS {
        wg.add(1);
        let (l, wg) = (l.clone(), wg.clone());
        go_named("TestLockerConcurrency.func1", move || {
            l.lock("test");
            // if there is a concurrency issue, will very likely panic here
            let _ = l.unlock("test");
            wg.done();
        });
    }

    let ch_done: Chan<()> = Chan::new(0).named("chDone");
    let (wg2, ch_done2) = (wg.clone(), ch_done.clone());
    go_named("TestLockerConcurrency.func2", move || {
        wg2.wait();
        ch_done2.close();
    });

    select! {
        recv(ch_done) => {},
        recv(time::after(Duration::from_secs(10))) => {
            panic!("assertion failed: timeout waiting for locks to complete"); // t.Fatal
        },
    }

    // Since everything has unlocked this should not exist anymore
    assert!(
        !l.locks.contains_key(&"test"),
        "assertion failed: lock should not exist"
    );
}
