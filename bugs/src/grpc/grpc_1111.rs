#![doc = include_str!("grpc_1111.md")]

use std::sync::Arc;

use primitives::context;
use primitives::explore::Engine;
use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1111",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1546",
        category: "Misuse channel",
        expected: primitives::Verdict::Panic,
        kernel: test_grpc1111,
        walkthrough: include_str!("grpc_1111.md"),
        asplos: Some("non-blocking-bugs/grpc-go/22c3f92f5faea8db492fb0f5ae4daf0d2752b19e.txt"),
        source: Source::Test("grpc/grpc-go transport/handler_server_test.go @ 22c3f92f"),
        fix: Fix::Upstream("22c3f92f"),
        review: "faithful after mends: Checked against 22c3f92f (PR #1546, issue #1111, etcd#8627) and transport/handler_server.go at cf79c849 plus the fix's MultiWriteStatus test: the check-then-later-set of streamDone lets two WriteStatus calls both send/close writes; both code hunks mapped; the walkthrough should say that issue #1111's own report was the Write-vs-WriteStatus panic this commit does not fix.",
        not_found_by: &[(
            Engine::Loom,
            "loom's search at preemption bound 3 finds the panic only at execution 41,085 (harness \
             run, budget 150,000), past its budget of 20,000: a woken goroutine's first steps are \
             loom steps of their own, which multiplies the orders to run",
        )],
        file: file!(),
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
    /// `rw.(http.CloseNotifier).CloseNotify()`: the test's response writer never sends on it.
    close_notify: Chan<bool>,
    /// Closed on `Close` (which this test never calls).
    closed_ch: Chan<()>,
    /// Code to run serialized in the ServeHTTP (HandleStreams) goroutine; closed when
    /// `WriteStatus` is called.
    writes: Chan<WriteFn>,
    mu: Mutex,
    /// Whether `WriteStatus` has been called and `writes` has been closed.
    stream_done: Shared<bool>,
    did_common_headers: Shared<bool>,
    variant: Variant,
}

/// `transport.Stream`, as the handler transport makes it; its fields do not matter here.
struct Stream {
    method: &'static str,
}

impl ServerHandlerTransport {
    /// `do`: runs `f` in the ServeHTTP goroutine.
    fn do_(&self, f: WriteFn) -> Result<(), ErrConnClosing> {
        // Avoid a panic writing to closed channel. Imperfect but maybe good enough.
        select! {
            recv(self.closed_ch) => Err(ErrConnClosing),
            default => select! {
                send(self.writes, f) => Ok(()), // panics once `writes` is closed
                recv(self.closed_ch) => Err(ErrConnClosing),
            },
        }
    }

    fn write_status(self: &Arc<Self>, _s: &Stream) -> Result<(), ErrConnClosing> {
        self.mu.lock();
        if self.stream_done.get() {
            self.mu.unlock();
            return Ok(());
        }
        if self.variant.fixed() {
            // The fix: mark the stream done before handing the status over.
            self.stream_done.set(true);
        }
        self.mu.unlock();
        let ht = self.clone();
        let err = self.do_(Box::new(move || {
            ht.write_common_headers();
            // Flushing and setting the Grpc-Status, Grpc-Message and trailer headers are left
            // out.
        }));
        self.writes.close();
        if !self.variant.fixed() {
            self.mu.lock();
            self.stream_done.set(true);
            self.mu.unlock();
        }
        err
    }

    /// `writeCommonHeaders`: sets the common headers on the first write.
    fn write_common_headers(&self) {
        if self.did_common_headers.get() {
            return;
        }
        self.did_common_headers.set(true);
        // Setting Content-Type, Trailer and Grpc-Encoding is left out.
    }

    fn handle_streams(self: &Arc<Self>, start_stream: impl FnOnce(Stream)) {
        // With this transport type there will be exactly 1 stream: this HTTP request.
        let (_ctx, cancel) = context::with_cancel(&context::background());

        // requestOver is closed when either the request's context is done
        // or the status has been written via WriteStatus.
        let request_over: Chan<()> = Chan::new(0).named("requestOver");

        let client_gone = self.close_notify.clone();
        let (ht, over) = (self.clone(), request_over.clone());
        go_named("HandleStreams.func1", move || {
            select! {
                recv(over) => return,
                recv(ht.closed_ch) => {},
                recv(client_gone) => {},
            }
            cancel.call();
        });

        let s = Stream {
            method: "/service/foo.bar",
        };
        // The goroutine reading the request body into the stream's buffer is left out: the
        // test's body is empty.

        // startStream is provided by the test: it starts a goroutine serving s.
        start_stream(s);

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

/// `TestHandlerTransport_HandleStreams_MultiWriteStatus` (added by the fix), with two
/// concurrent `WriteStatus` calls instead of five.
fn test_grpc1111(variant: Variant) {
    // newHandleStreamTest: NewServerHandlerTransport(rw, req)
    let ht = Arc::new(ServerHandlerTransport {
        close_notify: Chan::new(1).named("closeNotify"),
        closed_ch: Chan::new(0).named("closedCh"),
        writes: Chan::new(0).named("writes"),
        mu: Mutex::new().named("ht.mu"),
        stream_done: Shared::new(false).named("streamDone"),
        did_common_headers: Shared::new(false).named("didCommonHeaders"),
        variant,
    });
    let st = ht.clone();
    let handle_stream = move |s: Stream| {
        assert_eq!(s.method, "/service/foo.bar", "stream method");
        // st.bodyw.Close(): no body (its reader is left out).
        let s = Arc::new(s);
        let wg = WaitGroup::new().named("wg");
        wg.add(2);
        for _ in 0..2 {
            let (ht, s, wg) = (st.clone(), s.clone(), wg.clone());
            go_named("MultiWriteStatus.func1", move || {
                let _done = defer(|| wg.done());
                let _ = ht.write_status(&s);
            });
        }
        wg.wait();
    };
    ht.handle_streams(move |s| go_named("handleStream", move || handle_stream(s)));
}
