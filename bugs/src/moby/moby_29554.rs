#![doc = include_str!("moby_29554.md")]

use std::collections::BTreeMap;
use std::sync::Arc;

use primitives::sync::{AtomicI32, Mutex, RwMutex, WaitGroup};
use primitives::{defer, go_named, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_29554",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/29554",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_info_while_container_exits,
        walkthrough: include_str!("moby_29554.md"),
        goker: None,
        asplos: None,
        source: Source::Diff("e4c03623"),
        fix: Fix::Upstream("e4c03623"),
        review: "faithful after mends: Checked against e4c03623 (the PR's only commit, whose message names the race), the parent",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `container.State` as part of `container.Container` (the fields `StateString` reads and
/// `SetRunning` / `SetStopped` write). Guarded by the embedded `sync.Mutex`.
struct Container {
    /// `State`'s embedded `sync.Mutex` (`c.Lock()`).
    mu: Mutex,
    id: &'static str,
    running: Shared<bool>,
    paused: Shared<bool>,
    restarting: Shared<bool>,
    removal_in_progress: Shared<bool>,
    dead: Shared<bool>,
    pid: Shared<i32>,
    exit_code_value: Shared<i32>,
    /// `StartedAt.IsZero()`.
    started_at_zero: Shared<bool>,
}

impl Container {
    fn new(id: &'static str) -> Arc<Container> {
        Arc::new(Container {
            mu: Mutex::new().named("State.Mutex"),
            id,
            running: Shared::new(false).named("State.Running"),
            paused: Shared::new(false).named("State.Paused"),
            restarting: Shared::new(false).named("State.Restarting"),
            removal_in_progress: Shared::new(false).named("State.RemovalInProgress"),
            dead: Shared::new(false).named("State.Dead"),
            pid: Shared::new(0).named("State.Pid"),
            exit_code_value: Shared::new(0).named("State.ExitCodeValue"),
            started_at_zero: Shared::new(true).named("State.StartedAt"),
        })
    }

    /// `StateString`: takes no lock.
    fn state_string(&self) -> &'static str {
        if self.running.get() {
            if self.paused.get() {
                return "paused";
            }
            if self.restarting.get() {
                return "restarting";
            }
            return "running";
        }
        if self.removal_in_progress.get() {
            return "removing";
        }
        if self.dead.get() {
            return "dead";
        }
        if self.started_at_zero.get() {
            return "created";
        }
        "exited"
    }

    /// `SetRunning` (the caller holds the lock).
    fn set_running(&self, pid: i32, initial: bool) {
        self.running.set(true);
        self.restarting.set(false);
        self.exit_code_value.set(0);
        self.pid.set(pid);
        if initial {
            self.started_at_zero.set(false);
        }
    }

    /// `SetStopped` (the caller holds the lock).
    fn set_stopped(&self, exit_code: i32) {
        self.running.set(false);
        self.paused.set(false);
        self.restarting.set(false);
        self.pid.set(0);
        // s.FinishedAt = time.Now().UTC(); s.setFromExitStatus(exitStatus)
        self.exit_code_value.set(exit_code);
    }
}

/// `container.memoryStore`: the daemon's containers by id.
struct MemoryStore {
    /// The embedded `sync.RWMutex`.
    mu: RwMutex,
    s: GoMap<&'static str, Arc<Container>>,
}

impl MemoryStore {
    /// `Add`.
    fn add(&self, id: &'static str, cont: Arc<Container>) {
        self.mu.lock();
        self.s.insert(id, cont);
        self.mu.unlock();
    }

    /// `Get`.
    fn get(&self, id: &'static str) -> Option<Arc<Container>> {
        self.mu.rlock();
        let res = self.s.get(&id);
        self.mu.runlock();
        res
    }

    /// `ApplyAll`: runs `apply` on every container, each on a goroutine of its own, and waits.
    fn apply_all(&self, apply: Arc<dyn Fn(&Container) + Send + Sync>) {
        let wg = WaitGroup::new().named("ApplyAll wg");
        for cont in self.all() {
            wg.add(1);
            let (apply, wg) = (apply.clone(), wg.clone());
            go_named("ApplyAll", move || {
                apply(&cont);
                wg.done();
            });
        }
        wg.wait();
    }

    /// `all`.
    fn all(&self) -> Vec<Arc<Container>> {
        self.mu.rlock();
        let containers = self.s.with(|s| s.values().cloned().collect());
        self.mu.runlock();
        containers
    }
}

/// `stateCounter` (added by the fix): each container's state label, under its own mutex.
struct StateCounter {
    mu: Mutex,
    states: GoMap<&'static str, &'static str>,
}

impl StateCounter {
    /// `get`: how many containers are running, paused, stopped.
    fn get(&self) -> (i32, i32, i32) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let mut states = BTreeMap::from([("running", 0), ("paused", 0), ("stopped", 0)]);
        self.states.with(|s| {
            for state in s.values() {
                *states.entry(*state).or_insert(0) += 1;
            }
        });
        (states["running"], states["paused"], states["stopped"])
    }

    /// `set`.
    fn set(&self, id: &'static str, label: &'static str) {
        self.mu.lock();
        self.states.insert(id, label);
        self.mu.unlock();
    }
}

/// The container counts of `types.Info`.
#[allow(dead_code)]
struct Info {
    containers_running: i32,
    containers_paused: i32,
    containers_stopped: i32,
}

/// `libcontainerd.StateInfo` (its state, pid and exit code).
enum StateInfo {
    Start { pid: i32 },
    Exit { exit_code: i32 },
}

/// `daemon.Daemon` (its container store; `stateCtr` is a package variable upstream).
struct Daemon {
    containers: MemoryStore,
    state_ctr: StateCounter,
    variant: Variant,
}

impl Daemon {
    /// `create`, from `Register` on (create.go).
    fn create(&self, container: Arc<Container>) {
        self.containers.add(container.id, container.clone()); // daemon.Register(container)
        if self.variant.fixed() {
            self.state_ctr.set(container.id, "stopped");
        }
        // daemon.LogContainerEvent(container, "create")
    }

    /// `setStateCounter` (added by the fix).
    fn set_state_counter(&self, c: &Container) {
        match c.state_string() {
            "paused" => self.state_ctr.set(c.id, "paused"),
            "running" => self.state_ctr.set(c.id, "running"),
            _ => self.state_ctr.set(c.id, "stopped"),
        }
    }

    /// `StateChanged`: libcontainerd reports a change of a container's state.
    fn state_changed(&self, id: &'static str, e: StateInfo) -> Result<(), String> {
        let Some(c) = self.containers.get(id) else {
            return Err(format!("no such container: {id}"));
        };
        match e {
            StateInfo::Exit { exit_code } => {
                c.mu.lock();
                // c.StreamConfig.Wait(); c.Reset(false)
                // the restart manager says no restart (policy "no")
                c.set_stopped(exit_code);
                // daemon.stopHealthchecks(c); LogContainerEventWithAttributes(c, "die", ...);
                // daemon.Cleanup(c)
                if self.variant.fixed() {
                    self.set_state_counter(&c);
                }
                let _unlock = defer(|| c.mu.unlock());
                // c.ToDisk(); daemon.postRunProcessing(c, e)
                Ok(())
            }
            StateInfo::Start { pid } => {
                // Container is already locked in this case
                c.set_running(pid, true);
                // c.HasBeenManuallyStopped = false; c.HasBeenStartedBefore = true
                if self.variant.fixed() {
                    self.set_state_counter(&c);
                }
                // c.ToDisk(); daemon.initHealthMonitor(c); LogContainerEvent(c, "start")
                Ok(())
            }
        }
    }

    /// `SystemInfo`: the `/info` endpoint (its container counts).
    fn system_info(&self) -> Info {
        // sysInfo := sysinfo.New(true)
        let (c_running, c_paused, c_stopped) = if self.variant.fixed() {
            self.state_ctr.get()
        } else {
            let c_running = Arc::new(AtomicI32::new(0).named("cRunning"));
            let c_paused = Arc::new(AtomicI32::new(0).named("cPaused"));
            let c_stopped = Arc::new(AtomicI32::new(0).named("cStopped"));
            let (r, p, s) = (c_running.clone(), c_paused.clone(), c_stopped.clone());
            self.containers
                .apply_all(Arc::new(move |c: &Container| match c.state_string() {
                    "paused" => {
                        p.add(1);
                    }
                    "running" => {
                        r.add(1);
                    }
                    _ => {
                        s.add(1);
                    }
                }));
            (
                c_running.plain_load(),
                c_paused.plain_load(),
                c_stopped.plain_load(),
            )
        };
        Info {
            containers_running: c_running,
            containers_paused: c_paused,
            containers_stopped: c_stopped,
        }
    }
}

/// A daemon with one running container. Then, at once: the container's process exits
/// (libcontainerd runs `StateChanged` on a goroutine of its queue) and a client calls
/// `GET /info` (`docker info`).
fn test_info_while_container_exits(variant: Variant) {
    let daemon = Arc::new(Daemon {
        containers: MemoryStore {
            mu: RwMutex::new().named("memoryStore.RWMutex"),
            s: GoMap::new().named("memoryStore.s"),
        },
        state_ctr: StateCounter {
            mu: Mutex::new().named("stateCounter.mu"),
            states: GoMap::new().named("stateCounter.states"),
        },
        variant,
    });

    // docker run -d busybox: create, then start (containerStart holds the container's lock
    // when libcontainerd reports the start).
    let c = Container::new("c1");
    daemon.create(c.clone());
    c.mu.lock();
    daemon
        .state_changed("c1", StateInfo::Start { pid: 4242 })
        .expect("the container exists");
    c.mu.unlock();

    let wg = WaitGroup::new().named("wg");
    wg.add(2);

    // libcontainerd: the container's process exited; queue.append runs the backend's
    // StateChanged on a goroutine of its own.
    let (d, wg2) = (daemon.clone(), wg.clone());
    go_named("queue.append", move || {
        let _ = d.state_changed("c1", StateInfo::Exit { exit_code: 0 });
        wg2.done();
    });

    // The API server's goroutine for GET /info.
    let (d, wg2) = (daemon.clone(), wg.clone());
    go_named("getInfo", move || {
        let _ = d.system_info();
        wg2.done();
    });

    wg.wait();
}
