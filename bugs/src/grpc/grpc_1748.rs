#![doc = include_str!("grpc_1748.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1748",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1748",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_grpc1748,
        walkthrough: include_str!("grpc_1748.md"),
        goker: Some("gobench/goker/nonblocking/grpc/1748"),
        source: Source::Test("grpc/grpc-go clientconn_test.go @ f4b52376"),
        fix: Fix::Upstream("6610f9a3"),
        review: "faithful: Checked against the fix 6610f9a3, clientconn.go/clientconn_test.go at f4b52376, GoKer nonblocking/grpc/1748 and \
                 GoReal's race report of the real test: same unordered restore vs reconnect read, fix at the one hunk; faithful.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The package's variables: `minConnectTimeout`, which tests change and restore.
struct Package {
    min_connect_timeout: Shared<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Connecting,
    Ready,
    TransientFailure,
    Shutdown,
}

/// `errConnClosing`.
#[derive(Debug)]
struct ErrConnClosing;

/// The client connection (`ClientConn`).
struct ClientConn {
    ctx: Context,
    cancel: CancelFunc,
    mu: Mutex,
    conns: Shared<Option<Vec<Arc<AddrConn>>>>,
}

impl ClientConn {
    fn close(&self) {
        self.cancel.call();
        self.mu.lock();
        let Some(conns) = self.conns.write(|c| c.take()) else {
            self.mu.unlock();
            return;
        };
        self.mu.unlock();
        for ac in conns {
            ac.tear_down();
        }
    }
}

/// A connection to one address (`addrConn`).
struct AddrConn {
    ctx: Context,
    cancel: CancelFunc,
    mu: Mutex,
    state: Shared<State>,
    pkg: Arc<Package>,
    /// The server's listening socket: dialing is sending on it.
    listener: Chan<()>,
}

impl AddrConn {
    fn connect(self: &Arc<Self>) -> Result<(), ErrConnClosing> {
        self.mu.lock();
        if self.state.get() == State::Shutdown {
            self.mu.unlock();
            return Err(ErrConnClosing);
        }
        if self.state.get() != State::Idle {
            self.mu.unlock();
            return Ok(());
        }
        self.state.set(State::Connecting);
        self.mu.unlock();
        // Start connecting in a goroutine of its own.
        let ac = self.clone();
        go_named("connect.func1", move || {
            if ac.reset_transport().is_err() {
                return;
            }
            ac.transport_monitor();
        });
        Ok(())
    }

    fn reset_transport(&self) -> Result<(), ErrConnClosing> {
        self.mu.lock();
        if self.state.get() == State::Shutdown {
            self.mu.unlock();
            return Err(ErrConnClosing);
        }
        self.mu.unlock();
        loop {
            self.mu.lock();
            // The duration the dial gets (backoff is left out).
            let dial_duration = self.pkg.min_connect_timeout.get();
            if self.state.get() == State::Shutdown {
                self.mu.unlock();
                return Err(ErrConnClosing);
            }
            self.state.set(State::Connecting);
            self.mu.unlock();
            if self.create_transport(dial_duration)? {
                return Ok(());
            }
        }
    }

    /// Dials the server; the dial gives up when `ac.ctx` is cancelled.
    fn create_transport(&self, _connect_deadline: Duration) -> Result<bool, ErrConnClosing> {
        select! {
            send(self.listener, ()) => {},
            recv(self.ctx.done()) => return Err(ErrConnClosing),
        }
        self.mu.lock();
        if self.state.get() == State::Shutdown {
            self.mu.unlock();
            return Err(ErrConnClosing);
        }
        self.state.set(State::Ready);
        self.mu.unlock();
        Ok(true)
    }

    /// Waits for the transport to fail and reconnects. The transport fails when `ac.ctx` is
    /// cancelled (the kernel's server never breaks the connection).
    fn transport_monitor(&self) {
        loop {
            self.ctx.done().recv(); // <-t.Error()
            self.mu.lock();
            if self.state.get() == State::Shutdown {
                self.mu.unlock();
                return;
            }
            self.state.set(State::TransientFailure);
            self.mu.unlock();
            if self.reset_transport().is_err() {
                return;
            }
        }
    }

    fn tear_down(&self) {
        self.cancel.call();
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.state.get() == State::Shutdown {
            return;
        }
        self.state.set(State::Shutdown);
    }
}

/// `Dial` without blocking: one address, connected in the background.
fn dial(pkg: &Arc<Package>, listener: &Chan<()>) -> Arc<ClientConn> {
    let (ctx, cancel) = context::with_cancel(&context::background());
    let cc = Arc::new(ClientConn {
        ctx,
        cancel,
        mu: Mutex::new().named("ClientConn.mu"),
        conns: Shared::new(Some(Vec::new())).named("ClientConn.conns"),
    });
    let (ac_ctx, ac_cancel) = context::with_cancel(&cc.ctx);
    let ac = Arc::new(AddrConn {
        ctx: ac_ctx,
        cancel: ac_cancel,
        mu: Mutex::new().named("addrConn.mu"),
        state: Shared::new(State::Idle).named("addrConn.state"),
        pkg: pkg.clone(),
        listener: listener.clone(),
    });
    cc.mu.lock();
    cc.conns
        .write(|c| c.as_mut().expect("open").push(ac.clone()));
    cc.mu.unlock();
    let _ = ac.connect();
    cc
}

/// Upstream's `TestCloseConnectionWhenServerPrefaceNotReceived`, shrunk (GoKer's `TestGrpc1748`).
fn test_grpc1748(variant: Variant) {
    let pkg = Arc::new(Package {
        min_connect_timeout: Shared::new(Duration::from_secs(20)).named("minConnectTimeout"),
    });
    let mct_bkp = pkg.min_connect_timeout.get();
    // Upstream's comment asks for this to run only once transportMonitor has ended.
    let restore = pkg.clone();
    let _restore = defer(move || restore.min_connect_timeout.set(mct_bkp));
    pkg.min_connect_timeout.set(Duration::from_millis(500));

    let listener: Chan<()> = Chan::new(0).named("listener");
    let done: Chan<()> = Chan::new(0).named("done");
    let client_done: Chan<()> = Chan::new(0).named("clientDone");
    let (accept, server_done, server_client_done) =
        (listener.clone(), done.clone(), client_done.clone());
    go_named("server", move || {
        accept.recv(); // Accept the client's connection.
        server_done.close();
        server_client_done.recv();
    });

    let client = dial(&pkg, &listener);
    done.recv();
    if variant.fixed() {
        // The fix: shut the addrConns down first, so that no reconnect attempt starts and
        // restoring minConnectTimeout is race free.
        client.mu.lock();
        let addr_conns = client.conns.get().unwrap_or_default();
        client.mu.unlock();
        for ac in addr_conns {
            ac.mu.lock();
            ac.state.set(State::Shutdown);
            ac.mu.unlock();
        }
    }
    client.close();
    client_done.close();
}
