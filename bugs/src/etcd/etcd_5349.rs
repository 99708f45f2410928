#![doc = include_str!("etcd_5349.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_5349",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/5349",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_election_session_recampaign,
        walkthrough: include_str!("etcd_5349.md"),
        asplos: Some("blocking-bugs/etcd/120020fa9c3d4b6c98d7beb863ac4c6bfe4d499b.txt"),
        source: Source::Diff("120020fa"),
        fix: Fix::Upstream("120020fa"),
        review: "faithful after mends: Faithful after a one-line mend. Checked against 120020fa (and 120020fa^ = 393725fe: election.go, key.go, session.go, the new TestElectionSessionRecampaign) and the ASPLOS diff: right bug, upstream's fix at the right switch, deadlock verdict honestly qualified; one minor unlisted simplification of Observe's empty-prefix path.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A key's value and creation revision in the etcd member's store. (Election keys are
/// attached to the session's lease: they go away only when the session does.)
#[derive(Clone)]
struct KeyValue {
    value: String,
    create_revision: i64,
}

/// A watch event: the key was deleted.
struct DeleteEvent;

/// The etcd member behind the client, reduced to a KV store with watches.
struct Kv {
    mu: Mutex,
    rev: Shared<i64>,
    keys: GoMap<String, KeyValue>,
    /// Watchers waiting for a key's deletion.
    watchers: Shared<Vec<(String, Chan<DeleteEvent>)>>,
}

impl Kv {
    /// A transaction `If(CreateRevision(k) == 0).Then(Put(k, v, lease)).Else(Get(k))`:
    /// returns whether it succeeded, the header revision and the key as it is now.
    fn txn_put_if_absent(&self, k: &str, v: &str, _lease: i64) -> (bool, i64, KeyValue) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if let Some(kv) = self.keys.get(&k.to_string()) {
            return (false, self.rev.get(), kv);
        }
        let rev = self.rev.get() + 1;
        self.rev.set(rev);
        let kv = KeyValue {
            value: v.to_string(),
            create_revision: rev,
        };
        self.keys.insert(k.to_string(), kv.clone());
        (true, rev, kv)
    }

    /// `Put(k, v, WithLease(lease))` of an existing key, if it still has `create_rev`.
    fn txn_proclaim(&self, k: &str, create_rev: i64, v: &str, _lease: i64) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        match self.keys.get(&k.to_string()) {
            Some(kv) if kv.create_revision == create_rev => {
                self.rev.set(self.rev.get() + 1);
                self.keys.insert(
                    k.to_string(),
                    KeyValue {
                        value: v.to_string(),
                        create_revision: create_rev,
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// `Get(prefix, WithPrefix(), WithSort(CreateRevision, Ascend), WithRev(...))`: the keys
    /// under `prefix` created at or before `max_create_rev`, oldest first.
    fn get_prefix(&self, prefix: &str, max_create_rev: i64) -> Vec<(String, KeyValue)> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let mut kvs: Vec<(String, KeyValue)> = self.keys.with(|m| {
            m.iter()
                .filter(|(k, kv)| k.starts_with(prefix) && kv.create_revision <= max_create_rev)
                .map(|(k, kv)| (k.clone(), kv.clone()))
                .collect()
        });
        kvs.sort_by_key(|(_, kv)| kv.create_revision);
        kvs
    }

    /// `Watch(key)`: a channel that gets the key's deletion.
    fn watch(&self, key: &str) -> Chan<DeleteEvent> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let wch = Chan::new(1).named("watch");
        self.watchers
            .write(|w| w.push((key.to_string(), wch.clone())));
        wch
    }
}

/// `concurrency.Session`: a lease kept alive for the client.
struct Session {
    lease: i64,
}

/// `concurrency.Election`.
struct Election {
    client: Arc<Kv>,
    session: Arc<Session>,
    key_prefix: String,
    leader_key: Shared<String>,
    leader_rev: Shared<i64>,
    leader_session: Shared<Option<Arc<Session>>>,
    variant: Variant,
}

impl Election {
    /// `Campaign`: puts `val` as eligible, and blocks until it is elected.
    fn campaign(&self, val: &str) -> Result<(), &'static str> {
        let s = &self.session; // NewSession(e.client): one session per client
        if self.variant.fixed() {
            // The fix: the election key is the session's, so a second campaign finds its own.
            let k = format!("{}/{:x}", self.key_prefix, s.lease);
            let (succeeded, rev, kv) = self.client.txn_put_if_absent(&k, val, s.lease);
            self.leader_key.set(k.clone());
            self.leader_rev.set(rev);
            self.leader_session.set(Some(s.clone()));
            if !succeeded {
                self.leader_rev.set(kv.create_revision);
                if kv.value != val {
                    self.proclaim(val)?;
                }
            }
            return self.wait_deletes(self.leader_rev.get() - 1);
        }
        let (k, rev) = self.new_unique_kv(val, s.lease);
        self.wait_deletes(rev - 1)?;
        self.leader_key.set(k);
        self.leader_rev.set(rev);
        self.leader_session.set(Some(s.clone()));
        Ok(())
    }

    /// `NewUniqueKV`: a fresh key under the prefix (upstream names it by `time.Now()`; the
    /// kernel by the store's next revision, which is as unique).
    fn new_unique_kv(&self, val: &str, lease: i64) -> (String, i64) {
        loop {
            let new_key = format!("{}/{}", self.key_prefix, self.client.rev.get() + 1);
            let (succeeded, rev, _) = self.client.txn_put_if_absent(&new_key, val, lease);
            if succeeded {
                return (new_key, rev);
            }
        }
    }

    /// `Proclaim`: the leader announces a new value without another election.
    fn proclaim(&self, val: &str) -> Result<(), &'static str> {
        let Some(leader_session) = self.leader_session.get() else {
            return Err("election: not leader");
        };
        let ok = self.client.txn_proclaim(
            &self.leader_key.get(),
            self.leader_rev.get(),
            val,
            leader_session.lease,
        );
        if !ok {
            self.leader_key.set(String::new());
            return Err("election: not leader");
        }
        Ok(())
    }

    /// `waitDeletes`: waits until every key under the prefix created at or before `rev` is
    /// deleted, newest first.
    fn wait_deletes(&self, rev: i64) -> Result<(), &'static str> {
        let mut kvs = self.client.get_prefix(&self.key_prefix, rev);
        while let Some((key, _)) = kvs.pop() {
            // waitDelete: watch the key until a DELETE event arrives
            let wch = self.client.watch(&key);
            wch.recv();
        }
        Ok(())
    }

    /// `Observe`: a channel with the current leader's value, kept until `ctx` is done.
    fn observe(self: &Arc<Self>, ctx: Context) -> Chan<String> {
        let retc = Chan::new(0).named("retc");
        let (e, r) = (self.clone(), retc.clone());
        go_named("observe", move || {
            let _close = defer(|| r.close());
            let leader = e.client.get_prefix(&e.key_prefix, i64::MAX);
            let Some((_, kv)) = leader.into_iter().next() else {
                return;
            };
            select! {
                send(r, kv.value) => {},
                recv(ctx.done()) => return,
            }
            // (then watches the leader key for changes until the context is done)
            ctx.done().recv();
        });
        retc
    }
}

/// `TestElectionSessionRecampaign`: campaigning twice on the same election with the same
/// session must proclaim instead of deadlocking.
fn test_election_session_recampaign(variant: Variant) {
    let cli = Arc::new(Kv {
        mu: Mutex::new().named("kv.mu"),
        rev: Shared::new(1).named("kv.rev"),
        keys: GoMap::new().named("kv.keys"),
        watchers: Shared::new(Vec::new()).named("kv.watchers"),
    });
    let session = Arc::new(Session { lease: 0x694d });
    let new_election = |pfx: &str| {
        Arc::new(Election {
            client: cli.clone(),
            session: session.clone(),
            key_prefix: pfx.to_string(),
            leader_key: Shared::new(String::new()).named("leaderKey"),
            leader_rev: Shared::new(0).named("leaderRev"),
            leader_session: Shared::new(None).named("leaderSession"),
            variant,
        })
    };

    let e = new_election("test-elect");
    e.campaign("abc").expect("first campaign");
    let e2 = new_election("test-elect");
    e2.campaign("def").expect("second campaign");

    let (ctx, cancel) = context::with_cancel(&context::todo());
    let _cancel = defer(|| cancel.call());
    let resp = e.observe(ctx).recv();
    assert_eq!(resp.as_deref(), Some("def"), "expected value=def");
}
