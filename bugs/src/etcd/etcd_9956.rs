#![doc = include_str!("etcd_9956.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{Mutex, Once};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_9956",
        project: "etcd",
        upstream: "https://github.com/grpc/grpc-go/pull/2695",
        category: "Misuse channel",
        expected: primitives::Verdict::Panic,
        kernel: test_etcd9956,
        walkthrough: include_str!("etcd_9956.md"),
        // shuttle-random needs up to about 730 schedules over seeds 1 to 5.
        budget: Budget { shuttle: 3_000, preemption_bound: Some(2), ..Budget::DEFAULT },
        source: Source::Description("https://github.com/grpc/grpc-go/pull/2695"),
        fix: Fix::Upstream("#2695"),
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `transport.ErrConnClosing`.
const ERR_CONN_CLOSING: &str = "transport is closing";

/// A function to run in the ServeHTTP goroutine.
type WriteFn = Box<dyn FnOnce() + Send>;

/// grpc's `serverHandlerTransport`: serves one gRPC call over one HTTP/2 request, through
/// `net/http`'s handler interface (etcd serves gRPC this way next to its HTTP API).
struct ServerHandlerTransport {
    /// The `http.ResponseWriter`: only the ServeHTTP goroutine may touch it.
    rw: Arc<Shared<Vec<&'static str>>>,
    close_once: Once,
    /// Closed on `Close`.
    closed_ch: Chan<()>,
    /// Code to run, serialized, in the ServeHTTP goroutine. The buggy version closes it when
    /// `WriteStatus` is called.
    writes: Chan<WriteFn>,
    /// Blocks concurrent `WriteStatus` calls.
    write_status_mu: Mutex,
    variant: Variant,
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
        // "Avoid a panic writing to closed channel. Imperfect but maybe good enough."
        select! {
            recv(self.closed_ch) -> _ => Err(ERR_CONN_CLOSING),
            default => select! {
                send(self.writes, f) => Ok(()),
                recv(self.closed_ch) -> _ => Err(ERR_CONN_CLOSING),
            },
        }
    }

    /// `WriteStatus`: sends the trailers that end the call.
    fn write_status(&self) -> Result<(), &'static str> {
        self.write_status_mu.lock();
        let _unlock = defer(|| self.write_status_mu.unlock());
        let rw = self.rw.clone();
        let err = self.do_(Box::new(move || rw.write(|w| w.push("Grpc-Status"))));
        if err.is_ok() {
            // transport has not been closed
            self.close();
            if !self.variant.fixed() {
                self.writes.close();
            }
        }
        err
    }

    /// `Write`: sends one message of the call.
    fn write(&self) -> Result<(), &'static str> {
        let rw = self.rw.clone();
        self.do_(Box::new(move || rw.write(|w| w.push("message"))))
    }

    /// `runStream`: runs the writes, in the ServeHTTP goroutine, until the call is over.
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

/// The server side of the call as the handler sees it (`grpc.ServerStream`).
struct Stream {
    ht: Arc<ServerHandlerTransport>,
    ctx: Context,
    /// The requests the client sent (one keep-alive).
    recv_buf: Chan<()>,
}

impl Stream {
    fn recv(&self) -> Result<(), &'static str> {
        select! {
            recv(self.recv_buf) -> _ => Ok(()),
            recv(self.ctx.done()) -> _ => Err("context canceled"),
        }
    }

    fn send(&self) -> Result<(), &'static str> {
        self.ht.write()
    }
}

/// etcd's `LeaseServer.leaseKeepAlive`: answers each keep-alive request.
fn lease_keep_alive(stream: &Stream) -> Result<(), &'static str> {
    loop {
        stream.recv()?;
        stream.send()?;
    }
}

/// etcd's `LeaseServer.LeaseKeepAlive`: serves the stream in a goroutine, and returns as
/// soon as that goroutine fails or the stream's context is done.
fn lease_keep_alive_handler(stream: Arc<Stream>) {
    let errc = Chan::new(1).named("errc");
    let (s, e) = (stream.clone(), errc.clone());
    go_named("leaseKeepAlive", move || e.send(lease_keep_alive(&s)));
    select! {
        recv(errc) -> _ => {},
        recv(stream.ctx.done()) -> _ => {},
    }
}

/// The handler's goroutine (`processStreamingRPC`): runs the handler, then writes the status.
fn process_streaming_rpc(stream: Arc<Stream>) {
    lease_keep_alive_handler(stream.clone());
    let _ = stream.ht.write_status();
}

/// `HandleStreams` (the ServeHTTP goroutine) for one keep-alive stream whose client goes away.
fn test_etcd9956(variant: Variant) {
    let ht = Arc::new(ServerHandlerTransport {
        rw: Arc::new(Shared::new(Vec::new()).named("ResponseWriter")),
        close_once: Once::new(),
        closed_ch: Chan::new(0).named("closedCh"),
        writes: Chan::new(0).named("writes"),
        write_status_mu: Mutex::new().named("writeStatusMu"),
        variant,
    });
    let (ctx, cancel): (Context, CancelFunc) = context::with_cancel(&context::background());

    // clientGone: the peer resets the stream, and the stream's context is cancelled.
    go_named("clientGone", move || cancel.call());

    let recv_buf = Chan::new(1).named("recvBuffer");
    recv_buf.send(());
    let s = Arc::new(Stream {
        ht: ht.clone(),
        ctx,
        recv_buf,
    });
    go_named("processStreamingRPC", move || process_streaming_rpc(s)); // startStream(s)
    ht.run_stream();
}
