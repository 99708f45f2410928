#![doc = include_str!("etcd_6937.md")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{AtomicI64, Mutex, RwMutex};
use primitives::{defer, go_named, panic, select, time, Chan, GoMap, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_6937",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/6948",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_v3_watch_cancel_synced,
        walkthrough: include_str!("etcd_6937.md"),
        asplos: Some("blocking-bugs/etcd/91ff6f30b50a14158ec10cdd24836d775a336f52.txt"),
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        source: Source::Diff("91ff6f30"),
        fix: Fix::Upstream("91ff6f30"),
        review: "faithful: Checked against 91ff6f30 (PR #6948, issue #6937) and a686c994, proxy/grpcproxy/{watch_broadcast,watch_broadcasts,watch_ranges,watch,watcher}.go and integration/v3_watch_test.go at 2509e7ad: bcast's and delete's size()/empty() RLock a RWMutex they hold for writing; both hunks mapped; the test's 30 s context and live cluster are admitted as the reason Go itself would not report the deadlock.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A prometheus gauge (`eventsCoalescing`, `watchersCoalescing`): atomic underneath.
struct Gauge(AtomicI64);

impl Gauge {
    fn add(&self, v: i64) {
        self.0.add(v);
    }
}

/// `clientv3.WatchResponse`, as the proxy's server-side watch delivers it.
#[derive(Clone)]
struct ClientWatchResponse {
    /// `Header.Revision`.
    revision: i64,
    created: bool,
}

/// `pb.WatchResponse`, as the proxy sends it to its client.
#[derive(Clone, Debug)]
struct WatchResponse {
    watch_id: i64,
    created: bool,
    canceled: bool,
}

/// `pb.WatchRequest`: a create or a cancel request.
enum WatchRequest {
    Create { key: String, start_revision: i64 },
    Cancel { watch_id: i64 },
}

/// `clientv3.Watcher.Watch(ctx, key, opts...)` of the etcd member behind the proxy: a channel
/// with the created notification (if asked for), closed once `ctx` is done.
fn cw_watch(ctx: &Context, created_notify: bool) -> Chan<ClientWatchResponse> {
    let wch = Chan::new(0).named("wch");
    let (ctx, out) = (ctx.clone(), wch.clone());
    go_named("watchGrpcStream", move || {
        if created_notify {
            select! {
                send(out, ClientWatchResponse { revision: 1, created: true }) => {},
                recv(ctx.done()) => {},
            }
        }
        // no key is written while the watch is open
        ctx.done().recv();
        out.close();
    });
    wch
}

/// `watchProxy` (its `ctx` is `ranges.wp_ctx`).
struct WatchProxy {
    ranges: Arc<WatchRanges>,
}

/// `watcher`: one client watch on a proxy stream.
struct Watcher {
    /// `wr.key` (no range end).
    wr: String,
    id: i64,
    /// The minimum expected next event revision.
    nextrev: Shared<i64>,
    wps: Arc<WatchProxyStream>,
}

impl Watcher {
    /// `send`: passes a server response on to the client, dropping stale revisions.
    fn send(&self, wr: &ClientWatchResponse) {
        if self.nextrev.get() == 0 {
            // current watch; expect updates following this revision
            self.nextrev.set(wr.revision + 1);
        }
        // (no events: the response is the created notification)
        if !wr.created {
            return;
        }
        self.post(WatchResponse {
            watch_id: self.id,
            created: wr.created,
            canceled: false,
        });
    }

    /// `post`: puts a response on the proxy stream's channel.
    fn post(&self, wr: WatchResponse) -> bool {
        select! {
            send(self.wps.watch_ch, wr) => {},
            recv(time::after(Duration::from_millis(50))) => {
                self.wps.cancel.call();
                return false;
            },
        }
        true
    }
}

/// `watchRanges`: every open watch of the proxy, by range.
struct WatchRanges {
    /// `wp.ctx`, the proxy's context.
    wp_ctx: Context,
    mu: Mutex,
    bcasts: GoMap<String, Arc<WatchBroadcasts>>,
    metrics: Arc<Metrics>,
    variant: Variant,
}

impl WatchRanges {
    fn add(&self, w: Arc<Watcher>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if let Some(wbs) = self.bcasts.get(&w.wr) {
            wbs.add(w);
            return;
        }
        let wbs = new_watch_broadcasts(self.wp_ctx.clone(), self.metrics.clone(), self.variant);
        self.bcasts.insert(w.wr.clone(), wbs.clone());
        wbs.add(w);
    }

    fn delete(&self, w: &Arc<Watcher>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let Some(wbs) = self.bcasts.get(&w.wr) else {
            panic("deleting missing range");
        };
        if wbs.delete(w) == 0 {
            wbs.stop();
            self.bcasts.remove(&w.wr);
        }
    }
}

/// The proxy's watch metrics.
struct Metrics {
    watchers_coalescing: Gauge,
    events_coalescing: Gauge,
}

/// `watchBroadcasts`: the broadcasts on one range, and the loop that coalesces them.
struct WatchBroadcasts {
    wp_ctx: Context,
    /// Protects `bcasts` and `watchers` from the coalesce loop.
    mu: Mutex,
    /// Keyed by the broadcast's identity (a pointer, upstream).
    bcasts: GoMap<u64, Arc<WatchBroadcast>>,
    /// Watcher id → its broadcast.
    watchers: GoMap<i64, Arc<WatchBroadcast>>,
    updatec: Chan<Arc<WatchBroadcast>>,
    donec: Chan<()>,
    metrics: Arc<Metrics>,
    variant: Variant,
}

/// `maxCoalesceReceivers`.
const MAX_COALESCE_RECEIVERS: usize = 5;

fn new_watch_broadcasts(
    wp_ctx: Context,
    metrics: Arc<Metrics>,
    variant: Variant,
) -> Arc<WatchBroadcasts> {
    let wbs = Arc::new(WatchBroadcasts {
        wp_ctx,
        mu: Mutex::new().named("wbs.mu"),
        bcasts: GoMap::new().named("wbs.bcasts"),
        watchers: GoMap::new().named("wbs.watchers"),
        updatec: Chan::new(1).named("wbs.updatec"),
        donec: Chan::new(0).named("wbs.donec"),
        metrics,
        variant,
    });
    let w = wbs.clone();
    go_named("coalesce loop", move || {
        let _close = defer(|| w.donec.close());
        while let Some(wb) = w.updatec.recv() {
            w.coalesce(&wb);
        }
    });
    wbs
}

impl WatchBroadcasts {
    fn coalesce(&self, wb: &Arc<WatchBroadcast>) {
        if wb.size() >= MAX_COALESCE_RECEIVERS {
            return;
        }
        self.mu.lock();
        let others: Vec<Arc<WatchBroadcast>> = self.bcasts.with(|m| m.values().cloned().collect());
        for wbswb in others {
            if wbswb.id == wb.id {
                continue;
            }
            wb.mu.lock();
            wbswb.mu.lock();
            // wbswb must be behind wb, and started
            if wb.nextrev.get() >= wbswb.nextrev.get() && wbswb.responses.get() > 0 {
                let moved: Vec<(i64, Arc<Watcher>)> = wb
                    .receivers
                    .with(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect());
                for (id, w) in moved {
                    wbswb.receivers.insert(id, w);
                    self.watchers.insert(id, wbswb.clone());
                }
                wb.receivers.with_mut(|m| m.clear());
            }
            wbswb.mu.unlock();
            wb.mu.unlock();
            if wb.empty() {
                self.bcasts.remove(&wb.id);
                wb.stop();
                break;
            }
        }
        self.mu.unlock();
    }

    fn add(self: &Arc<Self>, w: Arc<Watcher>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        // find fitting bcast
        let bcasts: Vec<Arc<WatchBroadcast>> = self.bcasts.with(|m| m.values().cloned().collect());
        for wb in bcasts {
            if wb.add(&w) {
                self.watchers.insert(w.id, wb);
                return;
            }
        }
        // no fit; create a bcast
        let wbs = self.clone();
        let wb = new_watch_broadcast(&self.wp_ctx, &w, move |wb| wbs.update(wb), self);
        self.watchers.insert(w.id, wb.clone());
        self.bcasts.insert(wb.id, wb);
    }

    /// `delete`: removes a watcher; returns the number of broadcasts left.
    fn delete(&self, w: &Watcher) -> usize {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let Some(wb) = self.watchers.get(&w.id) else {
            panic("deleting missing watcher from broadcasts");
        };
        self.watchers.remove(&w.id);
        wb.delete(w);
        if wb.empty() {
            self.bcasts.remove(&wb.id);
            wb.stop();
        }
        self.bcasts.len()
    }

    fn stop(&self) {
        self.mu.lock();
        let bcasts: Vec<Arc<WatchBroadcast>> = self.bcasts.with(|m| m.values().cloned().collect());
        for wb in bcasts {
            wb.stop();
        }
        self.bcasts.with_mut(|m| m.clear()); // wbs.bcasts = nil
        self.updatec.close();
        self.mu.unlock();
        self.donec.recv();
    }

    fn update(&self, wb: &Arc<WatchBroadcast>) {
        select! {
            send(self.updatec, wb.clone()) => {},
            default => {},
        }
    }
}

/// `watchBroadcast`: one server-side watch whose responses go to many client watchers.
struct WatchBroadcast {
    /// The broadcast's identity (its pointer, upstream).
    id: u64,
    /// Stops the server-side watch and closes its channel.
    cancel: CancelFunc,
    donec: Chan<()>,
    /// Protects `nextrev`, `receivers` (and `responses`).
    mu: RwMutex,
    nextrev: Shared<i64>,
    /// Watcher id → watcher.
    receivers: GoMap<i64, Arc<Watcher>>,
    responses: Shared<i64>,
    metrics: Arc<Metrics>,
    variant: Variant,
}

static NEXT_BROADCAST: AtomicU64 = AtomicU64::new(1);

fn new_watch_broadcast(
    wp_ctx: &Context,
    w: &Arc<Watcher>,
    update: impl Fn(&Arc<WatchBroadcast>) + Send + 'static,
    wbs: &WatchBroadcasts,
) -> Arc<WatchBroadcast> {
    let (cctx, cancel) = context::with_cancel(wp_ctx);
    let wb = Arc::new(WatchBroadcast {
        id: NEXT_BROADCAST.fetch_add(1, Ordering::Relaxed),
        cancel,
        nextrev: Shared::new(w.nextrev.get()).named("wb.nextrev"),
        receivers: GoMap::new().named("wb.receivers"),
        donec: Chan::new(0).named("wb.donec"),
        mu: RwMutex::new().named("wb.mu"),
        responses: Shared::new(0).named("wb.responses"),
        metrics: wbs.metrics.clone(),
        variant: wbs.variant,
    });
    wb.add(w);
    let b = wb.clone();
    go_named("watchBroadcast", move || {
        let _close = defer(|| b.donec.close());
        // loop because leader loss will close channel
        while cctx.err().is_none() {
            // The create notification should be the first response.
            let created_notify = b.responses.get() == 0;
            let wch = cw_watch(&cctx, created_notify);
            while let Some(wr) = wch.recv() {
                b.bcast(&wr);
                update(&b);
            }
            // wp.retryLimiter.Wait(cctx): returns at once once cctx is done
        }
    });
    wb
}

impl WatchBroadcast {
    fn bcast(&self, wr: &ClientWatchResponse) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        // watchers start on the given revision, if any; ignore header rev on create
        if self.responses.get() > 0 || self.nextrev.get() == 0 {
            self.nextrev.set(wr.revision + 1);
        }
        self.responses.set(self.responses.get() + 1);
        let receivers: Vec<Arc<Watcher>> = self.receivers.with(|m| m.values().cloned().collect());
        for r in receivers {
            r.send(wr);
        }
        if self.variant.fixed() {
            if !self.receivers.is_empty() {
                let n = self.receivers.len() as i64;
                self.metrics.events_coalescing.add(n - 1);
            }
        } else if self.size() > 0 {
            self.metrics.events_coalescing.add(self.size() as i64 - 1);
        }
    }

    /// `add`: takes a watcher if it is not behind the broadcast.
    fn add(&self, w: &Arc<Watcher>) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let (wb_next, w_next) = (self.nextrev.get(), w.nextrev.get());
        if wb_next > w_next || (wb_next == 0 && w_next != 0) {
            // wb is too far ahead, w will miss events
            return false;
        }
        if self.responses.get() == 0 {
            // Newly created; create event will be sent by etcd.
            self.receivers.insert(w.id, w.clone());
            return true;
        }
        // already sent by etcd; emulate create event
        let ok = w.post(WatchResponse {
            watch_id: w.id,
            created: true,
            canceled: false,
        });
        if !ok {
            return false;
        }
        self.receivers.insert(w.id, w.clone());
        self.metrics.watchers_coalescing.add(1);
        true
    }

    fn delete(&self, w: &Watcher) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if !self.receivers.contains_key(&w.id) {
            panic("deleting missing watcher from broadcast");
        }
        self.receivers.remove(&w.id);
        let others_left = if self.variant.fixed() {
            !self.receivers.is_empty()
        } else {
            !self.empty()
        };
        if others_left {
            // do not dec the only left watcher for coalescing.
            self.metrics.watchers_coalescing.add(-1);
        }
    }

    fn size(&self) -> usize {
        self.mu.rlock();
        let _runlock = defer(|| self.mu.runlock());
        self.receivers.len()
    }

    fn empty(&self) -> bool {
        self.size() == 0
    }

    fn stop(&self) {
        if !self.empty() {
            // do not dec the only left watcher for coalescing.
            self.metrics
                .watchers_coalescing
                .add(-(self.size() as i64 - 1));
        }
        self.cancel.call();
        self.donec.recv();
    }
}

/// `watchProxyStream`: one client stream of the proxy.
struct WatchProxyStream {
    ranges: Arc<WatchRanges>,
    /// Protects `watchers` and `next_watcher_id`.
    mu: Mutex,
    watchers: GoMap<i64, Arc<Watcher>>,
    next_watcher_id: Shared<i64>,
    /// The client's requests (`stream.Recv`).
    requests: Chan<WatchRequest>,
    /// Responses from the watchers, for the client.
    watch_ch: Chan<WatchResponse>,
    cancel: CancelFunc,
}

impl WatchProxy {
    /// `Watch`: serves one client stream.
    fn watch(&self, requests: Chan<WatchRequest>) -> Arc<WatchProxyStream> {
        let (_ctx, cancel) = context::with_cancel(&context::background());
        let wps = Arc::new(WatchProxyStream {
            ranges: self.ranges.clone(),
            mu: Mutex::new().named("wps.mu"),
            watchers: GoMap::new().named("wps.watchers"),
            next_watcher_id: Shared::new(0).named("wps.nextWatcherID"),
            requests,
            watch_ch: Chan::new(1024).named("wps.watchCh"),
            cancel,
        });
        let s = wps.clone();
        go_named("recvLoop", move || s.recv_loop());
        wps
    }
}

impl WatchProxyStream {
    fn recv_loop(self: &Arc<Self>) {
        // stream.Recv() fails once the client's stream ends
        while let Some(req) = self.requests.recv() {
            match req {
                WatchRequest::Create {
                    key,
                    start_revision,
                } => {
                    let w = Arc::new(Watcher {
                        wr: key,
                        id: self.next_watcher_id.get(),
                        nextrev: Shared::new(start_revision).named("w.nextrev"),
                        wps: self.clone(),
                    });
                    self.next_watcher_id.set(self.next_watcher_id.get() + 1);
                    self.watchers.insert(w.id, w.clone());
                    self.ranges.add(w);
                }
                WatchRequest::Cancel { watch_id } => self.delete(watch_id),
            }
        }
    }

    fn delete(&self, id: i64) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let Some(w) = self.watchers.get(&id) else {
            return;
        };
        self.ranges.delete(&w);
        self.watchers.remove(&id);
        self.watch_ch.send(WatchResponse {
            watch_id: id,
            created: false,
            canceled: true,
        });
    }
}

/// `TestV3WatchCancelSynced` run through the gRPC proxy: create a watch on "foo", then
/// cancel it; each request must be answered.
fn test_v3_watch_cancel_synced(variant: Variant) {
    let metrics = Arc::new(Metrics {
        watchers_coalescing: Gauge(AtomicI64::new(0)),
        events_coalescing: Gauge(AtomicI64::new(0)),
    });
    let wp_ctx = context::background(); // WithRequireLeader(c.Ctx())
    let wp = WatchProxy {
        ranges: Arc::new(WatchRanges {
            wp_ctx,
            mu: Mutex::new().named("wrs.mu"),
            bcasts: GoMap::new().named("wrs.bcasts"),
            metrics,
            variant,
        }),
    };

    // wStream := toGRPC(clus.RandClient()).Watch.Watch(ctx)
    let w_stream = Chan::new(1).named("wStream");
    let wps = wp.watch(w_stream.clone());

    w_stream.send(WatchRequest::Create {
        key: "foo".to_string(),
        start_revision: 0,
    });
    let wresp = wps.watch_ch.recv().expect("wStream.Recv error");
    assert!(wresp.created, "wresp.Created got = false, want = true");

    w_stream.send(WatchRequest::Cancel {
        watch_id: wresp.watch_id,
    });
    let cresp = wps.watch_ch.recv().expect("wStream.Recv error");
    assert!(cresp.canceled, "cresp.Canceled got = false, want = true");

    // clus.Terminate: the stream ends, and recvLoop returns
    w_stream.close();
}
