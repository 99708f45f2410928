#![doc = include_str!("etcd_36f5b713.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context};
use primitives::{defer, go_named, select, time, Chan, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_36f5b713",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/7314",
        category: "Communication deadlock (channel & context)",
        expected: primitives::Verdict::Leak,
        kernel: test_watch_err_conn_closed,
        walkthrough: include_str!("etcd_36f5b713.md"),
        asplos: Some("blocking-bugs/etcd/36f5b713bf4cad4702163ed9476ea83de9059b3d.txt"),
        // The 3-second `time.After` is the test's watchdog: it fires only if the watch is stuck.
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        source: Source::Diff("36f5b713"),
        fix: Fix::Upstream("36f5b713"),
        review: "faithful after mends: Checked against 36f5b713 (PR #7314) and kv.go, cluster_proxy.go, client.go, watch_test.go, leader.go, watch.go, leak.go at 49a0a63f: the KV proxy's goroutine waits on a client context that TakeClient'd tests never cancel; one-hunk fix mapped; only a line range to correct.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `clientv3.Client`: its context, and its gRPC connection (`ActiveConnection()`).
struct Client {
    ctx: Context,
    /// Cancels `ctx`; only `Client.Close` calls it, and the test never closes this client.
    #[allow(dead_code)]
    cancel: CancelFunc,
    /// The `grpc.ClientConn`: closed by `ActiveConnection().Close()`.
    conn: Chan<()>,
}

/// `newClient`: the client's context, `context.WithCancel(context.TODO())`, and its connection.
fn new_client() -> Arc<Client> {
    let (ctx, cancel) = context::with_cancel(&context::todo());
    Arc::new(Client {
        ctx,
        cancel,
        conn: Chan::new(0).named("ClientConn"),
    })
}

impl Client {
    /// `Ctx`: cancelled on `Close()`.
    fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// `ActiveConnection().Close()`: closes the gRPC connection, not the client.
    fn close_active_connection(&self) {
        self.conn.close();
    }

    /// `Watch(ctx, "foo")`, through the watch proxy: its one response carries
    /// `ErrClientConnClosing` once the connection is closed.
    fn watch(&self) -> Chan<()> {
        self.conn.clone()
    }
}

/// The proxy's response cache (`cache.NewCache`); its `Close` does nothing.
struct Cache;

impl Cache {
    fn close(&self) {}
}

/// `kvProxy`.
struct KvProxy {
    cache: Cache,
}

/// `NewKvProxy`: the KV server of the gRPC proxy, and a channel closed when it is done.
fn new_kv_proxy(c: &Arc<Client>, variant: Variant) -> (Arc<KvProxy>, Chan<()>) {
    let kv = Arc::new(KvProxy { cache: Cache });
    let donec: Chan<()> = Chan::new(0).named("kvproxy donec");
    if variant.fixed() {
        donec.close();
    } else {
        let (c, kv, donec) = (c.clone(), kv.clone(), donec.clone());
        go_named("NewKvProxy.func1", move || {
            let _close = defer(|| donec.close());
            c.ctx().done().recv();
            kv.cache.close();
        });
    }
    (kv, donec)
}

/// `TestWatchErrConnClosed` under the `cluster_proxy` build tag: the cluster's client reaches
/// etcd through the gRPC proxy, whose KV side `toGRPC` makes with `NewKvProxy`.
fn test_watch_err_conn_closed(variant: Variant) {
    // clus := integration.NewClusterV3(t, ...); newClientV3 → toGRPC(c)
    let cli = new_client();
    let (_kvp, _kvpch) = new_kv_proxy(&cli, variant);

    let donec: Chan<()> = Chan::new(0).named("donec");
    let (c, d) = (cli.clone(), donec.clone());
    go_named("TestWatchErrConnClosed.func1", move || {
        let _close = defer(|| d.close());
        let ch = c.watch();
        // wr := <-ch: its error is grpc.ErrClientConnClosing, which the test expects.
        ch.recv();
    });

    cli.close_active_connection();
    // clus.TakeClient(0): the cluster forgets the client, so Terminate will not close it.

    select! {
        recv(time::after(Duration::from_secs(3))) => {
            // t.Fatal("wc.Watch took too long")
        },
        recv(donec) => {},
    }
}
