#![doc = include_str!("grpc_1275.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::time::Timer;
use primitives::{defer, go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1275",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1275",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_grpc1275,
        walkthrough: include_str!("grpc_1275.md"),
        goker: Some("gobench/goker/blocking/grpc/1275"),
        source: Source::Goker,
        fix: Fix::Upstream("7df48bee"),
        review: "faithful: Checked against GoKer blocking/grpc/1275, the fix 7df48bee (= 0669f3f8), transport/{transport,http2_client}.go at a3592bda and GoReal's backtrace: same two goroutines, same missing wake-up, fix at the one hunk; faithful.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// What the transport hands a stream's reader (`recvMsg`): data, or the error that ends it.
struct RecvMsg {
    err: Option<&'static str>,
}

/// A stream's inbox (`recvBuffer`): its channel has room for one message.
struct RecvBuffer {
    c: Chan<RecvMsg>,
}

impl RecvBuffer {
    fn put(&self, r: RecvMsg) {
        self.c.send(r);
    }

    fn get(&self) -> &Chan<RecvMsg> {
        &self.c
    }
}

/// The reader side of a stream (`recvBufferReader`).
struct RecvBufferReader {
    recv: Arc<RecvBuffer>,
}

impl RecvBufferReader {
    fn read(&self) -> Result<usize, &'static str> {
        select! {
            recv(self.recv.get()) -> m => {
                match m.and_then(|m| m.err) {
                    Some(err) => Err(err),
                    None => Ok(1),
                }
            },
        }
    }
}

/// A client stream (`Stream`).
struct Stream {
    buf: Arc<RecvBuffer>,
    tr_reader: RecvBufferReader,
}

impl Stream {
    /// `Read`, through `io.ReadFull` (one byte is asked for).
    fn read(&self) -> Result<usize, &'static str> {
        self.tr_reader.read()
    }

    fn write(&self, m: RecvMsg) {
        self.buf.put(m);
    }
}

/// The client transport (`http2Client`).
struct Http2Client {
    variant: Variant,
}

impl Http2Client {
    fn new_stream(&self) -> Arc<Stream> {
        let buf = Arc::new(RecvBuffer {
            c: Chan::new(1).named("recvBuffer.c"),
        });
        Arc::new(Stream {
            buf: buf.clone(),
            tr_reader: RecvBufferReader { recv: buf },
        })
    }

    fn close_stream(&self, s: &Stream, err: Option<&'static str>) {
        if self.variant.fixed() {
            if let Some(err) = err {
                // The fix: tell a reader still waiting on the stream why it ended.
                s.write(RecvMsg { err: Some(err) });
            }
        }
        // Removing the stream from `activeStreams` is left out.
    }
}

/// `TestInflightStreamClosing`, added by the fix (GoKer's `testInflightStreamClosing`).
fn test_grpc1275(variant: Variant) {
    let client = Http2Client { variant };
    let stream = client.new_stream();
    let donec: Chan<()> = Chan::new(0).named("donec");
    let (reader, done) = (stream.clone(), donec.clone());
    go_named("stream.Read", move || {
        let _close = defer(|| done.close());
        let _ = reader.read();
    });

    // Should unblock the concurrent stream.Read.
    client.close_stream(&stream, Some("client connection is closing"));

    let timeout = Timer::new(Duration::from_secs(5));
    select! {
        recv(donec) => {
            if !timeout.stop() {
                timeout.c().recv();
            }
        },
        recv(timeout.c()) => {},
    }
}
