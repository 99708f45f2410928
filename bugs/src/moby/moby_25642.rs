#![doc = include_str!("moby_25642.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, select, time, Chan, GoMap, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_25642",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/25642",
        category: "Resource deadlock (Lock while holding the RLock of the same RWMutex)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_moby25642,
        walkthrough: include_str!("moby_25642.md"),
        goker: None,
        asplos: Some("blocking-bugs/docker/4d009084de8cad94a180130eb57efa2a98df6d98.txt"),
        source: Source::Diff("4d009084"),
        fix: Fix::Upstream("4d009084"),
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        review: "faithful: Checked against 4d009084 (#25642) and plugin/manager{,_linux}.go at its parent: Shutdown's pm.Lock under its own deferred RLock, with StateChanged's exitChan handshake, kept line for line; the fix's four-line deletion is the Variant switch; lazy timers admitted with a correct reason; faithful, nothing unadmitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `SIGTERM` and `SIGKILL`, as `syscall` numbers.
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// `libcontainerd.StateExit`.
const STATE_EXIT: &str = "exit";

/// `types.Plugin`, the persisted part of a plugin.
#[derive(Clone)]
struct PluginObj {
    id: &'static str,
    active: bool,
}

/// `plugin.plugin`.
struct Plugin {
    plugin_obj: Shared<PluginObj>,
    exit_chan: Shared<Chan<bool>>,
}

/// The containerd client: `Signal` reaches the plugin's process, whose exit comes back to the
/// manager as a state change.
struct ContainerdClient {
    signals: Chan<(&'static str, i32)>,
}

impl ContainerdClient {
    /// `Signal`.
    fn signal(&self, id: &'static str, sig: i32) -> Result<(), String> {
        self.signals.send((id, sig));
        Ok(())
    }
}

/// `plugin.Manager`.
struct Manager {
    rw: RwMutex,
    plugins: GoMap<&'static str, Arc<Plugin>>,
    shutdown: Shared<bool>,
    live_restore: bool,
    containerd_client: ContainerdClient,
    variant: Variant,
}

impl Deref for Manager {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw
    }
}

impl Manager {
    /// `save`: writes `plugins.json`.
    fn save(&self) {
        let _json: Vec<(&str, bool)> = self.plugins.with(|m| {
            m.values()
                .map(|p| p.plugin_obj.read(|o| (o.id, o.active)))
                .collect()
        });
    }

    /// `Shutdown`: stops every plugin; called when the daemon shuts down.
    fn shutdown(&self) {
        self.rlock();
        let _runlock = defer(|| self.runlock());

        self.shutdown.set(true);
        let plugins: Vec<Arc<Plugin>> = self.plugins.with(|m| m.values().cloned().collect());
        for p in plugins {
            let active = p.plugin_obj.read(|o| o.active);
            if self.live_restore && active {
                // Plugin active when liveRestore is set, skipping shutdown
                continue;
            }
            if active {
                let id = p.plugin_obj.read(|o| o.id);
                p.exit_chan.set(Chan::new(0).named("exitChan"));
                let exit_chan = p.exit_chan.get();
                if self.containerd_client.signal(id, SIGTERM).is_ok() {
                    select! {
                        recv(exit_chan) => {
                            // Clean shutdown of plugin
                        },
                        recv(time::after(Duration::from_secs(10))) => {
                            // Force shutdown plugin
                            let _ = self.containerd_client.signal(id, SIGKILL);
                        },
                    }
                }
                exit_chan.close();
                if !self.variant.fixed() {
                    self.lock();
                    p.plugin_obj.write(|o| o.active = false);
                    self.save();
                    self.unlock();
                }
            }
        }
    }

    /// `StateChanged`: libcontainerd reports a state change of a plugin's process.
    fn state_changed(&self, id: &'static str, state: &str) -> Result<(), String> {
        if state == STATE_EXIT {
            self.rlock();
            let p = self.plugins.get(&id);
            self.runlock();
            let Some(p) = p else {
                return Err(format!("plugin {id} not found"));
            };
            if self.shutdown.get() {
                p.exit_chan.get().send(true);
            }
        }
        Ok(())
    }
}

/// The daemon shuts down with one active plugin: `Shutdown` sends it SIGTERM and waits for its
/// exit, which containerd reports back through `StateChanged`.
fn test_moby25642(variant: Variant) {
    let pm = Arc::new(Manager {
        rw: RwMutex::new().named("pm"),
        plugins: GoMap::new().named("pm.plugins"),
        shutdown: Shared::new(false).named("pm.shutdown"),
        live_restore: false,
        containerd_client: ContainerdClient {
            signals: Chan::new(2).named("signals"),
        },
        variant,
    });
    let id = "plugin";
    pm.plugins.insert(
        id,
        Arc::new(Plugin {
            plugin_obj: Shared::new(PluginObj { id, active: true }).named("p.PluginObj"),
            exit_chan: Shared::new(Chan::nil()).named("p.exitChan"),
        }),
    );

    // The plugin's process and libcontainerd's event handling: the process exits on SIGTERM,
    // and the exit event is handed to the manager.
    let pm2 = pm.clone();
    go_named("containerd", move || {
        if let Some((id, _sig)) = pm2.containerd_client.signals.recv() {
            let _ = pm2.state_changed(id, STATE_EXIT);
        }
    });

    // The daemon shuts down.
    pm.shutdown();
}
