#![doc = include_str!("moby_6118.md")]

use primitives::sync::{AtomicU32, WaitGroup};
use primitives::{go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_6118",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/6118",
        category: "Data race (anonymous function)",
        expected: primitives::Verdict::Race,
        kernel: test_moby6118,
        walkthrough: include_str!("moby_6118.md"),
        asplos: Some("non-blocking-bugs/docker/ce9e9ff4a101eec5632704003fae772e8762eb15.txt"),
        source: Source::Diff("ce9e9ff4"),
        fix: Fix::Upstream("ce9e9ff4"),
        review: "faithful after mends: Checked against ce9e9ff4 (PR #6118, merged 9e58a77e), `server/server.go:86-114` at ce9e9ff4^ and the ASPLOS diff: the shared range variable and plain counter of the signal handlers and their argument/atomic fix are kept at upstream's lines; os.Exit, the closing of `c` and the kernel's WaitGroup are admitted and hide no race; the false sentence about Go's race detector is corrected. Mends made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `os.Signal`, with the three signals `InitServer` traps (the kernel sends only SIGINT).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    /// `os.Interrupt` (SIGINT, 2).
    Interrupt,
    /// `syscall.SIGTERM` (15).
    Sigterm,
    /// `syscall.SIGQUIT` (3).
    Sigquit,
}

impl Signal {
    /// `int(sig.(syscall.Signal))`.
    fn number(self) -> i32 {
        match self {
            Signal::Interrupt => 2,
            Signal::Sigterm => 15,
            Signal::Sigquit => 3,
        }
    }
}

/// The API server (`Server`); only what the signal handler calls on it.
struct Server;

impl Server {
    /// `srv.Close()`: shuts the daemon down (a stub).
    fn close(&self) {}
}

/// `utils.RemovePidFile` (a stub).
fn remove_pid_file() {}

/// The signal-trap part of `InitServer`: makes `c`, starts the goroutine that ranges over it
/// and returns `c` (the kernel's stand-in for `gosignal.Notify`'s registration). `wg` is the
/// kernel's, so that the test can wait for the handlers.
fn init_server(variant: Variant, wg: &WaitGroup) -> Chan<Signal> {
    let srv = std::sync::Arc::new(Server);
    let c: Chan<Signal> = Chan::new(1).named("c");
    let c2 = c.clone();
    let wg2 = wg.clone();
    wg.add(1);
    go_named("InitServer.func1", move || {
        // `interruptCount := 0` before the fix, `uint32(0)` after: one word either way.
        let interrupt_count = AtomicU32::new(0).named("interruptCount");
        // `for sig := range c`: before Go 1.22 the loop has one variable `sig`, which every
        // iteration writes and every closure below shares.
        let sig = Shared::new(Signal::Interrupt).named("sig");
        while let Some(s) = c2.recv() {
            sig.set(s);
            // The fix passes `sig` as the closure's argument: it is read here, in this
            // goroutine, before the handler starts.
            let arg = if variant.fixed() {
                Some(sig.get())
            } else {
                None
            };
            let (sig, interrupt_count, srv, wg3) = (
                sig.clone(),
                interrupt_count.clone(),
                srv.clone(),
                wg2.clone(),
            );
            wg2.add(1);
            go_named("InitServer.func1.1", move || {
                let sig = || {
                    if variant.fixed() {
                        arg.unwrap()
                    } else {
                        sig.get()
                    }
                };
                // log.Printf("Received signal '%v', starting shutdown of docker...\n", sig)
                let _ = sig();
                'handler: {
                    match sig() {
                        Signal::Interrupt | Signal::Sigterm => {
                            // If the user really wants to interrupt, let him do so.
                            let below_three = if variant.fixed() {
                                interrupt_count.load() < 3
                            } else {
                                interrupt_count.plain_load() < 3
                            };
                            if below_three {
                                if variant.fixed() {
                                    interrupt_count.add(1);
                                } else {
                                    interrupt_count.plain_store(interrupt_count.plain_load() + 1);
                                }
                                // Initiate the cleanup only once.
                                let first = if variant.fixed() {
                                    interrupt_count.load() == 1
                                } else {
                                    interrupt_count.plain_load() == 1
                                };
                                if first {
                                    remove_pid_file();
                                    srv.close();
                                } else {
                                    break 'handler;
                                }
                            } else {
                                // log.Printf("Force shutdown of docker, interrupting cleanup\n")
                            }
                        }
                        Signal::Sigquit => {}
                    }
                    // os.Exit(128 + int(sig.(syscall.Signal))): the exit is not modelled.
                    let _code = 128 + sig().number();
                }
                wg3.done();
            });
        }
        wg2.done();
    });
    c
}

/// The daemon with its signal trap set up: the user presses Ctrl-C twice.
fn test_moby6118(variant: Variant) {
    let wg = WaitGroup::new().named("wg");
    let c = init_server(variant, &wg);
    // The signal package never blocks on `c`: a signal that finds the buffer full is dropped.
    for _ in 0..2 {
        select! {
            send(c, Signal::Interrupt) => {},
            default => {},
        }
    }
    // The kernel's: the range ends, so that the test can end.
    c.close();
    wg.wait();
}
