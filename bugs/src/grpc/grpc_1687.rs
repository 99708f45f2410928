#![doc = include_str!("grpc_1687.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context;
use primitives::sync::{Mutex, Once};
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1687",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1687",
        category: "Misuse channel",
        expected: primitives::Verdict::Panic,
        kernel: test_grpc1687,
        walkthrough: include_str!("grpc_1687.md"),
        goker: Some("gobench/goker/nonblocking/grpc/1687"),
        asplos: Some("non-blocking-bugs/grpc-go/c6b46087ab923e9f453ec433f99174cdd45b9b89.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("c6b46087"),
        review: "faithful: Checked against GoKer nonblocking/grpc/1687, the fix c6b46087 (ASPLOS c6b46087…) and transport/handler_server.go at 00383af2: same send-after-close through `do`, all three fix hunks switched; faithful.",
        file: file!(),
        // The default loom budget: 30,000 did not finish the fixed variant's search either.
        ..Bug::DEFAULT
    }
}

/// `ErrConnClosing`.
#[derive(Debug)]
struct ErrConnClosing;

type WriteFn = Box<dyn FnOnce() + Send>;

/// The `http.Handler`-based server transport (`serverHandlerTransport`).
struct ServerHandlerTransport {
    close_once: Once,
    /// Closed by `Close`.
    closed_ch: Chan<()>,
    /// Code to run in the ServeHTTP goroutine; closed by `WriteStatus`.
    writes: Chan<WriteFn>,
    /// `mu`, guarding `stream_done` (the buggy version; the fix deletes both).
    mu: Mutex,
    /// `streamDone`: whether `WriteStatus` has been called and `writes` closed.
    stream_done: Shared<bool>,
    /// `writeStatusMu`, held for all of `WriteStatus` (added by the fix).
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
        // Checks closedCh first; nothing here can tell that `writes` is closed.
        select! {
            recv(self.closed_ch) => Err(ErrConnClosing),
            default => select! {
                send(self.writes, f) => Ok(()), // panics once writes is closed
                recv(self.closed_ch) => Err(ErrConnClosing),
            },
        }
    }

    fn write_status(self: &Arc<Self>) -> Result<(), ErrConnClosing> {
        let _unlock = if self.variant.fixed() {
            // The fix: block concurrent WriteStatus calls for the whole call.
            self.write_status_mu.lock();
            Some(defer(|| self.write_status_mu.unlock()))
        } else {
            self.mu.lock();
            if self.stream_done.get() {
                self.mu.unlock();
                return Ok(());
            }
            self.stream_done.set(true);
            self.mu.unlock();
            None
        };

        let ht = self.clone();
        let err = self.do_(Box::new(move || {
            ht.write_common_headers();
            // Flushing and the status trailers are left out.
        }));

        if self.variant.fixed() {
            if err.is_ok() {
                // The fix: close the transport first, so a later do sees closedCh.
                self.close();
                self.writes.close();
            }
        } else {
            self.writes.close();
        }
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
            // Writing the header and data frames is left out.
        }))
    }

    fn handle_streams(self: &Arc<Self>, start_stream: impl FnOnce()) {
        let (_ctx, cancel) = context::with_cancel(&context::background());
        // requestOver is closed when the request is over.
        let request_over: Chan<()> = Chan::new(0).named("requestOver");
        let (ht, over) = (self.clone(), request_over.clone());
        go_named("HandleStreams.func1", move || {
            select! {
                recv(over) => return,
                recv(ht.closed_ch) => {},
            }
            cancel.call();
        });
        // Starts a goroutine serving the stream, and returns.
        start_stream();
        self.run_stream();
        request_over.close();
    }

    fn run_stream(&self) {
        loop {
            select! {
                recv(self.writes) -> f => match f {
                    Some(f) => f(),
                    None => return,
                },
                recv(self.closed_ch) => return,
            }
        }
    }
}

/// GoKer's `TestGrpc1687`: upstream's `TestHandlerTransport_HandleStreams_WriteStatusWrite`, added
/// by the fix, with GoKer's sleep.
fn test_grpc1687(variant: Variant) {
    let ht = Arc::new(ServerHandlerTransport {
        close_once: Once::new(),
        closed_ch: Chan::new(0).named("closedCh"),
        writes: Chan::new(0).named("writes"),
        mu: Mutex::new().named("mu"),
        stream_done: Shared::new(false).named("streamDone"),
        write_status_mu: Mutex::new().named("writeStatusMu"),
        did_common_headers: Shared::new(false).named("didCommonHeaders"),
        variant,
    });
    let st = ht.clone();
    ht.handle_streams(move || {
        go_named("handleStream", move || {
            let _ = st.write_status();
            let _ = st.write();
        });
    });
    time::sleep(Duration::from_millis(10));
}
