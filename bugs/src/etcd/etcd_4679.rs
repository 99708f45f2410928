#![doc = include_str!("etcd_4679.md")]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::RwMutex;
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_4679",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/4706",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_etcd4679,
        walkthrough: include_str!("etcd_4679.md"),
        asplos: Some("blocking-bugs/etcd/d21d2e6624bc5400e52baa45804668f5f9b6a161.txt"),
        source: Source::Diff("d21d2e66"),
        fix: Fix::Upstream("d21d2e66"),
        review: "faithful: Checked against the fix d21d2e66 (#4706), clientv3/client.go and watch.go at b9228180, and the PR's review thread: Close holding c.mu while waiting for a watcher blocked in retryConnection, fixed by unlocking before closing the watcher (plus the ctx-aware dialer), as upstream; the driver is ours and said to be.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `Config.DialTimeout`.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

/// A `*grpc.ClientConn`, by number: each successful dial makes a new one.
type ClientConn = u32;

/// clientv3's `Client`.
struct Client {
    conn: Shared<ClientConn>,
    /// Protects connection selection and the error list.
    mu: RwMutex,
    errors: Shared<Vec<&'static str>>,
    ctx: Context,
    cancel: Shared<Option<CancelFunc>>,
    /// The embedded `Watcher` (set once by `newClient`).
    watcher: OnceLock<Arc<Watcher>>,
    variant: Variant,
}

impl Client {
    /// `Close`: shuts down the client's etcd connections.
    fn close(&self) -> Result<(), &'static str> {
        self.mu.lock();
        // Buggy: `defer c.mu.Unlock()`, so `mu` stays held while the watcher is closed.
        let _unlock = defer(|| {
            if !self.variant.fixed() {
                self.mu.unlock()
            }
        });
        if self.cancel.read(Option::is_none) {
            if self.variant.fixed() {
                self.mu.unlock();
            }
            return Ok(());
        }
        // c.cancel(); c.cancel = nil
        let cancel = self.cancel.write(Option::take).expect("checked above");
        cancel.call();
        if self.variant.fixed() {
            self.mu.unlock();
        }
        let _ = self.watcher.get().expect("newClient sets it").close();
        // (c.Lease.Close(); c.conn.Close())
        Ok(())
    }

    /// `Dial`: a blocking dial with a timeout; the member is down, so it fails.
    fn dial(&self) -> Result<ClientConn, &'static str> {
        if self.variant.fixed() {
            // The fix's dialer gives up at once once the client is closing.
            select! {
                recv(self.ctx.done()) => return Err("context canceled"),
                default => {},
            }
        }
        time::sleep(DIAL_TIMEOUT);
        Err("grpc: timed out trying to connect")
    }

    /// `retryConnection`: establishes a new connection.
    fn retry_connection(&self, old_conn: ClientConn) -> Result<ClientConn, &'static str> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.cancel.read(|c| c.is_none()) {
            return Err("context canceled"); // c.ctx.Err()
        }
        if old_conn != self.conn.get() {
            // conn has already been updated
            return Ok(self.conn.get());
        }
        match self.dial() {
            Ok(conn) => {
                self.conn.set(conn);
                Ok(conn)
            }
            Err(dial_err) => {
                self.errors.write(|e| e.push(dial_err));
                Err(dial_err)
            }
        }
    }
}

/// clientv3's `watcher`: its `run` goroutine owns the gRPC watch stream.
struct Watcher {
    c: Arc<Client>,
    conn: Shared<ClientConn>,
    ctx: Context,
    cancel: CancelFunc,
    stopc: Chan<()>,
    donec: Chan<()>,
    errc: Chan<Option<&'static str>>,
}

fn new_watcher(c: Arc<Client>) -> Arc<Watcher> {
    let (ctx, cancel) = context::with_cancel(&context::background());
    let conn = c.conn.get(); // c.ActiveConnection()
    let w = Arc::new(Watcher {
        c,
        conn: Shared::new(conn).named("watcher.conn"),
        ctx,
        cancel,
        stopc: Chan::new(0).named("watcher.stopc"),
        donec: Chan::new(0).named("watcher.donec"),
        errc: Chan::new(1).named("watcher.errc"),
    });
    let r = w.clone();
    go_named("watcher.run", move || r.run());
    w
}

impl Watcher {
    fn close(&self) -> Option<&'static str> {
        select! {
            send(self.stopc, ()) => {},
            recv(self.donec) => {},
        }
        self.donec.recv();
        self.errc.recv().flatten()
    }

    fn run(&self) {
        let _shutdown = defer(|| {
            self.donec.close();
            self.cancel.call();
        });
        // start a stream with the etcd grpc server
        if let Err(wcerr) = self.open_watch_client() {
            self.errc.send(Some(wcerr));
            return;
        }
        // (the event loop: requests, responses, stream errors)
        self.stopc.recv();
        self.errc.send(None);
    }

    /// `openWatchClient`: retries opening a watch stream until `retryConnection` fails.
    fn open_watch_client(&self) -> Result<(), &'static str> {
        loop {
            // w.remote.Watch(w.ctx): the connection is broken, the stream cannot open.
            let err = "grpc: the client connection is closing";
            if self.ctx.err().is_some() {
                return Err(err); // isHalted
            }
            let new_conn = self.c.retry_connection(self.conn.get())?;
            self.conn.set(new_conn);
        }
    }
}

/// A client whose member went down: its watcher keeps trying to reconnect while the
/// application closes the client.
fn test_etcd4679(variant: Variant) {
    let (ctx, cancel) = context::with_cancel(&context::todo());
    let c = Arc::new(Client {
        conn: Shared::new(1).named("client.conn"),
        mu: RwMutex::new().named("client.mu"),
        errors: Shared::new(Vec::new()).named("client.errors"),
        ctx,
        cancel: Shared::new(Some(cancel)).named("client.cancel"),
        watcher: OnceLock::new(),
        variant,
    });
    let _ = c.watcher.set(new_watcher(c.clone()));
    let _ = c.close();
}
