#![doc = include_str!("etcd_9446.md")]

use std::sync::Arc;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_9446",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/9446",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_etcd9446,
        walkthrough: include_str!("etcd_9446.md"),
        goker: Some("gobench/goker/nonblocking/etcd/9446"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("6c40b2b5"),
        review: "faithful: Checked against 6c40b2b5 (PR #9446 and its race report), mvcc/backend backend.go, batch_tx.go, read_tx.go, tx_buffer.go and the inflight-range test at its parent, and GoKer's kernel: defrag's second readTx.reset deletes from the read buffer's map without readTx.mu while a reader looks it up; fix mapped; GoKer's missing reader lock and commit restored and admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `bucketBuffer`: the buffered key/values of one bucket; `used` counts them.
struct BucketBuffer {
    used: Shared<usize>,
}

/// `txBuffer`: writes buffered for a transaction, per bucket.
struct TxBuffer {
    buckets: GoMap<&'static str, Arc<BucketBuffer>>,
}

impl TxBuffer {
    /// Demotes the buckets not used since the last reset, and marks the others unused.
    fn reset(&self) {
        let buckets: Vec<(&'static str, Arc<BucketBuffer>)> = self
            .buckets
            .with(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect());
        for (k, v) in buckets {
            if v.used.get() == 0 {
                // demote
                self.buckets.remove(&k);
            }
            v.used.set(0);
        }
    }
}

/// `txReadBuffer`, which embeds a `txBuffer`.
struct TxReadBuffer {
    tx_buffer: TxBuffer,
}

impl TxReadBuffer {
    fn range(&self, bucket_name: &'static str) -> usize {
        match self.tx_buffer.buckets.get(&bucket_name) {
            Some(b) => b.used.get(), // b.Range(key, endKey, limit)
            None => 0,
        }
    }
}

/// The backend's shared read transaction (`readTx`). `mu` protects `buf`: readers hold it
/// for reading (`Lock` is `mu.RLock`) around `UnsafeRange`.
struct ReadTx {
    mu: RwMutex,
    buf: TxReadBuffer,
    variant: Variant,
}

impl ReadTx {
    fn lock(&self) {
        self.mu.rlock();
    }

    fn unlock(&self) {
        self.mu.runlock();
    }

    fn reset(&self) {
        self.buf.tx_buffer.reset();
    }

    fn unsafe_range(&self, bucket_name: &'static str) -> usize {
        self.buf.range(bucket_name)
    }
}

/// `batchTxBuffered.commit`: all read transactions must be closed, so it takes `readTx.mu`.
fn commit(rt: &ReadTx) {
    rt.mu.lock();
    let _unlock = defer(|| rt.mu.unlock());
    unsafe_commit(rt);
}

/// `batchTxBuffered.unsafeCommit`: rolls back the open read transaction and resets it.
fn unsafe_commit(rt: &ReadTx) {
    rt.reset();
}

/// `backend.defrag`: commits the batch transaction, rebuilds the database, then resets the
/// read transaction.
fn defrag(rt: &ReadTx) {
    // b.batchTx.Lock() and b.mu.Lock(): readers take neither.
    if rt.variant.fixed() {
        // The fix: block concurrent read requests while resetting tx.
        rt.mu.lock();
    }
    let _unlock = defer(|| {
        if rt.variant.fixed() {
            rt.mu.unlock()
        }
    });
    if rt.variant.fixed() {
        unsafe_commit(rt);
    } else {
        commit(rt);
    }
    // The database is copied into a new file and reopened.
    rt.reset();
}

/// `TestEtcd9446`.
fn test_etcd9446(variant: Variant) {
    let wg = WaitGroup::new();
    wg.add(3);
    let wg0 = wg.clone();
    go_named("test", move || {
        let _done = defer(|| wg0.done());
        let txn = Arc::new(ReadTx {
            mu: RwMutex::new().named("readTx.mu"),
            buf: TxReadBuffer {
                tx_buffer: TxBuffer {
                    buckets: GoMap::new().named("buckets"),
                },
            },
            variant,
        });
        // The test's Put, written back to the read buffer: one key in bucket "key".
        let b = BucketBuffer {
            used: Shared::new(1).named("bucketBuffer.used"),
        };
        txn.buf.tx_buffer.buckets.insert("key", Arc::new(b));
        let (t1, wg1) = (txn.clone(), wg0.clone());
        go_named("defrag", move || {
            let _done = defer(|| wg1.done());
            defrag(&t1);
        });
        let (t2, wg2) = (txn, wg0.clone());
        go_named("UnsafeRange", move || {
            let _done = defer(|| wg2.done());
            t2.lock();
            t2.unsafe_range("key");
            t2.unlock();
        });
    });
    wg.wait();
}
