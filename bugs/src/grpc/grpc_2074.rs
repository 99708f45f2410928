#![doc = include_str!("grpc_2074.md")]

use std::sync::Arc;

use primitives::sync::{AtomicU32, Mutex};
use primitives::{go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_2074",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/2074",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_send_while_recv_fails,
        walkthrough: include_str!("grpc_2074.md"),
        source: Source::Diff("8f06f82c"),
        fix: Fix::Upstream("8f06f82c"),
        review: "faithful: Checked against 8f06f82c/8f06f82c^ (http2_server.go, transport.go, stream.go) and PR #2074/issue #1972: faithful port of the headerOk race between WriteHeader and RecvMsg's WriteStatus, fix as upstream.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// Metadata: a list of `key: value` entries.
type Md = Vec<&'static str>;

const STREAM_ACTIVE: u32 = 0;
const STREAM_DONE: u32 = 2;

/// `ErrIllegalHeaderWrite`.
#[derive(Debug)]
struct ErrIllegalHeaderWrite;

/// What the transport queues for its writer (`controlBuf`). The writer (loopy) is left out,
/// so nothing reads the frames back.
#[derive(Debug)]
#[allow(dead_code)]
enum Frame {
    /// A HEADERS frame: its fields; `end_stream` for the trailers.
    Headers {
        fields: Md,
        end_stream: bool,
    },
    Data,
}

/// The server side of `transport.Stream`.
struct Stream {
    /// The fix: protects `header` and `trailer`.
    hdr_mu: Mutex,
    header: Shared<Md>,
    trailer: Shared<Md>,
    /// Before the fix: set once the headers are about to be sent (a plain bool).
    header_ok: Shared<bool>,
    /// The fix: set atomically to 1 once the headers are sent.
    header_sent: AtomicU32,
    state: AtomicU32,
    variant: Variant,
}

impl Stream {
    fn get_state(&self) -> u32 {
        self.state.load()
    }

    /// The fix's `isHeaderSent`.
    fn is_header_sent(&self) -> bool {
        self.header_sent.load() == 1
    }

    /// The fix's `updateHeaderSent`: sets it, and says whether it was set already.
    fn update_header_sent(&self) -> bool {
        self.header_sent.swap(1) == 1
    }

    /// `SetHeader`: joins `md` to the header to send.
    fn set_header(&self, md: Md) -> Result<(), ErrIllegalHeaderWrite> {
        if md.is_empty() {
            return Ok(());
        }
        if self.variant.fixed() {
            if self.is_header_sent() || self.get_state() == STREAM_DONE {
                return Err(ErrIllegalHeaderWrite);
            }
            self.hdr_mu.lock();
            self.header.write(|h| h.extend(md));
            self.hdr_mu.unlock();
        } else {
            if self.header_ok.get() || self.get_state() == STREAM_DONE {
                return Err(ErrIllegalHeaderWrite);
            }
            self.header.write(|h| h.extend(md));
        }
        Ok(())
    }
}

/// `http2Server`: the methods the handler's goroutines call on the stream.
struct Http2Server {
    control_buf: Chan<Frame>,
    variant: Variant,
}

impl Http2Server {
    /// `WriteHeader`: sends the header metadata (once).
    fn write_header(&self, s: &Stream, md: Md) -> Result<(), ErrIllegalHeaderWrite> {
        if self.variant.fixed() {
            if s.update_header_sent() || s.get_state() == STREAM_DONE {
                return Err(ErrIllegalHeaderWrite);
            }
            s.hdr_mu.lock();
        } else {
            if s.header_ok.get() || s.get_state() == STREAM_DONE {
                return Err(ErrIllegalHeaderWrite);
            }
            s.header_ok.set(true);
        }
        if !md.is_empty() {
            s.header.write(|h| h.extend(md));
        }
        self.write_header_locked(s);
        if self.variant.fixed() {
            s.hdr_mu.unlock();
        }
        Ok(())
    }

    /// The part of `WriteHeader` the fix names `writeHeaderLocked`: the frame from `s.header`.
    fn write_header_locked(&self, s: &Stream) {
        let mut fields = vec![":status: 200", "content-type: application/grpc"];
        fields.extend(s.header.get());
        self.control_buf.send(Frame::Headers {
            fields,
            end_stream: false,
        });
    }

    /// `WriteStatus`: sends the status and the trailers, and ends the stream.
    fn write_status(&self, s: &Stream, code: &'static str) {
        let mut fields = Vec::new();
        if self.variant.fixed() {
            if s.get_state() == STREAM_DONE {
                return;
            }
            s.hdr_mu.lock();
            if !s.update_header_sent() {
                // No headers have been sent.
                if !s.header.read(|h| h.is_empty()) {
                    self.write_header_locked(s);
                } else {
                    fields.extend([":status: 200", "content-type: application/grpc"]);
                }
            }
        } else {
            if !s.header_ok.get() && !s.header.read(|h| h.is_empty()) {
                if self.write_header(s, Vec::new()).is_err() {
                    return;
                }
            } else if s.get_state() == STREAM_DONE {
                return;
            }
            if !s.header_ok.get() {
                fields.extend([":status: 200", "content-type: application/grpc"]);
            }
        }
        fields.push(code);
        // Attach the trailer metadata.
        fields.extend(s.trailer.get());
        if self.variant.fixed() {
            s.hdr_mu.unlock();
        }
        self.close_stream(s, fields);
    }

    /// `closeStream`: the stream is done; the trailers are queued.
    fn close_stream(&self, s: &Stream, trailer: Md) {
        s.state.swap(STREAM_DONE);
        self.control_buf.send(Frame::Headers {
            fields: trailer,
            end_stream: true,
        });
    }

    /// `Write`: the headers first if not sent yet, then the message.
    fn write(&self, s: &Stream) -> Result<(), ErrIllegalHeaderWrite> {
        let header_sent = if self.variant.fixed() {
            s.is_header_sent()
        } else {
            s.header_ok.get()
        };
        if !header_sent {
            // Headers haven't been written yet.
            self.write_header(s, Vec::new())?;
        }
        if s.get_state() == STREAM_DONE {
            return Err(ErrIllegalHeaderWrite);
        }
        self.control_buf.send(Frame::Data);
        Ok(())
    }
}

/// `serverStream`: what a streaming handler calls.
struct ServerStream {
    t: Arc<Http2Server>,
    s: Arc<Stream>,
}

impl ServerStream {
    /// `SendMsg`: the message (its headers first); a failure ends the RPC with its status.
    fn send_msg(&self) {
        if self.t.write(&self.s).is_err() {
            self.t.write_status(&self.s, "grpc-status: 13");
        }
    }

    /// `RecvMsg` when the client's message is over the server's limit: `recv` fails and the
    /// deferred function ends the RPC with `ResourceExhausted`.
    fn recv_msg_too_large(&self) {
        self.t.write_status(&self.s, "grpc-status: 8");
    }
}

/// A bidirectional-streaming handler that receives on a goroutine of its own while it sends,
/// and a client whose message is over the server's limit (issue #1972's scenario).
fn test_send_while_recv_fails(variant: Variant) {
    let t = Arc::new(Http2Server {
        control_buf: Chan::new(8).named("controlBuf"),
        variant,
    });
    let s = Arc::new(Stream {
        hdr_mu: Mutex::new().named("s.hdrMu"),
        header: Shared::new(Vec::new()).named("s.header"),
        trailer: Shared::new(Vec::new()).named("s.trailer"),
        header_ok: Shared::new(false).named("s.headerOk"),
        header_sent: AtomicU32::new(0),
        state: AtomicU32::new(STREAM_ACTIVE),
        variant,
    });
    let ss = Arc::new(ServerStream { t, s });
    // The handler: grpc.SetHeader, then a receiving goroutine, then SendMsg.
    let _ = ss.s.set_header(vec!["k: v"]);
    let rs = ss.clone();
    go_named("handler.recv", move || rs.recv_msg_too_large());
    ss.send_msg();
    // processStreamingRPC: the handler returned; the RPC's status.
    ss.t.write_status(&ss.s, "grpc-status: 0");
}
