#![doc = include_str!("etcd_5ee85bea.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::time::Ticker;
use primitives::{defer, go_named, select, Chan, GoMap, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_5ee85bea",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/commit/5ee85bea7ca62fe4bf4ab5866ff9862abb42a6bc",
        category: "Data race (map written without its lock)",
        expected: primitives::Verdict::Race,
        kernel: test_watch_event_then_cancel,
        walkthrough: include_str!("etcd_5ee85bea.md"),
        asplos: Some("non-blocking-bugs/etcd/5ee85bea7ca62fe4bf4ab5866ff9862abb42a6bc.txt"),
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        source: Source::Diff("5ee85bea"),
        fix: Fix::Upstream("5ee85bea"),
        review: "faithful after mends: Checked against 5ee85bea and watch.go/watcher.go/clientv3 at 5ee85bea^ (and 427496eb): right race, shape and fix; one Go-runtime claim (the `concurrent map read and map write` throw) cannot happen with the empty progress map of the described path and needs qualifying.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `storage.WatchID`.
type WatchId = i64;

/// `ProgressReportIntervalMilliseconds`: 10 minutes.
const PROGRESS_REPORT_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// `ctrlStreamBufLen`.
const CTRL_STREAM_BUF_LEN: usize = 16;

/// `chanBufLen` of the storage's watch streams.
const CHAN_BUF_LEN: usize = 1024;

/// `storage.WatchResponse`: events for one watch.
#[derive(Clone)]
struct StorageWatchResponse {
    watch_id: WatchId,
    /// The keys put (each a PUT event).
    events: Vec<String>,
    revision: i64,
}

/// `pb.WatchResponse`, as the server sends it on the gRPC stream.
#[derive(Clone, Debug)]
struct WatchResponse {
    /// `Header.Revision` (the client in the kernel does not look at it).
    #[allow(dead_code)]
    revision: i64,
    watch_id: WatchId,
    created: bool,
    canceled: bool,
    events: Vec<String>,
}

/// `pb.WatchRequest`.
enum WatchRequest {
    Create { key: String, progress_notify: bool },
    Cancel { watch_id: WatchId },
}

/// The storage's `watchableStore`, reduced to its revision and its synced watchers.
struct WatchableStore {
    mu: Mutex,
    current_rev: Shared<i64>,
    /// `synced`: (stream's channel, watch id) by key.
    synced: Shared<Vec<(String, WatchId, Chan<StorageWatchResponse>)>>,
}

impl WatchableStore {
    /// `watch` (a synced watcher: its start revision is the next one) and its cancel.
    fn watch(&self, key: &str, id: WatchId, ch: &Chan<StorageWatchResponse>) {
        self.mu.lock();
        self.synced
            .write(|s| s.push((key.to_string(), id, ch.clone())));
        self.mu.unlock();
    }

    /// (One watch stream in the kernel: its ids name its watchers.)
    fn cancel(&self, id: WatchId) {
        self.mu.lock();
        self.synced.write(|s| s.retain(|(_, i, _)| *i != id));
        self.mu.unlock();
    }

    /// `Put` ending in `notify`: each synced watcher of the key gets the event.
    fn put(&self, key: &str) {
        self.mu.lock();
        let rev = self.current_rev.get() + 1;
        self.current_rev.set(rev);
        let targets: Vec<(WatchId, Chan<StorageWatchResponse>)> = self.synced.read(|s| {
            s.iter()
                .filter(|(k, _, _)| k == key)
                .map(|(_, id, ch)| (*id, ch.clone()))
                .collect()
        });
        for (id, ch) in targets {
            select! {
                send(ch, StorageWatchResponse { watch_id: id, events: vec![key.to_string()], revision: rev }) => {},
                default => {}, // (the watcher would become unsynced)
            }
        }
        self.mu.unlock();
    }

    fn rev(&self) -> i64 {
        self.current_rev.get()
    }
}

/// `storage.watchStream`.
struct WatchStream {
    watchable: Arc<WatchableStore>,
    ch: Chan<StorageWatchResponse>,
    /// Guards the fields below it.
    mu: Mutex,
    next_id: Shared<WatchId>,
    closed: Shared<bool>,
    /// The watch ids with a cancel function.
    cancels: GoMap<WatchId, String>,
}

impl WatchStream {
    fn watch(&self, key: &str) -> WatchId {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.closed.get() {
            return -1;
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.watchable.watch(key, id, &self.ch);
        self.cancels.insert(id, key.to_string());
        id
    }

    fn chan(&self) -> &Chan<StorageWatchResponse> {
        &self.ch
    }

    fn cancel(&self, id: WatchId) -> Result<(), &'static str> {
        if !self.cancels.contains_key(&id) {
            return Err("storage: watcher does not exist");
        }
        self.watchable.cancel(id);
        self.cancels.remove(&id);
        Ok(())
    }

    fn close(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let ids: Vec<WatchId> = self.cancels.with(|m| m.keys().copied().collect());
        for id in ids {
            self.watchable.cancel(id);
        }
        self.closed.set(true);
        self.ch.close();
    }

    fn rev(&self) -> i64 {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.watchable.rev()
    }
}

/// The client's gRPC stream, seen from the server: requests in, responses out.
struct GrpcStream {
    requests: Chan<WatchRequest>,
    responses: Chan<WatchResponse>,
}

/// `serverWatchStream`.
struct ServerWatchStream {
    grpc_stream: Arc<GrpcStream>,
    watch_stream: WatchStream,
    ctrl_stream: Chan<WatchResponse>,
    /// The watch ids that may need a progress notification.
    progress: GoMap<WatchId, bool>,
    /// The fix: protects `progress`.
    mu: Mutex,
    closec: Chan<()>,
    variant: Variant,
}

/// `watchServer.Watch`: serves one stream; `recvLoop` runs on the caller's goroutine.
fn watch(
    watchable: &Arc<WatchableStore>,
    stream: Arc<GrpcStream>,
    variant: Variant,
) -> Result<(), &'static str> {
    let sws = Arc::new(ServerWatchStream {
        grpc_stream: stream,
        watch_stream: WatchStream {
            watchable: watchable.clone(),
            ch: Chan::new(CHAN_BUF_LEN).named("watchStream.ch"),
            mu: Mutex::new().named("watchStream.mu"),
            next_id: Shared::new(0).named("watchStream.nextID"),
            closed: Shared::new(false).named("watchStream.closed"),
            cancels: GoMap::new().named("watchStream.cancels"),
        },
        ctrl_stream: Chan::new(CTRL_STREAM_BUF_LEN).named("ctrlStream"),
        progress: GoMap::new().named("sws.progress"),
        mu: Mutex::new().named("sws.mu"),
        closec: Chan::new(0).named("closec"),
        variant,
    });
    let _close = defer(|| sws.close());
    let s = sws.clone();
    go_named("sendLoop", move || s.send_loop());
    sws.recv_loop()
}

impl ServerWatchStream {
    fn recv_loop(&self) -> Result<(), &'static str> {
        loop {
            // io.EOF once the client closes its side
            let Some(req) = self.grpc_stream.requests.recv() else {
                return Ok(());
            };
            match req {
                WatchRequest::Create {
                    key,
                    progress_notify,
                } => {
                    let wsrev = self.watch_stream.rev();
                    let id = self.watch_stream.watch(&key);
                    if id != -1 && progress_notify {
                        self.progress.insert(id, true);
                    }
                    self.ctrl_stream.send(WatchResponse {
                        revision: wsrev,
                        watch_id: id,
                        created: true,
                        canceled: id == -1,
                        events: Vec::new(),
                    });
                }
                WatchRequest::Cancel { watch_id: id } => {
                    if self.watch_stream.cancel(id).is_ok() {
                        self.ctrl_stream.send(WatchResponse {
                            revision: self.watch_stream.rev(),
                            watch_id: id,
                            created: false,
                            canceled: true,
                            events: Vec::new(),
                        });
                        if self.variant.fixed() {
                            self.mu.lock();
                            self.progress.remove(&id);
                            self.mu.unlock();
                        } else {
                            self.progress.remove(&id);
                        }
                    }
                }
            }
        }
    }

    fn send_loop(&self) {
        // watch ids that are currently active
        let ids: GoMap<WatchId, ()> = GoMap::new().named("ids");
        // watch responses pending on a watch id creation message
        let pending: GoMap<WatchId, Vec<WatchResponse>> = GoMap::new().named("pending");

        let progress_ticker = Ticker::new(PROGRESS_REPORT_INTERVAL);
        let _stop = defer(|| progress_ticker.stop());

        loop {
            select! {
                recv(self.watch_stream.chan()) -> wresp => {
                    let Some(wresp) = wresp else { return };
                    let wr = WatchResponse {
                        revision: wresp.revision,
                        watch_id: wresp.watch_id,
                        created: false,
                        canceled: false,
                        events: wresp.events,
                    };
                    if !ids.contains_key(&wresp.watch_id) {
                        // buffer if id not yet announced
                        let mut wrs = pending.get(&wresp.watch_id).unwrap_or_default();
                        wrs.push(wr);
                        pending.insert(wresp.watch_id, wrs);
                        continue;
                    }
                    self.grpc_stream.responses.send(wr);
                    if self.variant.fixed() {
                        self.mu.lock();
                    }
                    if self.progress.contains_key(&wresp.watch_id) {
                        self.progress.insert(wresp.watch_id, false);
                    }
                    if self.variant.fixed() {
                        self.mu.unlock();
                    }
                },
                recv(self.ctrl_stream) -> c => {
                    let Some(c) = c else { return };
                    let wid = c.watch_id;
                    let (canceled, created) = (c.canceled, c.created);
                    self.grpc_stream.responses.send(c);
                    // track id creation
                    if canceled {
                        ids.remove(&wid);
                        continue;
                    }
                    if created {
                        // flush buffered events
                        ids.insert(wid, ());
                        for v in pending.get(&wid).unwrap_or_default() {
                            self.grpc_stream.responses.send(v);
                        }
                        pending.remove(&wid);
                    }
                },
                recv(progress_ticker.c()) => {
                    let entries: Vec<(WatchId, bool)> =
                        self.progress.with(|m| m.iter().map(|(k, v)| (*k, *v)).collect());
                    for (id, _ok) in entries {
                        // (if ok: sws.watchStream.RequestProgress(id))
                        self.progress.insert(id, true);
                    }
                },
                recv(self.closec) => {
                    // drain the chan to clean up pending events
                    while self.watch_stream.chan().recv().is_some() {}
                },
            }
        }
    }

    fn close(&self) {
        self.watch_stream.close();
        self.closec.close();
        self.ctrl_stream.close();
    }
}

/// A watch through the v3 gRPC API, as a client that waits for a deletion uses it: create a
/// watch on "foo", get the created answer, see one event on the key, cancel the watch.
fn test_watch_event_then_cancel(variant: Variant) {
    let watchable = Arc::new(WatchableStore {
        mu: Mutex::new().named("store.mu"),
        current_rev: Shared::new(1).named("store.currentRev"),
        synced: Shared::new(Vec::new()).named("store.synced"),
    });
    // the client's stream to the member; the member serves it on a goroutine of its own
    let w_stream = Arc::new(GrpcStream {
        requests: Chan::new(CTRL_STREAM_BUF_LEN).named("wStream.requests"),
        responses: Chan::new(CTRL_STREAM_BUF_LEN).named("wStream.responses"),
    });
    let (w, s) = (watchable.clone(), w_stream.clone());
    go_named("Watch", move || {
        let _ = watch(&w, s, variant);
    });

    w_stream.requests.send(WatchRequest::Create {
        key: "foo".to_string(),
        progress_notify: false,
    });
    let wresp = w_stream.responses.recv().expect("wStream.Recv error");
    assert!(wresp.created, "wresp.Created got = false, want = true");

    // another client puts the key
    watchable.put("foo");
    let ev = w_stream.responses.recv().expect("wStream.Recv error");
    assert_eq!(ev.events, ["foo"], "expected the PUT of foo");

    // the client has what it waited for and cancels its watch
    w_stream.requests.send(WatchRequest::Cancel {
        watch_id: wresp.watch_id,
    });
    let cresp = w_stream.responses.recv().expect("wStream.Recv error");
    assert!(cresp.canceled, "cresp.Canceled got = false, want = true");

    // the client closes its stream
    w_stream.requests.close();
}
