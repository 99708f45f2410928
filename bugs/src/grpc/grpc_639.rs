#![doc = include_str!("grpc_639.md")]

use std::sync::Arc;

use primitives::sync::Once;
use primitives::{go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_639",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/651",
        category: "Channel deadlock",
        expected: primitives::Verdict::Deadlock,
        kernel: test_dial_over_pipe,
        walkthrough: include_str!("grpc_639.md"),
        asplos: Some("blocking-bugs/grpc-go/262ed2bd6d1c8cbaa14b43c3815d2e01e4f65ca8.txt"),
        source: Source::Diff("0f4e1e7e"),
        fix: Fix::Upstream("0f4e1e7e"),
        review: "faithful: Checked against 0f4e1e7e/262ed2bd and 306a1ee (http2_client.go, http2_server.go, server.go, control.go), issue #639 and PR #651: faithful port of the synchronous-pipe handshake deadlock and its fix.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// What goes over the connection: the client's preface and HTTP/2 frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    ClientPreface,
    Settings,
    WindowUpdate,
}

/// `io.ErrClosedPipe` / `io.EOF`.
#[derive(Debug)]
struct PipeError;

/// One end of `net.Pipe()`: synchronous, in memory, no buffering. A write completes only
/// when the other end reads it; closing either end wakes both.
struct PipeEnd {
    rd: Chan<Frame>,
    wr: Chan<Frame>,
    local_done: Chan<()>,
    remote_done: Chan<()>,
    once: Arc<Once>,
}

/// `net.Pipe`.
fn net_pipe() -> (PipeEnd, PipeEnd) {
    let c1 = Chan::new(0).named("pipe client->server");
    let c2 = Chan::new(0).named("pipe server->client");
    let done1 = Chan::new(0).named("pipe client done");
    let done2 = Chan::new(0).named("pipe server done");
    let client = PipeEnd {
        rd: c2.clone(),
        wr: c1.clone(),
        local_done: done1.clone(),
        remote_done: done2.clone(),
        once: Arc::new(Once::new()),
    };
    let server = PipeEnd {
        rd: c1,
        wr: c2,
        local_done: done2,
        remote_done: done1,
        once: Arc::new(Once::new()),
    };
    (client, server)
}

impl PipeEnd {
    fn write(&self, f: Frame) -> Result<(), PipeError> {
        select! {
            send(self.wr, f) => Ok(()),
            recv(self.local_done) => Err(PipeError),
            recv(self.remote_done) => Err(PipeError),
        }
    }

    fn read(&self) -> Result<Frame, PipeError> {
        select! {
            recv(self.rd) -> f => Ok(f.expect("never closed")),
            recv(self.local_done) => Err(PipeError),
            recv(self.remote_done) => Err(PipeError),
        }
    }

    fn close(&self) {
        self.once.do_(|| self.local_done.close());
    }
}

/// `http2Client`: the client transport.
struct Http2Client {
    conn: PipeEnd,
}

impl Http2Client {
    /// `reader`: the server's preface (its SETTINGS) first, then frames until the connection
    /// fails.
    fn reader(&self) {
        let Ok(frame) = self.conn.read() else {
            return; // t.notifyError(err)
        };
        if frame != Frame::Settings {
            return;
        }
        // t.handleSettings(sf)
        while self.conn.read().is_ok() {}
    }

    /// `Close`.
    fn close(&self) {
        self.conn.close();
    }
}

/// Writes the client's connection preface: the preface, SETTINGS, and the connection's
/// window update (`initialConnWindowSize` is 16 times `defaultWindowSize`).
fn write_preface(conn: &PipeEnd) -> Result<(), PipeError> {
    conn.write(Frame::ClientPreface)?;
    conn.write(Frame::Settings)?;
    conn.write(Frame::WindowUpdate)
}

/// `newHTTP2Client` over an already dialed connection.
fn new_http2_client(conn: PipeEnd, variant: Variant) -> Result<Arc<Http2Client>, PipeError> {
    if !variant.fixed() {
        // Send connection preface to server.
        if let Err(e) = write_preface(&conn) {
            conn.close();
            return Err(e);
        }
    }
    let t = Arc::new(Http2Client { conn });
    if variant.fixed() {
        // Start the reader goroutine first, then send the preface.
        let rt = t.clone();
        go_named("reader", move || rt.reader());
        if let Err(e) = write_preface(&t.conn) {
            t.close();
            return Err(e);
        }
    }
    // go t.controller(); t.writableChan <- 0
    if !variant.fixed() {
        let rt = t.clone();
        go_named("reader", move || rt.reader());
    }
    Ok(t)
}

/// `newHTTP2Server`: writes the server's preface, its SETTINGS and window update, first.
fn new_http2_server(conn: &PipeEnd) -> Result<(), PipeError> {
    conn.write(Frame::Settings)?;
    conn.write(Frame::WindowUpdate)
}

/// `http2Server`: the server transport.
struct Http2Server {
    conn: PipeEnd,
}

impl Http2Server {
    /// `HandleStreams`: the client's preface, its SETTINGS, then frames until the connection
    /// fails.
    fn handle_streams(&self) {
        if self.conn.read().ok() != Some(Frame::ClientPreface) {
            self.close();
            return;
        }
        if self.conn.read().ok() != Some(Frame::Settings) {
            self.close();
            return;
        }
        // t.handleSettings(sf)
        while self.conn.read().is_ok() {}
        self.close();
    }

    fn close(&self) {
        self.conn.close();
    }
}

/// `Server.handleRawConn` → `serveNewHTTP2Transport` → `serveStreams`.
fn handle_raw_conn(c: PipeEnd) {
    if new_http2_server(&c).is_err() {
        c.close();
        return;
    }
    let st = Http2Server { conn: c };
    st.handle_streams();
    // serveStreams: defer st.Close()
    st.close();
}

/// Issue #639's program: a server and a client connected by `net.Pipe()`. The client dials
/// (the transport's handshake), then closes the connection.
fn test_dial_over_pipe(variant: Variant) {
    let (client_conn, server_conn) = net_pipe();
    go_named("handleRawConn", move || handle_raw_conn(server_conn));
    if let Ok(t) = new_http2_client(client_conn, variant) {
        t.close();
    }
}
