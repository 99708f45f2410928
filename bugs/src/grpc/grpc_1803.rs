#![doc = include_str!("grpc_1803.md")]

use std::collections::BTreeMap;
use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::Mutex;
use primitives::{go_named, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1803",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1814",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_headers_while_stream_closes,
        walkthrough: include_str!("grpc_1803.md"),
        asplos: Some("non-blocking-bugs/grpc-go/b71aced4a2a1ee80a1cbbd26b85a57623790d7f4.txt"),
        source: Source::Diff("b71aced4"),
        fix: Fix::Upstream("b71aced4"),
        loom: Loom::DoesNotApply(
            "the race needs waitOnHeader's select to take the closed headerChan while the \
             cancelled context is ready too; under loom a select's choices go in rotation, and \
             the first takes the context",
        ),
        budget: Budget { shuttle: 10_000, pct_depth: 5, ..Budget::DEFAULT },
        review: "faithful: Checked against b71aced4 and b71aced4^ (http2_client.go, transport.go, stream.go): faithful port of the recvCompress write-after-foreign-close race and its fix.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Active,
    Done,
}

/// `transport.Stream` (client side): the fields the headers touch.
struct Stream {
    id: u32,
    /// The RPC's context (`s.ctx`, also the `waiters`' context).
    ctx: Context,
    mu: Mutex,
    /// The compression of the inbound messages, from the `grpc-encoding` header.
    recv_compress: Shared<&'static str>,
    /// The header metadata.
    header: Shared<Option<&'static str>>,
    /// Closed at the end of the header metadata.
    header_chan: Chan<()>,
    /// Set (under `mu`) when `header_chan` is closed.
    header_done: Shared<bool>,
    state: Shared<StreamState>,
    /// Whether any bytes were received on the stream.
    bytes_received: Shared<bool>,
}

impl Stream {
    /// `waitOnHeader`: waits for the headers, or the RPC's end.
    fn wait_on_header(&self) -> Result<(), context::ContextError> {
        select! {
            recv(self.ctx.done()) => Err(self.ctx.err().expect("done")),
            recv(self.header_chan) => Ok(()),
        }
    }

    /// `RecvCompress`: reads the field without `mu`, trusting `headerChan` to order it.
    fn recv_compress(&self) -> &'static str {
        if self.wait_on_header().is_err() {
            return "";
        }
        self.recv_compress.get()
    }
}

/// A decoded HEADERS frame (`MetaHeadersFrame` and `decodeState`).
struct HeadersFrame {
    stream_id: u32,
    end_stream: bool,
    encoding: &'static str,
    mdata: Option<&'static str>,
}

/// `http2Client`: the transport.
struct Http2Client {
    mu: Mutex,
    active_streams: Shared<BTreeMap<u32, Arc<Stream>>>,
    variant: Variant,
}

impl Http2Client {
    /// `getStream`.
    fn get_stream(&self, frame: &HeadersFrame) -> Option<Arc<Stream>> {
        self.mu.lock();
        let s = self
            .active_streams
            .read(|m| m.get(&frame.stream_id).cloned());
        self.mu.unlock();
        s
    }

    /// `operateHeaders`, for a frame that decodes well.
    fn operate_headers(&self, frame: HeadersFrame) {
        let Some(s) = self.get_stream(&frame) else {
            return;
        };
        s.mu.lock();
        s.bytes_received.set(true);
        s.mu.unlock();
        let end_stream = frame.end_stream;
        s.mu.lock();
        if !self.variant.fixed() && !end_stream {
            s.recv_compress.set(frame.encoding);
        }
        if !s.header_done.get() {
            if self.variant.fixed() {
                // Headers frame is not actually a trailers-only frame.
                if !end_stream {
                    s.recv_compress.set(frame.encoding);
                    if frame.mdata.is_some() {
                        s.header.set(frame.mdata);
                    }
                }
            } else if !end_stream && frame.mdata.is_some() {
                s.header.set(frame.mdata);
            }
            s.header_chan.close();
            s.header_done.set(true);
        }
        if !end_stream || s.state.get() == StreamState::Done {
            s.mu.unlock();
            return;
        }
        // The trailers-only path (s.finish, s.write(io.EOF)) is not reached here.
        s.mu.unlock();
    }

    /// `CloseStream`: forgets the stream and wakes whoever waits for its headers.
    fn close_stream(&self, s: &Stream) {
        self.mu.lock();
        self.active_streams.write(|m| m.remove(&s.id));
        self.mu.unlock();
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
}

/// `NewClientStream`'s watcher: on the RPC's cancellation, `cs.finish` and
/// `cs.closeTransportStream`, which calls `CloseStream`.
fn watch_stream(t: Arc<Http2Client>, s: Arc<Stream>) {
    s.ctx.done().recv();
    t.close_stream(&s);
}

/// An RPC whose response headers arrive while it is being cancelled: the reader runs
/// `operateHeaders`, the stream's watcher runs `CloseStream`, and the application's
/// `RecvMsg` asks for `RecvCompress`.
fn test_headers_while_stream_closes(variant: Variant) {
    let t = Arc::new(Http2Client {
        mu: Mutex::new().named("t.mu"),
        active_streams: Shared::new(BTreeMap::new()).named("t.activeStreams"),
        variant,
    });
    // NewStream: the stream is registered in activeStreams.
    let (ctx, cancel): (Context, CancelFunc) = context::with_cancel(&context::background());
    let s = Arc::new(Stream {
        id: 1,
        ctx,
        mu: Mutex::new().named("s.mu"),
        recv_compress: Shared::new("").named("s.recvCompress"),
        header: Shared::new(None).named("s.header"),
        header_chan: Chan::new(0).named("s.headerChan"),
        header_done: Shared::new(false).named("s.headerDone"),
        state: Shared::new(StreamState::Active).named("s.state"),
        bytes_received: Shared::new(false).named("s.bytesReceived"),
    });
    t.mu.lock();
    t.active_streams.write(|m| m.insert(s.id, s.clone()));
    t.mu.unlock();
    let (wt, ws) = (t.clone(), s.clone());
    go_named("clientStream.watcher", move || watch_stream(wt, ws));
    let rt = t.clone();
    go_named("reader", move || {
        rt.operate_headers(HeadersFrame {
            stream_id: 1,
            end_stream: false,
            encoding: "gzip",
            mdata: Some("k: v"),
        })
    });
    // The application cancels the RPC, and its pending RecvMsg wants the encoding.
    cancel.call();
    let _ct = s.recv_compress();
}
