#![doc = include_str!("kubernetes_16851.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_16851",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/16851",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_kubernetes16851,
        walkthrough: include_str!("kubernetes_16851.md"),
        asplos: Some("blocking-bugs/kubernetes/9b00b7ef354725ffa57b3087c8add1990183f205.txt"),
        source: Source::Diff("9b00b7ef"),
        fix: Fix::Upstream("9b00b7ef"),
        review: "faithful after mends: Checked against 9b00b7ef (PR #16851, issue #16075), GoReal's reproduction of 16851 and apimachinery's FakeWatcher at a1e35b73: MockPodsListWatch.Add sends the watch event while holding the lock the reflector's List needs first; the Add hunk mapped, the rest justly not modelled; one wrong \"first commit\" aside.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `api.Pod`, reduced to its name.
#[derive(Clone)]
struct Pod {
    name: String,
}

/// `watch.Event`.
enum Event {
    Added(Pod),
}

/// `watch.FakeWatcher`: every event is sent on an unbuffered channel (`watch.NewFake`).
#[derive(Clone)]
struct FakeWatcher {
    result: Chan<Event>,
}

impl FakeWatcher {
    /// `NewFake`.
    fn new() -> Self {
        FakeWatcher {
            result: Chan::new(0).named("FakeWatcher.result"),
        }
    }

    /// `Add`: sends an Added event; blocks until the watch's consumer takes it.
    fn add(&self, pod: Pod) {
        self.result.send(Event::Added(pod));
    }

    /// `ResultChan`.
    fn result_chan(&self) -> &Chan<Event> {
        &self.result
    }
}

/// `MockPodsListWatch`: the test's fake pods API, a list plus a fake watch.
struct MockPodsListWatch {
    fake_watcher: FakeWatcher,
    list: Shared<Vec<Pod>>,
    lock: Mutex,
    variant: Variant,
}

impl MockPodsListWatch {
    /// `ListWatch.ListFunc`: a copy of the list, under the lock.
    fn list_func(&self) -> Vec<Pod> {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.list.get()
    }

    /// `ListWatch.WatchFunc`: the fake watcher.
    fn watch_func(&self) -> FakeWatcher {
        self.fake_watcher.clone()
    }

    /// `Add`: adds a pod to the list and, if asked, tells the watchers.
    fn add(&self, pod: Pod, notify: bool) {
        self.lock.lock();
        let unlock = defer(|| self.lock.unlock());
        self.list.write(|items| items.push(pod.clone()));
        if self.variant.fixed() {
            // The fix: the list is changed in a closure of its own, so the lock is released
            // before the event is sent.
            drop(unlock);
        }
        if notify {
            self.fake_watcher.add(pod);
        }
    }
}

/// `cache.Reflector` over the mock, feeding the scheduler's pod store (here, the pods' keys).
struct Reflector {
    lister_watcher: Arc<MockPodsListWatch>,
    store: Shared<Vec<String>>,
}

impl Reflector {
    /// `ListAndWatch`: lists, replaces the store's content, then watches.
    fn list_and_watch(&self) {
        let list = self.lister_watcher.list_func();
        // syncWith: store.Replace
        self.store
            .set(list.into_iter().map(|pod| pod.name).collect());
        let w = self.lister_watcher.watch_func();
        self.watch_handler(&w);
    }

    /// `watchHandler`: applies the watch's events to the store (here, the one the test sends).
    fn watch_handler(&self, w: &FakeWatcher) {
        if let Some(Event::Added(pod)) = w.result_chan().recv() {
            self.store.write(|keys| keys.push(pod.name));
        }
    }
}

/// `TestPlugin_LifeCycle`, up to its first `podListWatch.Add(pod, true)`.
fn test_kubernetes16851(variant: Variant) {
    // `NewMockPodsListWatch(api.PodList{})`
    let pod_list_watch = Arc::new(MockPodsListWatch {
        fake_watcher: FakeWatcher::new(),
        list: Shared::new(Vec::new()).named("lw.list"),
        lock: Mutex::new().named("lw.lock"),
        variant,
    });

    // Running the plugin starts the scheduler's pod reflector on the mock.
    let reflector = Reflector {
        lister_watcher: pod_list_watch.clone(),
        store: Shared::new(Vec::new()).named("podUpdates"),
    };
    go_named("Reflector.ListAndWatch", move || reflector.list_and_watch());

    // fake new, unscheduled pod
    let pod = Pod {
        name: "pod1".to_string(),
    };
    pod_list_watch.add(pod, true); // notify watchers
}
