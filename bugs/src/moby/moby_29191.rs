#![doc = include_str!("moby_29191.md")]

use std::sync::Arc;

use primitives::sync::{Mutex, RwMutex, WaitGroup};
use primitives::{defer, go_named, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_29191",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/29191",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_plugin_restart_during_volume_lookup,
        walkthrough: include_str!("moby_29191.md"),
        goker: None,
        asplos: None,
        source: Source::Diff("b35490a8"),
        fix: Fix::Upstream("b35490a8"),
        review: "faithful after mends: Checked against b35490a8 (the PR's only commit), the parent 1c96879f and the PR thread. The",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The volume plugin's capability (`volumeplugin` in volume/drivers).
const EXT_NAME: &str = "VolumeDriver";

/// `plugingetter.CREATE`: a lookup that takes a reference on the plugin (`CreateDriver`).
const CREATE: i32 = 1;

/// `plugins.Client`: the HTTP client on the plugin's socket (its address and timeout).
#[allow(dead_code)]
struct Client {
    addr: String,
    timeout_in_secs: i32,
}

/// `plugins.NewClientWithTimeout`: a new client for the socket at `addr`.
fn new_client_with_timeout(addr: String, timeout_in_secs: i32) -> Arc<Client> {
    Arc::new(Client {
        addr,
        timeout_in_secs,
    })
}

/// `types.Plugin`: the plugin's configuration object (the fields the kernel reads).
struct PluginObj {
    id: &'static str,
    name: &'static str,
    enabled: Shared<bool>,
    socket: &'static str,
    types: Vec<&'static str>,
}

/// `v2.Plugin`. Before the fix `Restart`, `ExitChan` and `TimeoutInSecs` live here and
/// `PClient` is a public field; the fix moves the first three into the manager's
/// `controller` and hides `pClient` behind accessors that take `mu`.
struct Plugin {
    /// The embedded `sync.RWMutex` (the fix names it `mu`).
    mu: RwMutex,
    plugin_obj: PluginObj,
    p_client: Shared<Option<Arc<Client>>>,
    runtime_source_path: String,
    ref_count: Shared<i32>,
    restart: Shared<bool>,
    exit_chan: Shared<Chan<bool>>,
    timeout_in_secs: Shared<i32>,
    variant: Variant,
}

impl Plugin {
    /// The plugin as a key of the manager's `cMap` (a `map[*v2.Plugin]*controller`).
    fn key(&self) -> u64 {
        self.ref_count.identity()
    }

    /// `Client`.
    fn client(&self) -> Option<Arc<Client>> {
        if self.variant.fixed() {
            self.mu.rlock();
            let _unlock = defer(|| self.mu.runlock());
            self.p_client.get()
        } else {
            self.p_client.get()
        }
    }

    /// `SetPClient` (added by the fix).
    fn set_p_client(&self, client: Arc<Client>) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.p_client.set(Some(client));
    }

    /// `GetRuntimeSourcePath` (added by the fix; the path is set once, before any goroutine).
    fn get_runtime_source_path(&self) -> String {
        self.mu.rlock();
        let _unlock = defer(|| self.mu.runlock());
        self.runtime_source_path.clone()
    }

    /// `Name`.
    fn name(&self) -> &'static str {
        self.plugin_obj.name
    }

    /// `FilterByCap`: the plugin if it implements `capability`.
    fn filter_by_cap(self: &Arc<Self>, capability: &'static str) -> Result<Arc<Plugin>, String> {
        if self.plugin_obj.types.contains(&capability) {
            return Ok(self.clone());
        }
        Err(format!(
            "plugin {} found but does not implement {capability}",
            self.name()
        ))
    }

    /// `RemoveFromDisk`: deletes the plugin's runtime directory (nothing on disk here).
    fn remove_from_disk(&self) {}

    /// `IsEnabled`.
    fn is_enabled(&self) -> bool {
        self.mu.rlock();
        let _unlock = defer(|| self.mu.runlock());
        self.plugin_obj.enabled.get()
    }

    /// `GetID`.
    fn get_id(&self) -> &'static str {
        self.mu.rlock();
        let _unlock = defer(|| self.mu.runlock());
        self.plugin_obj.id
    }

    /// `GetSocket`.
    fn get_socket(&self) -> &'static str {
        self.mu.rlock();
        let _unlock = defer(|| self.mu.runlock());
        self.plugin_obj.socket
    }

    /// `GetRefCount` (added by the fix).
    fn get_ref_count(&self) -> i32 {
        self.mu.rlock();
        let _unlock = defer(|| self.mu.runlock());
        self.ref_count.get()
    }

    /// `SetRefCount` (added by the fix).
    fn set_ref_count(&self, count: i32) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.ref_count.set(count);
    }
}

/// `plugin/store.Store`: the plugins by id, and their names.
struct Store {
    /// The embedded `sync.RWMutex`.
    mu: RwMutex,
    plugins: GoMap<&'static str, Arc<Plugin>>,
    name_to_id: GoMap<&'static str, &'static str>,
    variant: Variant,
}

impl Store {
    /// `GetByName`.
    fn get_by_name(&self, name: &'static str) -> Result<Arc<Plugin>, String> {
        self.mu.rlock();
        let _unlock = defer(|| self.mu.runlock());
        let Some(id) = self.name_to_id.get(&name) else {
            return Err(format!("plugin {name:?} not found"));
        };
        self.plugins
            .get(&id)
            .ok_or_else(|| format!("plugin {id:?} not found"))
    }

    /// `GetByID`.
    fn get_by_id(&self, id: &'static str) -> Result<Arc<Plugin>, String> {
        self.mu.rlock();
        let _unlock = defer(|| self.mu.runlock());
        self.plugins
            .get(&id)
            .ok_or_else(|| format!("plugin {id:?} not found"))
    }

    /// `SetState`: under the store's lock, not the plugin's.
    fn set_state(&self, p: &Plugin, state: bool) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        // p.PluginObj.Enabled = state (written here only when it changes: see Deviations)
        if p.plugin_obj.enabled.get() != state {
            p.plugin_obj.enabled.set(state);
        }
        // ps.updatePluginDB(): the plugins' JSON on disk
    }

    /// `Get`: an enabled plugin of that name with that capability (the plugin getter of the
    /// volume, network and authorization subsystems).
    fn get(
        &self,
        name: &'static str,
        capability: &'static str,
        mode: i32,
    ) -> Result<Arc<Plugin>, String> {
        let p = self.get_by_name(name)?;
        if self.variant.fixed() {
            p.set_ref_count(mode + p.get_ref_count());
        } else {
            p.mu.lock();
            p.ref_count.set(p.ref_count.get() + mode);
            p.mu.unlock();
        }
        if p.is_enabled() {
            return p.filter_by_cap(capability);
        }
        // Plugin was found but it is disabled
        Err(format!("plugin {name:?} not found"))
    }
}

/// `controller` (added by the fix): the manager's handle on a running plugin.
struct Controller {
    restart: Shared<bool>,
    exit_chan: Shared<Chan<bool>>,
    timeout_in_secs: i32,
}

fn new_controller(timeout_in_secs: i32) -> Arc<Controller> {
    Arc::new(Controller {
        restart: Shared::new(false).named("controller.restart"),
        exit_chan: Shared::new(Chan::nil()).named("controller.exitChan"),
        timeout_in_secs,
    })
}

/// `libcontainerd.StateInfo` (only its state).
#[derive(PartialEq)]
enum State {
    Exit,
}

/// `plugin.Manager`.
struct Manager {
    plugin_store: Arc<Store>,
    /// `mu` and `cMap` (added by the fix).
    mu: RwMutex,
    c_map: GoMap<u64, Arc<Controller>>,
    variant: Variant,
}

impl Manager {
    /// `Enable` (plugin/backend_linux.go): the `docker plugin enable` API call.
    fn enable_api(&self, name: &'static str, timeout: i32) -> Result<(), String> {
        let p = self.plugin_store.get_by_name(name)?;
        if self.variant.fixed() {
            let c = new_controller(timeout);
            self.enable(&p, Some(&c), false)
        } else {
            p.timeout_in_secs.set(timeout);
            self.enable(&p, None, false)
        }
        // pm.pluginEventLogger(p.GetID(), name, "enable")
    }

    /// `StateChanged`: libcontainerd reports a change of the plugin's container.
    fn state_changed(&self, id: &'static str, state: State) -> Result<(), String> {
        if state == State::Exit {
            let p = self.plugin_store.get_by_id(id)?;
            let (c, restart) = if self.variant.fixed() {
                self.mu.rlock();
                let c = self.c_map.get(&p.key()).expect("cMap holds the plugin");
                let exit_chan = c.exit_chan.get();
                if !exit_chan.is_nil() {
                    exit_chan.close();
                }
                let restart = c.restart.get();
                self.mu.runlock();
                (Some(c), restart)
            } else {
                p.mu.rlock();
                let exit_chan = p.exit_chan.get();
                if !exit_chan.is_nil() {
                    exit_chan.close();
                }
                let restart = p.restart.get();
                p.mu.runlock();
                (None, restart)
            };
            p.remove_from_disk();
            if restart {
                let _ = self.enable(&p, c.as_ref(), true);
            }
        }
        Ok(())
    }

    /// `enable` (plugin/manager_linux.go): starts the plugin's container and connects to it.
    fn enable(
        &self,
        p: &Arc<Plugin>,
        c: Option<&Arc<Controller>>,
        force: bool,
    ) -> Result<(), String> {
        if p.is_enabled() && !force {
            return Err(format!("plugin {} is already enabled", p.name()));
        }
        // spec, err := p.InitSpec(oci.DefaultSpec(), pm.libRoot)
        if self.variant.fixed() {
            let c = c.expect("the fixed enable takes the plugin's controller");
            c.restart.set(true);
            c.exit_chan.set(Chan::new(0));

            self.mu.lock();
            self.c_map.insert(p.key(), c.clone());
            self.mu.unlock();
        } else {
            p.mu.lock();
            p.restart.set(true);
            p.exit_chan.set(Chan::new(0));
            p.mu.unlock();
        }
        // pm.containerdClient.Create(p.GetID(), ...): starts the plugin's container
        let _ = p.get_id();

        if self.variant.fixed() {
            let c = c.expect("the fixed enable takes the plugin's controller");
            let addr = format!("unix://{}/{}", p.get_runtime_source_path(), p.get_socket());
            let client = new_client_with_timeout(addr, c.timeout_in_secs);
            p.set_p_client(client);
        } else {
            let addr = format!("unix://{}/{}", p.runtime_source_path, p.get_socket());
            p.p_client
                .set(Some(new_client_with_timeout(addr, p.timeout_in_secs.get())));
        }
        self.plugin_store.set_state(p, true);
        // pm.pluginStore.CallHandler(p): no network or IPAM handler for a volume plugin
        Ok(())
    }
}

/// `volumeDriverAdapter` as `NewVolumeDriver` makes it.
#[allow(dead_code)]
struct VolumeDriver {
    name: &'static str,
    client: Option<Arc<Client>>,
}

/// `driverExtpoint` (volume/drivers): the drivers known by name, and the plugin getter.
struct DriverExtpoint {
    /// The embedded `sync.Mutex`.
    mu: Mutex,
    extensions: GoMap<&'static str, Arc<VolumeDriver>>,
    plugingetter: Arc<Store>,
}

/// `lookup`: the volume driver of that name, from a v2 plugin if none is registered.
fn lookup(
    drivers: &DriverExtpoint,
    name: &'static str,
    mode: i32,
) -> Result<Arc<VolumeDriver>, String> {
    drivers.mu.lock();
    let ext = drivers.extensions.get(&name);
    drivers.mu.unlock();
    if let Some(ext) = ext {
        return Ok(ext);
    }

    let p = drivers
        .plugingetter
        .get(name, EXT_NAME, mode)
        .map_err(|e| format!("Error looking up volume plugin {name}: {e}"))?;

    let d = Arc::new(VolumeDriver {
        name: p.name(),
        client: p.client(),
    });
    // validateDriver(d); p.IsV1() is false: a v2 driver is not cached in extensions
    Ok(d)
}

/// A daemon with one managed volume plugin, `vol:latest`, enabled through the API. Then, at
/// once: the plugin's container exits (libcontainerd runs `StateChanged` on a goroutine of
/// its queue) and a `docker volume create --driver vol:latest` looks the driver up.
fn test_plugin_restart_during_volume_lookup(variant: Variant) {
    let p = Arc::new(Plugin {
        mu: RwMutex::new().named("Plugin.RWMutex"),
        plugin_obj: PluginObj {
            id: "5a6e",
            name: "vol:latest",
            enabled: Shared::new(false).named("Plugin.PluginObj.Enabled"),
            socket: "vol.sock",
            types: vec![EXT_NAME],
        },
        p_client: Shared::new(None).named("Plugin.PClient"),
        runtime_source_path: "/run/docker/plugins/5a6e".to_string(),
        ref_count: Shared::new(0).named("Plugin.RefCount"),
        restart: Shared::new(false).named("Plugin.Restart"),
        exit_chan: Shared::new(Chan::nil()).named("Plugin.ExitChan"),
        timeout_in_secs: Shared::new(0).named("Plugin.TimeoutInSecs"),
        variant,
    });
    let store = Arc::new(Store {
        mu: RwMutex::new().named("Store.RWMutex"),
        plugins: GoMap::new().named("Store.plugins"),
        name_to_id: GoMap::new().named("Store.nameToID"),
        variant,
    });
    store.plugins.insert(p.plugin_obj.id, p.clone());
    store.name_to_id.insert(p.plugin_obj.name, p.plugin_obj.id);
    let pm = Arc::new(Manager {
        plugin_store: store.clone(),
        mu: RwMutex::new().named("Manager.mu"),
        c_map: GoMap::new().named("Manager.cMap"),
        variant,
    });
    let drivers = Arc::new(DriverExtpoint {
        mu: Mutex::new().named("driverExtpoint.Mutex"),
        extensions: GoMap::new().named("driverExtpoint.extensions"),
        plugingetter: store,
    });

    // docker plugin enable vol:latest
    pm.enable_api("vol:latest", 30).expect("the plugin enables");

    let wg = WaitGroup::new().named("wg");
    wg.add(2);

    // libcontainerd: the plugin's container exited; queue.append runs the backend's
    // StateChanged on a goroutine of its own.
    let (pm2, wg2) = (pm.clone(), wg.clone());
    go_named("queue.append", move || {
        let _ = pm2.state_changed("5a6e", State::Exit);
        wg2.done();
    });

    // The API server's goroutine for `docker volume create --driver vol:latest`.
    let wg2 = wg.clone();
    go_named("volume create", move || {
        let _ = lookup(&drivers, "vol:latest", CREATE);
        wg2.done();
    });

    wg.wait();
}
