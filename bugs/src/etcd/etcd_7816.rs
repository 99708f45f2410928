#![doc = include_str!("etcd_7816.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_7816",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/7816",
        category: "Data race (library: fmt reads a context value another goroutine writes)",
        expected: primitives::Verdict::Race,
        kernel: test_v3_election_observe,
        walkthrough: include_str!("etcd_7816.md"),
        asplos: Some("non-blocking-bugs/etcd/3ce31acda410db937408ac1c1011fe7b0babd8a7.txt"),
        loom: Loom::DoesNotApply(
            "main, the stream's handler, observe and one goroutine per watch (three): more \
             than loom's five threads",
        ),
        source: Source::Diff("3ce31acd"),
        fix: Fix::Upstream("3ce31acd"),
        review: "faithful after mends: Checked against 3ce31acd (PR #7816, issue #7811; = ASPLOS entry) and clientv3/watch.go, clientv3/concurrency/election.go, v3election/election.go, v3client/v3client.go, vendored grpc and x/net/trace at 3ce31acd^, plus TestV3ElectionObserve: right race (fmt of the context vs LazyLog), shape and fix; one harmless unadmitted move of the first trace event to main.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// x/net/trace's `trace`: its events, appended under its own `mu`.
struct Trace {
    mu: Mutex,
    events: Shared<Vec<&'static str>>,
}

impl Trace {
    /// `LazyLog` (`addEvent`): appends an event under `tr.mu`.
    fn lazy_log(&self, x: &'static str) {
        self.mu.lock();
        self.events.write(|e| e.push(x));
        self.mu.unlock();
    }

    /// What `fmt`'s `%#v` prints for a `*trace`: every field, read by reflection, without
    /// `tr.mu`.
    fn go_string(&self) -> String {
        format!("&trace.trace{{events:{:?}}}", self.events.get())
    }
}

/// How a context was made, for its `String` (Go's `fmt.Sprintf("%v", ctx)`).
enum CtxString {
    Background,
    /// `cancelCtx.String`: `"%v.WithCancel"` of the parent.
    WithCancel(Arc<CtxString>),
    /// `valueCtx.String`: `"%v.WithValue(%#v, %#v)"` of the parent, the key and the value.
    WithValue(Arc<CtxString>, &'static str, Arc<Trace>),
    /// The fix's `blankContext.String`: a constant.
    Blank,
}

impl CtxString {
    fn string(&self) -> String {
        match self {
            CtxString::Background => "context.Background".to_string(),
            CtxString::WithCancel(p) => format!("{}.WithCancel", p.string()),
            CtxString::WithValue(p, key, val) => {
                format!("{}.WithValue({key:?}, {})", p.string(), val.go_string())
            }
            CtxString::Blank => "(blankCtx)".to_string(),
        }
    }
}

/// A context: its cancellation (the corpus's `Context`) and what `%v` prints for it.
#[derive(Clone)]
struct Ctx {
    ctx: Context,
    s: Arc<CtxString>,
}

/// `context.WithCancel(ctx)`.
fn with_cancel(parent: &Ctx) -> (Ctx, context::CancelFunc) {
    let (ctx, cancel) = context::with_cancel(&parent.ctx);
    let s = Arc::new(CtxString::WithCancel(parent.s.clone()));
    (Ctx { ctx, s }, cancel)
}

/// A key/value pair of the store.
#[derive(Clone, Debug)]
struct KeyValue {
    key: &'static str,
    value: &'static str,
    mod_revision: i64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum EventType {
    Put,
    Delete,
}

#[derive(Clone, Debug)]
struct Event {
    typ: EventType,
    kv: KeyValue,
}

/// What the election's keys go through in the test: leader "0" is elected, resigns, and
/// leader "5" (waiting on the resignation) takes over.
const LEADER1: KeyValue = KeyValue {
    key: "foo/1",
    value: "0",
    mod_revision: 2,
};
const LEADER2: KeyValue = KeyValue {
    key: "foo/2",
    value: "5",
    mod_revision: 3,
};

/// The in-process KV and watch servers, as far as observe reaches them.
struct Cluster;

impl Cluster {
    /// `Get(prefix, WithFirstCreate(), WithRev(lastRev))`: the leader key at `last_rev`
    /// (0: now, when no one has campaigned yet).
    fn get(&self, last_rev: i64) -> Vec<KeyValue> {
        if last_rev == 0 {
            vec![]
        } else {
            vec![LEADER2]
        }
    }

    /// The events a watch on `key` (a prefix when `key` is the prefix) sees.
    fn events(&self, key: &'static str) -> Vec<Event> {
        let put = |kv| Event {
            typ: EventType::Put,
            kv,
        };
        match key {
            "foo/" => vec![put(LEADER1)],
            "foo/1" => vec![
                put(LEADER1),
                Event {
                    typ: EventType::Delete,
                    kv: KeyValue {
                        mod_revision: 3,
                        ..LEADER1
                    },
                },
            ],
            _ => vec![put(LEADER2)],
        }
    }
}

/// clientv3's `watcher` (`NewWatchFromWatchClient` over the in-process adapter).
struct Watcher {
    cluster: Arc<Cluster>,
    /// `w.streams`, keyed by the context's string.
    streams: Shared<Vec<String>>,
    mu: Mutex,
}

impl Watcher {
    /// `Watch`: finds the gRPC watch stream of `ctx` by `fmt.Sprintf("%v", ctx)`, and
    /// watches `key` on it.
    fn watch(&self, ctx: &Ctx, key: &'static str) -> Chan<Vec<Event>> {
        let ctx_key = ctx.s.string();

        // find or allocate appropriate grpc watch stream
        self.mu.lock();
        self.streams.write(|s| {
            if !s.contains(&ctx_key) {
                s.push(ctx_key);
            }
        });
        self.mu.unlock();

        // The stream's goroutines deliver the events, and close the channel once the
        // watch's context is done.
        let wch = Chan::new(0).named("WatchChan");
        let (w, c, events) = (wch.clone(), ctx.ctx.clone(), self.cluster.events(key));
        go_named("watchGrpcStream", move || {
            for ev in events {
                select! {
                    send(w, vec![ev]) => {},
                    recv(c.done()) => break,
                }
            }
            c.done().recv();
            w.close();
        });
        wch
    }
}

/// The watcher v3client hands to clientv3: plain before the fix, the fix's `watchWrapper`
/// after it.
enum ClientWatcher {
    Plain(Watcher),
    /// `watchWrapper.Watch` wraps the context in a `blankContext`.
    WatchWrapper(Watcher),
}

/// The `clientv3.Client` v3client builds (`v3client.New`), its KV and watcher.
struct Client {
    cluster: Arc<Cluster>,
    watcher: ClientWatcher,
}

/// `v3client.New(s)`.
fn new_v3client(cluster: Arc<Cluster>, variant: Variant) -> Arc<Client> {
    let wc = Watcher {
        cluster: cluster.clone(),
        streams: Shared::new(Vec::new()).named("watcher.streams"),
        mu: Mutex::new().named("watcher.mu"),
    };
    let watcher = if variant.fixed() {
        ClientWatcher::WatchWrapper(wc)
    } else {
        ClientWatcher::Plain(wc)
    };
    Arc::new(Client { cluster, watcher })
}

impl Client {
    fn get(&self, _ctx: &Ctx, last_rev: i64) -> Vec<KeyValue> {
        self.cluster.get(last_rev)
    }

    fn watch(&self, ctx: &Ctx, key: &'static str) -> Chan<Vec<Event>> {
        match &self.watcher {
            ClientWatcher::Plain(w) => w.watch(ctx, key),
            ClientWatcher::WatchWrapper(w) => {
                let blank = Ctx {
                    ctx: ctx.ctx.clone(),
                    s: Arc::new(CtxString::Blank),
                };
                w.watch(&blank, key)
            }
        }
    }
}

/// `concurrency.Election` on the key prefix `foo/`.
struct Election {
    client: Arc<Client>,
    key_prefix: &'static str,
}

impl Election {
    /// `Observe`: a channel of the leader's values, fed by `observe`.
    fn observe_chan(self: &Arc<Self>, ctx: &Ctx) -> Chan<KeyValue> {
        let retc = Chan::new(0).named("observe retc");
        let (e, c, ch) = (self.clone(), ctx.clone(), retc.clone());
        go_named("observe", move || e.observe(&c, &ch));
        retc
    }

    fn observe(&self, ctx: &Ctx, ch: &Chan<KeyValue>) {
        let client = &self.client;

        let _close = defer(|| ch.close());
        let mut last_rev = 0;
        loop {
            let kvs = client.get(ctx, last_rev);

            let kv = if kvs.is_empty() {
                let (cctx, cancel) = with_cancel(ctx);
                // wait for first key put on prefix
                let wch = client.watch(&cctx, self.key_prefix);
                let mut kv = None;
                while kv.is_none() {
                    let Some(wr) = wch.recv() else {
                        cancel.call();
                        return;
                    };
                    // only accept PUTs
                    kv = wr
                        .into_iter()
                        .find(|ev| ev.typ == EventType::Put)
                        .map(|ev| ev.kv);
                }
                cancel.call();
                kv.expect("a PUT")
            } else {
                kvs[0].clone()
            };

            let (cctx, cancel) = with_cancel(ctx);
            let wch = client.watch(&cctx, kv.key);
            let mut key_deleted = false;
            while !key_deleted {
                let Some(wr) = wch.recv() else {
                    return;
                };
                for ev in wr {
                    if ev.typ == EventType::Delete {
                        last_rev = ev.kv.mod_revision;
                        key_deleted = true;
                        break;
                    }
                    select! {
                        send(ch, ev.kv) => {},
                        recv(cctx.ctx.done()) => return,
                    }
                }
            }
            cancel.call();
        }
    }
}

/// The server side of the `Observe` stream: its context and grpc's `serverStream`.
struct ServerStream {
    ctx: Ctx,
    mu: Mutex,
    tr: Arc<Trace>,
    /// What the client receives.
    out: Chan<KeyValue>,
}

impl ServerStream {
    /// `SendMsg`: writes the message, then logs it on the stream's trace under `ss.mu`.
    fn send(&self, m: KeyValue) {
        self.out.send(m);
        self.mu.lock();
        self.tr.lazy_log("sent LeaderResponse");
        self.mu.unlock();
    }
}

/// `electionServer.Observe`: relays the election's leader values on the stream.
fn observe(es_client: &Arc<Client>, stream: &ServerStream) -> Option<context::ContextError> {
    let e = Arc::new(Election {
        client: es_client.clone(),
        key_prefix: "foo/",
    });
    let ch = e.observe_chan(&stream.ctx);
    while stream.ctx.ctx.err().is_none() {
        select! {
            recv(stream.ctx.ctx.done()) => {},
            recv(ch) -> resp => {
                let resp = resp?;
                stream.send(resp);
            },
        }
    }
    stream.ctx.ctx.err()
}

/// `TestV3ElectionObserve` (`integration/v3election_grpc_test.go`), its observer: the stream
/// must see leader "0", then "5", never going backwards.
fn test_v3_election_observe(variant: Variant) {
    let cluster = Arc::new(Cluster);
    let client = new_v3client(cluster, variant);

    // grpc's server: the stream's context carries its trace (`trace.NewContext`), and the
    // first event is logged before the handler runs.
    let (sctx, cancel) = context::with_cancel(&context::background());
    let tr = Arc::new(Trace {
        mu: Mutex::new().named("trace.mu"),
        events: Shared::new(Vec::new()).named("trace.events"),
    });
    tr.lazy_log("recv LeaderRequest");
    let stream = Arc::new(ServerStream {
        ctx: Ctx {
            ctx: sctx,
            s: Arc::new(CtxString::WithValue(
                Arc::new(CtxString::Background),
                "golang.org/x/net/trace.Trace",
                tr.clone(),
            )),
        },
        mu: Mutex::new().named("serverStream.mu"),
        tr,
        out: Chan::new(0).named("Observe stream"),
    });
    let donec = Chan::<()>::new(0).named("handler done");
    let (c, s, d) = (client.clone(), stream.clone(), donec.clone());
    go_named("electionServer.Observe", move || {
        let _ = observe(&c, &s);
        d.close();
    });

    let mut i = 0;
    for _ in 0..2 {
        let resp = stream.out.recv().expect("the stream stays open");
        let resp_v: i32 = resp.value.parse().expect("a number");
        // leader transitions should not go backwards
        assert!(
            resp_v >= i,
            "got observe value {:?}, expected >= \"{i}\"",
            resp.value
        );
        i = resp_v;
    }

    // the test ends: the client's stream goes away
    cancel.call();
    donec.recv();
}
