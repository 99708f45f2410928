#![doc = include_str!("moby_22732.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_22732",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/22918",
        category: "Resource deadlock (AB-BA: store RWMutex and container lock)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_image_delete_while_start,
        walkthrough: include_str!("moby_22732.md"),
        goker: None,
        asplos: Some("blocking-bugs/docker/bd2b3d363ff7c46e01cce4e6a41d41f24a0047da.txt"),
        source: Source::Diff("bd2b3d36"),
        fix: Fix::Upstream("bd2b3d36"),
        review: "faithful: Checked against moby bd2b3d36 (#22918), memory_store.go/start.go/monitor.go/image_delete.go at bd2b3d36^ and issue #22732's dump: same store-RLock vs container-lock AB-BA with a waiting writer, fix is upstream's First-over-all(); nothing unadmitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `container.Container`, which embeds `State`, which embeds the container's `sync.Mutex`.
struct Container {
    id: &'static str,
    image_id: &'static str,
    state: Mutex,
    running: Shared<bool>,
}

impl Deref for Container {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.state
    }
}

impl Container {
    /// `State.IsRunning`: takes the container's lock.
    fn is_running(&self) -> bool {
        self.lock();
        let res = self.running.get();
        self.unlock();
        res
    }
}

/// `StoreFilter`.
type StoreFilter<'a> = &'a dyn Fn(&Container) -> bool;

/// `memoryStore`: the daemon's containers, with an embedded `sync.RWMutex`.
struct MemoryStore {
    s: GoMap<&'static str, Arc<Container>>,
    rw: RwMutex,
    variant: Variant,
}

impl Deref for MemoryStore {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw
    }
}

impl MemoryStore {
    /// `Add`.
    fn add(&self, id: &'static str, cont: Arc<Container>) {
        self.lock();
        self.s.insert(id, cont);
        self.unlock();
    }

    /// `Get`.
    fn get(&self, id: &'static str) -> Option<Arc<Container>> {
        self.rlock();
        let res = self.s.get(&id);
        self.runlock();
        res
    }

    /// `First`: the first container the filter accepts.
    fn first(&self, filter: StoreFilter<'_>) -> Option<Arc<Container>> {
        if self.variant.fixed() {
            for cont in self.all() {
                if filter(&cont) {
                    return Some(cont);
                }
            }
            None
        } else {
            self.rlock();
            let _runlock = defer(|| self.runlock());
            for cont in self.s.with(|m| m.values().cloned().collect::<Vec<_>>()) {
                if filter(&cont) {
                    return Some(cont);
                }
            }
            None
        }
    }

    /// The fix's `all`: a copy of the store's containers, taken under the read lock.
    fn all(&self) -> Vec<Arc<Container>> {
        self.rlock();
        let containers = self.s.with(|m| m.values().cloned().collect());
        self.runlock();
        containers
    }
}

struct Daemon {
    containers: MemoryStore,
}

impl Daemon {
    /// `containerStart`: holds the container's lock through libcontainerd's `Create`, whose
    /// `start` calls back `AttachStreams`.
    fn container_start(&self, container: &Container) {
        container.lock();
        let _unlock = defer(|| container.unlock());
        // daemon.containerd.Create(...) -> ctr.start() -> backend.AttachStreams(...)
        self.attach_streams(container.id);
        container.running.set(true);
    }

    /// `AttachStreams`: libcontainerd connects the container's stdio.
    fn attach_streams(&self, id: &'static str) {
        let _c = self.containers.get(id);
    }

    /// `checkImageDeleteConflict` for `conflictRunningContainer`.
    fn check_image_delete_conflict(&self, img_id: &str) -> bool {
        let running = |c: &Container| c.is_running() && c.image_id == img_id;
        self.containers.first(&running).is_some()
    }

    /// `Register`: adds a new container to the store.
    fn register(&self, c: Arc<Container>) {
        self.containers.add(c.id, c);
    }
}

fn new_container(id: &'static str) -> Arc<Container> {
    Arc::new(Container {
        id,
        image_id: "busybox",
        state: Mutex::new().named(id),
        running: Shared::new(false).named("Running"),
    })
}

/// Three requests at once: `docker start c1`, `docker create` (c2) and `docker rmi busybox`,
/// the last one served on main.
fn test_image_delete_while_start(variant: Variant) {
    let daemon = Arc::new(Daemon {
        containers: MemoryStore {
            s: GoMap::new().named("memoryStore.s"),
            rw: RwMutex::new().named("memoryStore"),
            variant,
        },
    });
    let c1 = new_container("c1");
    daemon.register(c1.clone());
    {
        let d = daemon.clone();
        go_named("containerStart", move || d.container_start(&c1));
    }
    {
        let d = daemon.clone();
        go_named("Register", move || d.register(new_container("c2")));
    }
    // ImageDelete -> checkImageDeleteConflict(imgID, conflictRunningContainer)
    let _conflict = daemon.check_image_delete_conflict("busybox");
}
