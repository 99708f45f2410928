#![doc = include_str!("moby_35517.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_35517",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/35517",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_moby35517,
        walkthrough: include_str!("moby_35517.md"),
        source: Source::Diff("7db30ab0"),
        fix: Fix::Upstream("7db30ab0"),
        review: "faithful: Checked against 7db30ab0 (the one commit of #35517, merge 9de84a78), container/health.go, daemon/{health,inspect,stop}.go at 7db30ab0^ and docker-ce#306: Health.Status written under Health.mu by CloseMonitorChannel and read under the container lock by inspect, fixed by Status()/SetStatus() as upstream; racing pair is the porter's admitted choice.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `types.Starting`, `types.Unhealthy`.
const STARTING: &str = "starting";
const UNHEALTHY: &str = "unhealthy";

/// `container.Health`: `types.Health`'s `Status`, the monitor's stop channel, and the mutex
/// #35482 added for that channel.
struct Health {
    status: Shared<&'static str>,
    stop: Shared<Chan<()>>,
    mu: Mutex,
}

impl Health {
    fn new() -> Arc<Health> {
        Arc::new(Health {
            status: Shared::new("").named("Health.Status"),
            stop: Shared::new(Chan::nil()).named("Health.stop"),
            mu: Mutex::new().named("Health.mu"),
        })
    }

    /// The fix's `Status`: the status, read under `mu`.
    fn status(&self) -> &'static str {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());

        // This happens when the monitor has yet to be setup.
        if self.status.get().is_empty() {
            return UNHEALTHY;
        }

        self.status.get()
    }

    /// The fix's `SetStatus`: writes the status under `mu`.
    fn set_status(&self, new: &'static str) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());

        self.status.set(new);
    }

    /// `OpenMonitorChannel`.
    fn open_monitor_channel(&self) -> Chan<()> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());

        if self.stop.get().is_nil() {
            self.stop.set(Chan::new(0).named("Health.stop"));
            return self.stop.get();
        }
        Chan::nil()
    }

    /// `CloseMonitorChannel`.
    fn close_monitor_channel(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());

        if !self.stop.get().is_nil() {
            self.stop.get().close();
            self.stop.set(Chan::nil());
            // unhealthy when the monitor has stopped for compatibility reasons
            self.status.set(UNHEALTHY);
        }
    }
}

/// `container.Container` with its `State`: the container's lock, `Running`, `Health`.
struct Container {
    mu: Mutex,
    running: Shared<bool>,
    health: Shared<Option<Arc<Health>>>,
}

impl Container {
    /// `State.IsRunning`.
    fn is_running(&self) -> bool {
        self.mu.lock();
        let res = self.running.get();
        self.mu.unlock();
        res
    }
}

/// `types.Health` as `docker inspect` shows it.
#[derive(Debug)]
#[allow(dead_code)]
struct HealthJson {
    status: &'static str,
}

/// The daemon, with the variant of the code it runs.
struct Daemon {
    variant: Variant,
}

/// `daemon.monitor`: the health-check loop, here only waiting to be stopped.
fn monitor(stop: Chan<()>) {
    // select { case <-stop: return; case <-time.After(probeInterval): probe }
    stop.recv();
}

impl Daemon {
    /// `updateHealthMonitor` (called with c locked): the container runs, so start the monitor.
    fn update_health_monitor(&self, c: &Container) {
        let Some(h) = c.health.get() else {
            return; // No healthcheck configured
        };
        let want_running = c.running.get();
        if want_running {
            let stop = h.open_monitor_channel();
            if !stop.is_nil() {
                go_named("monitor", move || monitor(stop));
            }
        } else {
            h.close_monitor_channel();
        }
    }

    /// `initHealthMonitor` (called with c locked).
    fn init_health_monitor(&self, c: &Container) {
        self.stop_healthchecks(c);

        if let Some(h) = c.health.get() {
            if self.variant.fixed() {
                h.set_status(STARTING);
            } else {
                h.status.set(STARTING);
            }
        } else {
            let h = Health::new();
            if self.variant.fixed() {
                h.set_status(STARTING);
            } else {
                h.status.set(STARTING);
            }
            c.health.set(Some(h));
        }

        self.update_health_monitor(c);
    }

    /// `stopHealthchecks`.
    fn stop_healthchecks(&self, c: &Container) {
        if let Some(h) = c.health.get() {
            h.close_monitor_channel();
        }
    }

    /// `containerStop`, for `docker stop`: no container lock around `stopHealthchecks`.
    fn container_stop(&self, container: &Container) {
        if !container.is_running() {
            return;
        }

        self.stop_healthchecks(container);
        // 1. Send a stop signal ... (left out: the kill and the wait for the exit).
    }

    /// `getInspectData` (called with the container locked): the health part.
    fn get_inspect_data(&self, container: &Container) -> Option<HealthJson> {
        container.health.get().map(|h| HealthJson {
            status: if self.variant.fixed() {
                h.status()
            } else {
                h.status.get()
            },
        })
    }

    /// `ContainerInspectCurrent`, for `docker inspect`.
    fn container_inspect_current(&self, container: &Container) -> Option<HealthJson> {
        container.mu.lock();
        let base = self.get_inspect_data(container);
        container.mu.unlock();
        base
    }
}

/// A container with a health check runs (started by `containerStart`, which calls
/// `initHealthMonitor` with the container locked). A user stops it while another inspects
/// it: two API goroutines, one writing the health status, one reading it.
fn test_moby35517(variant: Variant) {
    let daemon = Arc::new(Daemon { variant });
    let c = Arc::new(Container {
        mu: Mutex::new().named("container.State"),
        running: Shared::new(false).named("container.Running"),
        health: Shared::new(None).named("State.Health"),
    });
    // containerStart: container.SetRunning(pid, true); daemon.initHealthMonitor(container)
    c.mu.lock();
    c.running.set(true);
    daemon.init_health_monitor(&c);
    c.mu.unlock();

    let (d1, c1) = (daemon.clone(), c.clone());
    go_named("containerStop", move || d1.container_stop(&c1));
    go_named("ContainerInspect", move || {
        let _ = daemon.container_inspect_current(&c);
    });
}
