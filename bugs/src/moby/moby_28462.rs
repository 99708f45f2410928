#![doc = include_str!("moby_28462.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_28462",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/28462",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Leak,
        kernel: test_moby28462,
        walkthrough: include_str!("moby_28462.md"),
        goker: Some("gobench/goker/blocking/moby/28462"),
        asplos: Some("blocking-bugs/docker/89b123473774248fc3a0356dd3ce5b116cc69b29.txt"),
        budget: Budget { loom: 3_000, ..Budget::DEFAULT },
        source: Source::Goker,
        fix: Fix::Upstream("89b12347"),
        review: "faithful: Checked against GoKer blocking/moby/28462, upstream at b184bdab (monitor.go, health.go, container/health.go) and fix 89b12347 (#28462, merge c2fbf087): same lock/channel cycle between the health monitor and StateChanged, upstream's two-part fix switched, all shrinks admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `container.Health`: `stop` is the channel that stops the container's health monitor.
struct Health {
    stop: Shared<Chan<()>>,
    variant: Variant,
}

impl Health {
    /// `OpenMonitorChannel`: a new stop channel, or nil if a monitor already has one.
    fn open_monitor_channel(&self) -> Chan<()> {
        if self.stop.get().is_nil() {
            self.stop.set(Chan::new(0).named("stop"));
            return self.stop.get();
        }
        Chan::nil()
    }

    /// `CloseMonitorChannel`.
    fn close_monitor_channel(&self) {
        let stop = self.stop.get();
        if !stop.is_nil() {
            if self.variant.fixed() {
                stop.close();
            } else {
                // Unbuffered: returns only once the monitor has taken the stop request.
                stop.send(());
            }
            self.stop.set(Chan::nil());
        }
    }
}

/// `container.State`.
struct State {
    health: Health,
}

/// `container.Container`, which embeds a `sync.Mutex`.
struct Container {
    mutex: Mutex,
    state: State,
}

impl Deref for Container {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

/// The daemon's container store.
struct Store {
    ctr: Arc<Container>,
}

impl Store {
    fn get(&self) -> Arc<Container> {
        self.ctr.clone()
    }
}

/// `daemon.Daemon`.
struct Daemon {
    containers: Store,
}

impl Daemon {
    /// `StateChanged` for an exit: the container's lock, then `updateHealthMonitor`; the
    /// unlock is deferred only after that call.
    fn state_changed(&self) {
        let c = self.containers.get();
        c.lock();
        self.update_health_monitor_else_branch(&c);
        let _unlock = defer(|| c.unlock());
    }

    /// `updateHealthMonitor` when the container is not running: its else branch.
    fn update_health_monitor_else_branch(&self, c: &Container) {
        let h = &c.state.health;
        h.close_monitor_channel();
    }
}

/// The health monitor: probes the container every `probe_interval` until it is told to stop.
/// The probe goroutine and the inner `select` on its result are left out: a probe's result is
/// handled as soon as the interval has passed.
fn monitor(c: Arc<Container>, stop: Chan<()>, variant: Variant) {
    let probe_interval = Duration::from_secs(30); // defaultProbeInterval
    loop {
        select! {
            recv(stop) => return,
            recv(time::after(probe_interval)) => {
                if variant.fixed() {
                    handle_probe_result(&c, Some(&stop));
                } else {
                    handle_probe_result(&c, None);
                }
            },
        }
    }
}

/// Records a probe's result in the container's state, under the container's lock. `done` is
/// the parameter the fix added.
// The early `return` is upstream's: the result would be recorded after it (left out here).
#[allow(clippy::needless_return)]
fn handle_probe_result(c: &Container, done: Option<&Chan<()>>) {
    c.lock();
    let _unlock = defer(|| c.unlock());
    if let Some(done) = done {
        // The probe may have been stopped while this waited for the lock: ignore its result.
        select! {
            recv(done) => return,
            default => {}
        }
    }
    // (Recording the result in c.State.Health is left out.)
}

fn new_daemon_and_container(variant: Variant) -> (Daemon, Arc<Container>) {
    let c = Arc::new(Container {
        mutex: Mutex::new().named("Container"),
        state: State {
            health: Health {
                stop: Shared::new(Chan::nil()).named("Health.stop"),
                variant,
            },
        },
    });
    let d = Daemon {
        containers: Store { ctr: c.clone() },
    };
    (d, c)
}

/// `TestMoby28462`.
fn test_moby28462(variant: Variant) {
    let (d, c) = new_daemon_and_container(variant);
    // updateHealthMonitor's if branch, when the container started: open and start the monitor.
    let stop = c.state.health.open_monitor_channel();
    if !stop.is_nil() {
        go_named("monitor", move || monitor(c, stop, variant));
    }
    go_named("StateChanged", move || d.state_changed());
}
