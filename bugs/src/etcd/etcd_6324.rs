#![doc = include_str!("etcd_6324.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_6324",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/6324",
        category: "Data race (map ranged without its lock)",
        expected: primitives::Verdict::Race,
        kernel: test_v3_watch_future_revision,
        walkthrough: include_str!("etcd_6324.md"),
        asplos: Some("non-blocking-bugs/etcd/b982c80c14d2809534759404703b398fdfdf5d55.txt"),
        source: Source::Test("etcd-io/etcd integration/v3_watch_test.go TestV3WatchFutureRevision (cluster_proxy) @ b982c80c^"),
        fix: Fix::Upstream("b982c80c"),
        loom: Loom::DoesNotApply("the fixed variant runs main and five goroutines (Watch, recvLoop, watcherSingle.run, watcherGroup.run and the fix's waiter close.func1), one more than loom holds"),
        review: "faithful after mends: Checked against b982c80c (PR #6324 → #6188's race report) and proxy/grpcproxy + integration at b982c80c^: right race pair, shape and fix; the walkthrough should cite the upstream race report of #6188 (close's `mapiterinit` at watch.go:89 from recvLoop) instead of saying upstream names no report.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The revision the test watches from (`wrev`, 10 upstream).
const WREV: i64 = 2;

/// Capacity of the proxy's `watchCh` and `ctrlCh`.
const STREAM_CH_LEN: usize = 10;

/// Capacity of a `clientv3.WatchChan` in the kernel (see Deviations).
const WATCH_CHAN_LEN: usize = 4;

/// `mvccpb.Event`: a PUT of `key` at `mod_revision`.
#[derive(Clone, Debug)]
struct Event {
    #[allow(dead_code)]
    key: String,
    mod_revision: i64,
}

/// `clientv3.WatchResponse`.
#[derive(Clone)]
struct ClientWatchResponse {
    header_revision: i64,
    events: Vec<Event>,
    created: bool,
}

/// `clientv3.WatchChan`.
type WatchChan = Chan<ClientWatchResponse>;

/// `pb.WatchResponse`.
#[derive(Clone, Debug)]
struct WatchResponse {
    header_revision: i64,
    created: bool,
    #[allow(dead_code)]
    watch_id: i64,
    events: Vec<Event>,
}

/// `pb.WatchRequest` (only create requests are made in the test).
struct WatchRequest {
    key: String,
    start_revision: i64,
}

/// The etcd member behind the proxy's `clientv3.Client`: its revision and the watches the
/// proxy opened on it (`clientv3.Watcher.Watch` with `WithCreatedNotify`).
struct Member {
    mu: Mutex,
    rev: Shared<i64>,
    next_watch: Shared<usize>,
    /// (watch, key, start revision, channel).
    watchers: Shared<Vec<(usize, String, i64, WatchChan)>>,
}

impl Member {
    /// `cw.Watch(ctx, key, WithRev(rev), WithProgressNotify(), WithCreatedNotify())` and the
    /// `cancel` of its context.
    fn watch(self: &Arc<Self>, key: &str, rev: i64) -> (WatchChan, CancelFunc) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let id = self.next_watch.get();
        self.next_watch.set(id + 1);
        let ch = Chan::new(WATCH_CHAN_LEN).named("wch");
        ch.send(ClientWatchResponse {
            header_revision: self.rev.get(),
            events: Vec::new(),
            created: true,
        });
        self.watchers
            .write(|w| w.push((id, key.to_string(), rev, ch.clone())));
        (
            ch,
            CancelFunc {
                member: self.clone(),
                id,
            },
        )
    }

    /// A `Put` of `key` through the KV API: the revision moves on and every watch of the key
    /// started at or before it gets the event.
    fn put(&self, key: &str) -> i64 {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let rev = self.rev.get() + 1;
        self.rev.set(rev);
        let targets: Vec<WatchChan> = self.watchers.read(|w| {
            w.iter()
                .filter(|(_, k, start, _)| k == key && *start <= rev)
                .map(|(_, _, _, ch)| ch.clone())
                .collect()
        });
        for ch in targets {
            ch.send(ClientWatchResponse {
                header_revision: rev,
                events: vec![Event {
                    key: key.to_string(),
                    mod_revision: rev,
                }],
                created: false,
            });
        }
        rev
    }
}

/// The `context.CancelFunc` of a proxy's watch on the member: cancelling ends the watch and
/// closes its channel (once).
#[derive(Clone)]
struct CancelFunc {
    member: Arc<Member>,
    id: usize,
}

impl CancelFunc {
    fn cancel(&self) {
        let m = &self.member;
        m.mu.lock();
        let _unlock = defer(|| m.mu.unlock());
        let ch = m.watchers.write(|w| {
            let i = w.iter().position(|(id, _, _, _)| *id == self.id)?;
            Some(w.remove(i).3)
        });
        if let Some(ch) = ch {
            ch.close();
        }
    }
}

/// `chanStream`: one side of the in-process gRPC stream of `watch_client_adapter.go`.
#[derive(Clone)]
struct ChanStream<R, S> {
    recvc: Chan<R>,
    sendc: Chan<S>,
    ctx: Context,
}

impl<R: Send + 'static, S: Send + 'static> ChanStream<R, S> {
    fn send_msg(&self, m: S) -> Result<(), context::ContextError> {
        select! {
            send(self.sendc, m) => Ok(()),
            recv(self.ctx.done()) => Err(self.ctx.err().unwrap()),
        }
    }

    fn recv_msg(&self) -> Result<R, context::ContextError> {
        select! {
            recv(self.recvc) -> m => Ok(m.unwrap()),
            recv(self.ctx.done()) => Err(self.ctx.err().unwrap()),
        }
    }
}

/// `watchRange`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct WatchRange {
    key: String,
}

/// `receiverID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ReceiverId {
    stream_id: i64,
    watcher_id: i64,
}

/// `watcher`: one client watch of a stream.
#[derive(Clone)]
struct Watcher {
    id: i64,
    wr: WatchRange,
    rev: i64,
    ch: Chan<WatchResponse>,
}

impl Watcher {
    /// `send`: forwards the events newer than the watcher's revision to the stream.
    fn send(&mut self, wr: &ClientWatchResponse) {
        let mut events = Vec::new();
        for ev in &wr.events {
            if ev.mod_revision <= self.rev {
                continue;
            } else {
                self.rev = ev.mod_revision;
            }
            events.push(ev.clone());
        }

        // all events are filtered out?
        if !wr.created && events.is_empty() {
            return;
        }

        let pbwr = WatchResponse {
            header_revision: wr.header_revision,
            created: wr.created,
            watch_id: self.id,
            events,
        };
        select! {
            send(self.ch, pbwr) => {},
            default => panic!("handle this"),
        }
    }
}

/// `watcherGroup`: one watch on the member shared by the watchers of a range.
struct WatcherGroup {
    ch: WatchChan,
    cancel: CancelFunc,
    mu: Mutex,
    rev: Shared<i64>,
    receivers: GoMap<ReceiverId, Watcher>,
    donec: Chan<()>,
}

impl WatcherGroup {
    fn new(wch: WatchChan, c: CancelFunc) -> Arc<Self> {
        Arc::new(WatcherGroup {
            ch: wch,
            cancel: c,
            mu: Mutex::new().named("watcherGroup.mu"),
            rev: Shared::new(0).named("watcherGroup.rev"),
            receivers: GoMap::new().named("watcherGroup.receivers"),
            donec: Chan::new(0).named("watcherGroup.donec"),
        })
    }

    fn run(&self) {
        let _close = defer(|| self.donec.close());
        while let Some(wr) = self.ch.recv() {
            self.broadcast(&wr);
        }
    }

    fn broadcast(&self, wr: &ClientWatchResponse) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.rev.set(wr.header_revision);
        let rids: Vec<ReceiverId> = self.receivers.with(|r| r.keys().copied().collect());
        for rid in rids {
            // (r is a copy in Go's range: its rev update is lost, as upstream)
            let mut r = self.receivers.get(&rid).unwrap();
            r.send(wr);
        }
    }

    fn add(&self, rid: ReceiverId, w: Watcher) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.receivers.insert(rid, w);
    }

    fn stop(&self) {
        self.cancel.cancel();
        self.donec.recv();
    }
}

/// `watchergroups`.
struct WatcherGroups {
    mu: Mutex,
    groups: GoMap<WatchRange, Arc<WatcherGroup>>,
}

impl WatcherGroups {
    fn maybe_join_watcher_single(&self, rid: ReceiverId, ws: &WatcherSingle) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());

        if let Some(group) = self.groups.get(&ws.w.wr) {
            if ws.w.rev >= group.rev.get() {
                group.add(rid, ws.w.clone());
                return true;
            }
            return false;
        }

        if ws.can_promote() {
            let wg = WatcherGroup::new(ws.ch.clone(), ws.cancel.clone());
            self.groups.insert(ws.w.wr.clone(), wg.clone());
            wg.add(rid, ws.w.clone());
            let g = wg.clone();
            go_named("watcherGroup.run", move || g.run());
            return true;
        }

        false
    }

    fn stop(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let groups: Vec<Arc<WatcherGroup>> = self.groups.with(|g| g.values().cloned().collect());
        for wg in groups {
            wg.stop();
        }
    }
}

/// `watcherSingle`: a watcher with its own watch on the member (a start revision was given).
#[derive(Clone)]
struct WatcherSingle {
    ch: WatchChan,
    cancel: CancelFunc,
    sws: Arc<ServerWatchStream>,
    w: Watcher,
    last_store_rev: i64,
    donec: Chan<()>,
    variant: Variant,
}

impl WatcherSingle {
    /// `run`, on a copy of the watcherSingle (a value receiver).
    fn run(mut self) {
        let donec = self.donec.clone();
        let _close = defer(move || donec.close());

        while let Some(wr) = self.ch.recv() {
            self.last_store_rev = wr.header_revision;
            self.w.send(&wr);

            if self.sws.clone().maybe_coalesce_watcher(&self) {
                return;
            }
        }
    }

    fn can_promote(&self) -> bool {
        self.w.rev == self.last_store_rev
    }

    fn stop(&self) {
        self.cancel.cancel();
        if !self.variant.fixed() {
            self.donec.recv();
        }
    }

    /// `stopNotify` (added by the fix).
    fn stop_notify(&self) -> &Chan<()> {
        &self.donec
    }
}

/// `serverWatchStream` of the proxy.
struct ServerWatchStream {
    id: i64,
    member: Arc<Member>,
    /// make sure any access of groups and singles is atomic
    mu: Mutex,
    groups: Arc<WatcherGroups>,
    singles: GoMap<i64, WatcherSingle>,
    grpc_stream: ChanStream<WatchRequest, WatchResponse>,
    ctrl_ch: Chan<WatchResponse>,
    watch_ch: Chan<WatchResponse>,
    next_watcher_id: Shared<i64>,
    variant: Variant,
}

/// `watchProxy.Watch`: `recvLoop` on a new goroutine, `sendLoop` on this one.
fn watch(
    member: &Arc<Member>,
    wgs: &Arc<WatcherGroups>,
    stream: ChanStream<WatchRequest, WatchResponse>,
    variant: Variant,
) {
    let sws = Arc::new(ServerWatchStream {
        id: 1,
        member: member.clone(),
        mu: Mutex::new().named("sws.mu"),
        groups: wgs.clone(),
        singles: GoMap::new().named("sws.singles"),
        grpc_stream: stream,
        ctrl_ch: Chan::new(STREAM_CH_LEN).named("ctrlCh"),
        watch_ch: Chan::new(STREAM_CH_LEN).named("watchCh"),
        next_watcher_id: Shared::new(0).named("sws.nextWatcherID"),
        variant,
    });

    let s = sws.clone();
    go_named("recvLoop", move || {
        let _ = s.recv_loop();
    });

    sws.send_loop();
}

impl ServerWatchStream {
    fn close(&self) {
        self.watch_ch.close();
        self.ctrl_ch.close();
        if self.variant.fixed() {
            let wg = WaitGroup::new().named("wg");
            self.mu.lock();
            let singles: Vec<WatcherSingle> = self.singles.with(|m| m.values().cloned().collect());
            for ws in singles {
                wg.add(1);
                ws.stop();
                // copy the range variable to avoid race
                let copyws = ws.clone();
                let wg = wg.clone();
                go_named("close.func1", move || {
                    copyws.stop_notify().recv();
                    wg.done();
                });
            }
            self.mu.unlock();

            wg.wait();
        } else {
            let singles: Vec<WatcherSingle> = self.singles.with(|m| m.values().cloned().collect());
            for ws in singles {
                ws.stop();
            }
        }
        self.groups.stop();
    }

    fn recv_loop(self: &Arc<Self>) -> Result<(), context::ContextError> {
        let _close = defer(|| self.close());

        loop {
            let req = self.grpc_stream.recv_msg()?;

            let watcher = Watcher {
                wr: WatchRange { key: req.key },
                id: self.next_watcher_id.get(),
                ch: self.watch_ch.clone(),
                rev: 0,
            };
            if req.start_revision != 0 {
                self.add_dedicated_watcher(watcher, req.start_revision);
            } else {
                // (addCoalescedWatcher: not reached by the test)
                unreachable!("the test's watch has a start revision");
            }
            self.next_watcher_id.set(self.next_watcher_id.get() + 1);
        }
    }

    fn send_loop(&self) {
        loop {
            select! {
                recv(self.watch_ch) -> wresp => {
                    let Some(wresp) = wresp else { return };
                    if self.grpc_stream.send_msg(wresp).is_err() {
                        return;
                    }
                },
                recv(self.ctrl_ch) -> c => {
                    let Some(c) = c else { return };
                    if self.grpc_stream.send_msg(c).is_err() {
                        return;
                    }
                },
            }
        }
    }

    fn add_dedicated_watcher(self: &Arc<Self>, w: Watcher, rev: i64) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());

        let (wch, cancel) = self.member.watch(&w.wr.key, rev);

        let ws = WatcherSingle {
            ch: wch,
            cancel,
            sws: self.clone(),
            w: w.clone(),
            last_store_rev: 0,
            donec: Chan::new(0).named("watcherSingle.donec"),
            variant: self.variant,
        };
        self.singles.insert(w.id, ws.clone());
        go_named("watcherSingle.run", move || ws.run());
    }

    fn maybe_coalesce_watcher(&self, ws: &WatcherSingle) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());

        let rid = ReceiverId {
            stream_id: self.id,
            watcher_id: ws.w.id,
        };
        if self.groups.maybe_join_watcher_single(rid, ws) {
            self.singles.remove(&ws.w.id);
            return true;
        }
        false
    }
}

/// `TestV3WatchFutureRevision`, built with the `cluster_proxy` tag: the test's watch stream
/// goes through the gRPC proxy's `watchProxy` over the in-process channel stream.
fn test_v3_watch_future_revision(variant: Variant) {
    let member = Arc::new(Member {
        mu: Mutex::new().named("member.mu"),
        rev: Shared::new(1).named("member.rev"),
        next_watch: Shared::new(0).named("member.nextWatch"),
        watchers: Shared::new(Vec::new()).named("member.watchers"),
    });
    // NewWatchProxy(c)
    let wgs = Arc::new(WatcherGroups {
        mu: Mutex::new().named("watchergroups.mu"),
        groups: GoMap::new().named("watchergroups.groups"),
    });

    let (ctx, cancel) = context::with_cancel(&context::background());
    let _cancel = defer(move || cancel.call());

    // wAPI.Watch(ctx): ws2wc.Watch
    let (ch1, ch2) = (Chan::new(0).named("ch1"), Chan::new(0).named("ch2"));
    let w_stream = ChanStream {
        recvc: ch1.clone(),
        sendc: ch2.clone(),
        ctx: ctx.clone(),
    };
    let wserver = ChanStream {
        recvc: ch2,
        sendc: ch1,
        ctx,
    };
    let (m, g) = (member.clone(), wgs.clone());
    go_named("Watch", move || watch(&m, &g, wserver, variant));

    let wkey = "foo";
    w_stream
        .send_msg(WatchRequest {
            key: wkey.to_string(),
            start_revision: WREV,
        })
        .expect("wStream.Send error");

    // ensure watcher request created a new watcher
    let cresp = w_stream.recv_msg().expect("wStream.Recv error");
    assert!(cresp.created, "create false, want true");

    loop {
        if member.put(wkey) == WREV {
            break;
        }
    }

    let cresp = w_stream.recv_msg().expect("wStream.Recv error");
    assert_eq!(cresp.header_revision, WREV, "revision");
    assert_eq!(cresp.events.len(), 1, "failed to receive events");
    assert_eq!(cresp.events[0].mod_revision, WREV, "mod revision");
}
