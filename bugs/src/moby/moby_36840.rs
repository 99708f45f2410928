#![doc = include_str!("moby_36840.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_36840",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/36840",
        category: "Data race (read lock taken for a write)",
        expected: primitives::Verdict::Panic,
        kernel: test_moby36840,
        budget: Budget { race_detector: false, ..Budget::DEFAULT },
        walkthrough: include_str!("moby_36840.md"),
        source: Source::Diff("248aed57"),
        fix: Fix::Upstream("248aed57"),
        review: "faithful after mends: Checked against 248aed57 (and libnetwork c15b372e/#2136), the vendored networkdb and memberlist at 6f4bf562, and issue #36814: the read-locked writer and its one-hunk fix are modelled exactly; only the trace is stale.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `nodeReapInterval`: how long a node that left is remembered (24 h).
const NODE_REAP_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// A cluster member as networkdb knows it.
struct Node {
    name: &'static str,
    /// The Lamport time of the last node event applied.
    ltime: Shared<u64>,
    /// Time left before the reaper forgets the node.
    reap_time: Shared<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NodeState {
    Active,
    Left,
    Failed,
}

#[derive(Clone, Copy)]
enum NodeEventType {
    Join,
    Leave,
}

/// `NodeEvent`, as decoded from a gossip message.
struct NodeEvent {
    type_: NodeEventType,
    ltime: u64,
    node_name: &'static str,
}

type Nodes = GoMap<&'static str, Arc<Node>>;

/// `NetworkDB`, which embeds a `sync.RWMutex` guarding its node lists.
struct NetworkDb {
    rw_mutex: RwMutex,
    nodes: Nodes,
    left_nodes: Nodes,
    failed_nodes: Nodes,
    variant: Variant,
}

impl Deref for NetworkDb {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

impl NetworkDb {
    /// `findNode`: the node, the list it is in, and that list.
    fn find_node(&self, node_name: &'static str) -> Option<(Arc<Node>, NodeState, &Nodes)> {
        [
            (&self.nodes, NodeState::Active),
            (&self.left_nodes, NodeState::Left),
            (&self.failed_nodes, NodeState::Failed),
        ]
        .into_iter()
        .find_map(|(nodes, state)| nodes.get(&node_name).map(|n| (n, state, nodes)))
    }

    /// `changeNodeState`: moves the node to the list of its new state.
    fn change_node_state(&self, node_name: &'static str, new_state: NodeState) -> bool {
        let Some((n, curr_state, m)) = self.find_node(node_name) else {
            return false;
        };
        if curr_state == new_state {
            return false;
        }
        m.remove(&node_name);
        match new_state {
            NodeState::Active => {
                n.reap_time.set(Duration::ZERO);
                self.nodes.insert(node_name, n.clone());
            }
            NodeState::Left => {
                self.left_nodes.insert(node_name, n.clone());
            }
            NodeState::Failed => {
                self.failed_nodes.insert(node_name, n.clone());
            }
        }
        if matches!(new_state, NodeState::Left | NodeState::Failed)
            && n.reap_time.get() == Duration::ZERO
        {
            n.reap_time.set(NODE_REAP_INTERVAL);
            // deleteNodeFromNetworks and deleteNodeTableEntries would follow.
        }
        true
    }

    /// `handleNodeEvent`: applies a node's join or leave; `true` means rebroadcast it.
    fn handle_node_event(&self, n_event: &NodeEvent) -> bool {
        if self.variant.fixed() {
            self.lock();
        } else {
            self.rlock();
        }
        let _unlock = defer(|| {
            if self.variant.fixed() {
                self.unlock();
            } else {
                self.runlock();
            }
        });

        let Some((n, _, _)) = self.find_node(n_event.node_name) else {
            return false;
        };
        // Is the event fresh?
        if n.ltime.get() >= n_event.ltime {
            return false;
        }
        n.ltime.set(n_event.ltime);

        match n_event.type_ {
            NodeEventType::Join => self.change_node_state(n.name, NodeState::Active),
            NodeEventType::Leave => self.change_node_state(n.name, NodeState::Left),
        }
    }
}

/// One member leaves the cluster while another, which had left, rejoins. memberlist hands the
/// leave, gossiped over UDP, to networkdb on its `packetHandler` goroutine (`NotifyMsg`), and
/// the rejoining node's push/pull, over TCP, on a `handleConn` goroutine (`MergeRemoteState`,
/// which turns it into a join event).
fn test_moby36840(variant: Variant) {
    let member = |name| {
        Arc::new(Node {
            name,
            ltime: Shared::new(1).named("node.ltime"),
            reap_time: Shared::new(Duration::ZERO).named("node.reapTime"),
        })
    };
    let nodes = GoMap::new().named("nodes");
    nodes.insert("node-1", member("node-1"));
    let left_nodes = GoMap::new().named("leftNodes");
    left_nodes.insert("node-2", member("node-2"));
    let n_db = Arc::new(NetworkDb {
        rw_mutex: RwMutex::new().named("NetworkDB"),
        nodes,
        left_nodes,
        failed_nodes: GoMap::new().named("failedNodes"),
        variant,
    });
    let n_db2 = n_db.clone();
    go_named("packetHandler", move || {
        n_db2.handle_node_event(&NodeEvent {
            type_: NodeEventType::Leave,
            ltime: 2,
            node_name: "node-1",
        });
    });
    go_named("handleConn", move || {
        n_db.handle_node_event(&NodeEvent {
            type_: NodeEventType::Join,
            ltime: 3,
            node_name: "node-2",
        });
    });
}
