#![doc = include_str!("etcd_0b77b42c.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{AtomicI64, Mutex, RwMutex};
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_0b77b42c",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/commit/0b77b42cad99623940c93c5d3b80503de665c198",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_become_standby,
        walkthrough: include_str!("etcd_0b77b42c.md"),
        asplos: Some("non-blocking-bugs/etcd/0b77b42cad99623940c93c5d3b80503de665c198.txt"),
        source: Source::Diff("0b77b42c"),
        fix: Fix::Upstream("0b77b42c"),
        review: "faithful after mends: Checked against 0b77b42c and etcd/{standby,etcd,etcd_test,peer}.go at 92778afd: the test's unsynchronised poll of standby.leader against syncCluster's write, with every fix hunk mapped; one wrong sentence about which merge brought the commit to the main line.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `noneId`: no leader known.
const NONE_ID: i64 = -1;

/// The server's modes (`participantMode` is never entered here).
const STANDBY_MODE: i64 = 1;
const STOP_MODE: i64 = 2;

/// `stateLeader`, the state a machine reports when it leads.
const STATE_LEADER: &str = "leader";

/// `machineMessage`, one entry of `GetMachines`: a member of the cluster as the standby learns it.
struct MachineMessage {
    name: &'static str,
    state: &'static str,
    peer_url: &'static str,
}

/// `config.ClusterConfig`: the test's cluster configuration.
#[derive(Clone, Copy)]
struct ClusterConfig {
    active_size: usize,
    sync_interval: f64,
}

/// `v2client`, answering for a cluster of two participants whose leader is machine 0.
struct V2Client;

impl V2Client {
    fn get_machines(&self, _node: &str) -> Result<Vec<MachineMessage>, &'static str> {
        Ok(vec![
            MachineMessage {
                name: "0",
                state: STATE_LEADER,
                peer_url: "http://127.0.0.1:7001",
            },
            MachineMessage {
                name: "1",
                state: "follower",
                peer_url: "http://127.0.0.1:7002",
            },
        ])
    }

    fn get_cluster_config(&self, _node: &str) -> Result<ClusterConfig, &'static str> {
        // The test sets SyncInterval = 1000 and ActiveSize = size - 1.
        Ok(ClusterConfig {
            active_size: 2,
            sync_interval: 1000.0,
        })
    }
}

/// `standby`: a server that is not a participant; it follows the cluster from outside.
struct Standby {
    client: V2Client,
    nodes: Shared<Vec<&'static str>>,
    leader: Shared<i64>,
    leader_addr: Shared<&'static str>,
    /// The fix's lock over `leader` and `leaderAddr`.
    mu: RwMutex,
    cluster_conf: Shared<ClusterConfig>,
    stopc: Chan<()>,
    variant: Variant,
}

fn new_standby(nodes: Vec<&'static str>, variant: Variant) -> Arc<Standby> {
    Arc::new(Standby {
        client: V2Client,
        nodes: Shared::new(nodes).named("standby.nodes"),
        leader: Shared::new(NONE_ID).named("standby.leader"),
        leader_addr: Shared::new("").named("standby.leaderAddr"),
        mu: RwMutex::new().named("standby.mu"),
        cluster_conf: Shared::new(ClusterConfig {
            active_size: 0,
            sync_interval: 0.0,
        })
        .named("standby.clusterConf"),
        stopc: Chan::new(0).named("standby.stopc"),
        variant,
    })
}

impl Standby {
    /// `run`: syncs with the cluster every `SyncInterval`, until stopped (or until the cluster
    /// wants one more participant, which the test's configuration never does).
    fn run(&self) -> i64 {
        let mut sync_duration = Duration::ZERO;
        loop {
            select! {
                recv(time::after(sync_duration)) => {},
                recv(self.stopc) => return STOP_MODE,
            }
            if self.sync_cluster().is_err() {
                // log.Println("standby sync:", err)
                continue;
            }
            let conf = self.cluster_conf.get();
            sync_duration = Duration::from_secs_f64(conf.sync_interval);
            if conf.active_size <= self.nodes.read(Vec::len) {
                continue;
            }
            // joinByAddr(s.leaderAddr) and `return participantMode`: not reached, the test's
            // ActiveSize is the size of the cluster.
            unreachable!("the standby is never asked to join");
        }
    }

    fn stop(&self) {
        self.stopc.close();
    }

    /// The fix's `leaderInfo`.
    fn leader_info(&self) -> (i64, &'static str) {
        self.mu.rlock();
        let _unlock = defer(|| self.mu.runlock());
        (self.leader.get(), self.leader_addr.get())
    }

    /// The fix's `setLeaderInfo`.
    fn set_leader_info(&self, leader: i64, leader_addr: &'static str) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.leader.set(leader);
        self.leader_addr.set(leader_addr);
    }

    /// `syncCluster`: learns the members, the leader and the configuration from any node.
    fn sync_cluster(&self) -> Result<(), &'static str> {
        for node in self.nodes.get() {
            let Ok(machines) = self.client.get_machines(node) else {
                continue;
            };
            let Ok(config) = self.client.get_cluster_config(node) else {
                continue;
            };
            self.nodes.set(Vec::new());
            for machine in &machines {
                self.nodes.write(|n| n.push(machine.peer_url));
                if machine.state == STATE_LEADER {
                    let id: i64 = machine.name.parse().map_err(|_| "strconv: bad id")?;
                    if self.variant.fixed() {
                        self.set_leader_info(id, machine.peer_url);
                    } else {
                        self.leader.set(id);
                        self.leader_addr.set(machine.peer_url);
                    }
                }
            }
            self.cluster_conf.set(config);
            return Ok(());
        }
        Err("unreachable cluster")
    }
}

/// `etcd.Server`: runs as a participant or a standby, switching between them.
struct Server {
    mode: AtomicI64,
    nodes: Vec<&'static str>,
    s: Shared<Option<Arc<Standby>>>,
    stopped: Shared<bool>,
    mu: Mutex,
    stopc: Chan<()>,
    variant: Variant,
}

impl Server {
    /// `Stop`.
    fn stop(&self) {
        if self.mode.load() == STOP_MODE {
            return;
        }
        self.mu.lock();
        self.stopped.set(true);
        if self.mode.load() == STANDBY_MODE {
            if let Some(s) = self.s.get() {
                s.stop();
            }
        }
        self.mu.unlock();
        self.stopc.recv();
    }

    /// `Run`: one mode after the other, until stopped.
    fn run(&self) {
        let mut next = STANDBY_MODE;
        loop {
            self.mu.lock();
            if self.stopped.get() {
                next = STOP_MODE;
            }
            match next {
                STANDBY_MODE => {
                    let s = new_standby(self.nodes.clone(), self.variant);
                    self.s.set(Some(s.clone()));
                    self.mode.store(STANDBY_MODE);
                    self.mu.unlock();
                    next = s.run();
                }
                STOP_MODE => {
                    self.mode.store(STOP_MODE);
                    self.mu.unlock();
                    self.stopc.send(());
                    return;
                }
                _ => unreachable!("unsupport mode"),
            }
        }
    }
}

/// `waitMode`: polls the server's mode every 10 ms.
fn wait_mode(mode: i64, e: &Server) {
    loop {
        if e.mode.load() == mode {
            return;
        }
        time::sleep(Duration::from_millis(10));
    }
}

/// `TestBecomeStandby`, from the point where the demoted server runs as a standby: wait for
/// the mode, poll the standby's leader, stop the server.
fn test_become_standby(variant: Variant) {
    let e = Arc::new(Server {
        mode: AtomicI64::new(STOP_MODE),
        nodes: vec!["http://127.0.0.1:7001"],
        s: Shared::new(None).named("Server.s"),
        stopped: Shared::new(false).named("Server.stopped"),
        mu: Mutex::new().named("Server.mu"),
        stopc: Chan::new(0).named("Server.stopc"),
        variant,
    });
    let run = e.clone();
    go_named("Server.Run", move || run.run());

    wait_mode(STANDBY_MODE, &e);

    let standby = e.s.get().expect("Run set the standby before the mode");
    let mut leader = NONE_ID;
    for _ in 0..4 {
        if variant.fixed() {
            (leader, _) = standby.leader_info();
        } else {
            leader = standby.leader.get();
        }
        if leader != NONE_ID {
            break;
        }
        time::sleep(Duration::from_millis(20));
    }
    // `if g := es[i].s.leader; g != lead { t.Errorf(...) }`: read again, before the fix.
    let _g = if variant.fixed() {
        leader
    } else {
        standby.leader.get()
    };

    e.stop();
}
