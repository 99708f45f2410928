#![doc = include_str!("grpc_0be94ab3.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::{Cond, Mutex};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_0be94ab3",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/564",
        category: "Traditional / Data race",
        expected: primitives::Verdict::Race,
        kernel: test_grpc0be94ab3,
        walkthrough: include_str!("grpc_0be94ab3.md"),
        asplos: Some("non-blocking-bugs/grpc-go/0be94ab3f591b9b6ba5b3c5702c0701e92b4bc28.txt"),
        source: Source::Diff("0be94ab3"),
        fix: Fix::Upstream("0be94ab3"),
        review: "faithful: Checked against 0be94ab3 (PR #564) and clientconn.go, call.go, picker.go, transport/http2_client.go at 74d80911: Conn.Wait reads cc.transport after unlocking cc.mu while the monitor's reconnect writes it under the lock; one-hunk fix mapped; the driver scenario is openly the port's own.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The errors the kernel needs.
#[derive(Debug)]
enum Error {
    /// `ErrClientConnClosing`.
    ClientConnClosing,
    /// `transport.ContextErr(ctx.Err())`.
    Context,
}

/// `ConnectivityState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectivityState {
    Idle,
    Connecting,
    Ready,
    TransientFailure,
    Shutdown,
}

/// `transport.ConnectionError`.
#[derive(Debug)]
struct ConnectionError;

/// `transport.ClientTransport`, faked: only `Error()`, `Close()` and an RPC's round trip are
/// used here.
struct ClientTransport {
    /// `Error()`: closed when the connection breaks.
    error_chan: Chan<()>,
    /// Whether the server at the other end answers RPCs (the first one drops the connection
    /// instead).
    answers: bool,
}

impl ClientTransport {
    fn error(&self) -> Chan<()> {
        self.error_chan.clone()
    }

    fn close(&self) {
        // Closing the fake connection has no effect the kernel needs.
    }

    /// `sendRequest` and `recvResponse` on this transport: the response, or the
    /// `ConnectionError` the stream fails with once the connection breaks.
    fn round_trip(&self) -> Result<(), ConnectionError> {
        if self.answers {
            return Ok(());
        }
        self.error_chan.recv();
        Err(ConnectionError)
    }
}

/// `Conn`: a client connection to a single destination.
struct Conn {
    reset_chan: Chan<i32>,
    shutdown_chan: Chan<()>,

    mu: Mutex,
    state: Shared<ConnectivityState>,
    state_cv: Cond<Mutex>,
    /// `ready` is closed and becomes nil when a new transport is up or failed.
    ready: Shared<Option<Chan<()>>>,
    transport: Shared<Option<Arc<ClientTransport>>>,

    /// The fake dialer's count of connections made so far.
    dials: Shared<usize>,
    variant: Variant,
}

impl Conn {
    /// `NewConn` with a non-blocking dial: connects in a goroutine of its own.
    fn new_conn(variant: Variant) -> Arc<Conn> {
        let mu = Mutex::new().named("cc.mu");
        let c = Arc::new(Conn {
            reset_chan: Chan::new(1).named("resetChan"),
            shutdown_chan: Chan::new(0).named("shutdownChan"),
            state_cv: Cond::new(&mu),
            mu,
            state: Shared::new(ConnectivityState::Idle).named("cc.state"),
            ready: Shared::new(None).named("cc.ready"),
            transport: Shared::new(None).named("cc.transport"),
            dials: Shared::new(0).named("dials"),
            variant,
        });
        // Start a goroutine connecting to the server asynchronously.
        let cc = c.clone();
        go_named("NewConn.func1", move || {
            if let Err(_err) = cc.reset_transport(false) {
                // grpclog.Printf("Failed to dial ...")
                let _ = cc.close();
                return;
            }
            cc.transport_monitor();
        });
        c
    }

    /// `transport.NewClientTransport`, faked. The first connection's reader goroutine
    /// (`http2Client.reader`) finds it broken and closes `Error()` (`notifyError`); later
    /// connections stay up, and their readers, which would only block reading, are left out.
    fn new_client_transport(&self) -> Arc<ClientTransport> {
        let n = self.dials.get();
        self.dials.set(n + 1);
        let error_chan = Chan::new(0).named(if n == 0 {
            "transport#1.errorChan"
        } else {
            "transport#2.errorChan"
        });
        if n == 0 {
            let notify_error = error_chan.clone();
            go_named("http2Client.reader", move || {
                // framer.readFrame fails: the server dropped the connection.
                notify_error.close();
            });
        }
        Arc::new(ClientTransport {
            error_chan,
            answers: n > 0,
        })
    }

    fn reset_transport(&self, close_transport: bool) -> Result<(), Error> {
        self.mu.lock();
        // cc.printf("connecting")
        if self.state.get() == ConnectivityState::Shutdown {
            // cc.Close() has been invoked.
            self.mu.unlock();
            return Err(Error::ClientConnClosing);
        }
        self.state.set(ConnectivityState::Connecting);
        self.state_cv.broadcast();
        self.mu.unlock();
        if close_transport {
            if let Some(t) = self.transport.get() {
                t.close();
            }
        }
        // The dial timeout, the backoff and the retry after a failed dial are left out: the
        // fake dialer never fails.
        let new_transport = self.new_client_transport();
        self.mu.lock();
        // cc.printf("ready")
        if self.state.get() == ConnectivityState::Shutdown {
            // cc.Close() has been invoked.
            self.mu.unlock();
            new_transport.close();
            return Err(Error::ClientConnClosing);
        }
        self.state.set(ConnectivityState::Ready);
        self.state_cv.broadcast();
        self.transport.set(Some(new_transport));
        if let Some(ready) = self.ready.get() {
            ready.close();
            self.ready.set(None);
        }
        self.mu.unlock();
        Ok(())
    }

    fn reconnect(&self) -> bool {
        self.mu.lock();
        if self.state.get() == ConnectivityState::Shutdown {
            // cc.Close() has been invoked.
            self.mu.unlock();
            return false;
        }
        self.state.set(ConnectivityState::TransientFailure);
        self.state_cv.broadcast();
        self.mu.unlock();
        if self.reset_transport(true).is_err() {
            // The ClientConn is closing.
            self.mu.lock();
            // cc.printf("transport exiting: %v", err)
            self.mu.unlock();
            return false;
        }
        true
    }

    /// `transportMonitor`: runs in the connecting goroutine; reconnects when the transport
    /// fails, returns when the connection is closing.
    fn transport_monitor(&self) {
        loop {
            // `cc.transport.Error()` is evaluated as the select is entered, without cc.mu.
            let transport_error = self
                .transport
                .get()
                .expect("transportMonitor runs once a transport is up")
                .error();
            select! {
                recv(self.shutdown_chan) => return,
                recv(self.reset_chan) => {
                    if !self.reconnect() {
                        return;
                    }
                },
                recv(transport_error) => {
                    if !self.reconnect() {
                        return;
                    }
                    // Tries to drain reset signal if there is any since it is out-dated.
                    select! {
                        recv(self.reset_chan) => {},
                        default => {},
                    }
                },
            }
        }
    }

    /// `Wait`: blocks until the transport is up, `ctx` is done or the connection is closed.
    fn wait(&self, ctx: &Context) -> Result<Arc<ClientTransport>, Error> {
        loop {
            self.mu.lock();
            match self.state.get() {
                ConnectivityState::Shutdown => {
                    self.mu.unlock();
                    return Err(Error::ClientConnClosing);
                }
                ConnectivityState::Ready => {
                    let ct = if self.variant.fixed() {
                        // The fix: take the transport before cc.mu is released.
                        let ct = self.transport.get();
                        self.mu.unlock();
                        ct
                    } else {
                        self.mu.unlock();
                        self.transport.get()
                    };
                    return Ok(ct.expect("a ready Conn has a transport"));
                }
                _ => {
                    let ready = match self.ready.get() {
                        Some(ready) => ready,
                        None => {
                            let ready = Chan::new(0).named("ready");
                            self.ready.set(Some(ready.clone()));
                            ready
                        }
                    };
                    self.mu.unlock();
                    select! {
                        recv(ctx.done()) => return Err(Error::Context),
                        // Wait until the new transport is ready or failed.
                        recv(ready) => {},
                    }
                }
            }
        }
    }

    /// `Close`: starts to tear down the Conn.
    fn close(&self) -> Result<(), Error> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.state.get() == ConnectivityState::Shutdown {
            return Err(Error::ClientConnClosing);
        }
        self.state.set(ConnectivityState::Shutdown);
        self.state_cv.broadcast();
        if let Some(ready) = self.ready.get() {
            ready.close();
            self.ready.set(None);
        }
        if let Some(t) = self.transport.get() {
            t.close();
        }
        self.shutdown_chan.close();
        Ok(())
    }
}

/// `Invoke` with the default picker: picks a transport (`unicastPicker.Pick` → `Conn.Wait`)
/// and retries the RPC on a new pick when it fails with a `ConnectionError`.
fn invoke(cc: &Conn, ctx: &Context) -> Result<(), Error> {
    loop {
        let t = cc.wait(ctx)?;
        match t.round_trip() {
            Err(ConnectionError) => continue,
            Ok(()) => return Ok(()),
        }
    }
}

/// A client dials without blocking (`unicastPicker.Init` → `NewConn`), makes one RPC, then
/// closes the connection.
fn test_grpc0be94ab3(variant: Variant) {
    let cc = Conn::new_conn(variant);
    let _ = invoke(&cc, &context::background());
    let _ = cc.close();
}
