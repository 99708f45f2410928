#![doc = include_str!("moby_11944.md")]

use std::sync::Arc;

use primitives::{go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_11944",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/11944",
        category: "Data race (channel variable assigned and read by two goroutines)",
        expected: primitives::Verdict::Race,
        kernel: test_moby11944,
        walkthrough: include_str!("moby_11944.md"),
        asplos: Some("non-blocking-bugs/docker/8f6a14452dfd88aedc8ac9577a98c38a555baadc.txt"),
        source: Source::Diff("8f6a1445"),
        fix: Fix::Upstream("8f6a1445"),
        review: "faithful: Checked against moby 8f6a1445 (+ c7174757, PR #11944/#11967) and server.go/server_linux.go/buffer.go/daemon.go at its parent: same write/read pair on `activationLock`, both fix hunks switched by the variant, reductions admitted; faithful.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An error (`error`); its text does not matter here.
#[derive(Debug)]
struct Error;

/// A client connection: the channel the server writes its response to.
type Conn = Chan<&'static str>;

/// The unix socket `/var/run/docker.sock` and its listen backlog, where connections wait
/// until `Accept` takes them.
#[derive(Clone)]
struct Socket {
    backlog: Chan<Conn>,
}

impl Socket {
    /// The wrapped `net.Listener`'s `Accept`.
    fn accept(&self) -> Result<Conn, Error> {
        self.backlog.recv().ok_or(Error)
    }

    /// A client's `net.Dial`.
    fn dial(&self) -> Conn {
        let conn = Chan::new(1).named("conn");
        self.backlog.send(conn.clone());
        conn
    }
}

/// `listenbuffer.defaultListener`: holds connections back until `activate` is closed.
struct DefaultListener {
    wrapped: Socket,
    ready: Shared<bool>,
    activate: Chan<()>,
}

impl DefaultListener {
    /// `NewListenBuffer`.
    fn new_listen_buffer(socket: &Socket, activate: Chan<()>) -> DefaultListener {
        DefaultListener {
            wrapped: socket.clone(),
            ready: Shared::new(false).named("defaultListener.ready"),
            activate,
        }
    }

    /// `Accept`: waits for activation, then accepts.
    fn accept(&self) -> Result<Conn, Error> {
        if self.ready.get() {
            return self.wrapped.accept();
        }
        self.activate.recv();
        self.ready.set(true);
        self.accept()
    }
}

/// `HttpServer`: an `http.Server` over the buffered listener.
struct HttpServer {
    l: DefaultListener,
}

impl HttpServer {
    /// `Serve`: `http.Server.Serve`, reduced to one connection, answered in place.
    fn serve(&self) -> Result<(), Error> {
        let conn = self.l.accept()?;
        conn.send("HTTP/1.1 200 OK");
        Ok(())
    }
}

/// The `api/server` package's state, and the job's arguments.
struct ApiServer {
    /// `activationLock`, the package-level variable (`server.go:42`).
    activation_lock: Shared<Chan<()>>,
    /// The socket behind `unix:///var/run/docker.sock`.
    socket: Socket,
    variant: Variant,
}

impl ApiServer {
    /// `newListener` with `BufferRequests` set.
    fn new_listener(&self, _proto: &str, _addr: &str) -> DefaultListener {
        DefaultListener::new_listen_buffer(&self.socket, self.activation_lock.get())
    }

    /// `NewServer` for `unix`: `setupUnixHttp`.
    fn new_server(&self, proto: &str, addr: &str) -> Result<HttpServer, Error> {
        let l = self.new_listener(proto, addr);
        Ok(HttpServer { l })
    }

    /// `ServeApi`: one goroutine per address, each serving until it fails.
    fn serve_api(self: &Arc<Self>, args: &[&'static str]) -> Result<(), Error> {
        if args.is_empty() {
            return Err(Error); // "usage: ..."
        }
        let ch_errors: Chan<Result<(), Error>> = Chan::new(args.len()).named("chErrors");
        if !self.variant.fixed() {
            self.activation_lock
                .set(Chan::new(0).named("activationLock"));
        }

        for proto_addr in args {
            let Some((proto, addr)) = proto_addr.split_once("://") else {
                return Err(Error);
            };
            let (s, ch_errors) = (self.clone(), ch_errors.clone());
            go_named("ServeApi.func1", move || {
                // "Listening for HTTP on %s (%s)"
                let srv = match s.new_server(proto, addr) {
                    Ok(srv) => srv,
                    Err(err) => {
                        ch_errors.send(Err(err));
                        return;
                    }
                };
                ch_errors.send(srv.serve());
            });
        }

        for _ in 0..args.len() {
            ch_errors.recv().expect("never closed")?;
        }
        Ok(())
    }

    /// `AcceptConnections`, the `acceptconnections` job.
    fn accept_connections(&self) -> Result<(), Error> {
        // close the lock so the listeners start accepting connections
        if !self.activation_lock.get().is_nil() {
            self.activation_lock.get().close();
        }
        Ok(())
    }
}

/// `mainDaemon` (`docker/daemon.go`): the daemon's initialisation and the API server start side
/// by side; once the daemon is up, a client sends one request.
fn test_moby11944(variant: Variant) {
    let server = Arc::new(ApiServer {
        // `var activationLock chan struct{}` (buggy) or `= make(chan struct{})` (fixed).
        activation_lock: Shared::new(if variant.fixed() {
            Chan::new(0).named("activationLock")
        } else {
            Chan::nil()
        })
        .named("activationLock"),
        socket: Socket {
            backlog: Chan::new(1).named("docker.sock backlog"),
        },
        variant,
    });

    let daemon_init_wait: Chan<Result<(), Error>> = Chan::new(0).named("daemonInitWait");
    let (s, init_wait) = (server.clone(), daemon_init_wait.clone());
    go_named("mainDaemon.func1", move || {
        // daemon.NewDaemon, d.Install, the builder: the daemon is set up.
        // after the daemon is done setting up we can tell the api to start
        // accepting connections
        if let Err(err) = s.accept_connections() {
            init_wait.send(Err(err));
            return;
        }
        init_wait.send(Ok(()));
    });

    let serve_api_wait: Chan<Result<(), Error>> = Chan::new(0).named("serveAPIWait");
    let (s, api_wait) = (server.clone(), serve_api_wait.clone());
    go_named("mainDaemon.func2", move || {
        // job.Run() of "serveapi" with "unix:///var/run/docker.sock".
        api_wait.send(s.serve_api(&["unix:///var/run/docker.sock"]));
    });

    daemon_init_wait
        .recv()
        .expect("never closed")
        .expect("Shutting down daemon due to errors");
    // "Daemon has completed initialization": a client's request.
    let conn = server.socket.dial();
    conn.recv();

    let err_api = serve_api_wait.recv().expect("never closed");
    err_api.expect("Shutting down due to ServeAPI error");
}
