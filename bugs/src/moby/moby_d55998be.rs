#![doc = include_str!("moby_d55998be.md")]

use std::sync::Arc;

use primitives::sync::Once;
use primitives::{defer, go_named, select, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_d55998be",
        project: "moby",
        upstream: "https://github.com/moby/moby/commit/d55998be81973be5b083eed56b223c8ce98ce073",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_moby_d55998be,
        walkthrough: include_str!("moby_d55998be.md"),
        asplos: Some("blocking-bugs/docker/d55998be81973be5b083eed56b223c8ce98ce073.txt"),
        source: Source::Diff("d55998be"),
        fix: Fix::Ours("upstream's d55998be completed by a buffer of one on utils.Go's channel (what upstream itself did later, in d3a6ee1e), because upstream's fix alone still leaks the utils.Go goroutines around hijack (its send on errCh, which CmdRun no longer reads once start has failed) and around sendStdin (hijack returns before reading it)"),
        loom: Loom::Applies,
        review: "faithful after mends: Checked against d55998be and d55998be^ (commands.go, utils/utils.go, utils/stdcopy.go, container.go, server.go, api.go) and d3a6ee1e: the leak, its upstream fix at every hunk, and the completion (d3a6ee1e's one-slot buffer, plainly ours) hold; the mends (the daemon's attach as an admitted stand-in, three client goroutines, which failed start) are made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An error (`error`); its text does not matter here.
#[derive(Debug)]
struct Error;

/// The hijacked connection `rwc` (a `net.Conn`), both ends of it: `closed` is closed by the
/// first `Close`, after which reads on either end return.
struct Conn {
    closed: Chan<()>,
    once: Once,
}

impl Conn {
    /// `rwc.Close()`: a second `Close` of a `net.Conn` only returns an error.
    fn close(&self) {
        self.once.do_(|| self.closed.close());
    }

    /// A read on the client's end (`br`): nothing comes (the container never started), so it
    /// returns only once the connection is closed, with "use of closed network connection".
    fn read(&self) -> Result<(), Error> {
        self.closed.recv();
        Err(Error)
    }
}

/// `utils.Go` (`utils/utils.go`): runs `f` on a new goroutine and returns the channel that
/// will carry its result.
fn utils_go(
    variant: Variant,
    name: &str,
    f: impl FnOnce() -> Result<(), Error> + Send + 'static,
) -> Chan<Result<(), Error>> {
    let ch = Chan::new(if variant.fixed() { 1 } else { 0 }).named(name);
    let ch2 = ch.clone();
    go_named(name, move || ch2.send(f()));
    ch
}

/// `DockerCli`, reduced to what `CmdRun` and `hijack` touch here.
struct DockerCli {
    variant: Variant,
}

impl DockerCli {
    /// `CmdRun` from the container's creation on, for `docker run -a stdout` (stdout attached,
    /// no stdin, no tty) of a container the daemon then refuses to start.
    fn cmd_run(self: &Arc<Self>) -> Result<(), Error> {
        // We need to make the chan because the select needs to have a closing
        // chan, it can't be uninitialized
        let hijacked: Chan<Option<Arc<Conn>>> = Chan::new(0).named("hijacked");

        // Block the return until the chan gets closed
        let hijacked_wait = hijacked.clone();
        let variant = self.variant;
        let _wait_hijack = defer(move || {
            if variant.fixed() && hijacked_wait.recv().is_some() {
                // "Hijack did not finish (chan still open)"
            }
        });
        let mut _close_conn = None;

        // config.AttachStdout
        let (cli, started) = (self.clone(), hijacked.clone());
        let err_ch = utils_go(self.variant, "hijack", move || cli.hijack(Some(started)));

        // Acknowledge the hijack before starting
        select! {
            recv(hijacked) -> closer => {
                if self.variant.fixed() {
                    // Make sure that hijack gets closed when returning.
                    if let Some(Some(closer)) = closer {
                        _close_conn = Some(defer(move || closer.close()));
                    }
                }
            }
            recv(err_ch) -> err => {
                if let Some(Err(err)) = err {
                    return Err(err); // "Error hijack: %s"
                }
            }
        }

        //start the container
        self.call_start()?;

        // Not reached: the start failed.
        if let Some(Err(err)) = err_ch.recv() {
            return Err(err);
        }
        Ok(())
    }

    /// `cli.call("POST", "/containers/<id>/start", hostConfig)`: the daemon refuses.
    fn call_start(&self) -> Result<(), Error> {
        Err(Error)
    }

    /// `hijack`: dials the daemon, sends the attach request, takes the connection over, then
    /// copies the container's output to stdout and stdin to the daemon.
    fn hijack(self: &Arc<Self>, started: Option<Chan<Option<Arc<Conn>>>>) -> Result<(), Error> {
        let started_close = started.clone();
        let variant = self.variant;
        let _close_started = defer(move || {
            if variant.fixed() {
                if let Some(started) = started_close {
                    started.close();
                }
            }
        });

        // net.Dial, clientconn.Do(req): the daemon's attach handler takes the connection.
        let rwc = Arc::new(Conn {
            closed: Chan::new(0).named("rwc closed"),
            once: Once::new(),
        });
        let server_conn = rwc.clone();
        go_named("server attach", move || server_attach(&server_conn));

        // rwc, br := clientconn.Hijack()
        let rwc_close = rwc.clone();
        let _close_rwc = defer(move || rwc_close.close());

        if let Some(started) = &started {
            if self.variant.fixed() {
                started.send(Some(rwc.clone()));
            } else {
                started.send(None); // started <- true
            }
        }

        // stdout != nil
        let br = rwc.clone();
        let receive_stdout = utils_go(self.variant, "receiveStdout", move || {
            // utils.StdCopy(stdout, stderr, br)
            br.read()
        });

        let send_stdin = utils_go(self.variant, "sendStdin", || {
            // in == nil; rwc.CloseWrite() (its error is only logged)
            Ok(())
        });

        if let Some(Err(err)) = receive_stdout.recv() {
            return Err(err); // "Error receiveStdout: %s"
        }

        // !cli.isTerminal
        if let Some(Err(err)) = send_stdin.recv() {
            return Err(err);
        }
        Ok(())
    }
}

/// The daemon's side of the attach (`postContainersAttach`): streams the container's output
/// into the connection until the container ends or the client closes the connection. The
/// container never started, so only the close ends it.
fn server_attach(conn: &Conn) {
    conn.closed.recv();
}

/// `docker run -a stdout <image>` whose container the daemon refuses to start: `CmdRun`
/// returns the start's error. There is no upstream test; the test's end stands for the
/// client's `CmdRun` returning (in a long-lived caller of `CmdRun`, the leaked goroutines
/// pile up).
fn test_moby_d55998be(variant: Variant) {
    let cli = Arc::new(DockerCli { variant });
    assert!(cli.cmd_run().is_err(), "the start fails");
}
