#![doc = include_str!("etcd_9446.md")]

use std::sync::Arc;

use primitives::sync::{RwMutex, WaitGroup};
use primitives::{defer, go_named, GoMap};

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
        fix: Fix::Upstream("#9446"),
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `txBuffer`: writes buffered for a transaction, per bucket.
struct TxBuffer {
    buckets: GoMap<&'static str, ()>,
}

impl TxBuffer {
    fn reset(&self) {
        let keys: Vec<&'static str> = self.buckets.with(|m| m.keys().copied().collect());
        for k in keys {
            self.buckets.remove(&k);
        }
    }
}

/// `txReadBuffer`, which embeds a `txBuffer`.
struct TxReadBuffer {
    tx_buffer: TxBuffer,
}

impl TxReadBuffer {
    fn range(&self) {
        let _ = self.tx_buffer.buckets.get(&"1");
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

    fn unsafe_range(&self) {
        self.buf.range();
    }
}

/// `backend.defrag`'s part in this: after swapping the database it resets the read
/// transaction.
fn defrag(rt: &ReadTx) {
    if rt.variant.fixed() {
        // The fix: block concurrent read requests while resetting the read transaction.
        rt.mu.lock();
        let _unlock = defer(|| rt.mu.unlock());
        rt.reset();
        return;
    }
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
        txn.buf.tx_buffer.buckets.insert("1", ());
        let (t1, wg1) = (txn.clone(), wg0.clone());
        go_named("defrag", move || {
            let _done = defer(|| wg1.done());
            defrag(&t1);
        });
        let (t2, wg2) = (txn, wg0.clone());
        go_named("UnsafeRange", move || {
            let _done = defer(|| wg2.done());
            t2.lock();
            t2.unsafe_range();
            t2.unlock();
        });
    });
    wg.wait();
}
