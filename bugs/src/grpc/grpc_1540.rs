#![doc = include_str!("grpc_1540.md")]

use std::sync::Arc;

use primitives::{go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1540",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1554",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_server_creds_dispatch,
        walkthrough: include_str!("grpc_1540.md"),
        asplos: Some("non-blocking-bugs/grpc-go/3bf110cd0cef4e896aa6331d44ca4a0c407bbaf3.txt"),
        source: Source::Test("grpc/grpc-go test/end2end_test.go @ 3bf110cd^"),
        fix: Fix::Upstream("3bf110cd"),
        review: "faithful after mends: Checked against 3bf110cd (ASPLOS non-blocking/grpc-go/3bf110cd…), test/end2end_test.go, server.go, clientconn.go and stats/stats_test.go at 3bf110cd^, issue #1552 and PR #1554. The kernel has the same unordered `c.rawConn` writes from two `handleRawConn` goroutines, with all three creds hunks switched, and leaving out the stats-test race is sound and admitted; the mends are made (no unsourced reconnect cause left, the client's connecting goroutine cited at clientconn.go:694-703 and :1016).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A `net.Conn`: which of the client's connections it is.
type Conn = u32;

/// `credentials.ErrConnDispatched`.
#[derive(Debug)]
struct ErrConnDispatched;

/// The test's `serverDispatchCred`: its server handshake hands the raw connection to the test.
struct ServerDispatchCred {
    ready: Chan<()>,
    raw_conn: Shared<Option<Conn>>,
    /// The fix: the handed-over connection travels on a channel of capacity one.
    raw_conn_ch: Chan<Conn>,
    variant: Variant,
}

/// `newServerDispatchCred`.
fn new_server_dispatch_cred(variant: Variant) -> Arc<ServerDispatchCred> {
    Arc::new(if variant.fixed() {
        ServerDispatchCred {
            ready: Chan::nil(),
            raw_conn: Shared::new(None).named("c.rawConn"),
            raw_conn_ch: Chan::new(1).named("c.rawConnCh"),
            variant,
        }
    } else {
        ServerDispatchCred {
            ready: Chan::new(0).named("c.ready"),
            raw_conn: Shared::new(None).named("c.rawConn"),
            raw_conn_ch: Chan::nil(),
            variant,
        }
    })
}

impl ServerDispatchCred {
    /// `ClientHandshake`: the raw connection as it is.
    fn client_handshake(&self, raw_conn: Conn) -> Conn {
        raw_conn
    }

    /// `ServerHandshake`: keeps the connection for the test and tells the server it has been
    /// dispatched.
    fn server_handshake(&self, raw_conn: Conn) -> Result<Conn, ErrConnDispatched> {
        if self.variant.fixed() {
            select! {
                send(self.raw_conn_ch, raw_conn) => {},
                default => {},
            }
        } else {
            self.raw_conn.set(Some(raw_conn));
            self.ready.close();
        }
        Err(ErrConnDispatched)
    }

    /// `getRawConn`.
    fn get_raw_conn(&self) -> Conn {
        if self.variant.fixed() {
            self.raw_conn_ch.recv().expect("never closed")
        } else {
            self.ready.recv();
            self.raw_conn.get().expect("set before ready is closed")
        }
    }
}

/// `grpc.Server` with the test's credentials.
struct Server {
    creds: Arc<ServerDispatchCred>,
    /// Closed by `Stop`.
    quit: Chan<()>,
}

impl Server {
    /// `Serve`: a goroutine per accepted connection.
    fn serve(self: &Arc<Self>, lis: &Chan<Conn>) {
        loop {
            let raw_conn = select! {
                recv(lis) -> c => c.expect("never closed"),
                recv(self.quit) => return,
            };
            let s = self.clone();
            go_named("handleRawConn", move || s.handle_raw_conn(raw_conn));
        }
    }

    /// `handleRawConn`: a dispatched connection is left open and alone.
    fn handle_raw_conn(&self, raw_conn: Conn) {
        // ErrConnDispatched: the connection is kept open, and the goroutine returns.
        let _ = self.use_transport_authenticator(raw_conn);
    }

    /// `useTransportAuthenticator`.
    fn use_transport_authenticator(&self, raw_conn: Conn) -> Result<Conn, ErrConnDispatched> {
        self.creds.server_handshake(raw_conn)
    }

    /// `Stop`.
    fn stop(&self) {
        self.quit.close();
    }
}

/// `TestServerCredsDispatch`: the server dispatches the client's connection to the test,
/// which checks that it is still open.
fn test_server_creds_dispatch(variant: Variant) {
    // net.Listen: the listener's backlog.
    let lis: Chan<Conn> = Chan::new(2).named("lis");
    let cred = new_server_dispatch_cred(variant);
    let s = Arc::new(Server {
        creds: cred.clone(),
        quit: Chan::new(0).named("s.quit"),
    });
    let (ss, slis) = (s.clone(), lis.clone());
    go_named("Serve", move || ss.serve(&slis));

    // grpc.Dial: the client connects in the background, twice (issue #1552 shows two accepted
    // connections, not why the client made the second).
    let (ccred, clis) = (cred.clone(), lis.clone());
    go_named("resetTransport", move || {
        for raw_conn in 1..=2 {
            clis.send(ccred.client_handshake(raw_conn));
        }
    });

    // Check rawConn is not closed.
    let raw_conn = cred.get_raw_conn();
    let _ = raw_conn; // rawConn.Write([]byte{0})
    s.stop();
}
