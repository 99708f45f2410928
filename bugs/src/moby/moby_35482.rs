#![doc = include_str!("moby_35482.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_35482",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/35482",
        category: "Misuse channel (closed twice)",
        expected: primitives::Verdict::Panic,
        kernel: test_moby35482,
        walkthrough: include_str!("moby_35482.md"),
        budget: Budget { race_detector: false, ..Budget::DEFAULT },
        source: Source::Diff("5b55747a"),
        fix: Fix::Upstream("5b55747a"),
        review: "faithful after mends: Checked against 5b55747a (merge e4d0fe84, #35482), container/health.go, daemon/{health,stop,monitor,start}.go, libcontainerd/{queue,client_daemon}.go at 5b55747a^ and the backports docker-ce#306/#313: the unlocked check-then-close of Health.stop closed twice by containerStop and the exit event, fixed as upstream; the two prose mends (the unsourced \"built without -race\" claim, the Deviations line on Health creation) are made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `types.Starting`, `types.Unhealthy`.
const STARTING: &str = "starting";
const UNHEALTHY: &str = "unhealthy";

/// `container.Health`: the health-check state and the monitor's stop channel.
struct Health {
    /// The embedded `types.Health`'s `Status`.
    status: Shared<&'static str>,
    /// Write struct{} to stop the monitor (nil when no monitor runs).
    stop: Shared<Chan<()>>,
    /// The fix's mutex.
    mu: Mutex,
    variant: Variant,
}

impl Health {
    /// `OpenMonitorChannel`: a new channel, or nil if a monitor already has one.
    fn open_monitor_channel(&self) -> Chan<()> {
        let _unlock = if self.variant.fixed() {
            self.mu.lock();
            Some(defer(|| self.mu.unlock()))
        } else {
            None
        };

        if self.stop.get().is_nil() {
            self.stop.set(Chan::new(0).named("Health.stop"));
            return self.stop.get();
        }
        Chan::nil()
    }

    /// `CloseMonitorChannel`: closes the monitor's channel, if there is one.
    fn close_monitor_channel(&self) {
        let _unlock = if self.variant.fixed() {
            self.mu.lock();
            Some(defer(|| self.mu.unlock()))
        } else {
            None
        };

        if !self.stop.get().is_nil() {
            self.stop.get().close();
            self.stop.set(Chan::nil());
            // unhealthy when the monitor has stopped for compatibility reasons
            self.status.set(UNHEALTHY);
        }
    }
}

/// `container.Container` with its `State` (whose embedded mutex is the container's lock).
struct Container {
    mu: Mutex,
    running: Shared<bool>,
    health: Arc<Health>,
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

/// `daemon.monitor`: the health-check loop, here only waiting to be stopped.
fn monitor(stop: Chan<()>) {
    // select { case <-stop: return; case <-time.After(probeInterval): probe }
    stop.recv();
}

/// `updateHealthMonitor` (called with c locked): the container runs, so start the monitor.
fn update_health_monitor(c: &Container) {
    let h = &c.health;
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

/// `initHealthMonitor` (called with c locked), for a container that was never started.
fn init_health_monitor(c: &Container) {
    stop_healthchecks(c);
    c.health.status.set(STARTING);
    update_health_monitor(c);
}

/// `stopHealthchecks`.
fn stop_healthchecks(c: &Container) {
    c.health.close_monitor_channel();
}

/// `containerStop`, for `docker stop`: no container lock around `stopHealthchecks`.
fn container_stop(container: &Container) {
    if !container.is_running() {
        return;
    }

    stop_healthchecks(container);
    // 1. Send a stop signal ... (left out: the kill and the wait for the exit).
}

/// `ProcessEvent` for `EventExit`: the container's process has exited.
fn process_event_exit(c: &Container) {
    c.mu.lock();
    // c.StreamConfig.Wait(), c.Reset(false), the restart manager: left out.
    c.running.set(false); // c.SetStopped(&exitStatus)

    // cancel healthcheck here, they will be automatically
    // restarted if/when the container is started again
    stop_healthchecks(c);
    c.mu.unlock();
}

/// A container with a health check is running (started by `containerStart`, which calls
/// `initHealthMonitor` with the container locked). A user runs `docker stop` on it just as
/// its process exits on its own: the API's goroutine and libcontainerd's event goroutine
/// both stop the health checks.
fn test_moby35482(variant: Variant) {
    let c = Arc::new(Container {
        mu: Mutex::new().named("container.State"),
        running: Shared::new(false).named("container.Running"),
        health: Arc::new(Health {
            status: Shared::new("").named("Health.Status"),
            stop: Shared::new(Chan::nil()).named("Health.stop"),
            mu: Mutex::new().named("Health.mu"),
            variant,
        }),
    });
    // containerStart: container.SetRunning(pid, true); daemon.initHealthMonitor(container)
    c.mu.lock();
    c.running.set(true);
    init_health_monitor(&c);
    c.mu.unlock();

    let c1 = c.clone();
    go_named("containerStop", move || container_stop(&c1));
    go_named("ProcessEvent", move || process_event_exit(&c));
}
