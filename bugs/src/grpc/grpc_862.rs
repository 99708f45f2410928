#![doc = include_str!("grpc_862.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context, ContextError};
use primitives::sync::Mutex;
use primitives::{go_named, select, time, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_862",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/862",
        category: "Communication deadlock (channel & context)",
        expected: primitives::Verdict::Leak,
        kernel: test_grpc862,
        walkthrough: include_str!("grpc_862.md"),
        goker: Some("gobench/goker/blocking/grpc/862"),
        asplos: Some("blocking-bugs/grpc-go/dd5645bebff44f6b88780bb949022a09eadd7dae.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("dd5645be"),
        review: "faithful: Checked against dd5645be (PR #862), clientconn.go at d8f4ebe7 and GoKer's kernel: DialContext's defer closes the nil named result instead of the ClientConn it made when ctx is cancelled first, leaking resetTransport's retry loop; all fix hunks mapped; GoKer's missing waitC/select/defer restored and admitted.",
        file: file!(),
        budget: Budget { loom: 3_000, preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// The errors `DialContext` and `Close` return (the test, like GoKer's, does not look at them).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
enum Error {
    ClientConnClosing,
    Ctx(ContextError),
}

/// The client connection (`ClientConn`).
struct ClientConn {
    ctx: Context,
    cancel: CancelFunc,
    mu: Mutex,
    /// `conns`; `nil` once closed.
    conns: Shared<Option<Vec<Arc<AddrConn>>>>,
}

impl ClientConn {
    fn close(&self) -> Result<(), Error> {
        self.cancel.call();
        self.mu.lock();
        let Some(conns) = self.conns.write(|c| c.take()) else {
            self.mu.unlock();
            return Err(Error::ClientConnClosing);
        };
        self.mu.unlock();
        for ac in conns {
            ac.tear_down();
        }
        Ok(())
    }

    fn reset_addr_conn(&self) -> Result<(), Error> {
        let (ctx, cancel) = context::with_cancel(&self.ctx);
        let ac = Arc::new(AddrConn { ctx, cancel });
        // Track ac in cc.
        self.mu.lock();
        if !self.conns.write(|c| match c {
            Some(conns) => {
                conns.push(ac.clone());
                true
            }
            None => false,
        }) {
            self.mu.unlock();
            return Err(Error::ClientConnClosing);
        }
        self.mu.unlock();
        // Connect asynchronously (the dial does not block).
        go_named("resetTransport", move || ac.reset_transport());
        Ok(())
    }
}

/// A connection to one address (`addrConn`).
struct AddrConn {
    ctx: Context,
    cancel: CancelFunc,
}

impl AddrConn {
    /// Connects, and on failure retries with a backoff until `ac.ctx` is cancelled. There is no
    /// server, so every attempt fails.
    fn reset_transport(&self) {
        for retries in 1u32.. {
            let sleep_time = Duration::from_nanos(2) * retries;
            let timeout = Duration::from_nanos(10);
            let (_ctx, cancel) = context::with_timeout(&self.ctx, timeout);
            let connect_time = time::now();
            // transport.NewClientTransport(ctx, ...) fails.
            cancel.call();
            select! {
                recv(time::after(sleep_time.saturating_sub(time::since(connect_time)))) => {},
                recv(self.ctx.done()) => return,
            }
        }
    }

    fn tear_down(&self) {
        self.cancel.call();
    }
}

/// `DialContext`: the returned connection, or the error.
fn dial_context(ctx: &Context, variant: Variant) -> (Option<Arc<ClientConn>>, Option<Error>) {
    let (cc_ctx, cc_cancel) = context::with_cancel(&context::background());
    let cc = Arc::new(ClientConn {
        ctx: cc_ctx,
        cancel: cc_cancel,
        mu: Mutex::new().named("ClientConn.mu"),
        conns: Shared::new(Some(Vec::new())).named("ClientConn.conns"),
    });

    let wait_c: Chan<Error> = Chan::new(1).named("waitC");
    let (dialer, report) = (cc.clone(), wait_c.clone());
    go_named("DialContext.func2", move || {
        // One address: the target itself.
        if let Err(err) = dialer.reset_addr_conn() {
            report.send(err);
            return;
        }
        report.close();
    });
    let (mut conn, mut err) = select! {
        recv(ctx.done()) => (None, ctx.err().map(Error::Ctx)),
        recv(wait_c) -> res => match res {
            Some(e) => {
                if !variant.fixed() {
                    cc.close().ok(); // moved into the deferred function by the fix
                }
                (None, Some(e))
            },
            None => (Some(cc.clone()), None),
        },
    };

    // The deferred function.
    select! {
        recv(ctx.done()) => {
            if !variant.fixed() {
                if let Some(conn) = &conn {
                    conn.close().ok();
                }
            }
            conn = None;
            err = ctx.err().map(Error::Ctx);
        },
        default => {},
    }
    if variant.fixed() && err.is_some() {
        // The fix: whatever the error, the ClientConn made here is closed.
        cc.close().ok();
    }
    (conn, err)
}

/// `TestGrpc862`: a dial whose context is cancelled concurrently. The dialing goroutine closes
/// the connection if it gets one.
fn test_grpc862(variant: Variant) {
    let (ctx, cancel) = context::with_cancel(&context::background());
    go_named("DialContext", move || {
        if let (Some(conn), _) = dial_context(&ctx, variant) {
            conn.close().ok();
        }
    });
    cancel.call(); // GoKer: `go cancel()`
}
