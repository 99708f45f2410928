#![doc = include_str!("kubernetes_72361.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_72361",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/72361",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes72361,
        walkthrough: include_str!("kubernetes_72361.md"),
        goker: None,
        asplos: None,
        source: Source::Description("https://github.com/kubernetes/kubernetes/pull/72361"),
        fix: Fix::Upstream("#72361"),
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An IPVS real server (a backend of a service), as the kernel reports it.
#[derive(Clone, Debug, PartialEq)]
struct RealServer {
    address: &'static str,
    active_conn: i32,
    inactive_conn: i32,
}

/// An IPVS virtual server (a service's address).
const VIRTUAL_SERVER: &str = "10.96.0.10:80/TCP";

/// The kernel's IPVS, as the fake `utilipvs.Interface` sees it: the virtual server's real
/// servers and their connections, fixed for the test.
struct Ipvs;

impl Ipvs {
    fn get_real_servers(&self, _vs: &str) -> Vec<RealServer> {
        vec![
            // Drained: no connections left.
            RealServer {
                address: "10.244.1.5:8080",
                active_conn: 0,
                inactive_conn: 0,
            },
            // Still serving connections.
            RealServer {
                address: "10.244.2.7:8080",
                active_conn: 3,
                inactive_conn: 1,
            },
        ]
    }

    fn delete_real_server(&self, _vs: &str, _rs: &RealServer) {}
}

/// A real server waiting for its connections to end (`listItem`).
#[derive(Clone, Debug)]
struct ListItem {
    virtual_server: &'static str,
    real_server: RealServer,
}

impl ListItem {
    /// `String()`: the unique real server name.
    fn string(&self) -> String {
        format!("{}/{}", self.virtual_server, self.real_server.address)
    }
}

/// The list of real servers being gracefully terminated (`graceTerminateRSList`).
struct GraceTerminateRsList {
    lock: Mutex,
    list: GoMap<String, ListItem>,
    variant: Variant,
}

impl GraceTerminateRsList {
    fn add(&self, rs: ListItem) -> bool {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());

        let unique_rs = rs.string();
        if self.list.contains_key(&unique_rs) {
            return false;
        }
        self.list.insert(unique_rs, rs);
        true
    }

    fn remove(&self, rs: &ListItem) -> bool {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());

        let unique_rs = rs.string();
        if self.list.contains_key(&unique_rs) {
            self.list.remove(&unique_rs);
            return true;
        }
        false
    }

    fn flush_list(&self, handler: impl Fn(&ListItem) -> Result<bool, String>) -> bool {
        // The fix: hold the lock for the whole walk over the map.
        let locked = self.variant.fixed();
        if locked {
            self.lock.lock();
        }
        let _unlock = defer(|| {
            if locked {
                self.lock.unlock()
            }
        });
        let mut success = true;
        // `for name, rs := range q.list`: reads the map, without the lock before the fix.
        let items: Vec<(String, ListItem)> = self
            .list
            .with(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        for (_name, rs) in items {
            let deleted = match handler(&rs) {
                Ok(deleted) => deleted,
                Err(_) => {
                    success = false;
                    true
                }
            };
            if deleted {
                if self.variant.fixed() {
                    // Under the lock already: delete directly (`remove` would lock again).
                    self.list.remove(&rs.string());
                } else {
                    self.remove(&rs);
                }
            }
        }
        success
    }
}

/// kube-proxy's IPVS graceful termination manager (`GracefulTerminationManager`).
struct GracefulTerminationManager {
    rs_list: GraceTerminateRsList,
    ipvs: Ipvs,
}

impl GracefulTerminationManager {
    /// `GracefulDeleteRS`: deletes the real server at once if it has no connections left, or
    /// else (after setting its weight to 0, left out here) queues it on the list.
    fn graceful_delete_rs(&self, vs: &'static str, rs: RealServer) {
        let ele = ListItem {
            virtual_server: vs,
            real_server: rs,
        };
        if let Ok(true) = self.delete_rs_func(&ele) {
            return;
        }
        self.rs_list.add(ele);
    }

    fn delete_rs_func(&self, rs_to_delete: &ListItem) -> Result<bool, String> {
        let rss = self.ipvs.get_real_servers(rs_to_delete.virtual_server);
        for rs in rss {
            if rs_to_delete.real_server.address == rs.address {
                if rs.active_conn + rs.inactive_conn != 0 {
                    return Ok(false);
                }
                self.ipvs
                    .delete_real_server(rs_to_delete.virtual_server, &rs);
                return Ok(true);
            }
        }
        Err(format!(
            "Failed to delete rs {:?}, can't find the real server",
            rs_to_delete.string()
        ))
    }

    fn try_delete_rs(&self) {
        self.rs_list.flush_list(|rs| self.delete_rs_func(rs));
    }
}

fn new_graceful_termination_manager(variant: Variant) -> Arc<GracefulTerminationManager> {
    Arc::new(GracefulTerminationManager {
        rs_list: GraceTerminateRsList {
            lock: Mutex::new().named("graceTerminateRSList.lock"),
            list: GoMap::new().named("graceTerminateRSList.list"),
            variant,
        },
        ipvs: Ipvs,
    })
}

/// The test: one real server is already on the list (it still had connections when the
/// previous sync removed its endpoint); the manager's goroutine flushes the list while the
/// proxier's sync removes another endpoint.
fn test_kubernetes72361(variant: Variant) {
    let m = new_graceful_termination_manager(variant);
    m.rs_list.add(ListItem {
        virtual_server: VIRTUAL_SERVER,
        real_server: RealServer {
            address: "10.244.1.5:8080",
            active_conn: 2,
            inactive_conn: 0,
        },
    });
    let m2 = m.clone();
    go_named("tryDeleteRs", move || m2.try_delete_rs());
    m.graceful_delete_rs(
        VIRTUAL_SERVER,
        RealServer {
            address: "10.244.2.7:8080",
            active_conn: 3,
            inactive_conn: 1,
        },
    );
}
