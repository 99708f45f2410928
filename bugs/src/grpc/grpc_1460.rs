#![doc = include_str!("grpc_1460.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::time::Timer;
use primitives::{go_named, select, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1460",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1460",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Leak,
        kernel: test_grpc1460,
        walkthrough: include_str!("grpc_1460.md"),
        goker: Some("gobench/goker/blocking/grpc/1460"),
        source: Source::Diff("c29d6389"),
        fix: Fix::Upstream("c29d6389"),
        review: "faithful: Built from upstream's transport/http2_client.go at 7db1564b and checked against the fix c29d6389 (= e605a1ec), issue #1459 and PR #1460 (GoKer's different unbuffered kernel read and set aside, with the reason): same lost token, lock-held receive and the one-line refill fix; faithful (reports lag the trace by one regeneration).",
        file: file!(),
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// How many times the kernel's keepalive timer expires (upstream: until the transport closes).
const EXPIRIES: usize = 2;

/// The client transport (`http2Client`) with keepalive on and `PermitWithoutStream` off.
struct Http2Client {
    mu: Mutex,
    /// `awakenKeepalive`: one slot, kept full except while keepalive is dormant.
    awaken_keepalive: Chan<()>,
    active_streams: GoMap<u32, ()>,
    next_id: Shared<u32>,
    shutdown_chan: Chan<()>,
    /// `kp.Time`.
    kp_time: Duration,
    variant: Variant,
}

impl Http2Client {
    fn keepalive(&self) {
        let timer = Timer::new(self.kp_time);
        for _ in 0..EXPIRIES {
            select! {
                recv(timer.c()) => {
                    self.mu.lock();
                    if self.active_streams.is_empty() {
                        // Go dormant: make awakenKeepalive writable, so NewStream can wake us.
                        self.awaken_keepalive.recv(); // buggy, second time: empty, blocks holding mu
                        self.mu.unlock();
                        select! {
                            recv(self.awaken_keepalive) => {},
                            recv(self.shutdown_chan) => return,
                        }
                    } else {
                        self.mu.unlock();
                        // Sending the ping is left out.
                    }
                    timer.reset(self.kp_time);
                },
                recv(self.shutdown_chan) => {
                    if !timer.stop() {
                        timer.c().recv();
                    }
                    return;
                },
            }
        }
    }

    fn new_stream(&self) -> u32 {
        self.mu.lock();
        let id = self.next_id.get();
        self.next_id.set(id + 2);
        self.active_streams.insert(id, ());
        // From no active stream to one: wake keepalive if it has gone dormant.
        if self.active_streams.len() == 1 {
            select! {
                send(self.awaken_keepalive, ()) => {
                    // Writing the ping is left out.
                    if self.variant.fixed() {
                        // The fix: fill the channel again, so it stays non-writable except
                        // while keepalive is dormant.
                        self.awaken_keepalive.send(());
                    }
                },
                default => {},
            }
        }
        self.mu.unlock();
        id
    }

    fn close_stream(&self, id: u32) {
        self.mu.lock();
        self.active_streams.remove(&id);
        self.mu.unlock();
    }

    fn close(&self) {
        self.mu.lock();
        // Checking and marking the transport's state is left out.
        self.mu.unlock();
        self.shutdown_chan.close();
        // Closing the connection is left out.
        self.mu.lock();
        let streams = self.active_streams.with_mut(std::mem::take);
        self.mu.unlock();
        // Notifying each of `streams` is left out.
        drop(streams);
    }
}

/// `newHTTP2Client`, with keepalive enabled.
fn new_http2_client(variant: Variant) -> Arc<Http2Client> {
    let t = Arc::new(Http2Client {
        mu: Mutex::new().named("http2Client.mu"),
        awaken_keepalive: Chan::new(1).named("awakenKeepalive"),
        active_streams: GoMap::new().named("activeStreams"),
        next_id: Shared::new(1).named("nextID"),
        shutdown_chan: Chan::new(0).named("shutdownChan"),
        kp_time: Duration::from_secs(10),
        variant,
    });
    // Make sure awakenKeepalive cannot be written to until keepalive goes dormant.
    t.awaken_keepalive.send(());
    let k = t.clone();
    go_named("keepalive", move || k.keepalive());
    t
}

/// `TestGrpc1460`: a keepalive-enabled client; a user goroutine makes one RPC, then closes it.
fn test_grpc1460(variant: Variant) {
    let t = new_http2_client(variant);
    go_named("client", move || {
        let s = t.new_stream();
        t.close_stream(s);
        t.close();
    });
}
