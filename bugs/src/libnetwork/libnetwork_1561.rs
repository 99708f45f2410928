#![doc = include_str!("libnetwork_1561.md")]

use std::sync::Arc;

use primitives::sync::WaitGroup;
use primitives::{defer, go_named, Chan, Shared};

use crate::{deref, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "libnetwork_1561",
        project: "libnetwork",
        upstream: "https://github.com/docker/libnetwork/pull/1561",
        category: "Data race (resolver Start and Stop on plain fields)",
        expected: primitives::Verdict::Race,
        kernel: test_libnetwork1561,
        walkthrough: include_str!("libnetwork_1561.md"),
        loom: Loom::Applies,
        source: Source::Diff("docker/libnetwork 33819721^ resolver.go, resolver_unix.go, sandbox.go, sandbox_dns_unix.go, sandbox_externalkey_unix.go, controller.go"),
        fix: Fix::Upstream("docker/libnetwork 33819721"),
        review: "faithful after mends: Checked against docker/libnetwork 33819721 and 33819721^ (resolver.go, resolver_unix.go, sandbox.go, sandbox_dns_unix.go, sandbox_externalkey_unix.go, controller.go, endpoint.go, vendored miekg/dns server.go), merge ff707266, cherry-pick d4cdf89a, the PR #1561 description and review, and moby/moby#28465: right bug, shape, fix and race verdict, honest failure; mend the crash site (the PR names resolver.go:148, which the kernel does not model), the consequence of doing the set-up on main, the PR's earlier version, the Delete row and minor wording.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `resolverIPSandbox`: the address the embedded DNS server listens on in every container.
const RESOLVER_IP_SANDBOX: &str = "127.0.0.11";

/// A `*net.UDPConn` bound in the container's namespace: a socket, not Go memory.
#[derive(Clone, Copy, Debug)]
struct UdpConn {
    ip: &'static str,
    port: u16,
}

impl UdpConn {
    /// `LocalAddr().String()`.
    fn local_addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// A `*net.TCPListener` bound in the container's namespace.
#[derive(Clone, Copy, Debug)]
struct TcpListener {
    ip: &'static str,
    port: u16,
}

impl TcpListener {
    /// `Addr().String()`.
    fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// A `*dns.Server` (miekg/dns) over one of the two sockets; it is never served here.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // what upstream builds the server from; the kernel never serves it
struct DnsServer {
    packet_conn: Option<UdpConn>,
    listener: Option<TcpListener>,
}

impl DnsServer {
    /// `Shutdown`: the server's own state, under its own lock inside miekg/dns.
    fn shutdown(&self) {}
}

/// `resolver`: the embedded DNS server of one container. Its fields are plain Go fields: the
/// race detector checks every access.
struct Resolver {
    server: Shared<Option<DnsServer>>,
    conn: Shared<Option<UdpConn>>,
    tcp_server: Shared<Option<DnsServer>>,
    tcp_listen: Shared<Option<TcpListener>>,
    err: Shared<Option<String>>,
    count: Shared<i32>,
    /// `time.Time`, as nanoseconds; zero is `time.Time{}`.
    t_stamp: Shared<u64>,
    /// Set by `NewResolver`, read-only after.
    listen_address: &'static str,
    resolver_key: &'static str,
    /// The fix's capacity-1 channel; the buggy variant never touches it.
    start_ch: Chan<()>,
    variant: Variant,
}

/// `NewResolver` (the backend and `proxyDNS` are left out).
fn new_resolver(address: &'static str, resolver_key: &'static str, variant: Variant) -> Resolver {
    Resolver {
        server: Shared::new(None).named("server"),
        conn: Shared::new(None).named("conn"),
        tcp_server: Shared::new(None).named("tcpServer"),
        tcp_listen: Shared::new(None).named("tcpListen"),
        err: Shared::new(Some("setup not done yet".to_string())).named("err"),
        count: Shared::new(0).named("count"),
        t_stamp: Shared::new(0).named("tStamp"),
        listen_address: address,
        resolver_key,
        start_ch: Chan::new(1).named("startCh"),
        variant,
    }
}

/// `reexec` of `setup-resolver` (`reexecSetupResolver`): another process installs the DNAT
/// and SNAT rules in the container's namespace. No Go memory of the daemon.
fn reexec_setup_resolver(_resolver_key: &str, _laddr: &str, _ltcpaddr: &str) -> Result<(), String> {
    Ok(())
}

impl Resolver {
    /// `SetupFunc(port)`, run in the container's network namespace: binds the two sockets.
    fn setup_func(&self, _port: u16) {
        // The kernel's listens cannot fail, and the ports the system picks are fixed.
        self.conn.set(Some(UdpConn {
            ip: self.listen_address,
            port: 43210,
        }));
        self.tcp_listen.set(Some(TcpListener {
            ip: self.listen_address,
            port: 39521,
        }));
        self.err.set(None);
    }

    /// `Start`.
    fn start(&self) -> Result<(), String> {
        let _start_ch = self.variant.fixed().then(|| {
            self.start_ch.send(()); // r.startCh <- struct{}{}
            defer(|| {
                self.start_ch.recv(); // defer func() { <-r.startCh }()
            })
        });

        // make sure the resolver has been setup before starting
        if let Some(err) = self.err.get() {
            return Err(err);
        }

        if let Err(err) = self.setup_ip_table() {
            return Err(format!("setting up IP table rules failed: {err}"));
        }

        let s = DnsServer {
            packet_conn: self.conn.get(),
            listener: None,
        };
        self.server.set(Some(s));
        // go func() { s.ActivateAndServe() }(): left out

        let tcp_server = DnsServer {
            packet_conn: None,
            listener: self.tcp_listen.get(),
        };
        self.tcp_server.set(Some(tcp_server));
        // go func() { tcpServer.ActivateAndServe() }(): left out
        Ok(())
    }

    /// `setupIPTable` (`resolver_unix.go`).
    fn setup_ip_table(&self) -> Result<(), String> {
        if let Some(err) = self.err.get() {
            return Err(err);
        }
        let laddr = deref(self.conn.get()).local_addr();
        let ltcpaddr = deref(self.tcp_listen.get()).addr();

        reexec_setup_resolver(self.resolver_key, &laddr, &ltcpaddr)
            .map_err(|err| format!("reexec failed: {err}"))
    }

    /// `Stop`.
    fn stop(&self) {
        let _start_ch = self.variant.fixed().then(|| {
            self.start_ch.send(()); // r.startCh <- struct{}{}
            defer(|| {
                self.start_ch.recv(); // defer func() { <-r.startCh }()
            })
        });

        if let Some(server) = self.server.get() {
            server.shutdown();
        }
        if let Some(tcp_server) = self.tcp_server.get() {
            tcp_server.shutdown();
        }
        self.conn.set(None);
        self.tcp_server.set(None);
        self.err.set(Some("setup not done yet".to_string()));
        self.t_stamp.set(0);
        self.count.set(0);
        // r.queryLock = sync.Mutex{}: left out (only ServeDNS locks it)
    }
}

/// No upstream test: a container's sandbox whose resolver is being started (by `SetKey`, as
/// the container comes up) while the container is already going down (`sandbox.Delete`).
fn test_libnetwork1561(variant: Variant) {
    // startResolver, up to Start: NewResolver, then SetupFunc in the container's namespace.
    let r = Arc::new(new_resolver(
        RESOLVER_IP_SANDBOX,
        "/var/run/docker/netns/4f2a1c9e0b7d",
        variant,
    ));
    r.setup_func(0);

    let wg = WaitGroup::new().named("wg");
    wg.add(2);
    {
        let (r, wg) = (r.clone(), wg.clone());
        go_named("startResolver", move || {
            let _done = defer(|| wg.done());
            // if err = sb.resolver.Start(); err != nil { logrus.Errorf(...) }
            let _ = r.start();
        });
    }
    {
        let (r, wg) = (r.clone(), wg.clone());
        go_named("Delete", move || {
            let _done = defer(|| wg.done());
            // if sb.resolver != nil { sb.resolver.Stop() }
            r.stop();
        });
    }

    // The daemon stays up.
    wg.wait();
}
