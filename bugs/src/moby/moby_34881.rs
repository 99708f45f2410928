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
        source: Source::Description("https://github.com/moby/moby/pull/40594"),
        fix: Fix::Upstream("#40594"),
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

/// `nodeState`: what the swarm node is; only whether it runs a manager matters here.
#[derive(Clone, Copy)]
struct NodeState {
    manager: bool,
}

impl NodeState {
    /// `IsManager`: `swarmNode != nil && swarmNode.Manager() != nil`.
    fn is_manager(&self) -> bool {
        self.manager
    }
}

/// `nodeRunner`: runs the swarm node; embeds the `nodeState`, guarded by its own `mu`.
struct NodeRunner {
    node_state: NodeState,
    mu: RwMutex,
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
    /// Protects init/join/leave user operations.
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
                // Take c.mu temporarily to wait for presently running API handlers to
                // finish before shutting down the node.
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

    /// `Info`: the swarm part of `docker info`, read under `c.mu`.
    fn info(&self) -> Option<NodeState> {
        self.mu.rlock();
        let _runlock = defer(|| self.mu.runlock());
        self.nr.as_ref().map(NodeRunner::state)
    }
}

/// Two API requests served at once by a daemon whose node is a swarm worker:
/// `docker swarm init --force-new-cluster` and `docker info`.
fn test_moby34881(variant: Variant) {
    let c = Arc::new(Cluster {
        mu: RwMutex::new().named("Cluster.mu"),
        control_mutex: RwMutex::new().named("Cluster.controlMutex"),
        nr: Some(NodeRunner {
            node_state: NodeState { manager: false },
            mu: RwMutex::new().named("nodeRunner.mu"),
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
