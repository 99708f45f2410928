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
        source: Source::Description("https://github.com/etcd-io/etcd/pull/10419"),
        fix: Fix::Upstream("#10419"),
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
        // The fix: restore is always called with s.mu held.
        s.mu.lock();
        let _unlock = defer(|| s.mu.unlock());
        s.restore();
    } else {
        s.restore();
    }
    s
}

impl Store {
    /// `store.Put`, reduced to what it does to the revisions.
    fn put(&self) {
        self.mu.rlock();
        let _runlock = defer(|| self.mu.runlock());
        self.rev_mu.lock();
        self.current_rev.set(self.current_rev.get() + 1);
        self.b.last_rev.set(self.current_rev.get());
        self.rev_mu.unlock();
    }

    /// `store.Compact` as it was: it takes `mu` itself.
    fn compact(&self, rev: i64) -> Result<(), &'static str> {
        self.mu.lock();
        self.rev_mu.lock();
        if rev <= self.compact_main_rev.get() {
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
        self.mu.unlock();
        self.rev_mu.unlock();
        // (the index compaction is then scheduled on the FIFO scheduler)
        Ok(())
    }

    /// The fix's `updateCompactRev` followed by `compact`: the caller holds `mu`.
    fn compact_lockfree(&self, rev: i64) -> Result<(), &'static str> {
        self.rev_mu.lock();
        if rev <= self.compact_main_rev.get() {
            self.rev_mu.unlock();
            return Err("mvcc: required revision has been compacted");
        }
        if rev > self.current_rev.get() {
            self.rev_mu.unlock();
            return Err("mvcc: required revision is a future revision");
        }
        self.compact_main_rev.set(rev);
        self.rev_mu.unlock();
        Ok(())
    }

    /// `store.Restore`: rebuilds the store from a backend, holding `mu` throughout.
    fn restore_from_backend(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        // (stops the old FIFO scheduler, resets the index)
        self.current_rev.set(1);
        self.compact_main_rev.set(-1);
        self.restore();
    }

    /// `store.restore`: replays the backend, then resumes an unfinished compaction.
    fn restore(&self) {
        // Replaying the key bucket brings currentRev back to the last revision written.
        let last_rev = self.b.last_rev.get();
        if last_rev > self.current_rev.get() {
            self.current_rev.set(last_rev);
        }
        let scheduled_compact = self.b.scheduled_compact.get();
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
