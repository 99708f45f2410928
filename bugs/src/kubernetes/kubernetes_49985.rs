#![doc = include_str!("kubernetes_49985.md")]

use std::collections::BTreeSet;

use std::sync::Arc;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_49985",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/49985",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_update_cluster_race,
        walkthrough: include_str!("kubernetes_49985.md"),
        asplos: Some("non-blocking-bugs/kubernetes/6d8f2dddec9b2693fce1488c61fd60e3b2212ded.txt"),
        source: Source::Diff("6d8f2ddd"),
        fix: Fix::Ours("upstream's 6d8f2ddd completed by taking cc.mu (read-locked) around UpdateClusterStatus's len(cc.knownClusterSet) and cc.knownClusterSet.Difference(observedSet), because upstream's fix alone still races on knownClusterSet: those two reads stay outside the lock while addToClusterSet/delFromClusterSet write the set under it, as upstream's own TestUpdateClusterRace drives them"),
        review: "faithful after mends: Checked against the ASPLOS diff of 6d8f2ddd, PR #49985, issue #50262, PR #50316 (review excerpt) and a pre-fix clustercontroller.go: right bug, shape and race verdict; upstream's hunks switched at their lines; the two-RLock completion is minimal and admitted; the mends are made (the walkthrough cites #50262/#50316, says why #50316 is not the fix, admits the pre-fix copy is unnamed, and lists the GetClusterClient shadowing deviation).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// Rounds of upstream's test loop (10 upstream).
const ROUNDS: usize = 2;
/// Passes of the status goroutine (endless upstream).
const UPDATES: usize = 1;

/// `federationv1beta1.ClusterStatus` (reduced to whether the cluster is ready).
#[derive(Clone, Debug, Default)]
struct ClusterStatus {
    ready: bool,
}

/// `federationv1beta1.Cluster`.
#[derive(Clone, Debug)]
struct Cluster {
    name: String,
    status: ClusterStatus,
}

/// `ClusterClient`: the client of one member cluster (its REST client is not modelled).
#[derive(Clone, Debug)]
struct ClusterClient;

impl ClusterClient {
    /// `GetClusterHealthStatus`: the fake member cluster answers `/healthz` with ok.
    fn get_cluster_health_status(&self) -> ClusterStatus {
        ClusterStatus { ready: true }
    }
}

/// `NewClusterClientSet`: never fails here.
fn new_cluster_client_set(_cluster: &Cluster) -> ClusterClient {
    ClusterClient
}

/// The federation API server of the test: its cluster list holds the one cluster.
struct FakeFederationClient {
    clusters: Vec<Cluster>,
}

impl FakeFederationClient {
    /// `Federation().Clusters().List`.
    fn list(&self) -> Vec<Cluster> {
        self.clusters.clone()
    }

    /// `Federation().Clusters().UpdateStatus`.
    fn update_status(&self, cluster: Cluster) -> Cluster {
        cluster
    }
}

/// `ClusterController`.
struct ClusterController {
    federation_client: FakeFederationClient,
    /// Added by the fix.
    mu: RwMutex,
    /// `knownClusterSet` (a `sets.String`, that is a `map[string]sets.Empty`).
    known_cluster_set: GoMap<String, ()>,
    cluster_cluster_status_map: GoMap<String, ClusterStatus>,
    cluster_kube_client_map: GoMap<String, ClusterClient>,
    variant: Variant,
}

impl ClusterController {
    /// `newClusterController`.
    fn new(federation_client: FakeFederationClient, variant: Variant) -> Self {
        ClusterController {
            federation_client,
            mu: RwMutex::new().named("mu"),
            known_cluster_set: GoMap::new().named("knownClusterSet"),
            cluster_cluster_status_map: GoMap::new().named("clusterClusterStatusMap"),
            cluster_kube_client_map: GoMap::new().named("clusterKubeClientMap"),
            variant,
        }
    }

    /// `delFromClusterSet`: the informer's `DeleteFunc`.
    fn del_from_cluster_set(&self, cluster: &Cluster) {
        let _unlock = self.variant.fixed().then(|| {
            self.mu.lock();
            defer(|| self.mu.unlock())
        });
        self.del_from_cluster_set_by_name(&cluster.name);
    }

    /// `delFromClusterSetByName` (after the fix its caller holds `mu`).
    fn del_from_cluster_set_by_name(&self, cluster_name: &str) {
        let name = cluster_name.to_string();
        self.known_cluster_set.remove(&name);
        self.cluster_kube_client_map.remove(&name);
    }

    /// `addToClusterSet`: the informer's `AddFunc`.
    fn add_to_cluster_set(&self, cluster: &Cluster) {
        let _unlock = self.variant.fixed().then(|| {
            self.mu.lock();
            defer(|| self.mu.unlock())
        });
        self.add_to_cluster_set_without_lock(cluster);
    }

    /// The body of `addToClusterSet`; after the fix, `addToClusterSetWithoutLock`, which
    /// returns early for a known cluster (its caller holds `mu`).
    fn add_to_cluster_set_without_lock(&self, cluster: &Cluster) {
        if self.variant.fixed() && self.known_cluster_set.contains_key(&cluster.name) {
            return;
        }
        self.known_cluster_set.insert(cluster.name.clone(), ());
        // create the restclient of cluster
        let rest_client = new_cluster_client_set(cluster);
        self.cluster_kube_client_map
            .insert(cluster.name.clone(), rest_client);
    }

    /// `GetClusterClient`.
    fn get_cluster_client(&self, cluster: &Cluster) -> ClusterClient {
        if self.variant.fixed() {
            self.mu.rlock();
        }
        let cluster_client = self.cluster_kube_client_map.get(&cluster.name);
        if self.variant.fixed() {
            self.mu.runlock();
        }
        match cluster_client {
            Some(client) => client,
            // "It's a new cluster, a cluster client will be created" (and not stored).
            None => new_cluster_client_set(cluster),
        }
    }

    /// `GetClusterStatus`.
    fn get_cluster_status(&self, cluster: &Cluster) -> ClusterStatus {
        let cluster_client = self.get_cluster_client(cluster);
        cluster_client.get_cluster_health_status()
    }

    /// `UpdateClusterStatus`: one pass of the status loop.
    fn update_cluster_status(&self) {
        let clusters = self.federation_client.list();

        if self.variant.fixed() {
            self.mu.lock();
        }
        for cluster in &clusters {
            if self.variant.fixed() {
                self.add_to_cluster_set_without_lock(cluster);
            } else if !self.known_cluster_set.contains_key(&cluster.name) {
                self.add_to_cluster_set(cluster);
            }
        }
        if self.variant.fixed() {
            self.mu.unlock();
        }

        // If the known clusters and the observed ones differ in number. Ours, completing the
        // fix: the read of the set's length under `mu`.
        if self.variant.fixed() {
            self.mu.rlock();
        }
        let known = self.known_cluster_set.len();
        if self.variant.fixed() {
            self.mu.runlock();
        }
        if known != clusters.len() {
            let observed_set: BTreeSet<String> = clusters.iter().map(|c| c.name.clone()).collect();
            // Ours, completing the fix: `Difference` ranges over the set under `mu`.
            if self.variant.fixed() {
                self.mu.rlock();
            }
            let deleted: Vec<String> = self.known_cluster_set.with(|set| {
                set.keys()
                    .filter(|name| !observed_set.contains(*name))
                    .cloned()
                    .collect()
            });
            if self.variant.fixed() {
                self.mu.runlock();
            }

            if self.variant.fixed() {
                self.mu.lock();
            }
            for cluster_name in &deleted {
                self.del_from_cluster_set_by_name(cluster_name);
            }
            if self.variant.fixed() {
                self.mu.unlock();
            }
        }

        for cluster in clusters {
            let mut cluster_status_new = self.get_cluster_status(&cluster);
            if self.variant.fixed() {
                self.mu.rlock();
            }
            let cluster_status_old = self.cluster_cluster_status_map.get(&cluster.name);
            if self.variant.fixed() {
                self.mu.runlock();
            }
            if let Some(old) = cluster_status_old {
                // The conditions' transition times are carried over; reduced to a comparison.
                let _has_transition = old.ready != cluster_status_new.ready;
            }

            if self.variant.fixed() {
                self.mu.rlock();
            }
            let cluster_client = self.cluster_kube_client_map.get(&cluster.name);
            if self.variant.fixed() {
                self.mu.runlock();
            }
            let Some(_cluster_client) = cluster_client else {
                // "Failed to get client for cluster"
                continue;
            };
            // `GetClusterZones` (zones and region) is not modelled.
            cluster_status_new.ready = true;

            if self.variant.fixed() {
                self.mu.lock();
            }
            self.cluster_cluster_status_map
                .insert(cluster.name.clone(), cluster_status_new.clone());
            if self.variant.fixed() {
                self.mu.unlock();
            }
            let mut cluster = cluster;
            cluster.status = cluster_status_new;
            let _cluster = self.federation_client.update_status(cluster);
        }
    }
}

/// `TestUpdateClusterRace` (`clustercontroller_test.go`, added by 6d8f2ddd).
fn test_update_cluster_race(variant: Variant) {
    let federation_cluster = Cluster {
        name: "foobarCluster".to_string(),
        status: ClusterStatus::default(),
    };
    let federation_client = FakeFederationClient {
        clusters: vec![federation_cluster.clone()],
    };
    let manager = Arc::new(ClusterController::new(federation_client, variant));

    let m = manager.clone();
    go_named("TestUpdateClusterRace.func1", move || {
        for _ in 0..UPDATES {
            m.update_cluster_status();
        }
    });

    // try to trigger the race in UpdateClusterStatus
    for _ in 0..ROUNDS {
        manager.get_cluster_client(&federation_cluster);
        manager.add_to_cluster_set(&federation_cluster);
        manager.del_from_cluster_set(&federation_cluster);
    }
}
