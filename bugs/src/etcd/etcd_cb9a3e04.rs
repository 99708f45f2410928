#![doc = include_str!("etcd_cb9a3e04.md")]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::time::{self, Timer};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_cb9a3e04",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/3927",
        category: "Communication deadlock (channel & context)",
        expected: primitives::Verdict::Leak,
        kernel: test_etcdcb9a3e04,
        walkthrough: include_str!("etcd_cb9a3e04.md"),
        asplos: Some("blocking-bugs/etcd/cb9a3e04b141d150a370f1e6329428b621742041.txt"),
        loom: Loom::DoesNotApply(
            "three goroutines, the timer goroutine and the AfterFunc's goroutine when the header \
             timeout fires: more than loom's five threads",
        ),
        source: Source::Diff("cb9a3e04"),
        fix: Fix::Upstream("cb9a3e04"),
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `simpleHTTPClient.headerTimeout`, and how long the endpoint takes to answer.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const ENDPOINT_RTT: Duration = Duration::from_millis(10);

/// The caller's context: a type of its own (here, from another copy of the context
/// package), so `context.WithCancel` cannot link to it and must watch it from a goroutine.
struct CallerCtx {
    done: Chan<()>,
}

/// `context.cancelCtx` (and `timerCtx`, with its timer) of golang.org/x/net/context.
struct CancelCtx {
    mu: Mutex,
    done: Chan<()>,
    err: Shared<Option<&'static str>>,
    timer: OnceLock<Timer>,
}

impl CancelCtx {
    fn new() -> Arc<CancelCtx> {
        Arc::new(CancelCtx {
            mu: Mutex::new().named("cancelCtx.mu"),
            done: Chan::new(0).named("cancelCtx.done"),
            err: Shared::new(None).named("cancelCtx.err"),
            timer: OnceLock::new(),
        })
    }

    fn cancel(&self, err: &'static str) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.err.get().is_some() {
            return; // already canceled
        }
        self.err.set(Some(err));
        self.done.close();
        if let Some(t) = self.timer.get() {
            t.stop();
        }
    }

    fn err(&self) -> Option<&'static str> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.err.get()
    }
}

/// `propagateCancel` for a parent that is not a `*cancelCtx`: a goroutine waits for either
/// to be done.
fn propagate_cancel(parent: &Arc<CallerCtx>, child: &Arc<CancelCtx>) {
    let (parent, child) = (parent.clone(), child.clone());
    go_named("propagateCancel", move || {
        select! {
            recv(parent.done) => child.cancel("context canceled"),
            recv(child.done) => {},
        }
    });
}

/// `context.WithCancel(parent)`.
fn with_cancel(parent: &Arc<CallerCtx>) -> (Arc<CancelCtx>, Box<dyn FnOnce()>) {
    let c = CancelCtx::new();
    propagate_cancel(parent, &c);
    let cc = c.clone();
    (c, Box::new(move || cc.cancel("context canceled")))
}

/// `context.WithTimeout(parent, d)`.
fn with_timeout(parent: &Arc<CallerCtx>, d: Duration) -> (Arc<CancelCtx>, Box<dyn FnOnce()>) {
    let c = CancelCtx::new();
    propagate_cancel(parent, &c);
    let ct = c.clone();
    let _ = c.timer.set(time::after_func(d, move || {
        ct.cancel("context deadline exceeded")
    }));
    let cc = c.clone();
    (c, Box::new(move || cc.cancel("context canceled")))
}

/// A `CancelableTransport` whose endpoint answers after `ENDPOINT_RTT`.
struct Transport {
    cancelc: Chan<()>,
}

impl Transport {
    fn round_trip(&self) -> Result<&'static str, &'static str> {
        select! {
            recv(time::after(ENDPOINT_RTT)) => Ok("200 OK"),
            recv(self.cancelc) => Err("net/http: request canceled"),
        }
    }

    fn cancel_request(&self) {
        self.cancelc.close();
    }
}

/// The client's `simpleHTTPClient`.
struct SimpleHttpClient {
    transport: Arc<Transport>,
    header_timeout: Duration,
    variant: Variant,
}

impl SimpleHttpClient {
    /// `Do`, up to the response header (reading the body is left out).
    fn do_(&self, ctx: &Arc<CallerCtx>) -> Result<&'static str, String> {
        let (hctx, hcancel) = if self.variant.fixed() {
            if self.header_timeout > Duration::ZERO {
                with_timeout(ctx, self.header_timeout)
            } else {
                with_cancel(ctx)
            }
        } else {
            let (mut hctx, mut hcancel) = with_cancel(ctx);
            if self.header_timeout > Duration::ZERO {
                (hctx, hcancel) = with_timeout(ctx, self.header_timeout);
            }
            (hctx, hcancel)
        };
        let _hcancel = defer(hcancel);

        let rtchan = Chan::new(1).named("rtchan");
        let (t, r) = (self.transport.clone(), rtchan.clone());
        go_named("RoundTrip", move || {
            r.send(t.round_trip());
            r.close();
        });

        select! {
            recv(rtchan) -> rtresp => rtresp.expect("one response").map_err(str::to_string),
            recv(hctx.done) => {
                // cancel and wait for the request to actually exit before continuing
                self.transport.cancel_request();
                let _ = rtchan.recv();
                match hctx.err() {
                    Some(_) => Err("client: endpoint exceeded header timeout".to_string()),
                    None => unreachable!("failed to get error from context"),
                }
            },
        }
    }
}

/// A client with a header timeout serves one request for a caller whose context lives on.
fn test_etcdcb9a3e04(variant: Variant) {
    let c = SimpleHttpClient {
        transport: Arc::new(Transport {
            cancelc: Chan::new(0).named("reqcancel"),
        }),
        header_timeout: HEADER_TIMEOUT,
        variant,
    };
    let ctx = Arc::new(CallerCtx {
        done: Chan::new(0).named("caller.Done()"),
    });
    let _ = c.do_(&ctx);
}
