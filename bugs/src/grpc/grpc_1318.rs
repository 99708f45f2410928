#![doc = include_str!("grpc_1318.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1318",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1318",
        category: "Traditional / Data race",
        expected: primitives::Verdict::Race,
        kernel: test_grpc1318,
        walkthrough: include_str!("grpc_1318.md"),
        asplos: Some("non-blocking-bugs/grpc-go/40e7a759a035a36611d6c9a3c2acb11ce1497727.txt"),
        source: Source::Diff("40e7a759"),
        fix: Fix::Upstream("40e7a759"),
        review: "faithful after mends: Checked against 40e7a759 (PR #1318, issue #1316's race report) and transport/{http2_client,transport}.go, stream.go at 2887f947: operateHeaders writes s.bytesReceived unlocked while clientStream.finish reads it under s.mu; both hunks mapped; one sentence about the ASPLOS data set needs a source.",
        file: file!(),
        // loom's search with bound 3 uses up its budget before it reaches the race (it finds it
        // at execution 4,962 with bound 2).
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// The errors the kernel needs.
#[derive(Debug)]
enum Error {
    /// `ErrConnClosing` (a `ConnectionError`).
    ConnClosing,
    /// `ctx.Err()` of the stream's context.
    Context,
}

/// `transportState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TransportState {
    Reachable,
    Unreachable,
    Closing,
}

/// `streamState`: only whether the stream is done matters here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    Active,
    Done,
}

/// An HTTP/2 frame from the server: only the response headers of a stream are sent here
/// (`*http2.MetaHeadersFrame`, not the end of the stream).
#[derive(Clone, Copy, Debug)]
struct MetaHeadersFrame {
    stream_id: u32,
}

/// `transport.Stream`, the client side of one RPC.
struct Stream {
    id: u32,
    /// The user's context: the stream's context is the caller's, unchanged.
    ctx: Context,
    /// `Done()`: closed when the final status is received (not here).
    done: Chan<()>,
    /// `GoAway()`: closed when the server sends a GoAway (not here).
    go_away: Chan<()>,
    /// Closed when the response headers arrive.
    header_chan: Chan<()>,

    /// Guards the fields below.
    mu: RwMutex,
    state: Shared<StreamState>,
    /// Whether `headerChan` is closed.
    header_done: Shared<bool>,
    /// Whether any bytes have been sent or received on this stream.
    bytes_sent: Shared<bool>,
    bytes_received: Shared<bool>,
}

impl Stream {
    /// `BytesSent`.
    fn bytes_sent(&self) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.bytes_sent.get()
    }

    /// `BytesReceived`.
    fn bytes_received(&self) -> bool {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.bytes_received.get()
    }
}

/// `http2Client`, the client transport: one HTTP/2 connection.
struct Http2Client {
    mu: Mutex,
    state: Shared<TransportState>,
    active_streams: Shared<Option<GoMap<u32, Arc<Stream>>>>,
    next_id: Shared<u32>,
    /// `Error()`: closed when the transport breaks or closes.
    error_chan: Chan<()>,

    /// The connection, faked: frames the client writes, frames the server writes, and a
    /// channel closed by `conn.Close()`.
    to_server: Chan<u32>,
    to_client: Chan<MetaHeadersFrame>,
    conn_closed: Chan<()>,
    variant: Variant,
}

impl Http2Client {
    /// `newHTTP2Client`: the connection is up; its reader goroutine starts.
    fn new(variant: Variant) -> Arc<Http2Client> {
        let t = Arc::new(Http2Client {
            mu: Mutex::new().named("t.mu"),
            state: Shared::new(TransportState::Reachable).named("t.state"),
            active_streams: Shared::new(Some(GoMap::new().named("t.activeStreams")))
                .named("t.activeStreams(field)"),
            next_id: Shared::new(1).named("t.nextID"),
            error_chan: Chan::new(0).named("t.errorChan"),
            to_server: Chan::new(1).named("conn(client→server)"),
            to_client: Chan::new(1).named("conn(server→client)"),
            conn_closed: Chan::new(0).named("conn.Close"),
            variant,
        });
        let r = t.clone();
        go_named("http2Client.reader", move || r.reader());
        t
    }

    fn error(&self) -> Chan<()> {
        self.error_chan.clone()
    }

    /// `NewStream`: registers a stream as active and sends its headers to the server.
    fn new_stream(&self, ctx: &Context) -> Result<Arc<Stream>, Error> {
        self.mu.lock();
        if self.state.get() != TransportState::Reachable {
            self.mu.unlock();
            return Err(Error::ConnClosing);
        }
        // newStream
        let id = self.next_id.get();
        let s = Arc::new(Stream {
            id,
            ctx: ctx.clone(),
            done: Chan::new(0).named("s.done"),
            go_away: Chan::new(0).named("s.goAway"),
            header_chan: Chan::new(0).named("s.headerChan"),
            mu: RwMutex::new().named("s.mu"),
            state: Shared::new(StreamState::Active).named("s.state"),
            header_done: Shared::new(false).named("s.headerDone"),
            bytes_sent: Shared::new(false).named("s.bytesSent"),
            bytes_received: Shared::new(false).named("s.bytesReceived"),
        });
        self.next_id.set(id + 2);
        self.active_streams
            .get()
            .expect("a reachable transport has its active streams")
            .insert(id, s.clone());
        self.mu.unlock();
        // t.framer.writeHeaders: the stream's HEADERS frame goes out.
        self.to_server.send(id);
        if self.variant.fixed() {
            s.mu.lock();
            s.bytes_sent.set(true);
            s.mu.unlock();
        } else {
            s.bytes_sent.set(true);
        }
        Ok(s)
    }

    /// `CloseStream`: clears the footprint of a stream that is no longer needed.
    fn close_stream(&self, s: &Stream, _err: Option<&Error>) {
        self.mu.lock();
        let Some(active) = self.active_streams.get() else {
            self.mu.unlock();
            return;
        };
        // s.write(recvMsg{err: err}) is left out: nobody reads the stream here.
        active.remove(&s.id);
        self.mu.unlock();
        // The RST_STREAM queued for the controller goroutine is left out.
        s.mu.lock();
        if s.state.get() == StreamState::Done {
            s.mu.unlock();
            return;
        }
        if !s.header_done.get() {
            s.header_chan.close();
            s.header_done.set(true);
        }
        s.state.set(StreamState::Done);
        s.mu.unlock();
    }

    /// `Close`: shuts the transport down.
    fn close(&self) {
        self.mu.lock();
        if self.state.get() == TransportState::Closing {
            self.mu.unlock();
            return;
        }
        if self.state.get() == TransportState::Reachable {
            self.error_chan.close();
        }
        self.state.set(TransportState::Closing);
        self.mu.unlock();
        // t.conn.Close()
        self.conn_closed.close();
        self.mu.lock();
        let streams = self.active_streams.get();
        self.active_streams.set(None);
        self.mu.unlock();
        // Notify all active streams.
        if let Some(streams) = streams {
            for s in streams.with(|m| m.values().cloned().collect::<Vec<_>>()) {
                s.mu.lock();
                if !s.header_done.get() {
                    s.header_chan.close();
                    s.header_done.set(true);
                }
                s.mu.unlock();
                // s.write(recvMsg{err: ErrConnClosing}) is left out.
            }
        }
    }

    /// `notifyError`: the connection broke.
    fn notify_error(&self) {
        self.mu.lock();
        // make sure t.errorChan is closed only once.
        if self.state.get() == TransportState::Reachable {
            self.state.set(TransportState::Unreachable);
            self.error_chan.close();
        }
        self.mu.unlock();
    }

    /// `getStream`.
    fn get_stream(&self, f: &MetaHeadersFrame) -> Option<Arc<Stream>> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.active_streams.get()?.get(&f.stream_id)
    }

    /// `operateHeaders`: takes action on the response headers of a stream.
    fn operate_headers(&self, frame: &MetaHeadersFrame) {
        let Some(s) = self.get_stream(frame) else {
            return;
        };
        if self.variant.fixed() {
            s.mu.lock();
            s.bytes_received.set(true);
            s.mu.unlock();
        } else {
            s.bytes_received.set(true);
        }
        // decodeResponseHeader succeeds; this is not the end of the stream.
        s.mu.lock();
        if !s.header_done.get() {
            s.header_chan.close();
            s.header_done.set(true);
        }
        // Not the end of the stream: nothing more to do.
        s.mu.unlock();
    }

    /// `reader`: reads frames from the connection until it fails.
    fn reader(&self) {
        loop {
            // t.framer.readFrame()
            let frame = select! {
                recv(self.to_client) -> f => f,
                recv(self.conn_closed) => None,
            };
            let Some(frame) = frame else {
                // Transport error: the connection is closed.
                self.notify_error();
                return;
            };
            self.operate_headers(&frame);
        }
    }
}

/// `clientStream`.
struct ClientStream {
    t: Arc<Http2Client>,
    s: Arc<Stream>,
    /// `cs.cancel`: the method config sets no timeout, so there is none.
    cancel: Option<CancelFunc>,

    mu: Mutex,
    /// The balancer's `put`, called once when the RPC ends.
    put: Shared<Option<fn()>>,
    closed: Shared<bool>,
    finished: Shared<bool>,
}

impl ClientStream {
    fn close_transport_stream(&self, err: Option<&Error>) {
        self.mu.lock();
        if self.closed.get() {
            self.mu.unlock();
            return;
        }
        self.closed.set(true);
        self.mu.unlock();
        self.t.close_stream(&self.s, err);
    }

    fn finish(&self, _err: &Error) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.finished.get() {
            return;
        }
        self.finished.set(true);
        let _cancel = defer(|| {
            if let Some(cancel) = &self.cancel {
                cancel.call();
            }
        });
        if let Some(put) = self.put.get() {
            // updateRPCInfoInContext(cs.s.Context(), rpcInfo{...})
            let _rpc_info = (self.s.bytes_sent(), self.s.bytes_received());
            put();
            self.put.set(None);
        }
        // Stats and tracing are off.
    }
}

/// `newClientStream`, once a transport has been picked: opens the stream and starts the
/// goroutine that ends it on cancellation or termination.
fn new_client_stream(
    ctx: &Context,
    cc_ctx: &Context,
    t: &Arc<Http2Client>,
    put: fn(),
) -> Result<Arc<ClientStream>, Error> {
    let s = t.new_stream(ctx)?;
    let cs = Arc::new(ClientStream {
        t: t.clone(),
        s: s.clone(),
        cancel: None,
        mu: Mutex::new().named("cs.mu"),
        put: Shared::new(Some(put)).named("cs.put"),
        closed: Shared::new(false).named("cs.closed"),
        finished: Shared::new(false).named("cs.finished"),
    });
    // Listen on ctx.Done() to detect cancellation and s.Done() to detect normal termination
    // when there is no pending I/O operations on this stream.
    let (cs2, t_error, cc_done) = (cs.clone(), t.error(), cc_ctx.done());
    go_named("newClientStream.func3", move || {
        let s = &cs2.s;
        select! {
            // Incur transport error, simply exit.
            recv(t_error) => {},
            recv(cc_done) => {
                cs2.finish(&Error::ConnClosing);
                cs2.close_transport_stream(Some(&Error::ConnClosing));
            },
            recv(s.done) => {
                cs2.finish(&Error::ConnClosing);
                cs2.close_transport_stream(None);
            },
            recv(s.go_away) => {
                cs2.finish(&Error::ConnClosing);
                cs2.close_transport_stream(Some(&Error::ConnClosing));
            },
            recv(s.ctx.done()) => {
                cs2.finish(&Error::Context);
                cs2.close_transport_stream(Some(&Error::Context));
            },
        }
    });
    Ok(cs)
}

/// The server at the other end, faked: it answers the stream's headers with its own.
fn server(to_server: Chan<u32>, to_client: Chan<MetaHeadersFrame>) {
    if let Some(stream_id) = to_server.recv() {
        to_client.send(MetaHeadersFrame { stream_id });
    }
}

/// A client opens a stream, gives up on it (cancels its context) while the server's response
/// headers come in, then closes the connection.
fn test_grpc1318(variant: Variant) {
    let t = Http2Client::new(variant);
    let (to_server, to_client) = (t.to_server.clone(), t.to_client.clone());
    go_named("server", move || server(to_server, to_client));

    let cc_ctx = context::background();
    let (ctx, cancel) = context::with_cancel(&context::background());
    let put: fn() = || {};
    if let Ok(_cs) = new_client_stream(&ctx, &cc_ctx, &t, put) {
        // The caller gives up on the stream.
        cancel.call();
    }
    // cc.Close(): the transport is closed.
    t.close();
}
