#![doc = include_str!("grpc_490.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::Mutex;
use primitives::{go_named, select, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_490",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/490",
        category: "Communication deadlock (channel & context)",
        expected: primitives::Verdict::Leak,
        kernel: test_grpc490,
        walkthrough: include_str!("grpc_490.md"),
        asplos: Some("blocking-bugs/grpc-go/47fc4a2936669af9ec8f851be845f2d4c7bcca18.txt"),
        source: Source::Diff("47fc4a29"),
        fix: Fix::Upstream("47fc4a29"),
        review: "faithful: Checked against 47fc4a29 (#490) and stream.go, transport/http2_client.go and clientconn.go at 7ed46298: the stream watcher waits only on the stream context, which a connection error never cancels; one-hunk fix mapped; the invented driver is admitted and built from the surrounding upstream code.",
        file: file!(),
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// Transport errors: a `ConnectionError` ends the whole transport, a `StreamError` one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Error {
    ConnectionError(&'static str),
    StreamError(&'static str),
}

/// `ErrConnClosing`.
const ERR_CONN_CLOSING: Error = Error::ConnectionError("transport is closing");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TransportState {
    Reachable,
    Unreachable,
    Closing,
}

/// What the transport hands a stream (`recvMsg`).
struct RecvMsg {
    err: Option<Error>,
}

/// A transport stream (`transport.Stream`).
struct Stream {
    id: u32,
    /// The stream's context: derived from the caller's, cancelled by `CloseStream`.
    ctx: Context,
    cancel: CancelFunc,
    /// Its inbox (`recvBuffer`, one slot).
    buf: Chan<RecvMsg>,
}

impl Stream {
    fn write(&self, m: RecvMsg) {
        self.buf.send(m);
    }
}

/// The client transport (`http2Client`).
struct Http2Client {
    mu: Mutex,
    state: Shared<TransportState>,
    active_streams: GoMap<u32, Arc<Stream>>,
    next_id: Shared<u32>,
    /// Closed to tell users that the connection broke (`errorChan`).
    error_chan: Chan<()>,
}

impl Http2Client {
    fn new_stream(&self, ctx: &Context) -> Result<Arc<Stream>, Error> {
        self.mu.lock();
        if self.state.get() != TransportState::Reachable {
            self.mu.unlock();
            return Err(ERR_CONN_CLOSING);
        }
        let id = self.next_id.get();
        self.next_id.set(id + 2);
        // Make a stream able to cancel its pending operations by itself.
        let (ctx, cancel) = context::with_cancel(ctx);
        let s = Arc::new(Stream {
            id,
            ctx,
            cancel,
            buf: Chan::new(1).named("recvBuffer"),
        });
        self.active_streams.insert(id, s.clone());
        self.mu.unlock();
        Ok(s)
    }

    fn close_stream(&self, s: &Stream, _err: Error) {
        self.mu.lock();
        self.active_streams.remove(&s.id);
        self.mu.unlock();
        s.cancel.call();
    }

    fn error(&self) -> &Chan<()> {
        &self.error_chan
    }

    /// The reader hit an I/O error: mark the transport broken and tell its users.
    fn notify_error(&self) {
        self.mu.lock();
        if self.state.get() == TransportState::Reachable {
            self.state.set(TransportState::Unreachable);
            self.error_chan.close();
        }
        self.mu.unlock();
    }

    fn close(&self) {
        self.mu.lock();
        if self.state.get() == TransportState::Closing {
            self.mu.unlock();
            return;
        }
        self.state.set(TransportState::Closing);
        let streams = self.active_streams.with_mut(std::mem::take);
        self.mu.unlock();
        // Notify all active streams.
        for s in streams.values() {
            s.write(RecvMsg {
                err: Some(ERR_CONN_CLOSING),
            });
        }
    }

    /// The transport's reader goroutine: the connection breaks.
    fn reader(&self) {
        self.notify_error();
    }
}

/// The client side of a streaming RPC (`clientStream`).
struct ClientStream {
    t: Arc<Http2Client>,
    s: Arc<Stream>,
    mu: Mutex,
    closed: Shared<bool>,
}

impl ClientStream {
    fn recv_msg(&self) -> Result<(), Error> {
        let err = match self.s.buf.recv() {
            Some(RecvMsg { err: Some(err) }) => err,
            _ => return Ok(()),
        };
        // A connection error is the transport's business; only stream errors close the stream.
        if !matches!(err, Error::ConnectionError(_)) {
            self.close_transport_stream(err);
        }
        Err(err)
    }

    fn close_transport_stream(&self, err: Error) {
        self.mu.lock();
        if self.closed.get() {
            self.mu.unlock();
            return;
        }
        self.closed.set(true);
        self.mu.unlock();
        self.t.close_stream(&self.s, err);
    }
}

/// `NewClientStream`.
fn new_client_stream(
    ctx: &Context,
    t: &Arc<Http2Client>,
    variant: Variant,
) -> Result<Arc<ClientStream>, Error> {
    let s = t.new_stream(ctx)?;
    let cs = Arc::new(ClientStream {
        t: t.clone(),
        s: s.clone(),
        mu: Mutex::new().named("clientStream.mu"),
        closed: Shared::new(false).named("clientStream.closed"),
    });
    // Listen on the stream's context to detect cancellation when no I/O is pending.
    let watcher = cs.clone();
    go_named("NewClientStream.func1", move || {
        let ctx_err = || Error::StreamError("context canceled");
        if variant.fixed() {
            // The fix: a transport error also ends the wait.
            select! {
                recv(watcher.t.error()) => {},
                recv(watcher.s.ctx.done()) => watcher.close_transport_stream(ctx_err()),
            }
        } else {
            watcher.s.ctx.done().recv(); // never closed: nobody cancels this stream
            watcher.close_transport_stream(ctx_err());
        }
    });
    Ok(cs)
}

/// A client transport whose connection breaks, watched by the ClientConn's monitor, and one
/// streaming RPC on it with a context that is never cancelled.
fn test_grpc490(variant: Variant) {
    let t = Arc::new(Http2Client {
        mu: Mutex::new().named("http2Client.mu"),
        state: Shared::new(TransportState::Reachable).named("http2Client.state"),
        active_streams: GoMap::new().named("activeStreams"),
        next_id: Shared::new(1).named("nextID"),
        error_chan: Chan::new(0).named("errorChan"),
    });
    let reader = t.clone();
    go_named("reader", move || reader.reader());
    let monitored = t.clone();
    go_named("transportMonitor", move || {
        monitored.error().recv();
        // Reconnecting closes the broken transport first.
        monitored.close();
    });

    let Ok(cs) = new_client_stream(&context::background(), &t, variant) else {
        return; // the transport broke before the RPC started
    };
    let _ = cs.recv_msg();
}
