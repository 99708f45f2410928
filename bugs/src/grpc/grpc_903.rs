#![doc = include_str!("grpc_903.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::explore::Engine;
use primitives::sync::{Cond, Mutex};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_903",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/903",
        category: "Order violation (a second GracefulStop returns while a connection is open)",
        expected: primitives::Verdict::Assert,
        kernel: test_server_multiple_go_away_pending_rpc,
        walkthrough: include_str!("grpc_903.md"),
        source: Source::Test(
            "grpc/grpc-go test/end2end_test.go testServerMultipleGoAwayPendingRPC @ bac9e1d1, server.go @ bac9e1d1^"
        ),
        fix: Fix::Upstream("bac9e1d1"),
        review: "faithful after mends: Checked against bac9e1d16 (the server.go diff and testServerMultipleGoAwayPendingRPC), server.go, transport/http2_server.go, http2_client.go, stream.go and call.go at bac9e1d16^, and PR #903: right bug, fix and verdict with a failure the scheduler finds; mended: what t.Fatal does to the deferred tear-down, the server transport's own close after draining, the polling loop's 10 ms, the status check with no upstream counterpart, and two unreached differences of the network model.",
        file: file!(),
        // Only bound 1 finds the bug (at 17,348; 2 and 3 miss it within 50,000 executions).
        budget: Budget { shuttle: 5_000, preemption_bound: Some(1), ..Budget::DEFAULT },
        not_found_by: &[(
            Engine::ShuttleUrw,
            "the uniform random walk misses it in 5,000 schedules at seed 1: it weights main, \
             which has the most operations left, so main nearly always makes its two steps from \
             the GOAWAY to the check before the second GracefulStop makes its four",
        )],
        ..Bug::DEFAULT
    }
}

/// What the client writes on the connection (HTTP/2 frames, one per RPC step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    /// The headers that open the `FullDuplexCall` stream.
    FullDuplexCall,
    /// A whole unary `EmptyCall`.
    EmptyCall,
    /// `stream.Send(req)` on the `FullDuplexCall` stream.
    Message,
    /// `stream.CloseSend()`: the end of the client's half of the stream.
    CloseSend,
}

/// What the server writes on the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// `EmptyCall`'s response.
    Empty,
    /// `FullDuplexCall`'s response to one message.
    Message,
    /// The trailers that end the `FullDuplexCall` stream (its handler returned).
    Status,
    /// The GOAWAY frame `Drain` queues.
    GoAway,
}

/// One TCP connection: a byte stream each way (buffered, as a socket is).
#[derive(Clone)]
struct Conn {
    to_server: Chan<Request>,
    to_client: Chan<Reply>,
}

fn new_conn() -> Conn {
    Conn {
        to_server: Chan::new(4).named("conn(client→server)"),
        to_client: Chan::new(4).named("conn(server→client)"),
    }
}

/// A `net.Listener`: its accept queue.
#[derive(Clone)]
struct Listener {
    accept_q: Chan<Conn>,
    /// Stands for the listener's address, the key of `s.lis`.
    fd: Arc<Shared<()>>,
}

impl Listener {
    /// `lis.Accept()`: `None` once the listener is closed.
    fn accept(&self) -> Option<Conn> {
        self.accept_q.recv()
    }

    fn close(&self) {
        self.accept_q.close();
    }

    fn key(&self) -> u64 {
        self.fd.identity()
    }
}

/// `http2Server`'s `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TransportState {
    Reachable,
    Closing,
}

/// The server side of one connection (`transport.ServerTransport`, an `http2Server`).
struct Http2Server {
    mu: Mutex,
    state: Shared<TransportState>,
    conn: Conn,
}

impl Http2Server {
    /// The key of `s.conns` (Go keys the map by the transport itself).
    fn key(&self) -> u64 {
        self.state.identity()
    }

    /// `HandleStreams`: reads the connection until the client closes it, and serves each
    /// request as the test server's `EmptyCall` and `FullDuplexCall` would.
    fn handle_streams(&self) {
        while let Some(frame) = self.conn.to_server.recv() {
            match frame {
                Request::FullDuplexCall => {}
                Request::EmptyCall => self.conn.to_client.send(Reply::Empty),
                Request::Message => self.conn.to_client.send(Reply::Message),
                Request::CloseSend => self.conn.to_client.send(Reply::Status),
            }
        }
    }

    /// `Drain`: queues a GOAWAY for the client.
    fn drain(&self) {
        self.conn.to_client.send(Reply::GoAway);
    }

    /// `Close`: the second call returns an error and does nothing.
    fn close(&self) {
        self.mu.lock();
        if self.state.get() == TransportState::Closing {
            self.mu.unlock();
            return;
        }
        self.state.set(TransportState::Closing);
        self.mu.unlock();
        self.conn.to_client.close(); // t.conn.Close()
    }
}

/// `grpc.Server`; its `mu` is reached through `Deref`, so `s.lock()` reads as `s.mu.Lock()`.
struct Server {
    mu: Mutex,
    /// `lis`: `None` for `nil`.
    lis: Shared<Option<GoMap<u64, Listener>>>,
    /// `conns`: `None` for `nil`.
    conns: Shared<Option<GoMap<u64, Arc<Http2Server>>>>,
    drain: Shared<bool>,
    /// `cv`, a `sync.NewCond(&s.mu)`: `GracefulStop` waits on it for `conns` to empty.
    cv: Cond,
    variant: Variant,
}

impl Deref for Server {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mu
    }
}

/// `NewServer`.
fn new_server(variant: Variant) -> Arc<Server> {
    let mu = Mutex::new().named("s.mu");
    Arc::new(Server {
        lis: Shared::new(Some(GoMap::new().named("s.lis(map)"))).named("s.lis"),
        conns: Shared::new(Some(GoMap::new().named("s.conns(map)"))).named("s.conns"),
        drain: Shared::new(false).named("s.drain"),
        cv: Cond::new(&mu),
        mu,
        variant,
    })
}

impl Server {
    /// `Serve`: registers the listener, then accepts until it is closed.
    fn serve(self: &Arc<Self>, lis: Listener) {
        self.lock();
        let Some(listeners) = self.lis.get() else {
            self.unlock();
            lis.close();
            return; // ErrServerStopped
        };
        listeners.insert(lis.key(), lis.clone());
        self.unlock();
        let _cleanup = defer(|| {
            self.lock();
            if let Some(listeners) = self.lis.get() {
                if listeners.contains_key(&lis.key()) {
                    lis.close();
                    listeners.remove(&lis.key());
                }
            }
            self.unlock();
        });
        while let Some(raw_conn) = lis.accept() {
            let s = self.clone();
            go_named("handleRawConn", move || s.handle_raw_conn(raw_conn));
        }
        // Accept failed: the listener is closed ("use of closed network connection").
    }

    /// `handleRawConn`, with `serveNewHTTP2Transport` and `serveStreams` inlined.
    fn handle_raw_conn(&self, conn: Conn) {
        self.lock();
        if self.conns.read(Option::is_none) {
            self.unlock();
            conn.to_client.close(); // conn.Close()
            return;
        }
        self.unlock();
        // serveNewHTTP2Transport
        let st = Arc::new(Http2Server {
            mu: Mutex::new().named("t.mu"),
            state: Shared::new(TransportState::Reachable).named("t.state"),
            conn,
        });
        if !self.add_conn(&st) {
            st.close();
            return;
        }
        // serveStreams
        let _remove = defer(|| self.remove_conn(&st));
        let _close = defer(|| st.close());
        st.handle_streams();
    }

    fn add_conn(&self, c: &Arc<Http2Server>) -> bool {
        self.lock();
        let _unlock = defer(|| self.unlock());
        let conns = self.conns.get();
        let Some(conns) = conns.filter(|_| !self.drain.get()) else {
            return false;
        };
        conns.insert(c.key(), c.clone());
        true
    }

    fn remove_conn(&self, c: &Http2Server) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        if let Some(conns) = self.conns.get() {
            conns.remove(&c.key());
            if self.variant.fixed() {
                self.cv.broadcast();
            } else {
                self.cv.signal(); // wakes one waiting GracefulStop only
            }
        }
    }

    /// `Stop`: closes everything at once.
    fn stop(&self) {
        self.lock();
        let listeners = self.lis.get();
        self.lis.set(None);
        let st = self.conns.get();
        self.conns.set(None);
        // interrupt GracefulStop if Stop and GracefulStop are called concurrently.
        if self.variant.fixed() {
            self.cv.broadcast();
        } else {
            self.cv.signal();
        }
        self.unlock();

        for lis in listeners.map_or_else(Vec::new, |m| m.with(|m| m.values().cloned().collect())) {
            lis.close();
        }
        for c in st.map_or_else(Vec::new, |m| m.with(|m| m.values().cloned().collect())) {
            c.close();
        }

        self.lock();
        // s.cancel() and s.events are left out.
        self.unlock();
    }

    /// `GracefulStop`: stops accepting, drains every connection, and waits until they are gone.
    fn graceful_stop(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        if self.variant.fixed() {
            if self.conns.read(Option::is_none) {
                return;
            }
        } else {
            if self.drain.get() || self.conns.read(Option::is_none) {
                return; // a second caller returns here at once
            }
            self.drain.set(true);
        }
        let listeners = self.lis.get();
        for lis in listeners.map_or_else(Vec::new, |m| m.with(|m| m.values().cloned().collect())) {
            lis.close();
        }
        self.lis.set(None);
        // s.cancel() is left out.
        let conns = self.conns.get().expect("checked above");
        let drain_all = || {
            for c in conns.with(|m| m.values().cloned().collect::<Vec<_>>()) {
                c.drain();
            }
        };
        if self.variant.fixed() {
            if !self.drain.get() {
                drain_all();
                self.drain.set(true);
            }
        } else {
            drain_all();
        }
        while self.conns.get().map_or(0, |m| m.len()) != 0 {
            self.cv.wait();
        }
        self.conns.set(None);
        // s.events is left out.
    }
}

/// The test fixture (`test`): its server and its listener.
struct Test {
    srv: Arc<Server>,
    lis: Listener,
}

impl Test {
    /// `startServer`: `net.Listen`, `NewServer`, `go s.Serve(lis)`.
    fn start_server(variant: Variant) -> Test {
        let lis = Listener {
            accept_q: Chan::new(1).named("lis"),
            fd: Arc::new(Shared::new(()).named("lis.fd")),
        };
        let srv = new_server(variant);
        let (s, l) = (srv.clone(), lis.clone());
        go_named("Serve", move || s.serve(l));
        Test { srv, lis }
    }

    /// `clientConn`: dials the listener; the client's end of the connection.
    fn client_conn(&self) -> Conn {
        let conn = new_conn();
        self.lis.accept_q.send(conn.clone());
        conn
    }

    /// `tearDown`: the client connection is closed already; `Stop` the server.
    fn tear_down(&self) {
        self.srv.stop();
    }
}

/// `testServerMultipleGoAwayPendingRPC`, the test the fix added.
fn test_server_multiple_go_away_pending_rpc(variant: Variant) {
    let te = Test::start_server(variant);
    let _tear_down = defer(|| te.tear_down());

    let cc = te.client_conn();
    // stream, err := tc.FullDuplexCall(ctx, grpc.FailFast(false))
    cc.to_server.send(Request::FullDuplexCall);
    // Finish an RPC to make sure the connection is good.
    cc.to_server.send(Request::EmptyCall);
    assert_eq!(cc.to_client.recv(), Some(Reply::Empty), "EmptyCall");

    let ch1 = Chan::<()>::new(0).named("ch1");
    let (srv, c) = (te.srv.clone(), ch1.clone());
    go_named("GracefulStop(ch1)", move || {
        srv.graceful_stop();
        c.close();
    });
    let ch2 = Chan::<()>::new(0).named("ch2");
    let (srv, c) = (te.srv.clone(), ch2.clone());
    go_named("GracefulStop(ch2)", move || {
        srv.graceful_stop();
        c.close();
    });

    // Loop until the server side GoAway signal is propagated to the client.
    while let Some(reply) = cc.to_client.recv() {
        if reply == Reply::GoAway {
            break;
        }
    }
    select! {
        recv(ch1) => panic!("assertion failed: GracefulStop() terminated early"), // t.Fatal
        recv(ch2) => panic!("assertion failed: GracefulStop() terminated early"), // t.Fatal
        default => {},
    }
    // The existing RPC should be still good to proceed.
    cc.to_server.send(Request::Message); // stream.Send(req)
    assert_eq!(cc.to_client.recv(), Some(Reply::Message), "stream.Recv()");
    // stream.CloseSend()
    cc.to_server.send(Request::CloseSend);
    // The stream's watcher sees it end (the server's status) and closes the stream; the
    // transport is draining and has no stream left, so it closes the connection.
    assert_eq!(cc.to_client.recv(), Some(Reply::Status), "stream status");
    cc.to_server.close();

    ch1.recv();
    ch2.recv();
}
