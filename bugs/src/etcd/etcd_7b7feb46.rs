#![doc = include_str!("etcd_7b7feb46.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, Context};
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_7b7feb46",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/7015",
        category: "Communication deadlock (channel & context)",
        expected: primitives::Verdict::Leak,
        kernel: test_etcd7b7feb46,
        walkthrough: include_str!("etcd_7b7feb46.md"),
        asplos: Some("blocking-bugs/etcd/7b7feb46fcf13da75f93797740ffc6034bb585ff.txt"),
        source: Source::Diff("7b7feb46"),
        fix: Fix::Upstream("7b7feb46"),
        review: "faithful: Checked against 7b7feb46 (PR #7015), lease/leasehttp/http.go, etcdserver/v3_server.go and pkg/httputil/httputil.go at its parent: the unbuffered errc left without a receiver once the caller's context times out; one-hunk fix mapped; every stand-in admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// How long the leader takes to answer, and the follower's request timeout
/// (`s.Cfg.ReqTimeout()`).
const LEADER_RTT: Duration = Duration::from_millis(50);
const REQ_TIMEOUT: Duration = Duration::from_millis(100);

/// `lease.ErrLeaseNotFound`.
const ERR_LEASE_NOT_FOUND: &str = "lease not found";

/// The HTTP request to the leader; `cancel` is `req.Cancel`.
struct Request {
    cancel: Chan<()>,
}

/// The leader's answer.
struct Response {
    status_code: u16,
    body: Vec<u8>,
}

/// `http.Client.Do`, to a leader that answers after `LEADER_RTT` unless the request is
/// cancelled first.
fn do_request(req: &Request) -> Result<Response, &'static str> {
    select! {
        recv(time::after(LEADER_RTT)) => Ok(Response {
            status_code: 200,
            body: b"LeaseInternalResponse".to_vec(),
        }),
        recv(req.cancel) => Err("net/http: request canceled"),
    }
}

/// `leasehttp.TimeToLiveHTTP`: asks the leader for a lease's TTL over HTTP.
fn time_to_live_http(ctx: &Context, variant: Variant) -> Result<Vec<u8>, &'static str> {
    let req = Arc::new(Request {
        cancel: Chan::new(0).named("req.Cancel"),
    });
    // httputil.RequestCanceler(req)
    let cancel = {
        let req = req.clone();
        move || req.cancel.close()
    };

    let b = Arc::new(Shared::new(Vec::new()).named("b"));
    let errc = if variant.fixed() {
        // buffer errc so that the goroutine does not block on it
        Chan::new(2).named("errc")
    } else {
        Chan::new(0).named("errc")
    };
    let (e, body) = (errc.clone(), b.clone());
    go_named("TimeToLiveHTTP.func1", move || {
        let resp = match do_request(&req) {
            Ok(resp) => resp,
            Err(err) => {
                e.send(Some(err));
                return;
            }
        };
        body.set(resp.body); // readResponse
        if resp.status_code != 200 {
            e.send(Some("lease: unknown error"));
            return;
        }
        e.send(None);
    });
    select! {
        recv(errc) -> derr => {
            if let Some(Some(derr)) = derr {
                return Err(derr);
            }
        },
        recv(ctx.done()) => {
            cancel();
            return Err("context deadline exceeded"); // ctx.Err()
        },
    }
    Ok(b.get()) // lresp.Unmarshal(b)
}

/// etcdserver's `EtcdServer.LeaseTimeToLive` on a follower: forwards the request to the
/// leader until it answers or the request times out.
fn lease_time_to_live(variant: Variant) -> Result<Vec<u8>, &'static str> {
    let (cctx, cancel) = context::with_timeout(&context::background(), REQ_TIMEOUT);
    let _cancel = defer(|| cancel.call());
    // forward to leader
    while cctx.err().is_none() {
        // waitLeader: the leader is known, with one peer URL.
        match time_to_live_http(&cctx, variant) {
            Ok(resp) => return Ok(resp),
            Err(ERR_LEASE_NOT_FOUND) => return Err(ERR_LEASE_NOT_FOUND),
            Err(_) => {}
        }
    }
    Err("etcdserver: request timed out") // ErrTimeout
}

/// A client's `LeaseTimeToLive` reaching a follower.
fn test_etcd7b7feb46(variant: Variant) {
    let _ = lease_time_to_live(variant);
}
