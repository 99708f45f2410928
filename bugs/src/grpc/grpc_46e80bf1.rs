#![doc = include_str!("grpc_46e80bf1.md")]

use std::sync::Arc;

use primitives::sync::{Cond, Mutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_46e80bf1",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/commit/46e80bf1f6c2928b216afa3eb9797348c0978ac5",
        category: "Data race",
        expected: primitives::Verdict::Race,
        also: &[primitives::Verdict::Panic],
        kernel: test_server_stats_unary_rpc,
        walkthrough: include_str!("grpc_46e80bf1.md"),
        asplos: Some("non-blocking-bugs/grpc-go/46e80bf1f6c2928b216afa3eb9797348c0978ac5.txt"),
        source: Source::Test("grpc/grpc-go stats/stats_test.go @ 46e80bf1^"),
        fix: Fix::Upstream("46e80bf1"),
        review: "faithful: Checked against 46e80bf1 and 46e80bf1^ (stats_test.go, server.go, transport/http2_server.go): faithful port of the stats-callback test race and its mutex+GracefulStop fix.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The stats the server reports for one unary RPC, in the order the test checks them.
const EXPECTED: [&str; 6] = [
    "InitStats",
    "IncomingHeaderStats",
    "IncomingPayloadStats",
    "OutgoingHeaderStats",
    "OutgoingPayloadStats",
    "OutgoingTrailerStats",
];

/// The callback `stats.RegisterCallBack` stores in the package variable `f`.
type CallBack = Arc<dyn Fn(&'static str) + Send + Sync>;

/// What the server writes back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Headers,
    Data,
    Trailers,
}

/// The connection: requests one way, frames the other (a socket buffers the server's writes).
#[derive(Clone)]
struct Conn {
    c2s: Chan<()>,
    s2c: Chan<Frame>,
    /// Closed by `Close` on the server's side.
    closed: Chan<()>,
    /// The client's answer to the server's GOAWAY: it closes the connection.
    goaway: Chan<()>,
}

/// `http2Server`, with the stats calls it makes.
struct ServerTransport {
    conn: Conn,
    cb: CallBack,
}

impl ServerTransport {
    /// `HandleStreams`: one stream, then frames until the connection is closed or drained.
    fn handle_streams(&self, handle: impl Fn()) {
        select! {
            recv(self.conn.c2s) => {},
            recv(self.conn.closed) => return,
        }
        // operateHeaders: the stream is registered, then its stats.
        (self.cb)("InitStats");
        (self.cb)("IncomingHeaderStats");
        handle();
        select! {
            recv(self.conn.closed) => {},
            recv(self.conn.goaway) => {},
        }
    }

    /// `WriteHeader`: the headers, then their stats.
    fn write_header(&self) {
        self.conn.s2c.send(Frame::Headers);
        (self.cb)("OutgoingHeaderStats");
    }

    /// `Write`: the message's DATA.
    fn write(&self) {
        self.conn.s2c.send(Frame::Data);
    }

    /// `WriteStatus`: the trailers, then their stats, then the stream is closed.
    fn write_status(&self) {
        self.conn.s2c.send(Frame::Trailers);
        (self.cb)("OutgoingTrailerStats");
    }
}

/// `grpc.Server`: the connections it serves.
struct Server {
    mu: Mutex,
    cv: Cond<Mutex>,
    /// `s.conns`: how many transports are live (None once stopped).
    conns: Shared<Option<u32>>,
    drain: Shared<bool>,
    conn: Conn,
}

impl Server {
    /// `processUnaryRPC` for `UnaryCall`: the request's stats, the handler, the response.
    fn process_unary_rpc(&self, st: &ServerTransport) {
        (st.cb)("IncomingPayloadStats");
        // sendResponse
        st.write_header();
        st.write();
        (st.cb)("OutgoingPayloadStats");
        st.write_status();
    }

    /// `serveStreams`: a goroutine per stream, then wait for them and remove the conn.
    fn serve_streams(self: &Arc<Self>, st: Arc<ServerTransport>) {
        let wg = WaitGroup::new().named("serveStreams.wg");
        st.handle_streams(|| {
            wg.add(1);
            let (s, st, wg) = (self.clone(), st.clone(), wg.clone());
            go_named("handleStream", move || {
                let _done = defer(|| wg.done());
                s.process_unary_rpc(&st);
            });
        });
        wg.wait();
        self.remove_conn();
    }

    fn remove_conn(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.conns.read(|c| c.is_some()) {
            self.conns.write(|c| *c = c.map(|n| n - 1));
            self.cv.broadcast();
        }
    }

    /// `Stop`: closes every connection.
    fn stop(&self) {
        self.mu.lock();
        let st = self.conns.write(|c| c.take());
        self.cv.broadcast();
        self.mu.unlock();
        if st.is_some() {
            self.conn.closed.close();
        }
    }

    /// `GracefulStop`: drains every connection and waits until all are gone.
    fn graceful_stop(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.conns.read(|c| c.is_none()) {
            return;
        }
        if !self.drain.get() {
            // Drain: GOAWAY, which the client answers by closing the connection.
            self.conn.goaway.close();
            self.drain.set(true);
        }
        while self.conns.get() != Some(0) {
            self.cv.wait();
        }
        self.conns.set(None);
    }
}

/// `TestServerStatsUnaryRPC`: one unary RPC, then a check of the six stats the server
/// reported, in order.
fn test_server_stats_unary_rpc(variant: Variant) {
    let mu = Mutex::new().named("test.mu");
    let got: Shared<Vec<&'static str>> = Shared::new(Vec::new()).named("got");
    let (cb_mu, cb_got) = (mu.clone(), got.clone());
    let fixed = variant.fixed();
    // stats.RegisterCallBack
    let cb: CallBack = Arc::new(move |s| {
        if fixed {
            cb_mu.lock();
        }
        let _unlock = defer(|| {
            if fixed {
                cb_mu.unlock()
            }
        });
        cb_got.write(|g| g.push(s));
    });

    // te.startServer: the server and the connection the client dials.
    let conn = Conn {
        c2s: Chan::new(1).named("conn c2s"),
        s2c: Chan::new(3).named("conn s2c"),
        closed: Chan::new(0).named("conn closed"),
        goaway: Chan::new(0).named("conn goaway"),
    };
    let mu_srv = Mutex::new().named("s.mu");
    let srv = Arc::new(Server {
        cv: Cond::new(&mu_srv),
        mu: mu_srv,
        conns: Shared::new(Some(1)).named("s.conns"),
        drain: Shared::new(false).named("s.drain"),
        conn: conn.clone(),
    });
    let (s, c) = (srv.clone(), conn.clone());
    go_named("handleRawConn", move || {
        s.serve_streams(Arc::new(ServerTransport { conn: c, cb }));
    });
    // defer te.tearDown()
    let td = srv.clone();
    let _tear_down = defer(move || td.stop());

    // te.doUnaryCall: the request, then the response until its trailers.
    conn.c2s.send(());
    while conn.s2c.recv() != Some(Frame::Trailers) {}

    if variant.fixed() {
        srv.graceful_stop(); // Wait for the server to stop.
    }
    for (i, want) in EXPECTED.iter().enumerate() {
        if variant.fixed() {
            mu.lock();
        }
        let g = got.read(|g| g.get(i).copied());
        let Some(g) = g else {
            let n = got.read(|g| g.len());
            panic!("runtime error: index out of range [{i}] with length {n}");
        };
        // checkInitStats and the others: t.Fatalf on the wrong kind of stats.
        assert_eq!(g, *want, "got[{i}] is the wrong kind of stats");
        if variant.fixed() {
            mu.unlock();
        }
    }
    // stats.Stop()
}
