#![doc = include_str!("moby_7559.md")]

use primitives::sync::Mutex;
use primitives::{go_named, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_7559",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/7559",
        category: "Double locking",
        expected: primitives::Verdict::Leak,
        kernel: test_moby7559,
        walkthrough: include_str!("moby_7559.md"),
        goker: Some("gobench/goker/blocking/moby/7559"),
        asplos: Some("blocking-bugs/docker/6cbb8e070d6c3a66bf48fbe5cbf689557eee23db.txt"),
        source: Source::Diff("6cbb8e07"),
        fix: Fix::Upstream("6cbb8e07"),
        review: "faithful after mends: Checked against 6cbb8e07, udp_proxy.go/mapper.go at 64579f51, GoKer blocking/moby/7559 and the ASPLOS copy: upstream's missing unlock and one-line fix, modelled on upstream's loop rather than GoKer's; only the trace is stale.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A UDP connection to the backend (its socket is left out).
#[derive(Clone)]
struct UdpConn;

/// `net.DialUDP("udp", nil, proxy.backendAddr)`: here it always fails, as in GoKer's kernel
/// (which dials a nil address).
fn dial_udp() -> Result<UdpConn, &'static str> {
    Err("dial udp: missing address")
}

/// The userland proxy for one published UDP port (`proxy.UDPProxy`).
struct UdpProxy {
    conn_track_lock: Mutex,
    /// Backend connections by client address.
    conn_track_table: GoMap<u32, UdpConn>,
    variant: Variant,
}

impl UdpProxy {
    /// `Run`: forwards each datagram from the frontend to the backend, over a connection per
    /// client.
    fn run(&self) {
        // Two datagrams arrive from the same client (`ReadFromUDP`), then the loop ends.
        for _ in 0..2 {
            let from_key = 1;
            self.conn_track_lock.lock();
            let hit = self.conn_track_table.contains_key(&from_key);
            if !hit {
                let proxy_conn = match dial_udp() {
                    Ok(conn) => conn,
                    Err(_) => {
                        // The datagram is dropped (upstream logs it) and the next one read.
                        if self.variant.fixed() {
                            self.conn_track_lock.unlock();
                        }
                        continue;
                    }
                };
                self.conn_track_table.insert(from_key, proxy_conn);
            }
            self.conn_track_lock.unlock();
        }
    }
}

/// `TestMoby7559`.
fn test_moby7559(variant: Variant) {
    let proxy = UdpProxy {
        conn_track_lock: Mutex::new().named("connTrackLock"),
        conn_track_table: GoMap::new().named("connTrackTable"),
        variant,
    };
    go_named("Run", move || proxy.run());
}
