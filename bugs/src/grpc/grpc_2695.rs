#![doc = include_str!("grpc_2695.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::explore::Engine;
use primitives::sync::{Mutex, Once, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_2695",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/2695",
        category: "Misuse channel",
        expected: primitives::Verdict::Panic,
        kernel: test_grpc2695,
        walkthrough: include_str!("grpc_2695.md"),
        source: Source::Diff("272a4b69"),
        fix: Fix::Upstream("272a4b69"),
        review: "faithful: Checked against grpc-go 272a4b69 and its parent (`internal/transport/handler_server.go`, `stream.go`, `server.go`), c6b46087's message and PR #2695's thread: right bug, upstream's three hunks as switches, the invented handler is admitted and shaped on etcd#9956; reports lag one regeneration.",
        not_found_by: &[(
            Engine::Loom,
            "loom's search at preemption bound 3 finds the panic only at execution 45,777 (harness \
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

/// A status or a receive error, as the kernel needs them: constant strings.
type Status = &'static str;

type WriteFn = Box<dyn FnOnce() + Send>;

/// The `http.Handler`-based server transport (`serverHandlerTransport`): one transport per
/// HTTP request, one stream per transport.
struct ServerHandlerTransport {
    /// `rw.(http.CloseNotifier).CloseNotify()`: receives a value when the peer is gone.
    close_notify: Chan<()>,
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

/// `transport.Stream`, as the handler transport makes it.
struct Stream {
    ctx: Context,
    /// `buf`, the `recvBuffer` the request body is read into.
    buf: Chan<()>,
}

impl ServerHandlerTransport {
    fn close(&self) {
        self.close_once.do_(|| self.closed_ch.close());
    }

    /// `do`: runs `f` in the ServeHTTP goroutine.
    fn do_(&self, f: WriteFn) -> Result<(), ErrConnClosing> {
        if self.variant.fixed() {
            return select! {
                recv(self.closed_ch) => Err(ErrConnClosing),
                send(self.writes, f) => Ok(()),
            };
        }
        // Avoid a panic writing to closed channel. Imperfect but maybe good enough.
        select! {
            recv(self.closed_ch) => Err(ErrConnClosing),
            default => select! {
                send(self.writes, f) => Ok(()), // panics if WriteStatus closed writes
                recv(self.closed_ch) => Err(ErrConnClosing),
            },
        }
    }

    fn write_status(self: &Arc<Self>, _st: Status) -> Result<(), ErrConnClosing> {
        self.write_status_mu.lock();
        let _unlock = defer(|| self.write_status_mu.unlock());
        let ht = self.clone();
        let err = self.do_(Box::new(move || {
            ht.write_common_headers();
            // Flushing and setting the Grpc-Status and Grpc-Message trailers are left out.
        }));
        if err.is_ok() && !self.variant.fixed() {
            // transport has not been closed
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

    fn handle_streams(self: &Arc<Self>, start_stream: impl FnOnce(Arc<Stream>)) {
        // ctx := ht.req.Context(), with a cancel of its own
        let (ctx, cancel) = context::with_cancel(&context::background());
        // requestOver is closed when either the request's context is done
        // or the status has been written via WriteStatus.
        let request_over: Chan<()> = Chan::new(0).named("requestOver");
        let client_gone = self.close_notify.clone();
        let (ht, over) = (self.clone(), request_over.clone());
        go_named("HandleStreams.func1", move || {
            select! {
                recv(over) => {},
                recv(ht.closed_ch) => {},
                recv(client_gone) => {},
            }
            cancel.call();
            ht.close();
        });
        // The goroutine that reads the request body into buf is left out: the client sends
        // nothing more before it goes away.
        let buf = Chan::new(1).named("recvBuffer");
        start_stream(Arc::new(Stream { ctx, buf }));
        self.run_stream();
        request_over.close();
    }

    fn run_stream(&self) {
        loop {
            select! {
                recv(self.writes) -> f => match f {
                    Some(f) => f(),
                    None if !self.variant.fixed() => return,
                    None => unreachable!("the fixed transport never closes writes"),
                },
                recv(self.closed_ch) => return,
            }
        }
    }
}

/// `serverStream`: what a streaming handler's sends and receives go through.
struct ServerStream {
    t: Arc<ServerHandlerTransport>,
    s: Arc<Stream>,
}

impl ServerStream {
    /// `SendMsg`: a failed write also writes the status.
    fn send_msg(&self) -> Result<(), ErrConnClosing> {
        let err = self.t.write();
        if err.is_err() {
            let _ = self.t.write_status("Unavailable");
        }
        err
    }

    /// `RecvMsg`: a failed read also writes the status.
    fn recv_msg(&self) -> Result<(), Status> {
        // recvBufferReader.read
        let got = select! {
            recv(self.s.ctx.done()) => Err("context canceled"),
            recv(self.s.buf) => Ok(()),
        };
        if let Err(st) = got {
            let _ = self.t.write_status(st);
        }
        got
    }
}

/// A bidirectional streaming handler shaped like etcd's `Watch` (etcd#9956): a goroutine of
/// its own sends, the handler receives until the stream fails, then waits for its sender.
fn handler(ss: Arc<ServerStream>) -> Result<(), Status> {
    let sent = Chan::<()>::new(0).named("sent");
    let (sender, s) = (ss.clone(), sent.clone());
    go_named("SendMsg", move || {
        let _ = sender.send_msg();
        s.close();
    });
    let err = loop {
        if let Err(err) = ss.recv_msg() {
            break err;
        }
    };
    sent.recv();
    Err(err)
}

/// `Server.processStreamingRPC`: runs the handler, then writes its status.
fn process_streaming_rpc(t: Arc<ServerHandlerTransport>, s: Arc<Stream>) {
    let ss = Arc::new(ServerStream { t: t.clone(), s });
    match handler(ss) {
        Err(app_status) => {
            let _ = t.write_status(app_status);
        }
        Ok(()) => {
            let _ = t.write_status("OK");
        }
    }
}

/// `Server.serveStreams`: serves the request's stream in a goroutine of its own.
fn serve_streams(st: Arc<ServerHandlerTransport>) {
    let _close = defer(|| st.close());
    let wg = WaitGroup::new().named("serveStreams.wg");
    let (t, w) = (st.clone(), wg.clone());
    st.handle_streams(move |stream| {
        w.add(1);
        go_named("handleStream", move || {
            let _done = defer(|| w.done());
            process_streaming_rpc(t, stream);
        });
    });
    wg.wait();
}

/// `Server.ServeHTTP` for one streaming RPC whose client goes away while the handler's sender
/// is still writing a message.
fn test_grpc2695(variant: Variant) {
    let close_notify = Chan::new(1).named("CloseNotify");
    let st = Arc::new(ServerHandlerTransport {
        close_notify: close_notify.clone(),
        close_once: Once::new(),
        closed_ch: Chan::new(0).named("closedCh"),
        writes: Chan::new(0).named("writes"),
        write_status_mu: Mutex::new().named("writeStatusMu"),
        did_common_headers: Shared::new(false).named("didCommonHeaders"),
        variant,
    });
    // net/http: the peer resets the stream, and CloseNotify's channel receives a value.
    go_named("CloseNotify", move || close_notify.send(()));
    serve_streams(st);
}
