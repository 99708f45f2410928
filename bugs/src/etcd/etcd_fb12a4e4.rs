#![doc = include_str!("etcd_fb12a4e4.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, time, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_fb12a4e4",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/commit/fb12a4e412fee79c8c59277f7e49d5cca5ed901f",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_backend_put,
        walkthrough: include_str!("etcd_fb12a4e4.md"),
        asplos: Some("blocking-bugs/etcd/fb12a4e412fee79c8c59277f7e49d5cca5ed901f.txt"),
        source: Source::Diff("fb12a4e4"),
        fix: Fix::Upstream("fb12a4e4"),
        review: "faithful: Checked against fb12a4e4 (3 hunks, = ASPLOS entry), storage/backend/{batch_tx,backend,backend_test,backend_bench_test}.go and storage/kvstore.go at fb12a4e4^: right self-deadlock, shape and fix; nothing unadmitted (one optional cite).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The test's batch interval and limit: the limit is the smallest that still batches, so the
/// second put goes over it.
const BATCH_INTERVAL: Duration = Duration::from_secs(10);
const BATCH_LIMIT: u32 = 1;

/// boltdb's database: the committed key/value pairs, and how many write transactions began.
struct Db {
    data: GoMap<&'static str, &'static str>,
    txs: Shared<u32>,
}

/// A bolt write transaction: its uncommitted writes.
struct Tx {
    writes: Vec<(&'static str, &'static str)>,
}

impl Db {
    /// `db.Begin(true)`.
    fn begin(&self) -> Tx {
        let id = self.txs.get() + 1;
        self.txs.set(id);
        Tx { writes: Vec::new() }
    }

    /// `tx.Commit()`.
    fn commit(&self, tx: Tx) {
        for (k, v) in tx.writes {
            self.data.insert(k, v);
        }
    }
}

/// `storage/backend`'s `batchTx`, which embeds a `sync.Mutex`.
struct BatchTx {
    mutex: Mutex,
    tx: Shared<Option<Tx>>,
    backend: Arc<BackendInner>,
    pending: Shared<u32>,
    variant: Variant,
}

impl Deref for BatchTx {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

impl BatchTx {
    /// `UnsafePut`: the caller must hold the lock.
    fn unsafe_put(&self, key: &'static str, value: &'static str) {
        self.tx.write(|tx| {
            tx.as_mut()
                .expect("a transaction has begun")
                .writes
                .push((key, value))
        });
        self.pending.set(self.pending.get() + 1);
        if self.pending.get() > self.backend.batch_limit {
            if self.variant.fixed() {
                self.commit();
            } else {
                self.commit_locked();
            }
            self.pending.set(0);
        }
    }

    /// `UnsafeRange` for one key: the caller must hold the lock. A write transaction sees
    /// its own writes.
    fn unsafe_range(&self, key: &'static str) -> Vec<&'static str> {
        let own = self.tx.read(|tx| {
            tx.as_ref().and_then(|tx| {
                tx.writes
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| *v)
            })
        });
        own.or_else(|| self.backend.db.data.get(&key))
            .into_iter()
            .collect()
    }

    /// The exported `Commit`: takes the lock, commits the last tx and begins a new one. At
    /// fb12a4e4^ the body after the lock is inline; the fix moves it, unchanged, into
    /// `commit`, so both variants call it here.
    fn commit_locked(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.commit();
    }

    /// The body of `Commit` (the fix's unexported `commit`): commits the last tx, if any, and
    /// begins a new writable one. The caller holds the lock.
    fn commit(&self) {
        if let Some(tx) = self.tx.write(|tx| tx.take()) {
            self.backend.db.commit(tx);
        }
        let tx = self.backend.db.begin();
        self.tx.set(Some(tx));
    }
}

/// `backend`: a bolt database and the batch transaction its `run` loop commits.
struct BackendInner {
    db: Db,
    batch_interval: Duration,
    batch_limit: u32,
    stopc: Chan<()>,
    startc: Chan<()>,
    donec: Chan<()>,
}

struct Backend {
    inner: Arc<BackendInner>,
    batch_tx: Arc<BatchTx>,
}

/// `backend.New(path, d, limit)`.
fn new(d: Duration, limit: u32, variant: Variant) -> Backend {
    let inner = Arc::new(BackendInner {
        db: Db {
            data: GoMap::new().named("bolt.db"),
            txs: Shared::new(0).named("bolt.txs"),
        },
        batch_interval: d,
        batch_limit: limit,
        stopc: Chan::new(0).named("stopc"),
        startc: Chan::new(0).named("startc"),
        donec: Chan::new(0).named("donec"),
    });
    let batch_tx = Arc::new(BatchTx {
        mutex: Mutex::new().named("batchTx"),
        tx: Shared::new(None).named("batchTx.tx"),
        backend: inner.clone(),
        pending: Shared::new(0).named("batchTx.pending"),
        variant,
    });
    let (b, t) = (inner.clone(), batch_tx.clone());
    go_named("run", move || run(&b, &t));
    inner.startc.recv();
    Backend { inner, batch_tx }
}

/// `backend.run`: commits the batch every `batchInterval`, until `Close`.
fn run(b: &BackendInner, batch_tx: &BatchTx) {
    let _done = defer(|| b.donec.close());
    batch_tx.commit_locked();
    b.startc.send(());
    loop {
        select! {
            recv(time::after(b.batch_interval)) => {},
            recv(b.stopc) => return,
        }
        batch_tx.commit_locked();
    }
}

impl Backend {
    fn batch_tx(&self) -> &BatchTx {
        &self.batch_tx
    }

    /// `Close`: stops `run` and waits for it.
    fn close(&self) {
        self.inner.stopc.close();
        self.inner.donec.recv();
    }
}

/// `TestBackendPut` (`storage/backend/backend_test.go` at fb12a4e4^), with a batch limit of
/// one and a second put, so that a put goes over the limit.
fn test_backend_put(variant: Variant) {
    let backend = new(BATCH_INTERVAL, BATCH_LIMIT, variant);
    let _close = defer(|| backend.close());

    let v = "foo";
    let batch_tx = backend.batch_tx();
    batch_tx.lock();

    batch_tx.unsafe_put("foo", v);
    batch_tx.unsafe_put("bar", v);
    let gv = batch_tx.unsafe_range("foo");
    assert_eq!(gv.first(), Some(&v), "v = {gv:?}, want {v}");

    batch_tx.unlock();
}
