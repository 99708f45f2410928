#![doc = include_str!("etcd_5199.md")]

use std::collections::BTreeMap;
use std::sync::Arc;

use primitives::sync::Mutex as SyncMutex;
use primitives::{defer, go_named, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_5199",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/5199",
        category: "Resource deadlock (lock re-acquired by its holder)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_mutex_session_relock,
        walkthrough: include_str!("etcd_5199.md"),
        asplos: Some("blocking-bugs/etcd/22797c718504868665b78f143a595138cb521edf.txt"),
        source: Source::Test("etcd-io/etcd integration/v3_lock_test.go TestMutexSessionRelock @ 22797c71"),
        fix: Fix::Upstream("22797c71"),
        review: "faithful after mends: Checked against 22797c71 (PR #5199) and mutex.go/key.go/session.go/lease.go at 22797c71^: right bug, shape and fix from the fix's own test; the walkthrough wrongly says upstream's session goroutine stays blocked, and must admit that upstream is a hang with live keep-alive timers, not Go's global deadlock.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `v3.LeaseID`.
type LeaseId = i64;

/// `mvccpb.KeyValue`, the fields the lock reads.
#[derive(Clone, Debug)]
struct KeyValue {
    key: String,
    create_revision: i64,
    #[allow(dead_code)]
    mod_revision: i64,
    #[allow(dead_code)]
    lease: LeaseId,
}

/// `v3.Cmp`, the two comparisons the two versions of `Lock` make.
enum Cmp {
    /// `v3.Compare(v3.ModRevision(key), "=", 0)`
    ModRevisionIsZero(String),
    /// `v3.Compare(v3.CreateRevision(key), "=", 0)`
    CreateRevisionIsZero(String),
}

/// `v3.Op`, the two operations the lock puts in a transaction.
enum Op {
    /// `v3.OpPut(key, "", v3.WithLease(lease))`
    Put(String, LeaseId),
    /// `v3.OpGet(key)`
    Get(String),
}

/// `v3.TxnResponse`: `Succeeded`, `Header.Revision`, and the range responses of its gets.
struct TxnResponse {
    succeeded: bool,
    header_revision: i64,
    responses: Vec<Vec<KeyValue>>,
}

/// `mvccpb.Event` (only DELETE events are looked at; nothing in the test deletes a key).
#[allow(dead_code)]
struct Event {
    is_delete: bool,
}

/// `clientv3.WatchChan`.
type WatchChan = Chan<Vec<Event>>;

/// The cluster's key space as a client sees it: a revisioned store with watches. It stands for
/// the three-member cluster of the test behind `clientv3.Client`'s `KV`, `Lease` and `Watcher`.
struct Cluster {
    mu: SyncMutex,
    rev: Shared<i64>,
    keys: Shared<BTreeMap<String, KeyValue>>,
    next_lease: Shared<LeaseId>,
    /// Watchers: key, start revision, the channel of `Watch`.
    watchers: Shared<Vec<(String, i64, WatchChan)>>,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            mu: SyncMutex::new().named("cluster.mu"),
            rev: Shared::new(1).named("cluster.rev"),
            keys: Shared::new(BTreeMap::new()).named("cluster.keys"),
            next_lease: Shared::new(0x1d).named("cluster.nextLease"),
            watchers: Shared::new(Vec::new()).named("cluster.watchers"),
        }
    }

    /// `Txn(ctx).If(cmp).Then(then).Else(els).Commit()`.
    fn txn(&self, cmp: Cmp, then: Vec<Op>, els: Vec<Op>) -> TxnResponse {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let succeeded = self.keys.read(|k| match &cmp {
            // an absent key compares as revision 0
            Cmp::ModRevisionIsZero(key) => k.get(key).map_or(0, |kv| kv.mod_revision) == 0,
            Cmp::CreateRevisionIsZero(key) => k.get(key).map_or(0, |kv| kv.create_revision) == 0,
        });
        let ops = if succeeded { then } else { els };
        let mut responses = Vec::new();
        for op in ops {
            match op {
                Op::Put(key, lease) => {
                    let rev = self.rev.get() + 1;
                    self.rev.set(rev);
                    self.keys.write(|k| {
                        let create_revision = k.get(&key).map_or(rev, |kv| kv.create_revision);
                        k.insert(
                            key.clone(),
                            KeyValue {
                                key,
                                create_revision,
                                mod_revision: rev,
                                lease,
                            },
                        );
                    });
                }
                Op::Get(key) => responses.push(
                    self.keys
                        .read(|k| k.get(&key).cloned().into_iter().collect()),
                ),
            }
        }
        TxnResponse {
            succeeded,
            header_revision: self.rev.get(),
            responses,
        }
    }

    /// `Get(ctx, pfx, WithPrefix(), WithSort(SortByCreateRevision, SortAscend), WithRev(rev),
    /// WithLimit(limit))`: rev 0 is the current revision, limit 0 is no limit.
    fn get_prefix(&self, pfx: &str, rev: i64, limit: usize) -> Vec<KeyValue> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let at = if rev == 0 { self.rev.get() } else { rev };
        let mut kvs: Vec<KeyValue> = self.keys.read(|k| {
            k.values()
                .filter(|kv| kv.key.starts_with(pfx) && kv.create_revision <= at)
                .cloned()
                .collect()
        });
        kvs.sort_by_key(|kv| kv.create_revision);
        if limit > 0 {
            kvs.truncate(limit);
        }
        kvs
    }

    /// `Watch(ctx, key, WithRev(rev))`: events on `key` from `rev` on (a delete sends them).
    fn watch(&self, key: &str, rev: i64) -> WatchChan {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let wch = Chan::new(0).named("wch");
        self.watchers
            .write(|w| w.push((key.to_string(), rev, wch.clone())));
        wch
    }

    /// `Grant(ctx, ttl)`.
    fn grant(&self) -> LeaseId {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let id = self.next_lease.get();
        self.next_lease.set(id + 1);
        id
    }
}

/// `clientv3.Client`: its connection to the cluster and the keep-alive channel of its lease.
struct Client {
    cluster: Arc<Cluster>,
    /// What `KeepAlive(ctx, id)` returned; `Close` closes it.
    keep_alive: Chan<()>,
    /// The client machine's clock, in nanoseconds (`time.Now().UnixNano()`).
    clock: Shared<i64>,
}

impl Client {
    /// `Close`: the client's lease keep-alive stream ends.
    fn close(&self) {
        self.keep_alive.close();
    }

    /// `time.Now().UnixNano()`: the clock has moved on since the last reading.
    fn unix_nano(&self) -> i64 {
        let now = self.clock.get() + 1_000;
        self.clock.set(now);
        now
    }
}

/// `concurrency.Session`.
struct Session {
    id: LeaseId,
    #[allow(dead_code)]
    donec: Chan<()>,
}

impl Session {
    fn lease(&self) -> LeaseId {
        self.id
    }
}

/// `clientSessionMgr`: only one ephemeral lease per client (the package's `clientSessions`).
struct ClientSessionMgr {
    /// By client (the kernel has one client, so by the unit key).
    sessions: GoMap<(), Arc<Session>>,
    mu: SyncMutex,
}

/// `NewSession`: the leased session for a client, made once and then shared.
fn new_session(mgr: &Arc<ClientSessionMgr>, client: &Arc<Client>) -> Arc<Session> {
    mgr.mu.lock();
    let _unlock = defer(|| mgr.mu.unlock());
    if let Some(s) = mgr.sessions.get(&()) {
        return s;
    }

    let id = client.cluster.grant();
    let keep_alive = client.keep_alive.clone();

    let donec = Chan::new(0).named("donec");
    let s = Arc::new(Session {
        id,
        donec: donec.clone(),
    });
    mgr.sessions.insert((), s.clone());

    // keep the lease alive until client error or cancelled context
    let m = mgr.clone();
    go_named("NewSession.func1", move || {
        let _done = defer(|| {
            m.mu.lock();
            m.sessions.remove(&());
            m.mu.unlock();
            donec.close();
        });
        // eat messages until keep alive channel closes
        while keep_alive.recv().is_some() {}
    });
    s
}

/// `NewUniqueKV`: puts `pfx/<unique suffix>` if no such key exists yet.
fn new_unique_kv(client: &Client, pfx: &str, lease: LeaseId) -> (String, i64) {
    let cluster = &client.cluster;
    loop {
        let new_key = format!("{pfx}/{}", client.unix_nano());
        let put = Op::Put(new_key.clone(), lease);
        let cmp = Cmp::ModRevisionIsZero(new_key.clone());
        let resp = cluster.txn(cmp, vec![put], vec![]);
        if !resp.succeeded {
            continue;
        }
        return (new_key, resp.header_revision);
    }
}

/// `waitDelete`: watches `key` from `rev` until a DELETE event.
fn wait_delete(cluster: &Cluster, key: &str, rev: i64) {
    let wch = cluster.watch(key, rev);
    while let Some(wr) = wch.recv() {
        if wr.iter().any(|ev| ev.is_delete) {
            return;
        }
    }
}

/// `waitDeletes`: waits until every key of the prefix created up to `rev` is deleted, newest
/// first.
fn wait_deletes(cluster: &Cluster, pfx: &str, rev: i64) {
    let mut kvs = cluster.get_prefix(pfx, rev, 0);
    let mut max_rev = i64::MAX;
    loop {
        while let Some(last) = kvs.last() {
            if last.create_revision <= max_rev {
                break;
            }
            kvs.pop();
        }
        let Some(last_kv) = kvs.last().cloned() else {
            break;
        };
        max_rev = last_kv.create_revision;
        wait_delete(cluster, &last_kv.key, max_rev);
        if kvs.len() == 1 {
            break;
        }
        kvs = cluster.get_prefix(pfx, 0, kvs.len() - 1);
    }
}

/// `concurrency.Mutex`.
struct Mutex {
    client: Arc<Client>,
    sessions: Arc<ClientSessionMgr>,
    pfx: String,
    my_key: String,
    my_rev: i64,
    variant: Variant,
}

impl Mutex {
    /// `NewMutex`.
    fn new(
        client: &Arc<Client>,
        sessions: &Arc<ClientSessionMgr>,
        pfx: &str,
        variant: Variant,
    ) -> Self {
        Mutex {
            client: client.clone(),
            sessions: sessions.clone(),
            pfx: pfx.to_string(),
            my_key: String::new(),
            my_rev: -1,
            variant,
        }
    }

    /// `Lock(ctx)`.
    fn lock(&mut self) {
        let s = new_session(&self.sessions, &self.client);
        let cluster = &self.client.cluster;
        if self.variant.fixed() {
            self.my_key = format!("{}/{:x}", self.pfx, s.lease());
            let cmp = Cmp::CreateRevisionIsZero(self.my_key.clone());
            // put self in lock waiters via myKey; oldest waiter holds lock
            let put = Op::Put(self.my_key.clone(), s.lease());
            // reuse key in case this session already holds the lock
            let get = Op::Get(self.my_key.clone());
            let resp = cluster.txn(cmp, vec![put], vec![get]);
            self.my_rev = resp.header_revision;
            if !resp.succeeded {
                self.my_rev = resp.responses[0][0].create_revision;
            }
        } else {
            // put self in lock waiters via myKey; oldest waiter holds lock
            (self.my_key, self.my_rev) = new_unique_kv(&self.client, &self.pfx, s.lease());
        }
        // wait for deletion revisions prior to myKey
        wait_deletes(cluster, &self.pfx, self.my_rev - 1);
    }
}

/// `TestMutexSessionRelock` (added by the fix): two mutexes on the same prefix and the same
/// client, so the same session, each locked once.
fn test_mutex_session_relock(variant: Variant) {
    // clus := NewClusterV3(t, &ClusterConfig{Size: 3}); cli := clus.RandClient()
    let cli = Arc::new(Client {
        cluster: Arc::new(Cluster::new()),
        keep_alive: Chan::new(0).named("keepAlive"),
        clock: Shared::new(1_461_700_000_000_000_000).named("clock"),
    });
    // defer clus.Terminate(t): the cluster's clients close
    let c = cli.clone();
    let _terminate = defer(move || c.close());
    let sessions = Arc::new(ClientSessionMgr {
        sessions: GoMap::new().named("clientSessions.sessions"),
        mu: SyncMutex::new().named("clientSessions.mu"),
    });

    let mut m = Mutex::new(&cli, &sessions, "test-mutex", variant);
    m.lock();
    let mut m2 = Mutex::new(&cli, &sessions, "test-mutex", variant);
    m2.lock();
}
