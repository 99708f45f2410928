#![doc = include_str!("kubernetes_72361.md")]

use std::sync::Arc;

use primitives::sync::{AtomicU32, Mutex};
use primitives::{defer, go_named, Chan, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_72361",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/72361",
        category: "Communication deadlock (shared netlink socket)",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes72361,
        walkthrough: include_str!("kubernetes_72361.md"),
        goker: None,
        asplos: None,
        source: Source::Diff("#72361"),
        fix: Fix::Upstream("#72361"),
        review: "faithful after mends: Checked against PR #72361 (description, review-thread hunk), issue #71071 (logs and goroutine dump), libnetwork a9cd636e/df660024/40d06dc4 `ipvs` and kube-proxy's graceful_termination.go (0c4236dd) and ipvs_linux.go (046d201c): the stolen-answer hang on the shared netlink socket is the mechanism libnetwork's `execute` allows and the PR's mutex removes; the vendored version can be pinned (timeout present), one simplification is unlisted, and reports/ still describe the old port.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The service (IPVS virtual server) whose endpoints go away.
const VIRTUAL_SERVER: &str = "10.96.0.10:80/TCP";
/// A backend queued on the graceful-termination list by an earlier sync, drained since.
const RS_QUEUED: &str = "10.244.1.5:8080";
/// The backend whose endpoint the proxier's sync now removes; it has no connections left.
const RS_REMOVED: &str = "10.244.2.7:8080";

/// An IPVS real server (`utilipvs.RealServer`), with the connection counts IPVS reports.
#[derive(Clone, Debug, PartialEq)]
struct RealServer {
    address: &'static str,
    active_conn: i32,
    inactive_conn: i32,
}

/// The IPVS commands the kernel sends (libnetwork's `ipvsCmdGetDest`, `ipvsCmdDelDest`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum IpvsCmd {
    GetDest,
    DelDest,
}

/// `nl.NetlinkRequest`: a command and the sequence number the handle gave it.
struct NetlinkRequest {
    cmd: IpvsCmd,
    seq: u32,
}

/// One netlink message as `Receive` returns it: the header's sequence number and, for
/// `GetDest`, the destinations.
struct NetlinkMessage {
    seq: u32,
    data: Vec<RealServer>,
}

/// `nl.NetlinkSocket`: one generic-netlink socket. What the Linux kernel answers waits in the
/// socket's receive queue until some `Receive` on this socket takes it, whoever sent the request.
struct NetlinkSocket {
    rx: Chan<NetlinkMessage>,
}

impl NetlinkSocket {
    /// `Send`: IPVS handles the request inside the `sendmsg` call and queues its answer on
    /// this socket, under the request's sequence number.
    fn send(&self, req: &NetlinkRequest) {
        let data = match req.cmd {
            IpvsCmd::GetDest => ipvs_destinations(),
            IpvsCmd::DelDest => Vec::new(), // an ack
        };
        self.rx.send(NetlinkMessage { seq: req.seq, data });
    }

    /// `Receive`: the next message queued on the socket; blocks while there is none.
    fn receive(&self) -> NetlinkMessage {
        self.rx
            .recv()
            .expect("the netlink socket is never closed here")
    }
}

/// The Linux kernel's IPVS table for the service: both backends still present, both drained.
fn ipvs_destinations() -> Vec<RealServer> {
    vec![
        RealServer {
            address: RS_QUEUED,
            active_conn: 0,
            inactive_conn: 0,
        },
        RealServer {
            address: RS_REMOVED,
            active_conn: 0,
            inactive_conn: 0,
        },
    ]
}

/// libnetwork's `execute`: send the request, then read the socket until the answer carrying
/// the request's sequence number arrives. A message with another sequence number is skipped:
/// it is dropped, and the loop reads on.
fn execute(s: &NetlinkSocket, req: &NetlinkRequest) -> Vec<RealServer> {
    s.send(req);
    loop {
        let m = s.receive();
        if m.seq != req.seq {
            continue;
        }
        return m.data;
    }
}

/// libnetwork's `ipvs.Handle`: one socket and a sequence counter, and no lock.
struct Handle {
    seq: AtomicU32,
    sock: NetlinkSocket,
}

impl Handle {
    fn do_cmd_with_response(&self, cmd: IpvsCmd) -> Vec<RealServer> {
        let req = NetlinkRequest {
            cmd,
            seq: self.seq.add(1),
        };
        execute(&self.sock, &req)
    }

    /// `GetDestinations`.
    fn get_destinations(&self, _svc: &str) -> Vec<RealServer> {
        self.do_cmd_with_response(IpvsCmd::GetDest)
    }

    /// `DelDestination`.
    fn del_destination(&self, _svc: &str, _dst: &RealServer) {
        self.do_cmd_with_response(IpvsCmd::DelDest);
    }
}

/// kube-proxy's IPVS runner (`pkg/util/ipvs/ipvs_linux.go`): the `utilipvs.Interface` the
/// proxier and the graceful-termination manager share. #72361 adds `mu`.
struct Runner {
    ipvs_handle: Handle,
    mu: Mutex,
    variant: Variant,
}

impl Runner {
    /// `GetRealServers`.
    fn get_real_servers(&self, vs: &str) -> Vec<RealServer> {
        if self.variant.fixed() {
            self.mu.lock();
        }
        let dsts = self.ipvs_handle.get_destinations(vs);
        if self.variant.fixed() {
            self.mu.unlock();
        }
        dsts
    }

    /// `DeleteRealServer`.
    fn delete_real_server(&self, vs: &str, rs: &RealServer) {
        if self.variant.fixed() {
            self.mu.lock();
        }
        let _unlock = defer(|| {
            if self.variant.fixed() {
                self.mu.unlock()
            }
        });
        self.ipvs_handle.del_destination(vs, rs)
    }
}

/// A real server waiting for its connections to end (`listItem`).
#[derive(Clone, Debug)]
struct ListItem {
    virtual_server: &'static str,
    real_server: &'static str,
}

impl ListItem {
    /// `String()`: the unique real server name.
    fn string(&self) -> String {
        format!("{}/{}", self.virtual_server, self.real_server)
    }
}

/// `graceTerminateRSList`.
struct GraceTerminateRsList {
    lock: Mutex,
    list: GoMap<String, ListItem>,
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

    /// `flushList`, as it was then: the `range` takes no lock (only this goroutine touches
    /// the map in this test; see the walkthrough).
    fn flush_list(&self, handler: impl Fn(&ListItem) -> (bool, Option<String>)) -> bool {
        let mut success = true;
        let items: Vec<ListItem> = self.list.with(|m| m.values().cloned().collect());
        for rs in items {
            let (deleted, err) = handler(&rs);
            if err.is_some() {
                success = false;
            }
            if deleted {
                self.remove(&rs);
            }
        }
        success
    }
}

/// `GracefulTerminationManager`: its `ipvs` is the proxier's runner.
struct GracefulTerminationManager {
    rs_list: GraceTerminateRsList,
    ipvs: Arc<Runner>,
}

impl GracefulTerminationManager {
    /// `GracefulDeleteRS`: a backend with no connections left is deleted at once; otherwise
    /// (weight 0, then onto the list) it waits for `tryDeleteRs`.
    fn graceful_delete_rs(&self, vs: &'static str, rs: &'static str) {
        let ele = ListItem {
            virtual_server: vs,
            real_server: rs,
        };
        let (deleted, _err) = self.delete_rs_func(&ele);
        if deleted {
            return;
        }
        // `rs.Weight = 0; m.ipvs.UpdateRealServer(vs, rs)`: not reached in this test.
        self.rs_list.add(ele);
    }

    /// `deleteRsFunc`: two netlink exchanges, `GetRealServers` then `DeleteRealServer`.
    fn delete_rs_func(&self, rs_to_delete: &ListItem) -> (bool, Option<String>) {
        let rss = self.ipvs.get_real_servers(rs_to_delete.virtual_server);
        for rs in rss {
            if rs_to_delete.real_server == rs.address {
                if rs.active_conn + rs.inactive_conn != 0 {
                    return (false, None);
                }
                self.ipvs
                    .delete_real_server(rs_to_delete.virtual_server, &rs);
                return (true, None);
            }
        }
        (
            true,
            Some(format!(
                "Failed to delete rs {:?}, can't find the real server",
                rs_to_delete.string()
            )),
        )
    }

    /// `tryDeleteRs`: one round of the manager's periodic flush.
    fn try_delete_rs(&self) {
        self.rs_list.flush_list(|rs| self.delete_rs_func(rs));
    }
}

/// The IPVS `Proxier`.
struct Proxier {
    ipvs: Arc<Runner>,
    gracefuldelete_manager: Arc<GracefulTerminationManager>,
}

impl Proxier {
    /// `syncProxyRules`, cut to the one service whose endpoint went away.
    fn sync_proxy_rules(&self) {
        self.sync_endpoint(VIRTUAL_SERVER);
    }

    /// `syncEndpoint`: list the destinations IPVS has, then hand the one whose endpoint is
    /// gone to the graceful-termination manager.
    fn sync_endpoint(&self, vs: &'static str) {
        let cur_dests = self.ipvs.get_real_servers(vs);
        if cur_dests.iter().any(|d| d.address == RS_REMOVED) {
            self.gracefuldelete_manager
                .graceful_delete_rs(vs, RS_REMOVED);
        }
    }
}

/// The test: the proxier and its graceful-termination manager share one runner, hence one
/// netlink socket. An earlier sync queued `RS_QUEUED`; now the manager's goroutine flushes the
/// list while the proxier's sync removes `RS_REMOVED`.
fn test_kubernetes72361(variant: Variant) {
    let ipvs = Arc::new(Runner {
        ipvs_handle: Handle {
            seq: AtomicU32::new(0),
            sock: NetlinkSocket {
                rx: Chan::new(8).named("netlink socket"),
            },
        },
        mu: Mutex::new().named("runner.mu"),
        variant,
    });
    let m = Arc::new(GracefulTerminationManager {
        rs_list: GraceTerminateRsList {
            lock: Mutex::new().named("graceTerminateRSList.lock"),
            list: GoMap::new().named("graceTerminateRSList.list"),
        },
        ipvs: ipvs.clone(),
    });
    m.rs_list.add(ListItem {
        virtual_server: VIRTUAL_SERVER,
        real_server: RS_QUEUED,
    });
    let proxier = Proxier {
        ipvs,
        gracefuldelete_manager: m.clone(),
    };

    go_named("tryDeleteRs", move || m.try_delete_rs());
    go_named("syncProxyRules", move || proxier.sync_proxy_rules());
}
