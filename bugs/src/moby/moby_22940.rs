#![doc = include_str!("moby_22940.md")]

use std::sync::Arc;

use primitives::sync::{Cond, Mutex};
use primitives::{defer, go_named, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_22940",
        project: "moby",
        upstream: "https://github.com/moby/moby/commit/1670914b8a56ab8e6ead38739fddb416b61e444f",
        category: "Anonymous function (loop variable captured by a goroutine)",
        expected: primitives::Verdict::Race,
        kernel: test_header_override_hack,
        walkthrough: include_str!("moby_22940.md"),
        asplos: Some("non-blocking-bugs/docker/1670914b8a56ab8e6ead38739fddb416b61e444f.txt"),
        source: Source::Diff("1670914b"),
        fix: Fix::Upstream("1670914b"),
        review: "faithful: Checked against the fix 1670914b (merge f10a222d), the test and hack at f18224de, Go 1.5's io.Pipe/net.Pipe and GoReal's race report: the loop variable read by a writer goroutine that the zero-byte reads left unsynchronised, fixed by passing it as an argument, as upstream.",
        file: file!(),
        // Four writers and three locks: bound 1 keeps loom's search of the fixed variant short.
        budget: Budget { preemption_bound: Some(1), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// Errors of the old `io.Pipe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PipeError {
    /// `io.ErrClosedPipe`.
    ClosedPipe,
    /// `io.EOF`.
    Eof,
}

/// The old `io.pipe` (before Go rewrote `net.Pipe` and `io.Pipe` over channels), the half of
/// `net.Pipe` that carries what the server writes to the client: a writer hands its slice
/// over and waits until readers have consumed all of it.
struct Pipe {
    /// Gates readers one at a time.
    rl: Mutex,
    /// Gates writers one at a time.
    wl: Mutex,
    /// Guards the fields below.
    l: Mutex,
    /// What is left of the pending write (`nil` when there is none).
    data: Shared<Option<&'static [u8]>>,
    rwait: Cond,
    wwait: Cond,
    rerr: Shared<Option<PipeError>>,
    werr: Shared<Option<PipeError>>,
}

impl Pipe {
    fn new() -> Arc<Pipe> {
        let l = Mutex::new().named("pipe.l");
        Arc::new(Pipe {
            rl: Mutex::new().named("pipe.rl"),
            wl: Mutex::new().named("pipe.wl"),
            rwait: Cond::new(&l),
            wwait: Cond::new(&l),
            l,
            data: Shared::new(None).named("pipe.data"),
            rerr: Shared::new(None).named("pipe.rerr"),
            werr: Shared::new(None).named("pipe.werr"),
        })
    }

    fn read(&self, b: &mut [u8]) -> Result<usize, PipeError> {
        self.rl.lock();
        let _runlock = defer(|| self.rl.unlock());
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        loop {
            if self.rerr.get().is_some() {
                return Err(PipeError::ClosedPipe);
            }
            if self.data.get().is_some() {
                break;
            }
            if let Some(err) = self.werr.get() {
                return Err(err);
            }
            self.rwait.wait();
        }
        let data = self.data.get().expect("checked above");
        let n = b.len().min(data.len());
        b[..n].copy_from_slice(&data[..n]);
        if n == data.len() {
            self.data.set(None);
            self.wwait.signal();
        } else {
            self.data.set(Some(&data[n..]));
        }
        Ok(n)
    }

    fn write(&self, b: &'static [u8]) -> Result<usize, PipeError> {
        self.wl.lock();
        let _wunlock = defer(|| self.wl.unlock());
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        if self.werr.get().is_some() {
            return Err(PipeError::ClosedPipe);
        }
        self.data.set(Some(b));
        self.rwait.signal();
        let mut err = None;
        loop {
            if self.data.get().is_none() {
                break;
            }
            if let Some(e) = self.rerr.get() {
                err = Some(e);
                break;
            }
            if self.werr.get().is_some() {
                // No `break` here in Go's code: the writer waits on until the reader goes.
                err = Some(PipeError::ClosedPipe);
            }
            self.wwait.wait();
        }
        let n = b.len() - self.data.get().map_or(0, <[u8]>::len);
        self.data.set(None);
        err.map_or(Ok(n), Err)
    }

    /// The reading end is closed (`client.Close()`).
    fn rclose(&self) {
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        self.rerr.set(Some(PipeError::ClosedPipe));
        self.rwait.signal();
        self.wwait.signal();
    }

    /// The writing end is closed (`srv.Close()`).
    fn wclose(&self) {
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        self.werr.set(Some(PipeError::Eof));
        self.rwait.signal();
        self.wwait.signal();
    }
}

const CLOSE_CONN_HEADER: &[u8] = b"\r\nConnection: close\r";

/// `MalformedHostHeaderOverrideConn`: wraps the client's connection and rewrites the `Host:`
/// header of the first 4 KiB read, where old clients put the socket's path.
struct MalformedHostHeaderOverrideConn {
    conn: Arc<Pipe>,
    first: bool,
}

impl MalformedHostHeaderOverrideConn {
    fn read(&mut self, b: &mut [u8]) -> Result<usize, PipeError> {
        if self.first && b.len() == 4096 {
            self.first = false;
            let c = self.conn.read(b)?;
            // Only a `Host: /...` line right after the request line is rewritten.
            let Some(lf) = b[..c].iter().position(|&x| x == b'\n') else {
                return Ok(c);
            };
            if !b[lf..c].starts_with(b"\nHost: /") {
                return Ok(c);
            }
            let start = lf + 7;
            let end = start + b[start..c].iter().position(|&x| x == b'\n').unwrap_or(0);
            let mut buf = Vec::with_capacity(c + CLOSE_CONN_HEADER.len() - (end - start));
            buf.extend_from_slice(&b[..start]);
            buf.extend_from_slice(CLOSE_CONN_HEADER);
            buf.extend_from_slice(&b[end..c]);
            b[..buf.len()].copy_from_slice(&buf);
            return Ok(buf.len());
        }
        self.conn.read(b)
    }
}

/// One test case: the request an old client sends, and what the hack should make of it.
type Pair = [&'static [u8]; 2];

const TESTS: [Pair; 4] = [
    [
        b"GET /foo\nHost: /var/run/docker.sock\nUser-Agent: Docker\r\n\r\n",
        b"GET /foo\nHost: \r\nConnection: close\r\nUser-Agent: Docker\r\n\r\n",
    ],
    [
        b"GET /foo\nHost: /var/run/docker.sock\nUser-Agent: Docker\nFoo: Bar\r\n",
        b"GET /foo\nHost: \r\nConnection: close\r\nUser-Agent: Docker\nFoo: Bar\r\n",
    ],
    [
        b"GET /foo\nHost: /var/run/docker.sock\nUser-Agent: Docker\r\n\r\ntest something!",
        b"GET /foo\nHost: \r\nConnection: close\r\nUser-Agent: Docker\r\n\r\ntest something!",
    ],
    [
        b"GET /foo\nHost: /var/run/docker.sock\nUser-Agent: Docker\r\n\r\ntest something! testtest",
        b"GET /foo\nHost: \r\nConnection: close\r\nUser-Agent: Docker\r\n\r\ntest something! testtest",
    ],
];

/// `TestHeaderOverrideHack` (cmd/dockerd/hack).
fn test_header_override_hack(variant: Variant) {
    // client, srv := net.Pipe(): only the server-to-client direction is used.
    let pipe = Pipe::new();
    let (client, srv) = (pipe.clone(), pipe);
    let mut l = MalformedHostHeaderOverrideConn {
        conn: client,
        first: true,
    };
    let mut read = vec![0u8; 4096];

    // `for _, pair := range tests`: before Go 1.22, one variable for the whole loop.
    let pair: Shared<Pair> = Shared::new(TESTS[0]).named("pair");
    for (i, test) in TESTS.into_iter().enumerate() {
        if i > 0 {
            pair.set(test);
        }
        let srv = srv.clone();
        if variant.fixed() {
            // go func(x []byte) { srv.Write(x) }(pair[0])
            let x = pair.read(|p| p[0]);
            go_named("Write", move || {
                let _ = srv.write(x);
            });
        } else {
            // go func() { srv.Write(pair[0]) }()
            let pair = pair.clone();
            go_named("Write", move || {
                let _ = srv.write(pair.read(|p| p[0]));
            });
        }
        let n = match l.read(&mut read) {
            Ok(n) => n,
            Err(PipeError::Eof) => 0,
            Err(err) => panic!("read: {err:?}"),
        };
        assert!(
            pair.read(|p| read[..n] == p[1][..n]),
            "assertion failed: the hack rewrote the request wrongly"
        );
        l.first = true;
        // "clean out the slice": from now on every read is of zero bytes.
        read.truncate(0);
    }
    srv.wclose();
    l.conn.rclose();
}
