#![doc = include_str!("etcd_3972.md")]

use std::collections::BTreeMap;
use std::sync::Arc;

use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_3972",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/3972",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_put_and_watch,
        walkthrough: include_str!("etcd_3972.md"),
        asplos: Some("non-blocking-bugs/etcd/d7a027e476130efded2005f0b381cd5b283d2978.txt"),
        source: Source::Diff("d7a027e4"),
        fix: Fix::Upstream("d7a027e4"),
        review: "faithful: Checked against d7a027e4 (PR #3972, kubernetes#18437's race report) and store/{store,watcher_hub,event_history,event}.go, etcdserver/etcdhttp/client.go at 5a4a5998: watcherHub.watch stamps EtcdIndex on the history's shared event while a mutation's handler reads it; one-hunk fix mapped; every simplification admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The event action of a `Set`.
const SET: &str = "set";

/// `store.NodeExtern`: the node an event carries (the fields the kernel needs; they go into
/// the JSON of a response).
#[derive(Clone)]
#[allow(dead_code)]
struct NodeExtern {
    key: &'static str,
    value: Option<String>,
    modified_index: u64,
    created_index: u64,
}

/// `store.Event`. Events in the history are shared by pointer with whoever receives them.
struct Event {
    action: &'static str,
    node: NodeExtern,
    prev_node: Option<NodeExtern>,
    etcd_index: Shared<u64>,
}

fn new_event(action: &'static str, key: &'static str, modified: u64, created: u64) -> Event {
    Event {
        action,
        node: NodeExtern {
            key,
            value: None,
            modified_index: modified,
            created_index: created,
        },
        prev_node: None,
        etcd_index: Shared::new(0).named("Event.EtcdIndex"),
    }
}

impl Event {
    fn index(&self) -> u64 {
        self.node.modified_index
    }

    /// `Clone`: a copy the caller may change.
    fn clone_event(&self) -> Event {
        Event {
            action: self.action,
            etcd_index: Shared::new(self.etcd_index.get()).named("Event.EtcdIndex (clone)"),
            node: self.node.clone(),
            prev_node: self.prev_node.clone(),
        }
    }
}

/// `EventHistory`: the last events, for watchers that start from a past index.
struct EventHistory {
    events: Shared<Vec<Arc<Event>>>,
    start_index: Shared<u64>,
    last_index: Shared<u64>,
    rwl: RwMutex,
}

impl EventHistory {
    /// `addEvent`.
    fn add_event(&self, e: Arc<Event>) -> Arc<Event> {
        self.rwl.lock();
        let _unlock = defer(|| self.rwl.unlock());
        self.events.write(|q| q.push(e.clone()));
        self.last_index.set(e.index());
        let front = self.events.read(|q| q[0].index());
        self.start_index.set(front);
        e
    }

    /// `scan`: the first event at or after `index` on `key`, if the history has it.
    fn scan(&self, key: &str, index: u64) -> Result<Option<Arc<Event>>, &'static str> {
        self.rwl.rlock();
        let _unlock = defer(|| self.rwl.runlock());
        if index < self.start_index.get() {
            return Err("the requested history has been cleared");
        }
        if index > self.last_index.get() {
            // future index
            return Ok(None);
        }
        let offset = (index - self.start_index.get()) as usize;
        Ok(self
            .events
            .read(|q| q[offset..].iter().find(|e| e.node.key == key).cloned()))
    }
}

/// `watcher`.
struct Watcher {
    event_chan: Chan<Arc<Event>>,
    recursive: bool,
    stream: bool,
    since_index: u64,
    start_index: u64,
}

impl Watcher {
    fn event_chan(&self) -> &Chan<Arc<Event>> {
        &self.event_chan
    }

    fn start_index(&self) -> u64 {
        self.start_index
    }

    /// `notify`: hands `e` to the watcher if it wants it.
    fn notify(&self, e: &Arc<Event>, original_path: bool, deleted: bool) -> bool {
        if (self.recursive || original_path || deleted) && e.index() >= self.since_index {
            select! {
                send(self.event_chan, e.clone()) => {},
                default => {
                    // We have missed a notification: w.remove() (the buffer never fills here).
                },
            }
            return true;
        }
        false
    }
}

/// `watcherHub`: the watchers by path, and the event history.
struct WatcherHub {
    mutex: Mutex,
    watchers: Shared<BTreeMap<String, Vec<Arc<Watcher>>>>,
    event_history: EventHistory,
    variant: Variant,
}

impl WatcherHub {
    /// `watch`: a watcher on `key` from `index`; served from the history at once if the
    /// history holds a matching event.
    fn watch(
        &self,
        key: &'static str,
        recursive: bool,
        stream: bool,
        index: u64,
        store_index: u64,
    ) -> Result<Arc<Watcher>, &'static str> {
        let event = self.event_history.scan(key, index)?;
        let w = Arc::new(Watcher {
            event_chan: Chan::new(100).named("watcher.eventChan"),
            recursive,
            stream,
            since_index: index,
            start_index: store_index,
        });
        self.mutex.lock();
        let _unlock = defer(|| self.mutex.unlock());
        // If the event exists in the known history, append the EtcdIndex and return immediately
        if let Some(event) = event {
            if self.variant.fixed() {
                let ne = event.clone_event();
                ne.etcd_index.set(store_index);
                w.event_chan.send(Arc::new(ne));
            } else {
                event.etcd_index.set(store_index);
                w.event_chan.send(event);
            }
            return Ok(w);
        }
        self.watchers
            .write(|ws| ws.entry(key.to_string()).or_default().push(w.clone()));
        Ok(w)
    }

    /// `notify`: records the event and notifies the watchers of its path and its parents.
    fn notify(&self, e: Arc<Event>) {
        let e = self.event_history.add_event(e);
        // walk through all the segments of the path and notify the watchers of each
        let mut curr_path = String::from("/");
        for segment in e.node.key.split('/') {
            curr_path = path_join(&curr_path, segment);
            self.notify_watchers(&e, &curr_path, false);
        }
    }

    /// `notifyWatchers`.
    fn notify_watchers(&self, e: &Arc<Event>, node_path: &str, deleted: bool) {
        self.mutex.lock();
        let _unlock = defer(|| self.mutex.unlock());
        let Some(l) = self.watchers.read(|ws| ws.get(node_path).cloned()) else {
            return;
        };
        let mut kept = Vec::new();
        for w in l {
            let original_path = e.node.key == node_path;
            if (original_path || !is_hidden(node_path, e.node.key))
                && w.notify(e, original_path, deleted)
                && !w.stream
            {
                // remove the notified watcher from the list
                continue;
            }
            kept.push(w);
        }
        self.watchers.write(|ws| {
            if kept.is_empty() {
                ws.remove(node_path);
            } else {
                ws.insert(node_path.to_string(), kept);
            }
        });
    }
}

/// `path.Join(dir, elem)` for the kernel's absolute paths.
fn path_join(dir: &str, elem: &str) -> String {
    match (dir.trim_end_matches('/'), elem) {
        ("", "") => "/".to_string(),
        (d, "") => d.to_string(),
        (d, e) => format!("{d}/{e}"),
    }
}

/// `isHidden`: whether the key is hidden (a `_` segment) below the watched path.
fn is_hidden(watch_path: &str, key_path: &str) -> bool {
    if watch_path.len() > key_path.len() {
        return false;
    }
    let after_path = path_join("/", &key_path[watch_path.len()..]);
    after_path.contains("/_")
}

/// The v2 `store`.
struct Store {
    current_index: Shared<u64>,
    watcher_hub: WatcherHub,
    world_lock: RwMutex,
}

impl Store {
    /// `Set`: creates or replaces the node, and publishes the event.
    fn set(&self, node_path: &'static str, value: &str) -> Arc<Event> {
        self.world_lock.lock();
        let _unlock = defer(|| self.world_lock.unlock());
        // internalCreate
        let next_index = self.current_index.get() + 1;
        let mut e = new_event(SET, node_path, next_index, next_index);
        e.node.value = Some(value.to_string());
        self.current_index.set(next_index);
        let e = Arc::new(e);
        e.etcd_index.set(self.current_index.get());
        self.watcher_hub.notify(e.clone());
        e
    }

    /// `Watch`.
    fn watch(
        &self,
        key: &'static str,
        recursive: bool,
        stream: bool,
        mut since_index: u64,
    ) -> Result<Arc<Watcher>, &'static str> {
        self.world_lock.rlock();
        let _unlock = defer(|| self.world_lock.runlock());
        if since_index == 0 {
            since_index = self.current_index.get() + 1;
        }
        // WatchHub does not know about the current index, so we need to pass it in
        self.watcher_hub.watch(
            key,
            recursive,
            stream,
            since_index,
            self.current_index.get(),
        )
    }
}

/// An HTTP response to the test's client: the `X-Etcd-Index` header and the event's JSON.
#[allow(dead_code)]
struct Response {
    etcd_index: u64,
    body: Option<(&'static str, NodeExtern)>,
}

/// `trimEventPrefix`: copies the event before trimming its keys.
fn trim_event_prefix(ev: &Event) -> Event {
    // Since the *Event may reference one in the store history, we must copy it before
    // modifying (the key prefix is "" here).
    ev.clone_event()
}

/// `writeKeyEvent`: the response to a request that produced an event.
fn write_key_event(ev: &Arc<Event>) -> Response {
    let etcd_index = ev.etcd_index.get(); // w.Header().Set("X-Etcd-Index", ...)
    let ev = trim_event_prefix(ev);
    Response {
        etcd_index,
        body: Some((ev.action, ev.node)),
    }
}

/// `handleKeyWatch`, for a watch that is not a stream: one event, then the response.
fn handle_key_watch(wa: &Watcher) -> Response {
    let etcd_index = wa.start_index(); // w.Header().Set("X-Etcd-Index", ...)
    let ev = wa.event_chan().recv();
    let body = ev.map(|ev| {
        let ev = trim_event_prefix(&ev);
        (ev.action, ev.node)
    });
    Response { etcd_index, body }
}

/// Two requests to one etcd at the same time, each served by its own `keysHandler.ServeHTTP`
/// goroutine: `PUT /v2/keys/foo`, and a watch of `/foo` from index 1 (the index the PUT
/// creates).
fn test_put_and_watch(variant: Variant) {
    let store = Arc::new(Store {
        current_index: Shared::new(0).named("store.CurrentIndex"),
        watcher_hub: WatcherHub {
            mutex: Mutex::new().named("watcherHub.mutex"),
            watchers: Shared::new(BTreeMap::new()).named("watcherHub.watchers"),
            event_history: EventHistory {
                events: Shared::new(Vec::new()).named("EventHistory.Queue"),
                start_index: Shared::new(0).named("EventHistory.StartIndex"),
                last_index: Shared::new(0).named("EventHistory.LastIndex"),
                rwl: RwMutex::new().named("EventHistory.rwl"),
            },
            variant,
        },
        world_lock: RwMutex::new().named("store.worldLock"),
    });

    let put_resp: Chan<Response> = Chan::new(0).named("PUT response");
    let (s, r) = (store.clone(), put_resp.clone());
    go_named("keysHandler.ServeHTTP", move || {
        // server.Do → raft → apply → store.Set, whose event comes back through wait.Trigger
        let ev = s.set("/foo", "bar");
        r.send(write_key_event(&ev));
    });

    let watch_resp: Chan<Response> = Chan::new(0).named("watch response");
    let (s, r) = (store.clone(), watch_resp.clone());
    go_named("keysHandler.ServeHTTP", move || {
        // server.Do: a GET with wait=true&waitIndex=1
        match s.watch("/foo", false, false, 1) {
            Ok(wc) => r.send(handle_key_watch(&wc)),
            Err(_) => r.send(Response {
                etcd_index: 0,
                body: None,
            }),
        }
    });

    let _ = put_resp.recv();
    let _ = watch_resp.recv();
}
