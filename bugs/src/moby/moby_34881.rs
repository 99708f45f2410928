#![doc = include_str!("moby_34881.md")]

use std::sync::Arc;

use primitives::sync::RwMutex;
use primitives::{defer, go_named};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_34881",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/40594",
        category: "Missing unlock",
        expected: primitives::Verdict::Leak,
        kernel: test_moby34881,
        walkthrough: include_str!("moby_34881.md"),
        source: Source::Diff("83c0bedb"),
        fix: Fix::Upstream("83c0bedb"),
        review: "faithful after mends: Checked against 12e947ef, 83c0bedb and the code at d706420b (swarm.go, cluster.go, noderunner.go, the routes): the missing unlock and its one-line fix are modelled exactly; only the walkthrough's trace is stale.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

#[derive(Debug)]
enum ClusterError {
    /// `errSwarmNotManager`, the error #34881 added.
    SwarmNotManager,
    /// `errSwarmExists`.
    SwarmExists,
}

/// `nodeState`: what the swarm node is; whether it runs a manager, and the local address.
#[derive(Clone, Copy)]
struct NodeState {
    manager: bool,
    actual_local_addr: &'static str,
}

impl NodeState {
    /// `IsManager`: `swarmNode != nil && swarmNode.Manager() != nil`.
    fn is_manager(&self) -> bool {
        self.manager
    }
}

/// `nodeStartConfig`: only the address the node advertises is kept.
struct NodeStartConfig {
    advertise_addr: &'static str,
}

/// `nodeRunner`: runs the swarm node; embeds the `nodeState`, guarded by its own `mu`.
struct NodeRunner {
    node_state: NodeState,
    mu: RwMutex,
    config: NodeStartConfig,
}

impl NodeRunner {
    /// `State`: a copy of the node state, under the runner's read lock.
    fn state(&self) -> NodeState {
        self.mu.rlock();
        let _runlock = defer(|| self.mu.runlock());
        self.node_state
    }
}

/// `InitRequest`.
struct InitRequest {
    force_new_cluster: bool,
}

/// The daemon's swarm `Cluster`.
struct Cluster {
    mu: RwMutex,
    /// Serialises the user's init, join and leave.
    control_mutex: RwMutex,
    nr: Option<NodeRunner>,
    variant: Variant,
}

impl Cluster {
    /// `Init`: `docker swarm init`. With `--force-new-cluster` on a node already in a swarm,
    /// it waits for running API handlers (by taking `c.mu`) and stops the node first.
    fn init(&self, req: InitRequest) -> Result<(), ClusterError> {
        self.control_mutex.lock();
        let _unlock = defer(|| self.control_mutex.unlock());
        if let Some(nr) = &self.nr {
            if req.force_new_cluster {
                // c.mu is held only to let the handlers already inside finish before
                // the node is stopped.
                self.mu.lock();
                if !nr.node_state.is_manager() {
                    if self.variant.fixed() {
                        self.mu.unlock();
                    }
                    return Err(ClusterError::SwarmNotManager);
                }
                self.mu.unlock();
                // c.nr.Stop(), then a new node is started with a fresh cluster.
            } else {
                return Err(ClusterError::SwarmExists);
            }
        }
        Ok(())
    }

    /// `currentNodeState`: `c.nr.State()`; the caller holds `c.mu`.
    fn current_node_state(&self) -> Option<NodeState> {
        self.nr.as_ref().map(NodeRunner::state)
    }

    /// `GetAdvertiseAddress`: the configured address, else the node's local one, under `c.mu`.
    fn get_advertise_address(&self) -> &'static str {
        self.mu.rlock();
        let _runlock = defer(|| self.mu.runlock());
        if let Some(nr) = &self.nr {
            if !nr.config.advertise_addr.is_empty() {
                return nr.config.advertise_addr;
            }
        }
        self.current_node_state()
            .map_or("", |state| state.actual_local_addr)
    }

    /// `Info`: the swarm part of `docker info`: the address, then the node state under `c.mu`.
    fn info(&self) -> (&'static str, Option<NodeState>) {
        let node_addr = self.get_advertise_address();
        self.mu.rlock();
        let _runlock = defer(|| self.mu.runlock());
        (node_addr, self.current_node_state())
    }
}

/// Two API requests served at once by a daemon whose node is a swarm worker:
/// `docker swarm init --force-new-cluster` and `docker info`.
fn test_moby34881(variant: Variant) {
    let c = Arc::new(Cluster {
        mu: RwMutex::new().named("Cluster.mu"),
        control_mutex: RwMutex::new().named("Cluster.controlMutex"),
        nr: Some(NodeRunner {
            node_state: NodeState {
                manager: false,
                actual_local_addr: "10.0.0.2",
            },
            mu: RwMutex::new().named("nodeRunner.mu"),
            config: NodeStartConfig { advertise_addr: "" },
        }),
        variant,
    });
    let c2 = c.clone();
    go_named("Init", move || {
        // A worker: the request is refused with errSwarmNotManager.
        let _ = c2.init(InitRequest {
            force_new_cluster: true,
        });
    });
    go_named("Info", move || {
        c.info();
    });
}
