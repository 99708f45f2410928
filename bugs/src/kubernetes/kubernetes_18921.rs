#![doc = include_str!("kubernetes_18921.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_18921",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/18921",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes18921,
        walkthrough: include_str!("kubernetes_18921.md"),
        asplos: Some("non-blocking-bugs/kubernetes/e3311aa93ac6c3ad89d648129fc351aa5eae1e5a.txt"),
        source: Source::Diff("e3311aa9"),
        fix: Fix::Upstream("e3311aa9"),
        review: "faithful after mends: Checked against e3311aa9 (ASPLOS diff), issue #18913's race report, #18956/#19010 threads and the fix author's fork 7554b0c1 of etcd_watcher.go: right race pair, shape and fix; one unsourced claim about a later test comment to source or drop.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An error from etcd (`error`).
#[derive(Debug)]
enum EtcdError {
    /// The key does not exist; `Index` is etcd's current index.
    KeyNotFound { index: u64 },
    /// The watch's context was cancelled.
    Canceled,
    /// The connection to the server is gone.
    ConnectionClosed,
}

/// `*etcd.Response` (the test never receives one).
struct Response;

/// `watch.Event`: here only the Error event translate emits for an etcd error.
struct Event;

/// The etcd test server of `etcdtesting.NewEtcdTestClientServer`; `Terminate` shuts it down.
#[derive(Clone)]
struct EtcdTestServer {
    down: Chan<()>,
}

impl EtcdTestServer {
    fn terminate(&self) {
        self.down.close();
    }
}

/// `etcd.KeysAPI` of the test server's client.
#[derive(Clone)]
struct KeysApi {
    server: EtcdTestServer,
}

/// `etcd.Watcher` of the client: a long poll on the server.
struct HttpWatcher {
    server: EtcdTestServer,
}

impl KeysApi {
    /// `Get`: the test's key does not exist.
    fn get(&self, _ctx: &Context, _key: &str) -> Result<Response, EtcdError> {
        Err(EtcdError::KeyNotFound { index: 1 })
    }

    /// `Watcher`.
    fn watcher(&self, _key: &str, _after_index: u64) -> HttpWatcher {
        HttpWatcher {
            server: self.server.clone(),
        }
    }
}

impl HttpWatcher {
    /// `Next`: waits for the next change of the key; nothing changes in this test, so it
    /// returns only when `ctx` is cancelled or the server goes away.
    fn next(&self, ctx: &Context) -> Result<Response, EtcdError> {
        let done = ctx.done();
        select! {
            recv(done) => Err(EtcdError::Canceled),
            recv(self.server.down) => Err(EtcdError::ConnectionClosed),
        }
    }
}

/// `etcdWatcher`: converts an etcd watch into a `watch.Interface`.
struct EtcdWatcher {
    etcd_incoming: Chan<Response>,
    etcd_error: Chan<EtcdError>,
    ctx: Shared<Option<Context>>,
    cancel: Shared<Option<CancelFunc>>,
    outgoing: Chan<Event>,
    user_stop: Chan<()>,
    stopped: Shared<bool>,
    stop_lock: Mutex,
    variant: Variant,
}

impl EtcdWatcher {
    /// `newEtcdWatcher`: starts `translate`.
    fn new(variant: Variant) -> Arc<Self> {
        let w = Arc::new(EtcdWatcher {
            etcd_incoming: Chan::new(100).named("etcdIncoming"),
            etcd_error: Chan::new(1).named("etcdError"),
            ctx: Shared::new(None).named("w.ctx"),
            cancel: Shared::new(None).named("w.cancel"),
            outgoing: Chan::new(0).named("outgoing"),
            user_stop: Chan::new(0).named("userStop"),
            stopped: Shared::new(false).named("w.stopped"),
            stop_lock: Mutex::new().named("stopLock"),
            variant,
        });
        let t = w.clone();
        go_named("translate", move || t.translate());
        w
    }

    /// `w.emit`, set by `newEtcdWatcher`: sends the event down `outgoing`.
    fn emit(&self, e: Event) {
        self.outgoing.send(e);
    }

    /// `etcdWatch`: calls etcd's watch and feeds `translate`; run as a goroutine.
    fn etcd_watch(&self, ctx: Context, client: KeysApi, key: &str, mut resource_version: u64) {
        let _close_error = defer(|| self.etcd_error.close());
        let _close_incoming = defer(|| self.etcd_incoming.close());
        if resource_version == 0 {
            match etcd_get_initial_watch_state(&ctx, &client, key) {
                Ok(latest) => resource_version = latest,
                Err(err) => {
                    self.etcd_error.send(err);
                    return;
                }
            }
        }
        let watcher = client.watcher(key, resource_version);
        let (watch_ctx, cancel) = context::with_cancel(&ctx);
        if self.variant.fixed() {
            self.stop_lock.lock();
        }
        self.ctx.set(Some(watch_ctx));
        self.cancel.set(Some(cancel));
        if self.variant.fixed() {
            self.stop_lock.unlock();
        }

        loop {
            let ctx = self.ctx.get().expect("set above");
            match watcher.next(&ctx) {
                Err(err) => {
                    self.etcd_error.send(err);
                    return;
                }
                Ok(resp) => self.etcd_incoming.send(resp),
            }
        }
    }

    /// `translate`: turns etcd's responses and errors into watch events.
    fn translate(&self) {
        let _close_outgoing = defer(|| self.outgoing.close());
        loop {
            select! {
                recv(self.etcd_error) -> err => {
                    if err.is_some() {
                        self.emit(Event); // a watch.Error event with the etcd error's status
                    }
                    return;
                },
                recv(self.user_stop) => return,
                recv(self.etcd_incoming) -> res => {
                    // sendResult (never reached here); if closed, wait for etcdError.
                    let _ = res;
                },
            }
        }
    }

    /// `ResultChan`.
    fn result_chan(&self) -> &Chan<Event> {
        &self.outgoing
    }

    /// `Stop`.
    fn stop(&self) {
        self.stop_lock.lock();
        if let Some(cancel) = self.cancel.get() {
            cancel.call();
            self.cancel.set(None);
        }
        if !self.stopped.get() {
            self.stopped.set(true);
            self.user_stop.close();
        }
        self.stop_lock.unlock();
    }
}

/// `etcdGetInitialWatchState`: the current index of the key (here: it does not exist).
fn etcd_get_initial_watch_state(
    ctx: &Context,
    client: &KeysApi,
    key: &str,
) -> Result<u64, EtcdError> {
    match client.get(ctx, key) {
        Err(EtcdError::KeyNotFound { index }) => Ok(index),
        Err(err) => Err(err),
        Ok(_) => Ok(1), // resp.Index, and the nodes sent to etcdIncoming
    }
}

/// `etcdHelper.Watch`: a watcher on `key`, fed by an `etcdWatch` goroutine.
fn watch(client: &KeysApi, ctx: &Context, key: &str, variant: Variant) -> Arc<EtcdWatcher> {
    let w = EtcdWatcher::new(variant);
    let (w2, ctx, client, key) = (w.clone(), ctx.clone(), client.clone(), key.to_string());
    go_named("etcdWatch", move || w2.etcd_watch(ctx, client, &key, 0));
    w
}

/// `TestWatchPurposefulShutdown` (`pkg/storage/etcd/etcd_watcher_test.go`).
fn test_kubernetes18921(variant: Variant) {
    let server = EtcdTestServer {
        down: Chan::new(0).named("server"),
    };
    let _terminate = defer(|| server.terminate());
    let client = KeysApi {
        server: server.clone(),
    };
    let key = "/some/key";

    // Test purposeful shutdown
    let watching = watch(&client, &context::todo(), key, variant);

    watching.stop();
    primitives::gosched();

    // Upstream then fails the test if the channel yields an event instead of being closed.
    let _open = watching.result_chan().recv().is_some();
}
