#![doc = include_str!("etcd_5509.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_5509",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/5509",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_etcd5509,
        walkthrough: include_str!("etcd_5509.md"),
        goker: Some("gobench/goker/blocking/etcd/5509"),
        asplos: Some("blocking-bugs/etcd/1d8813052292e6053957fae01d080fde9717f3fc.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("1d881305"),
        review: "faithful: Checked against GoKer etcd/5509, the fix 1d881305 (and a83051d0 of the same PR) and clientv3/{client,remote_client,kv}.go at 1d881305^: the leaked read lock on acquire's error path and Close's re-lock are upstream's; the departure from GoKer's acquire loop toward upstream is admitted and sound.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `rpctypes.ErrConnClosed`.
#[derive(Debug, PartialEq, Eq)]
struct ErrConnClosed;

/// clientv3's `Client`. `cancel` is nil once the client is closed.
struct Client {
    mu: RwMutex,
    #[allow(dead_code)] // carried as in Go; nothing in the kernel waits on it
    ctx: Context,
    cancel: Shared<Option<CancelFunc>>,
}

impl Client {
    fn close(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let Some(cancel) = self.cancel.get() else {
            return;
        };
        cancel.call();
        self.cancel.set(None);
        self.mu.unlock();
        // Upstream's next `Lock` is in `connStartRetry`; it then closes the watcher and the
        // lease client, waits for the connection monitor and locks again (GoKer keeps one).
        self.mu.lock();
    }
}

/// `remoteClient`: the connection a KV call runs on.
struct RemoteClient {
    client: Arc<Client>,
    mu: Mutex,
    variant: Variant,
}

impl RemoteClient {
    /// On success, returns holding `client.mu` for reading (`release` drops it after the
    /// call); on error, it must return without it.
    fn acquire(&self, _ctx: &Context) -> Result<(), ErrConnClosed> {
        // Upstream loops, waiting for a reconnection while the connection it sees is stale.
        // The kernel's connection never changes, so `match` always holds and one round is all.
        if self.variant.fixed() {
            self.mu.lock();
            self.client.mu.rlock();
            let closed = self.client.cancel.read(Option::is_none);
            let matched = true; // r.conn == client.conn
            self.mu.unlock();
            if matched {
                return Ok(());
            }
            self.client.mu.runlock();
            if closed {
                return Err(ErrConnClosed);
            }
            unreachable!("reconnectWait: the kernel's connection never goes stale");
        }
        self.client.mu.rlock();
        let closed = self.client.cancel.read(Option::is_none);
        self.mu.lock();
        let matched = true; // r.conn == client.conn
        self.mu.unlock();
        if closed {
            return Err(ErrConnClosed); // still holding client.mu's read lock
        }
        if matched {
            return Ok(());
        }
        unreachable!("reconnectWait: the kernel's connection never goes stale");
    }

    fn release(&self) {
        self.client.mu.runlock();
    }
}

/// clientv3's `kv`.
struct Kv {
    rc: RemoteClient,
}

impl Kv {
    fn get(&self, ctx: &Context) -> Result<(), ErrConnClosed> {
        self.do_(ctx)
    }

    /// `Do`: no retry in the kernel, an error goes back to the caller.
    fn do_(&self, ctx: &Context) -> Result<(), ErrConnClosed> {
        self.do_range(ctx)
    }

    /// `do`, for a range request.
    fn do_range(&self, ctx: &Context) -> Result<(), ErrConnClosed> {
        self.get_remote(ctx)?;
        let _release = defer(|| self.rc.release());
        // remote.Range(ctx, r): the RPC, under the client's read lock.
        Ok(())
    }

    fn get_remote(&self, ctx: &Context) -> Result<(), ErrConnClosed> {
        self.rc.acquire(ctx)
    }
}

fn new_kv(c: Arc<Client>, variant: Variant) -> Kv {
    Kv {
        rc: RemoteClient {
            client: c,
            mu: Mutex::new().named("remoteClient.mu"),
            variant,
        },
    }
}

/// GoKer's `TestEtcd5509` (upstream's `TestKVGetErrConnClosed`, as the fix rewrote it).
fn test_etcd5509(variant: Variant) {
    let (ctx, cancel) = context::with_cancel(&context::todo());
    let cli = Arc::new(Client {
        mu: RwMutex::new().named("client.mu"),
        ctx,
        cancel: Shared::new(Some(cancel)).named("client.cancel"),
    });
    let kv = new_kv(cli.clone(), variant);
    let donec: Chan<()> = Chan::new(0).named("donec");
    let d = donec.clone();
    go_named("Get", move || {
        let _close = defer(|| d.close());
        // Success and ErrConnClosed are both fine (the kernel has no other error).
        let _ = kv.get(&context::todo());
    });
    cli.close();
    donec.recv();
}
