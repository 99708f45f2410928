#![doc = include_str!("etcd_4997.md")]

use std::collections::BTreeMap;
use std::sync::Arc;

use primitives::sync::{AtomicU64, Mutex};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_4997",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/4997",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_stm_serialize,
        walkthrough: include_str!("etcd_4997.md"),
        asplos: Some("non-blocking-bugs/etcd/4d2d2cabb9b0dcaa16ffd17e6d53a745740f3468.txt"),
        // At bound 1 loom reaches the race (and finishes its search of the fixed variant);
        // at bound 3 it does not reach it within the budget (20,000 schedules), nor finish
        // the fixed variant.
        budget: Budget { preemption_bound: Some(1), ..Budget::DEFAULT },
        source: Source::Diff("4d2d2cab"),
        fix: Fix::Upstream("4d2d2cab"),
        review: "faithful: Checked against 4d2d2cab (PR #4997 and its race report) and etcdserver/{consistent_index,server,apply,v3demo_server}.go, storage/kvstore.go, integration/v3_stm_test.go at 004ff3d4: the apply loop's unlocked consistIndex write against saveIndex's read in a serializable Range; one-hunk fix mapped; every simplification admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The test's keys (`foo-0` .. `foo-4` upstream), and how many rounds of updates it makes
/// (five upstream).
const KEYS: [&str; 1] = ["foo-0"];
const ROUNDS: u64 = 2;

/// `consistentIndex`: a `uint64` the apply loop sets before applying each entry, which the
/// backend store reads to persist it. One Go variable: the buggy code reads and writes it
/// plainly (`plain`), the fix with `sync/atomic` (`atomic`).
struct ConsistentIndex {
    plain: Shared<u64>,
    atomic: AtomicU64,
    variant: Variant,
}

impl ConsistentIndex {
    fn set_consistent_index(&self, v: u64) {
        if self.variant.fixed() {
            self.atomic.store(v);
        } else {
            self.plain.set(v);
        }
    }

    /// `ConsistentIndex`: the storage's `ConsistentIndexGetter`.
    fn consistent_index(&self) -> u64 {
        if self.variant.fixed() {
            self.atomic.load()
        } else {
            self.plain.get()
        }
    }
}

/// The backend's batch transaction: its lock, and the meta bucket's consistent-index key.
struct BatchTx {
    mu: Mutex,
    consistent_index_key: Shared<u64>,
}

/// `storage.store`: the v3 key-value store on the backend.
struct Store {
    mu: Mutex,
    tx: BatchTx,
    ig: Arc<ConsistentIndex>,
    kvs: Shared<BTreeMap<&'static str, String>>,
    txn_id: Shared<i64>,
}

impl Store {
    /// `TxnBegin`: takes the store's and the backend's locks, and saves the consistent index.
    fn txn_begin(&self) -> i64 {
        self.mu.lock();
        self.tx.mu.lock();
        self.save_index();
        // s.txnID = rand.Int63()
        let id = self.txn_id.get() + 1;
        self.txn_id.set(id);
        id
    }

    /// `txnEnd`.
    fn txn_end(&self, txn_id: i64) -> Result<(), &'static str> {
        if txn_id != self.txn_id.get() {
            return Err("storage: txn id mismatch");
        }
        self.tx.mu.unlock();
        self.mu.unlock();
        Ok(())
    }

    /// `saveIndex`: puts the consistent index into the backend's meta bucket.
    fn save_index(&self) {
        let v = self.ig.consistent_index();
        // tx.UnsafePut(metaBucketName, consistentIndexKeyName, bs)
        self.tx.consistent_index_key.set(v);
    }

    /// `ConsistentIndex`: the index saved in the backend.
    fn consistent_index(&self) -> u64 {
        self.tx.mu.lock();
        let _unlock = defer(|| self.tx.mu.unlock());
        self.tx.consistent_index_key.get()
    }

    /// `Range`: its own transaction.
    fn range(&self, key: &'static str) -> Option<String> {
        let id = self.txn_begin();
        let v = self.kvs.read(|kvs| kvs.get(key).cloned());
        let _ = self.txn_end(id);
        v
    }

    /// `TxnPut`: a put inside a transaction begun by `TxnBegin`.
    fn txn_put(&self, txn_id: i64, key: &'static str, value: String) -> Result<(), &'static str> {
        if txn_id != self.txn_id.get() {
            return Err("storage: txn id mismatch");
        }
        self.kvs.write(|kvs| kvs.insert(key, value));
        Ok(())
    }
}

/// An `InternalRaftRequest`: its ID and, for a Txn, the puts of its success branch.
struct InternalRaftRequest {
    id: u64,
    txn: Vec<(&'static str, String)>,
}

/// A committed raft entry.
struct Entry {
    index: u64,
    data: InternalRaftRequest,
}

/// `pkg/wait.List`: the channels on which proposers wait for their entries' results.
struct Wait {
    l: Mutex,
    m: Shared<BTreeMap<u64, Chan<()>>>,
}

impl Wait {
    fn register(&self, id: u64) -> Chan<()> {
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        let ch = Chan::new(1).named("wait ch");
        self.m.write(|m| m.insert(id, ch.clone()));
        ch
    }

    fn trigger(&self, id: u64) {
        self.l.lock();
        let ch = self.m.write(|m| m.remove(&id));
        self.l.unlock();
        if let Some(ch) = ch {
            ch.send(());
            ch.close();
        }
    }
}

/// `EtcdServer`, with the parts the test goes through.
struct EtcdServer {
    consist_index: Arc<ConsistentIndex>,
    kv: Store,
    w: Wait,
    /// raft's committed entries (`s.r.apply()`).
    apply: Chan<Vec<Entry>>,
    stop: Chan<()>,
    done: Chan<()>,
}

impl EtcdServer {
    /// `run`, with the FIFO scheduler's goroutine folded in: each batch of committed entries
    /// is applied here.
    fn run(&self) {
        let _done = defer(|| self.done.close());
        loop {
            select! {
                recv(self.apply) -> ap => {
                    if let Some(ap) = ap {
                        self.apply_all(ap);
                    }
                },
                recv(self.stop) => return,
            }
        }
    }

    /// `applyAll` → `applyEntries` → `apply`.
    fn apply_all(&self, es: Vec<Entry>) {
        for e in es {
            // do not re-apply applied entries.
            if e.index <= self.consist_index.consistent_index() {
                continue;
            }
            // set the consistent index of current executing entry
            self.consist_index.set_consistent_index(e.index);
            self.apply_v3_request(&e.data);
            self.w.trigger(e.data.id);
        }
    }

    /// `applyV3Request` for a Txn: `applierV3backend.Txn`, whose puts run in one transaction.
    fn apply_v3_request(&self, r: &InternalRaftRequest) {
        let txn_id = self.kv.txn_begin();
        // (a failed TxnEnd panics upstream; the kernel's IDs always match)
        let _end = defer(|| {
            let _ = self.kv.txn_end(txn_id);
        });
        for (k, v) in &r.txn {
            let _ = self.kv.txn_put(txn_id, k, v.clone());
        }
    }

    /// `processInternalRaftRequest`: proposes the request and waits for its entry's result.
    fn process_internal_raft_request(&self, index: u64, r: InternalRaftRequest) {
        let ch = self.w.register(r.id);
        // s.r.Propose(ctx, data): raft commits it as the entry `index`.
        self.apply.send(vec![Entry { index, data: r }]);
        select! {
            recv(ch) => {},
            recv(self.done) => {},
        }
    }

    /// `Range` with `Serializable` set: served from the local store, outside raft.
    fn range_serializable(&self, key: &'static str) -> Option<String> {
        self.kv.range(key)
    }

    /// `Stop`.
    fn stop(&self) {
        select! {
            send(self.stop, ()) => {},
            recv(self.done) => return,
        }
        self.done.recv();
    }
}

/// `NewServer`, for the parts above.
fn new_server(variant: Variant) -> Arc<EtcdServer> {
    let consist_index = Arc::new(ConsistentIndex {
        plain: Shared::new(0).named("consistIndex"),
        atomic: AtomicU64::new(0),
        variant,
    });
    let kv = Store {
        mu: Mutex::new().named("store.mu"),
        tx: BatchTx {
            mu: Mutex::new().named("batchTx.mu"),
            consistent_index_key: Shared::new(0).named("meta/consistent_index"),
        },
        ig: consist_index.clone(),
        kvs: Shared::new(BTreeMap::new()).named("store.kvs"),
        txn_id: Shared::new(0).named("store.txnID"),
    };
    let s = Arc::new(EtcdServer {
        consist_index,
        kv,
        w: Wait {
            l: Mutex::new().named("wait.l"),
            m: Shared::new(BTreeMap::new()).named("wait.m"),
        },
        apply: Chan::new(0).named("applyc"),
        stop: Chan::new(0).named("s.stop"),
        done: Chan::new(0).named("s.done"),
    });
    s.consist_index
        .set_consistent_index(s.kv.consistent_index());
    s
}

/// `TestSTMSerialize`: one goroutine updates the keys through raft, round after round; after
/// each round the test starts a serializable STM that reads them from the local store.
fn test_stm_serialize(variant: Variant) {
    let s = new_server(variant);
    let srv = s.clone();
    go_named("EtcdServer.run", move || srv.run());

    let updatec: Chan<()> = Chan::new(0).named("updatec");
    let (srv, u) = (s.clone(), updatec.clone());
    go_named("TestSTMSerialize.func1", move || {
        let _close = defer(|| u.close());
        for i in 0..ROUNDS {
            let txn = KEYS.iter().map(|k| (*k, i.to_string())).collect();
            // etcdc.Txn(context.TODO()).Then(ops...).Commit()
            srv.process_internal_raft_request(i + 1, InternalRaftRequest { id: i + 1, txn });
            u.send(());
        }
    });

    let errc: Chan<Option<&'static str>> = Chan::new(0).named("errc");
    while updatec.recv().is_some() {
        let (srv, e) = (s.clone(), errc.clone());
        go_named("TestSTMSerialize.func3", move || {
            // concurrency.NewSTMSerializable(...): applyf's stm.Get of each key, serializable.
            // (applyf then checks that every key has the same value: one key here.)
            for k in KEYS {
                let _ = srv.range_serializable(k);
            }
            e.send(None);
        });
    }
    for _ in 0..ROUNDS {
        let _ = errc.recv();
    }
    s.stop();
}
