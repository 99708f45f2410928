#![doc = include_str!("etcd_9956.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::{Mutex, Once, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_9956",
        project: "etcd",
        upstream: "https://github.com/grpc/grpc-go/pull/2695",
        category: "Misuse channel",
        expected: primitives::Verdict::Panic,
        kernel: test_etcd9956,
        walkthrough: include_str!("etcd_9956.md"),
        loom: Loom::DoesNotApply(
            "main, HandleStreams.func1, CloseNotify, handleStream, sendLoop and recvLoop: more than loom's five threads",
        ),
        budget: Budget { shuttle: 3_000, ..Budget::DEFAULT },
        source: Source::Diff("272a4b69"),
        fix: Fix::Upstream("272a4b69"),
        review: "faithful: Checked against etcd v3.3.7 and its vendored grpc-go v1.7.5 (`handler_server.go`, `stream.go`, `server.go`, `watch.go`, `embed/serve.go`), grpc-go 272a4b69 and c6b46087, etcd 830bba33, issue #9956's stack and PR grpc-go#2695: right bug and path, upstream's fix at its three hunks, honest panic; reports lag one regeneration.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `transport.ErrConnClosing`.
const ERR_CONN_CLOSING: &str = "transport is closing";

/// A function to run in the ServeHTTP goroutine.
type WriteFn = Box<dyn FnOnce() + Send>;

/// A message of the Watch stream: the client's `WatchRequest`s, the server's `WatchResponse`s.
type Msg = &'static str;

/// grpc's `serverHandlerTransport`: serves one gRPC stream over one HTTP/2 request, through
/// `net/http`'s handler interface (etcd serves gRPC this way next to its HTTP API).
struct ServerHandlerTransport {
    /// The `http.ResponseWriter`: only the ServeHTTP goroutine may touch it.
    rw: Arc<Shared<Vec<Msg>>>,
    /// `rw.(http.CloseNotifier).CloseNotify()`: receives a value when the peer is gone.
    close_notify: Chan<()>,
    close_once: Once,
    /// Closed on `Close`.
    closed_ch: Chan<()>,
    /// Code to run, serialized, in the ServeHTTP goroutine. The buggy version closes it in
    /// `WriteStatus`.
    writes: Chan<WriteFn>,
    /// Blocks concurrent `WriteStatus` calls.
    write_status_mu: Mutex,
    variant: Variant,
}

/// grpc's `transport.Stream` as the handler transport makes it.
struct Stream {
    ctx: Context,
    /// `buf`, the `recvBuffer` the request body is read into.
    buf: Chan<Msg>,
}

impl ServerHandlerTransport {
    fn close(&self) {
        self.close_once.do_(|| self.closed_ch.close());
    }

    /// `do`: runs `f` in the ServeHTTP goroutine.
    fn do_(&self, f: WriteFn) -> Result<(), &'static str> {
        if self.variant.fixed() {
            return select! {
                recv(self.closed_ch) -> _ => Err(ERR_CONN_CLOSING),
                send(self.writes, f) => Ok(()),
            };
        }
        // Avoid a panic writing to closed channel. Imperfect but maybe good enough.
        select! {
            recv(self.closed_ch) -> _ => Err(ERR_CONN_CLOSING),
            default => select! {
                send(self.writes, f) => Ok(()),
                recv(self.closed_ch) -> _ => Err(ERR_CONN_CLOSING),
            },
        }
    }

    /// `WriteStatus`: sends the trailers that end the stream.
    fn write_status(&self, code: Msg) -> Result<(), &'static str> {
        self.write_status_mu.lock();
        let _unlock = defer(|| self.write_status_mu.unlock());
        let rw = self.rw.clone();
        let err = self.do_(Box::new(move || rw.write(|w| w.push(code))));
        if err.is_ok() {
            // transport has not been closed
            self.close();
            if !self.variant.fixed() {
                self.writes.close();
            }
        }
        err
    }

    /// `Write`: sends one message of the stream.
    fn write(&self, m: Msg) -> Result<(), &'static str> {
        let rw = self.rw.clone();
        self.do_(Box::new(move || rw.write(|w| w.push(m))))
    }

    /// `HandleStreams`: makes the one stream of this request, starts serving it, and runs the
    /// writes until the stream is over.
    fn handle_streams(self: &Arc<Self>, start_stream: impl FnOnce(Arc<Stream>)) {
        let (ctx, cancel) = context::with_cancel(&context::background());
        // requestOver is closed when either the request's context is done
        // or the status has been written via WriteStatus.
        let request_over = Chan::<()>::new(0).named("requestOver");
        let client_gone = self.close_notify.clone();
        let (ht, over) = (self.clone(), request_over.clone());
        go_named("HandleStreams.func1", move || {
            select! {
                recv(over) -> _ => return,
                recv(ht.closed_ch) -> _ => {},
                recv(client_gone) -> _ => {},
            }
            cancel.call();
        });
        // The goroutine that reads the request body into buf is left out: the client's one
        // request is already there.
        let buf = Chan::new(1).named("recvBuffer");
        buf.send("WatchCreateRequest");
        start_stream(Arc::new(Stream { ctx, buf }));
        self.run_stream();
        request_over.close();
    }

    /// `runStream`: runs the writes, in the ServeHTTP goroutine, until the stream is over.
    fn run_stream(&self) {
        loop {
            select! {
                recv(self.writes) -> f => match f {
                    Some(f) => f(),
                    None if !self.variant.fixed() => return,
                    None => unreachable!("the fixed transport never closes writes"),
                },
                recv(self.closed_ch) -> _ => return,
            }
        }
    }
}

/// grpc's `serverStream`: what the handler's `Send` and `Recv` go through.
struct ServerStream {
    t: Arc<ServerHandlerTransport>,
    s: Arc<Stream>,
}

impl ServerStream {
    /// `SendMsg` (`watchWatchServer.Send`): a failed write also writes the status.
    fn send_msg(&self, m: Msg) -> Result<(), &'static str> {
        let err = self.t.write(m);
        if err.is_err() {
            let _ = self.t.write_status("Grpc-Status: Unavailable");
        }
        err
    }

    /// `RecvMsg` (`watchWatchServer.Recv`): a failed read also writes the status.
    fn recv_msg(&self) -> Result<Msg, &'static str> {
        // recvBufferReader.read
        let got = select! {
            recv(self.s.ctx.done()) -> _ => Err("context canceled"),
            recv(self.s.buf) -> m => Ok(m.expect("the buffer is never closed")),
        };
        if got.is_err() {
            let _ = self.t.write_status("Grpc-Status: Canceled");
        }
        got
    }
}

/// etcd's `serverWatchStream`: one client's Watch stream.
struct ServerWatchStream {
    g_rpc_stream: ServerStream,
    /// For control responses (watcher created, canceled): buffer of `ctrlStreamBufLen`.
    ctrl_stream: Chan<Msg>,
    /// Closed when the stream is closed.
    closec: Chan<()>,
    /// Waits for `sendLoop`.
    wg: WaitGroup,
}

impl ServerWatchStream {
    /// `recvLoop`: reads the client's requests; a create request is answered on `ctrlStream`.
    fn recv_loop(&self) -> Result<(), &'static str> {
        loop {
            let _create_request = self.g_rpc_stream.recv_msg()?;
            let wr = "WatchResponse{Created: true}";
            select! {
                send(self.ctrl_stream, wr) => {},
                recv(self.closec) -> _ => return Ok(()),
            }
        }
    }

    /// `sendLoop`: sends the control responses (and, upstream, the events) to the client.
    fn send_loop(&self) {
        loop {
            select! {
                recv(self.ctrl_stream) -> c => {
                    let Some(c) = c else { return };
                    if self.g_rpc_stream.send_msg(c).is_err() {
                        return;
                    }
                },
                recv(self.closec) -> _ => return,
            }
        }
    }

    fn close(&self) {
        self.closec.close();
        self.wg.wait();
    }
}

/// etcd's `watchServer.Watch`: serves one Watch stream with a send and a receive goroutine.
fn watch(stream: ServerStream) -> Result<(), &'static str> {
    let ctx = stream.s.ctx.clone();
    let sws = Arc::new(ServerWatchStream {
        g_rpc_stream: stream,
        ctrl_stream: Chan::new(16).named("ctrlStream"),
        closec: Chan::new(0).named("closec"),
        wg: WaitGroup::new().named("sws.wg"),
    });
    sws.wg.add(1);
    let s = sws.clone();
    go_named("sendLoop", move || {
        s.send_loop();
        s.wg.done();
    });
    let errc = Chan::new(1).named("errc");
    let (s, e) = (sws.clone(), errc.clone());
    go_named("recvLoop", move || {
        if let Err(rerr) = s.recv_loop() {
            e.send(rerr);
        }
    });
    let err = select! {
        recv(errc) -> rerr => {
            sws.ctrl_stream.close();
            rerr.expect("errc is never closed")
        },
        recv(ctx.done()) -> _ => "etcdserver: no leader", // rpctypes.ErrGRPCNoLeader
    };
    sws.close();
    Err(err)
}

/// grpc's `Server.processStreamingRPC`: runs the handler, then writes its status.
fn process_streaming_rpc(t: Arc<ServerHandlerTransport>, s: Arc<Stream>) {
    let ss = ServerStream { t: t.clone(), s };
    let app_status = match watch(ss) {
        Ok(()) => "Grpc-Status: OK",
        Err(_) => "Grpc-Status: Unavailable",
    };
    let _ = t.write_status(app_status);
}

/// grpc's `Server.serveStreams`: serves the request's stream in a goroutine of its own.
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

/// `Server.ServeHTTP` for one Watch request whose client goes away while a watcher is being
/// created.
fn test_etcd9956(variant: Variant) {
    let close_notify = Chan::new(1).named("CloseNotify");
    let st = Arc::new(ServerHandlerTransport {
        rw: Arc::new(Shared::new(Vec::new()).named("ResponseWriter")),
        close_notify: close_notify.clone(),
        close_once: Once::new(),
        closed_ch: Chan::new(0).named("closedCh"),
        writes: Chan::new(0).named("writes"),
        write_status_mu: Mutex::new().named("writeStatusMu"),
        variant,
    });
    // net/http: the peer resets the stream, and CloseNotify's channel receives a value.
    go_named("CloseNotify", move || close_notify.send(()));
    serve_streams(st);
}
