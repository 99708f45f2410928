#![doc = include_str!("moby_31273.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_31273",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/31273",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_moby31273,
        walkthrough: include_str!("moby_31273.md"),
        asplos: Some("blocking-bugs/docker/37addf0a50ccba51630368c6ed09eb08166d6f48.txt"),
        source: Source::Diff("37addf0a"),
        fix: Fix::Upstream("37addf0a"),
        review: "faithful: Checked against 37addf0a (= ASPLOS'19 blocking-bugs/docker/37addf0a…), daemon/{container_operations,network,daemon,restart}.go, container/{container,state,view}.go at 37addf0a^ and the PR branch history (eed4c7b73f, aacddda89d, merge 56ad9bb1): the re-entrant container lock in ConnectToNetwork/DisconnectFromNetwork → checkpointAndSave, fixed as upstream; branch-only status stated plainly.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `networktypes.EndpointSettings`, reduced to the one field the kernel sets.
#[derive(Clone, Debug, PartialEq)]
struct EndpointSettings {
    aliases: Vec<&'static str>,
}

/// `container.State`, which embeds the container's `sync.Mutex`.
struct State {
    mutex: Mutex,
    running: Shared<bool>,
    removal_in_progress: Shared<bool>,
    dead: Shared<bool>,
}

/// What `toDisk` copies for the replica: the fields the kernel keeps (stored, never read back).
#[derive(Clone, Debug)]
#[allow(dead_code)]
struct Snapshot {
    id: &'static str,
    networks: Vec<(&'static str, EndpointSettings)>,
}

/// `container.Container`: its embedded `*State` (and so its lock) and its network settings.
struct Container {
    state: State,
    id: &'static str,
    /// `NetworkSettings.Networks`.
    networks: GoMap<&'static str, EndpointSettings>,
}

impl Deref for Container {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.state.mutex
    }
}

/// `container.memDB`, the in-memory replica (`daemon.containersReplica`): go-memdb serialises
/// write transactions with its `writer` lock.
struct MemDb {
    writer: Mutex,
    store: GoMap<&'static str, Snapshot>,
}

impl MemDb {
    /// `Save`: a write transaction that inserts the copy.
    fn save(&self, c: Snapshot) -> Result<(), String> {
        self.writer.lock();
        let _commit = defer(|| self.writer.unlock());
        self.store.insert(c.id, c);
        Ok(())
    }
}

impl Container {
    /// `toDisk`: a deep copy of the container (the JSON write to disk is left out). The caller
    /// holds the container's lock.
    fn to_disk(&self) -> Result<Snapshot, String> {
        let networks = self
            .networks
            .with(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>());
        Ok(Snapshot {
            id: self.id,
            networks,
        })
    }

    /// `CheckpointTo`: saves a copy of the container to the replica. The caller holds the lock.
    fn checkpoint_to(&self, store: &MemDb) -> Result<(), String> {
        let deep_copy = self.to_disk()?;
        store.save(deep_copy)
    }
}

/// The daemon: its containers, its networks, and the replica.
struct Daemon {
    containers: GoMap<&'static str, Arc<Container>>,
    networks: GoMap<&'static str, &'static str>,
    containers_replica: MemDb,
    variant: Variant,
}

impl Daemon {
    /// `GetContainer`.
    fn get_container(&self, name: &'static str) -> Result<Arc<Container>, String> {
        self.containers
            .get(&name)
            .ok_or_else(|| format!("No such container: {name}"))
    }

    /// `FindNetwork`: the network's name.
    fn find_network(&self, id_or_name: &'static str) -> Result<&'static str, String> {
        self.networks
            .get(&id_or_name)
            .ok_or_else(|| format!("network {id_or_name} not found"))
    }

    /// `checkpointAndSave`: takes the container's lock to call `CheckpointTo`.
    fn checkpoint_and_save(&self, container: &Container) -> Result<(), String> {
        container.lock();
        let _unlock = defer(|| container.unlock());
        container
            .checkpoint_to(&self.containers_replica)
            .map_err(|err| format!("Error saving container state: {err}"))
    }

    /// `updateNetworkConfig` with `updateSettings`: records the endpoint in the container's
    /// network settings.
    fn update_network_config(
        &self,
        container: &Container,
        n: &'static str,
        endpoint_config: EndpointSettings,
    ) -> Result<(), String> {
        container.networks.insert(n, endpoint_config);
        Ok(())
    }

    /// `ConnectToNetwork`.
    fn connect_to_network(
        &self,
        container: &Container,
        id_or_name: &'static str,
        endpoint_config: Option<EndpointSettings>,
    ) -> Result<(), String> {
        let endpoint_config = endpoint_config.unwrap_or(EndpointSettings {
            aliases: Vec::new(),
        });
        container.lock();
        let _unlock = defer(|| container.unlock());

        if !container.state.running.get() {
            if container.state.removal_in_progress.get() || container.state.dead.get() {
                return Err(format!("Container {} is marked for removal", container.id));
            }
            match self.find_network(id_or_name) {
                Ok(n) => self.update_network_config(container, n, endpoint_config)?,
                Err(_) => {
                    container.networks.insert(id_or_name, endpoint_config);
                }
            }
        } else {
            unreachable!("the kernel's container is stopped");
        }

        if self.variant.fixed() {
            container.checkpoint_to(&self.containers_replica)
        } else {
            self.checkpoint_and_save(container)
        }
    }

    /// `DisconnectFromNetwork`.
    fn disconnect_from_network(
        &self,
        container: &Container,
        network_name: &'static str,
        force: bool,
    ) -> Result<(), String> {
        let n = self.find_network(network_name);
        container.lock();
        let _unlock = defer(|| container.unlock());

        if !container.state.running.get() || (n.is_err() && force) {
            if container.state.removal_in_progress.get() || container.state.dead.get() {
                return Err(format!("Container {} is marked for removal", container.id));
            }
            let network_name = n.clone().unwrap_or(network_name);
            if container.networks.remove(&network_name).is_none() {
                return Err(format!(
                    "container {} is not connected to the network {network_name}",
                    container.id
                ));
            }
        } else {
            unreachable!("the kernel's container is stopped");
        }

        if self.variant.fixed() {
            container.checkpoint_to(&self.containers_replica)?;
        } else {
            self.checkpoint_and_save(container)?;
        }
        // LogNetworkEventWithAttributes(n, "disconnect", ...) is left out.
        Ok(())
    }

    /// `ConnectContainerToNetwork`: the API's `POST /networks/{id}/connect`.
    fn connect_container_to_network(
        &self,
        container_name: &'static str,
        network_name: &'static str,
        endpoint_config: Option<EndpointSettings>,
    ) -> Result<(), String> {
        let container = self.get_container(container_name)?;
        self.connect_to_network(&container, network_name, endpoint_config)
    }

    /// `DisconnectContainerFromNetwork`: the API's `POST /networks/{id}/disconnect`.
    fn disconnect_container_from_network(
        &self,
        container_name: &'static str,
        network_name: &'static str,
        force: bool,
    ) -> Result<(), String> {
        let container = self.get_container(container_name)?;
        self.disconnect_from_network(&container, network_name, force)
    }
}

/// `docker network connect backend web` and then `docker network disconnect backend web` on
/// a stopped container: each request runs on the API server's goroutine for it, here main.
fn test_moby31273(variant: Variant) {
    let web = Arc::new(Container {
        state: State {
            mutex: Mutex::new().named("container.State"),
            running: Shared::new(false).named("container.Running"),
            removal_in_progress: Shared::new(false).named("container.RemovalInProgress"),
            dead: Shared::new(false).named("container.Dead"),
        },
        id: "web",
        networks: GoMap::new().named("NetworkSettings.Networks"),
    });
    let daemon = Daemon {
        containers: GoMap::new().named("daemon.containers"),
        networks: GoMap::new().named("daemon.networks"),
        containers_replica: MemDb {
            writer: Mutex::new().named("memdb.writer"),
            store: GoMap::new().named("memdb.containers"),
        },
        variant,
    };
    daemon.containers.insert("web", web);
    daemon.networks.insert("backend", "backend");

    // The API server writes an error back to the client; neither request fails here.
    let _ = daemon.connect_container_to_network("web", "backend", None);
    let _ = daemon.disconnect_container_from_network("web", "backend", false);
}
