#![doc = include_str!("etcd_10419.md")]

use primitives::sync::RwMutex;
use primitives::{defer, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_10419",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/10419",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_restore_continue_unfinished_compaction,
        walkthrough: include_str!("etcd_10419.md"),
        source: Source::Diff("6e8913b0"),
        fix: Fix::Upstream("6e8913b0"),
        review: "faithful: Checked against the fix 6e8913b0 (merged as #10419), mvcc/kvstore.go at its parent a00bff78, the test hunk, and 830d9e9e: Restore→restore→Compact re-locking store.mu, fixed by compactLockfree (and NewStore taking mu), with all reductions admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The backend, reduced to what `restore` reads back: the last revision written to the key
/// bucket, and the meta key `scheduledCompactRev` (0 when no compaction was scheduled).
struct Backend {
    last_rev: Shared<i64>,
    scheduled_compact: Shared<i64>,
}

/// mvcc's `store`.
struct Store {
    /// Read-locked by transactions, write-locked by changes that are not transactions.
    mu: RwMutex,
    /// Protects `current_rev` and `compact_main_rev`.
    rev_mu: RwMutex,
    current_rev: Shared<i64>,
    compact_main_rev: Shared<i64>,
    b: Backend,
    variant: Variant,
}

/// `NewStore`: makes the store and restores it from the backend.
fn new_store(b: Backend, variant: Variant) -> Store {
    let s = Store {
        mu: RwMutex::new().named("store.mu"),
        rev_mu: RwMutex::new().named("store.revMu"),
        current_rev: Shared::new(1).named("currentRev"),
        compact_main_rev: Shared::new(-1).named("compactMainRev"),
        b,
        variant,
    };
    if s.variant.fixed() {
        // The fix: `restore` now runs with `s.mu` held on this path too.
        s.mu.lock();
        let _unlock = defer(|| s.mu.unlock());
        s.restore();
    } else {
        s.restore();
    }
    s
}

impl Store {
    /// `Put`, through `Write()` (read-locks `mu`), `storeTxnWrite.Put` (writes the key at
    /// revision beginRev+1) and `End` (bumps `currentRev` under `revMu`, read-unlocks `mu`).
    fn put(&self) {
        self.mu.rlock();
        let begin_rev = self.current_rev.get();
        self.b.last_rev.set(begin_rev + 1);
        self.rev_mu.lock();
        self.current_rev.set(self.current_rev.get() + 1);
        self.rev_mu.unlock();
        self.mu.runlock();
    }

    /// `Compact`, as it was before the fix: it takes `mu` itself.
    fn compact(&self, rev: i64) -> Result<(), &'static str> {
        self.mu.lock();
        self.rev_mu.lock();
        if rev <= self.compact_main_rev.get() {
            // (schedules a compactBarrier)
            self.mu.unlock();
            self.rev_mu.unlock();
            return Err("mvcc: required revision has been compacted");
        }
        if rev > self.current_rev.get() {
            self.mu.unlock();
            self.rev_mu.unlock();
            return Err("mvcc: required revision is a future revision");
        }
        self.compact_main_rev.set(rev);
        // The compaction is persisted as scheduled before it runs.
        self.b.scheduled_compact.set(rev);
        self.mu.unlock();
        self.rev_mu.unlock();
        // (the index compaction is then scheduled on the FIFO scheduler)
        Ok(())
    }

    /// The fix's `updateCompactRev`: `Compact`'s checks and record, without `mu`.
    fn update_compact_rev(&self, rev: i64) -> Result<(), &'static str> {
        self.rev_mu.lock();
        if rev <= self.compact_main_rev.get() {
            // (schedules a compactBarrier)
            self.rev_mu.unlock();
            return Err("mvcc: required revision has been compacted");
        }
        if rev > self.current_rev.get() {
            self.rev_mu.unlock();
            return Err("mvcc: required revision is a future revision");
        }
        self.compact_main_rev.set(rev);
        self.b.scheduled_compact.set(rev);
        self.rev_mu.unlock();
        Ok(())
    }

    /// The fix's `compactLockfree`: `updateCompactRev`, then `compact` (which schedules the
    /// index compaction; left out), for callers that hold `mu`.
    fn compact_lockfree(&self, rev: i64) -> Result<(), &'static str> {
        self.update_compact_rev(rev)?;
        // (s.compact(rev))
        Ok(())
    }

    /// `Restore`: rebuilds the store from a backend, holding `mu` throughout.
    fn restore_from_backend(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        // (stops the old FIFO scheduler, resets the index)
        self.current_rev.set(1);
        self.compact_main_rev.set(-1);
        self.restore();
    }

    /// `restore`: replays the backend, then resumes an unfinished compaction.
    fn restore(&self) {
        let mut scheduled_compact = self.b.scheduled_compact.get();
        // Replaying the key bucket brings currentRev to the last revision written.
        self.current_rev.set(self.b.last_rev.get().max(1));
        if scheduled_compact <= self.compact_main_rev.get() {
            scheduled_compact = 0;
        }
        if scheduled_compact != 0 {
            let _ = if self.variant.fixed() {
                self.compact_lockfree(scheduled_compact)
            } else {
                self.compact(scheduled_compact)
            };
        }
    }
}

/// `TestRestoreContinueUnfinishedCompaction`, its "restore" case.
fn test_restore_continue_unfinished_compaction(variant: Variant) {
    let b = Backend {
        last_rev: Shared::new(0).named("lastRev"),
        scheduled_compact: Shared::new(0).named("scheduledCompactRev"),
    };
    let s0 = new_store(b, variant);
    s0.put();
    s0.put();
    s0.put();
    // Write a scheduled compaction at revision 2, but do not compact.
    s0.b.scheduled_compact.set(2);
    s0.restore_from_backend();
}
