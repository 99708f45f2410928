#![doc = include_str!("moby_25802.md")]

use std::sync::Arc;

use primitives::sync::{Once, WaitGroup};
use primitives::{defer, go_named, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_25802",
        project: "moby",
        upstream: "https://github.com/docker/libnetwork/pull/1352",
        category: "Data race (a sync.Once zeroed while its Do runs)",
        expected: primitives::Verdict::Panic,
        kernel: test_moby25802,
        budget: Budget { race_detector: false, ..Budget::DEFAULT },
        walkthrough: include_str!("moby_25802.md"),
        source: Source::Diff("docker/libnetwork ae40d62a^ resolver.go, endpoint.go, sandbox.go"),
        fix: Fix::Upstream("docker/libnetwork ae40d62a"),
        review: "faithful after mends: Checked against docker/libnetwork ae40d62a (resolver.go, endpoint.go, sandbox.go and vendored miekg/dns at ae40d62a^, merge 6a3feece), moby/moby#25802, golang/go#16762 and #23039: right bug, shape, fix and verdict, honest failure; mend the merge date, the fix-hunk mapping, the loop-defer deviation and the callers of Leave.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `maxExtDNS`: upstream tries up to three external servers; the kernel configures one.
const MAX_EXT_DNS: usize = 1;

/// A `net.Conn` to an external name server. Its calls are system calls on a socket, not Go
/// memory: nothing here is checked for races.
#[derive(Clone, Copy, Debug)]
struct Conn {
    addr: &'static str,
}

impl Conn {
    /// `net.DialTimeout("udp", addr, extIOTimeout)`: a UDP dial sends nothing.
    fn dial(addr: &'static str) -> Result<Conn, String> {
        Ok(Conn { addr })
    }

    /// `co.WriteMsg(query)`.
    fn write_msg(&self, _query: &Msg) -> Result<(), String> {
        Ok(())
    }

    /// `co.ReadMsg()`: the external server's answer.
    fn read_msg(&self, query: &Msg) -> Result<Msg, String> {
        Ok(Msg {
            name: query.name,
            answer: Some(self.addr),
        })
    }

    /// `extConn.Close()`.
    fn close(&self) {}
}

/// A DNS message (`*dns.Msg`): the question's name, and the answer once there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Msg {
    name: &'static str,
    answer: Option<&'static str>,
}

/// `extDNSEntry`.
struct ExtDnsEntry {
    /// Set before the resolver starts, read-only after.
    ip_str: &'static str,
    ext_conn: Shared<Option<Conn>>,
    ext_once: Once,
}

/// The sandbox (`*sandbox`) as far as the resolver goes.
struct Sandbox;

impl Sandbox {
    /// `execFunc`: `osSbox.InvokeFunc(f)` runs `f` in the container's network namespace.
    fn exec_func<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// `resolver`: the embedded DNS server of one container.
struct Resolver {
    sb: Sandbox,
    ext_dns_list: [ExtDnsEntry; MAX_EXT_DNS],
    variant: Variant,
}

/// `NewResolver`.
fn new_resolver(variant: Variant) -> Resolver {
    Resolver {
        sb: Sandbox,
        ext_dns_list: [ExtDnsEntry {
            ip_str: "",
            ext_conn: Shared::new(None).named("extDNS.extConn"),
            ext_once: Once::new().named("extDNS.extOnce"),
        }],
        variant,
    }
}

impl Resolver {
    /// `SetExtServers`: the sandbox's external servers, set up before the resolver starts.
    fn set_ext_servers(&mut self, dns: &[&'static str]) {
        for (entry, ip) in self.ext_dns_list.iter_mut().zip(dns) {
            entry.ip_str = ip;
        }
    }

    /// `FlushExtServers`: drops the cached connections, and zeroes each `extOnce` so that the
    /// next query dials again.
    fn flush_ext_servers(&self) {
        for entry in &self.ext_dns_list {
            if let Some(conn) = entry.ext_conn.get() {
                conn.close();
            }
            entry.ext_conn.set(None);
            entry.ext_once.reset(); // r.extDNSList[i].extOnce = sync.Once{}
        }
    }

    /// `ServeDNS` for a query the resolver does not answer itself (a name outside the
    /// container's networks), over UDP: forwarded to the external servers.
    fn serve_dns(&self, w: &Chan<Msg>, query: Msg) {
        let mut resp = None;
        for ext_dns in &self.ext_dns_list {
            if ext_dns.ip_str.is_empty() {
                break;
            }
            // extConn, err = net.DialTimeout(proto, addr, extIOTimeout)
            let ext_connect = || Conn::dial(ext_dns.ip_str);
            let mut ext_conn: Option<Conn>;
            let mut err: Option<String> = None;
            if self.variant == Variant::Fixed {
                // ae40d62a: no cache; every query dials, and closes when it is done.
                match self.sb.exec_func(ext_connect) {
                    Ok(c) => ext_conn = Some(c),
                    Err(_) => continue,
                }
            } else {
                // The UDP connection is cached, and set up in a Once block.
                ext_conn = ext_dns.ext_conn.get();
                if ext_conn.is_none() {
                    ext_dns.ext_once.do_(|| {
                        match self.sb.exec_func(ext_connect) {
                            Ok(c) => ext_conn = Some(c),
                            Err(e) => err = Some(e),
                        }
                        ext_dns.ext_conn.set(ext_conn);
                    });
                    ext_conn = ext_dns.ext_conn.get();
                    if err.is_some() {
                        continue;
                    }
                }
            }
            let Some(co) = ext_conn else {
                continue;
            };
            let _close = defer(|| {
                if self.variant == Variant::Fixed {
                    co.close(); // defer co.Close()
                }
            });
            if co.write_msg(&query).is_err() {
                continue;
            }
            match co.read_msg(&query) {
                Ok(m) => {
                    resp = Some(m);
                    break;
                }
                Err(_) => continue,
            }
        }
        if let Some(resp) = resp {
            w.send(resp); // w.WriteMsg(resp)
        }
    }
}

/// `endpoint.Leave` (`docker network disconnect`), as far as the resolver goes.
fn leave(sb_resolver: &Resolver) {
    if sb_resolver.variant == Variant::Buggy {
        sb_resolver.flush_ext_servers();
    }
    // ep.sbLeave(sb, false, options...)
}

/// No upstream test: the daemon, one forwarded query, and a disconnect while it is served.
fn test_moby25802(variant: Variant) {
    let mut r = new_resolver(variant);
    r.set_ext_servers(&["8.8.8.8"]);
    let r = Arc::new(r);

    // The container's query: the DNS server serves it on a goroutine of its own. The daemon
    // stays up until it is served.
    let w = Chan::new(1).named("w");
    let query = Msg {
        name: "docker.com.",
        answer: None,
    };
    let served = WaitGroup::new().named("served");
    served.add(1);
    {
        let (r, served) = (r.clone(), served.clone());
        go_named("ServeDNS", move || {
            let _done = defer(|| served.done());
            r.serve_dns(&w, query);
        });
    }

    // Meanwhile the container is disconnected from a network.
    leave(&r);

    served.wait();
}
