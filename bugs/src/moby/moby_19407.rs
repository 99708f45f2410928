#![doc = include_str!("moby_19407.md")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{Mutex, RwMutex, WaitGroup};
use primitives::{defer, go_named, time, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_19407",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/19447",
        category: "Data race (internal map returned to a caller that ranges it unlocked)",
        expected: primitives::Verdict::Race,
        kernel: test_moby19407,
        walkthrough: include_str!("moby_19407.md"),
        asplos: Some("non-blocking-bugs/docker/e5e62b96ce0d4eb3934a386b07203830f55e07ce.txt"),
        source: Source::Diff("e5e62b96"),
        fix: Fix::Upstream("e5e62b96"),
        review: "faithful: Checked against moby e5e62b96 (PR #19447, merge bdcc3ebe) and daemon/exec/exec.go, daemon/exec.go, daemon/daemon.go and the exec router at its parent: the same unlocked range over the store's own map against a locked Add, the one-hunk fix is the variant switch, reductions admitted; faithful.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `exec.Config`: one exec instance.
struct Config {
    id: &'static str,
    can_remove: Shared<bool>,
}

impl Config {
    /// `NewConfig`.
    fn new(id: &'static str) -> Arc<Self> {
        Arc::new(Config {
            id,
            can_remove: Shared::new(false).named("Config.CanRemove"),
        })
    }
}

/// `exec.Store`: exec configurations by id, behind an embedded `sync.RWMutex`.
struct Store {
    commands: GoMap<&'static str, Arc<Config>>,
    rw: RwMutex,
    variant: Variant,
}

impl Store {
    /// `NewStore`.
    fn new(name: &str, variant: Variant) -> Self {
        Store {
            commands: GoMap::new().named(name),
            rw: RwMutex::new().named(&format!("{name} lock")),
            variant,
        }
    }

    /// `Commands`: the exec configurations in the store.
    fn commands(&self) -> GoMap<&'static str, Arc<Config>> {
        if self.variant.fixed() {
            self.rw.rlock();
            let commands = GoMap::new().named("Commands() copy");
            for (id, config) in self.commands.with(|m| m.clone()) {
                commands.insert(id, config);
            }
            self.rw.runlock();
            commands
        } else {
            self.commands.clone()
        }
    }

    /// `Add`.
    fn add(&self, id: &'static str, config: Arc<Config>) {
        self.rw.lock();
        self.commands.insert(id, config);
        self.rw.unlock();
    }

    /// `Delete`.
    fn delete(&self, id: &'static str) {
        self.rw.lock();
        self.commands.remove(&id);
        self.rw.unlock();
    }

    /// `List`: the ids in the store.
    fn list(&self) -> Vec<&'static str> {
        self.rw.rlock();
        let ids = self.commands.with(|m| m.keys().copied().collect());
        self.rw.runlock();
        ids
    }
}

/// `container.Container`: its id and its own exec store.
struct Container {
    id: &'static str,
    exec_commands: Store,
}

/// `contStore`: the daemon's containers by id, behind an embedded `sync.Mutex`.
struct ContStore {
    s: GoMap<&'static str, Arc<Container>>,
    mu: Mutex,
}

impl ContStore {
    /// `Get`.
    fn get(&self, id: &'static str) -> Option<Arc<Container>> {
        self.mu.lock();
        let res = self.s.get(&id);
        self.mu.unlock();
        res
    }

    /// `List`.
    fn list(&self) -> Vec<Arc<Container>> {
        self.mu.lock();
        let containers = self.s.with(|m| m.values().cloned().collect());
        self.mu.unlock();
        containers
    }
}

/// `Daemon`: its containers and its exec store.
struct Daemon {
    containers: ContStore,
    exec_commands: Store,
}

impl Daemon {
    /// `registerExecCommand`.
    fn register_exec_command(&self, container: &Container, config: Arc<Config>) {
        // The container's own store: its execs are killed when it stops or is removed.
        container.exec_commands.add(config.id, config.clone());
        // The daemon's store: the API finds execs there.
        self.exec_commands.add(config.id, config);
    }

    /// `ContainerExecCreate`, reduced to the new exec's registration.
    fn container_exec_create(&self, container_name: &'static str) -> &'static str {
        // getActiveContainer: the container exists and runs.
        let container = self
            .containers
            .get(container_name)
            .expect("No such container");
        let exec_config = Config::new("exec1");
        self.register_exec_command(&container, exec_config.clone());
        exec_config.id
    }

    /// `execCommandGC`: every five minutes, forgets the exec configurations marked removable
    /// last time, and marks those no container knows any more.
    fn exec_command_gc(&self, rounds: usize) {
        let tick = time::tick(Duration::from_secs(5 * 60));
        for _ in 0..rounds {
            tick.recv();
            let mut cleaned = 0;
            let live_exec_commands = self.container_exec_ids();
            // for id, config := range d.execCommands.Commands()
            let commands = self.exec_commands.commands();
            for (id, config) in commands.with(|m| m.clone()) {
                if config.can_remove.get() {
                    cleaned += 1;
                    self.exec_commands.delete(id);
                } else if !live_exec_commands.contains(id) {
                    config.can_remove.set(true);
                }
            }
            let _ = cleaned; // "clean %d unused exec commands"
        }
    }

    /// `containerExecIds`: the ids of the execs the containers know.
    fn container_exec_ids(&self) -> BTreeSet<&'static str> {
        let mut ids = BTreeSet::new();
        for c in self.containers.list() {
            ids.extend(c.exec_commands.list());
        }
        ids
    }
}

/// The daemon starts its exec garbage collector, then serves `docker exec -d web true`.
fn test_moby19407(variant: Variant) {
    let web = Arc::new(Container {
        id: "web",
        exec_commands: Store::new("web ExecCommands", variant),
    });
    let containers = ContStore {
        s: GoMap::new().named("contStore.s"),
        mu: Mutex::new().named("contStore"),
    };
    containers.s.insert(web.id, web);
    let d = Arc::new(Daemon {
        containers,
        exec_commands: Store::new("execCommands", variant),
    });

    // NewDaemon: go d.execCommandGC()
    let wg = WaitGroup::new();
    wg.add(1);
    let (d2, wg2) = (d.clone(), wg.clone());
    go_named("execCommandGC", move || {
        let _done = defer(|| wg2.done());
        d2.exec_command_gc(1);
    });

    // POST /containers/web/exec
    let _id = d.container_exec_create("web");

    // The kernel's collector runs one round; main waits for it.
    wg.wait();
}
