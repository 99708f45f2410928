#![doc = include_str!("grpc_2695.md")]

use std::sync::Arc;

use primitives::context;
use primitives::sync::{Mutex, Once};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_2695",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/2695",
        category: "Misuse channel",
        expected: primitives::Verdict::Panic,
        kernel: test_grpc2695,
        walkthrough: include_str!("grpc_2695.md"),
        source: Source::Description("https://github.com/grpc/grpc-go/pull/2695"),
        fix: Fix::Upstream("#2695"),
        file: file!(),
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// `ErrConnClosing`.
#[derive(Debug)]
struct ErrConnClosing;

type WriteFn = Box<dyn FnOnce() + Send>;

/// The `http.Handler`-based server transport (`serverHandlerTransport`): one transport per
/// HTTP request, one stream per transport.
struct ServerHandlerTransport {
    close_once: Once,
    /// Closed by `Close`.
    closed_ch: Chan<()>,
    /// Code to run in the ServeHTTP goroutine, which owns the `ResponseWriter`. Buggy: closed
    /// by `WriteStatus`.
    writes: Chan<WriteFn>,
    /// Serialises `WriteStatus` calls.
    write_status_mu: Mutex,
    did_common_headers: Shared<bool>,
    variant: Variant,
}

impl ServerHandlerTransport {
    fn close(&self) {
        self.close_once.do_(|| self.closed_ch.close());
    }

    /// Runs `f` in the ServeHTTP goroutine.
    fn do_(&self, f: WriteFn) -> Result<(), ErrConnClosing> {
        if self.variant.fixed() {
            return select! {
                recv(self.closed_ch) => Err(ErrConnClosing),
                send(self.writes, f) => Ok(()),
            };
        }
        // Buggy: avoid a panic writing to a closed channel; imperfect, as it turns out.
        select! {
            recv(self.closed_ch) => Err(ErrConnClosing),
            default => select! {
                send(self.writes, f) => Ok(()), // panics if WriteStatus closed writes
                recv(self.closed_ch) => Err(ErrConnClosing),
            },
        }
    }

    fn write_status(self: &Arc<Self>) -> Result<(), ErrConnClosing> {
        self.write_status_mu.lock();
        let _unlock = defer(|| self.write_status_mu.unlock());
        let ht = self.clone();
        let err = self.do_(Box::new(move || {
            ht.write_common_headers();
            // Flushing and setting the Grpc-Status and Grpc-Message trailers are left out.
        }));
        if err.is_ok() && !self.variant.fixed() {
            // The fix removes this close: nobody needs it, and a concurrent Write may still
            // be about to send.
            self.writes.close();
        }
        self.close();
        err
    }

    fn write_common_headers(&self) {
        if self.did_common_headers.get() {
            return;
        }
        self.did_common_headers.set(true);
    }

    fn write(self: &Arc<Self>) -> Result<(), ErrConnClosing> {
        let ht = self.clone();
        self.do_(Box::new(move || {
            ht.write_common_headers();
            // Writing the message and flushing are left out.
        }))
    }

    fn handle_streams(self: &Arc<Self>, start_stream: impl FnOnce()) {
        let (_ctx, cancel) = context::with_cancel(&context::background());
        // requestOver is closed when the request is over or the status has been written.
        let request_over: Chan<()> = Chan::new(0).named("requestOver");
        let (ht, over) = (self.clone(), request_over.clone());
        go_named("HandleStreams.func1", move || {
            select! {
                recv(over) => {},
                recv(ht.closed_ch) => {},
            }
            cancel.call();
            ht.close();
        });
        // Starts a goroutine that serves the stream.
        start_stream();
        self.run_stream();
        request_over.close();
        // Reading the request body in a goroutine of its own is left out.
    }

    fn run_stream(&self) {
        loop {
            select! {
                recv(self.writes) -> f => match f {
                    Some(f) => f(),
                    None => return, // closed by WriteStatus (buggy only)
                },
                recv(self.closed_ch) => return,
            }
        }
    }
}

/// A server handling one streaming RPC over `ServeHTTP` whose handler returns (and gRPC writes
/// the status) while a goroutine it started is still sending a message.
fn test_grpc2695(variant: Variant) {
    let ht = Arc::new(ServerHandlerTransport {
        close_once: Once::new(),
        closed_ch: Chan::new(0).named("closedCh"),
        writes: Chan::new(0).named("writes"),
        write_status_mu: Mutex::new().named("writeStatusMu"),
        did_common_headers: Shared::new(false).named("didCommonHeaders"),
        variant,
    });
    let st = ht.clone();
    ht.handle_streams(move || {
        go_named("handleStream", move || {
            let sender = st.clone();
            go_named("SendMsg", move || {
                let _ = sender.write();
            });
            let _ = st.write_status();
        });
    });
}
