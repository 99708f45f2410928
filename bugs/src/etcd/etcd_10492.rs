#![doc = include_str!("etcd_10492.md")]

use std::sync::{Arc, Weak};

use primitives::context::{self, Context};
use primitives::sync::RwMutex;
use primitives::{defer, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_10492",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/10492",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_etcd10492,
        walkthrough: include_str!("etcd_10492.md"),
        goker: Some("gobench/goker/blocking/etcd/10492"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("e20b9d9e"),
        review: "faithful after mends: Checked against GoKer etcd/10492, GoReal etcd/10492 (backtrace), the fix e20b9d9e and lease/lessor.go at 8c228d69: right bug and fix; one mend — the walkthrough's reason why Go stays silent (runLoop's timer) is wrong, runLoop blocks on le.mu and the backend's commit loop is what keeps the test alive.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `Checkpointer`: the function the lessor calls to propose a lease checkpoint through raft.
type Checkpointer = Arc<dyn Fn(&Context) + Send + Sync>;

/// The lease manager (`lessor`).
struct Lessor {
    mu: RwMutex,
    cp: Shared<Option<Checkpointer>>,
    variant: Variant,
}

impl Lessor {
    /// Applying a checkpoint takes the lessor's write lock.
    fn checkpoint(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
    }

    fn set_checkpointer(&self, cp: Checkpointer) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.cp.set(Some(cp));
    }

    /// `Renew`, reduced to its locking and the checkpointer call.
    fn renew(&self) {
        if self.variant.fixed() {
            self.mu.rlock();
        } else {
            self.mu.lock();
        }
        // Buggy: the write lock is held until `Renew` returns (Go's deferred `unlock()`).
        let _unlock = defer(|| {
            if !self.variant.fixed() {
                self.mu.unlock()
            }
        });
        // (isPrimary, the lease lookup)
        // `le.cp != nil && l.remainingTTL > 0`: the test's lease has a remaining TTL.
        let clear_remaining_ttl = self.cp.read(Option::is_some);
        if self.variant.fixed() {
            self.mu.runlock();
        }
        // (the wait on an expired lease)
        if clear_remaining_ttl {
            let cp = self.cp.get().expect("checked above");
            cp(&context::background()); // ends in checkpoint(), which write-locks mu
        }
        if self.variant.fixed() {
            self.mu.lock();
        }
        // (l.refresh(0), heap.Push(&le.leaseHeap, item))
        if self.variant.fixed() {
            self.mu.unlock();
        }
    }
}

/// `TestEtcd10492`.
fn test_etcd10492(variant: Variant) {
    let le = Arc::new(Lessor {
        mu: RwMutex::new().named("lessor.mu"),
        cp: Shared::new(None).named("lessor.cp"),
        variant,
    });
    // The checkpointer stands for raft: it applies the checkpoint on the same lessor.
    let weak: Weak<Lessor> = Arc::downgrade(&le);
    let faker_checkpointer: Checkpointer = Arc::new(move |_ctx: &Context| {
        if let Some(le) = weak.upgrade() {
            le.checkpoint();
        }
    });
    le.set_checkpointer(faker_checkpointer);
    le.mu.lock();
    le.mu.unlock();
    le.renew();
}
