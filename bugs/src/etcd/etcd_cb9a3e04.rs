#![doc = include_str!("etcd_cb9a3e04.md")]

use std::sync::Arc;
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
        review: "faithful: Checked against cb9a3e04 (#3927), client/client.go, client/cancelreq.go, client_test.go and the vendored x/net/context at its parent: the overwritten WithCancel is never cancelled and its propagateCancel goroutine leaks for a foreign parent; one-hunk fix mapped; the constructed caller is admitted and justified.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `simpleHTTPClient.headerTimeout` (`Config.HeaderTimeoutPerRequest`), and how long the
/// endpoint takes to answer.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const ENDPOINT_RTT: Duration = Duration::from_millis(10);

/// `context.Canceled` and `context.DeadlineExceeded`.
const CANCELED: &str = "context canceled";
const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// The caller's context: a `Context` that is not one of the context package's own types
/// (`parentCancelCtx` does not recognise it) and whose `Done` is not nil. It lives on.
struct CallerCtx {
    done: Chan<()>,
}

impl CallerCtx {
    fn err(&self) -> Option<&'static str> {
        None // never done while the kernel runs
    }
}

/// golang.org/x/net/context's `cancelCtx`, or a `timerCtx` (a `cancelCtx` with a timer).
struct CancelCtx {
    /// Closed by the first cancel call.
    done: Chan<()>,
    mu: Mutex,
    /// Set by the first cancel call.
    err: Shared<Option<&'static str>>,
    /// `timerCtx.timer`, under `mu`; `None` for a plain `cancelCtx`.
    timer: Option<Shared<Option<Arc<Timer>>>>,
}

impl CancelCtx {
    /// `newCancelCtx` (`timer_ctx`: `&timerCtx{cancelCtx: newCancelCtx(parent)}`).
    fn new(timer_ctx: bool) -> Arc<CancelCtx> {
        Arc::new(CancelCtx {
            done: Chan::new(0).named("cancelCtx.done"),
            mu: Mutex::new().named("cancelCtx.mu"),
            err: Shared::new(None).named("cancelCtx.err"),
            timer: timer_ctx.then(|| Shared::new(None).named("timerCtx.timer")),
        })
    }

    /// `cancelCtx.cancel`, then for a `timerCtx` the rest of `timerCtx.cancel`: stop the
    /// timer. The contexts here have no children, and their parent is not one of the
    /// package's types, so `removeChild` has nothing to do.
    fn cancel(&self, err: &'static str) {
        self.mu.lock();
        if self.err.get().is_some() {
            self.mu.unlock();
            return; // already canceled
        }
        self.err.set(Some(err));
        self.done.close();
        self.mu.unlock();
        if let Some(timer) = &self.timer {
            self.mu.lock();
            if let Some(t) = timer.get() {
                t.stop();
                timer.set(None);
            }
            self.mu.unlock();
        }
    }

    fn err(&self) -> Option<&'static str> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.err.get()
    }
}

/// `propagateCancel`: the parent's `Done` is not nil and the parent is not a `*cancelCtx`,
/// so a goroutine waits for either to be done.
fn propagate_cancel(parent: &Arc<CallerCtx>, child: &Arc<CancelCtx>) {
    let (parent, child) = (parent.clone(), child.clone());
    go_named("propagateCancel", move || {
        select! {
            recv(parent.done) => child.cancel(parent.err().unwrap_or(CANCELED)),
            recv(child.done) => {},
        }
    });
}

/// `context.WithCancel(parent)`.
fn with_cancel(parent: &Arc<CallerCtx>) -> (Arc<CancelCtx>, Box<dyn FnOnce()>) {
    let c = CancelCtx::new(false);
    propagate_cancel(parent, &c);
    let cc = c.clone();
    (c, Box::new(move || cc.cancel(CANCELED)))
}

/// `context.WithTimeout(parent, d)`, that is `WithDeadline(parent, now + d)` for a parent
/// with no deadline.
fn with_timeout(parent: &Arc<CallerCtx>, d: Duration) -> (Arc<CancelCtx>, Box<dyn FnOnce()>) {
    let c = CancelCtx::new(true);
    propagate_cancel(parent, &c);
    c.mu.lock();
    if c.err.get().is_none() {
        let ct = c.clone();
        let timer = time::after_func(d, move || ct.cancel(DEADLINE_EXCEEDED));
        c.timer
            .as_ref()
            .expect("a timerCtx")
            .set(Some(Arc::new(timer)));
    }
    c.mu.unlock();
    let cc = c.clone();
    (c, Box::new(move || cc.cancel(CANCELED)))
}

/// The `http.Request`; `cancel` is `req.Cancel`.
struct Request {
    cancel: Chan<()>,
}

/// `requestCanceler` (`cancelreq.go`, Go 1.5 and later): sets `req.Cancel` and returns the
/// function that closes it.
fn request_canceler(req: &Arc<Request>) -> impl Fn() {
    let req = req.clone();
    move || req.cancel.close()
}

/// The `CancelableTransport`: an endpoint that answers after `ENDPOINT_RTT`, unless the
/// request is cancelled first.
struct Transport;

impl Transport {
    fn round_trip(&self, req: &Request) -> Result<&'static str, &'static str> {
        select! {
            recv(time::after(ENDPOINT_RTT)) => Ok("200 OK"),
            recv(req.cancel) => Err("net/http: request canceled"),
        }
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
        let req = Arc::new(Request {
            cancel: Chan::new(0).named("req.Cancel"),
        });

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

        let reqcancel = request_canceler(&req);

        let rtchan = Chan::new(1).named("rtchan");
        let (t, r, rq) = (self.transport.clone(), rtchan.clone(), req.clone());
        go_named("RoundTrip", move || {
            r.send(t.round_trip(&rq));
            r.close();
        });

        select! {
            recv(rtchan) -> rtresp => rtresp.expect("one response").map_err(str::to_string),
            recv(hctx.done) => {
                // cancel and wait for the request to actually exit before continuing
                reqcancel();
                let _ = rtchan.recv();
                if let Some(err) = ctx.err() {
                    Err(err.to_string())
                } else if hctx.err().is_some() {
                    Err("client: endpoint exceeded header timeout".to_string())
                } else {
                    panic!("failed to get error from context")
                }
            },
        }
    }
}

/// A caller whose context lives on sends one request through a client with a header
/// timeout (`httpClusterClient.Do` passes the caller's context to `simpleHTTPClient.Do`).
fn test_etcdcb9a3e04(variant: Variant) {
    let c = SimpleHttpClient {
        transport: Arc::new(Transport),
        header_timeout: HEADER_TIMEOUT,
        variant,
    };
    let ctx = Arc::new(CallerCtx {
        done: Chan::new(0).named("caller.Done()"),
    });
    let _ = c.do_(&ctx);
}
