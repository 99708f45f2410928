#![doc = include_str!("moby_9543.md")]

use std::sync::Arc;

use primitives::sync::AtomicU32;
use primitives::{go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_9543",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/9543",
        category: "Atomicity violation (check then act on an atomic)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_moby9543,
        walkthrough: include_str!("moby_9543.md"),
        asplos: Some("non-blocking-bugs/docker/46b1194d996f6535e657bcb88428303305d3fe68.txt"),
        source: Source::Diff("46b1194d"),
        fix: Fix::Upstream("46b1194d"),
        review: "",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `os.Signal`, with the three signals `Trap` listens for (the kernel sends only SIGINT).
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

/// The process: `os.Exit` hands its code to whoever waits for the process to end.
#[derive(Clone)]
struct Process {
    exited: Chan<i32>,
}

impl Process {
    /// `os.Exit(code)`: the first call ends the process; a later one finds it gone.
    fn exit(&self, code: i32) {
        select! {
            send(self.exited, code) => {},
            default => {},
        }
    }
}

/// `pkg/signal.Trap`: makes `c`, registers it (the kernel returns it to its caller, which
/// plays the operating system) and starts the goroutine that ranges over it.
fn trap(
    variant: Variant,
    process: &Process,
    cleanup: impl Fn() + Send + Sync + 'static,
) -> Chan<Signal> {
    let cleanup = Arc::new(cleanup);
    let c: Chan<Signal> = Chan::new(1).named("c");
    let (c2, process) = (c.clone(), process.clone());
    go_named("Trap.func1", move || {
        let interrupt_count = AtomicU32::new(0).named("interruptCount");
        while let Some(sig) = c2.recv() {
            let (interrupt_count, cleanup, process) =
                (interrupt_count.clone(), cleanup.clone(), process.clone());
            go_named("Trap.func1.1", move || {
                // log.Infof("Received signal '%v', starting shutdown of docker...", sig)
                match sig {
                    Signal::Interrupt | Signal::Sigterm => {
                        // If the user really wants to interrupt, let him do so.
                        if interrupt_count.load() < 3 {
                            // Initiate the cleanup only once.
                            let first = if variant.fixed() {
                                interrupt_count.add(1) == 1
                            } else {
                                interrupt_count.add(1);
                                interrupt_count.load() == 1
                            };
                            if first {
                                // Call cleanup handler.
                                cleanup();
                                process.exit(0);
                                return;
                            } else {
                                return;
                            }
                        } else {
                            // log.Infof("Force shutdown of docker, interrupting cleanup")
                        }
                    }
                    Signal::Sigquit => {}
                }
                process.exit(128 + sig.number());
            });
        }
    });
    c
}

/// The daemon (`docker -d`) with its trap set (`signal.Trap(eng.Shutdown)`): the user presses
/// Ctrl-C twice in quick succession and waits for the daemon to exit.
fn test_moby9543(variant: Variant) {
    let process = Process {
        exited: Chan::new(1).named("process exit"),
    };
    // `eng.Shutdown` (a stub).
    let shutdown = || {};
    let c = trap(variant, &process, shutdown);
    // The signal package never blocks on `c`: a signal that finds the buffer full is dropped.
    for _ in 0..2 {
        select! {
            send(c, Signal::Interrupt) => {},
            default => {},
        }
    }
    // The user waits for the daemon to exit.
    let _code = process.exited.recv();
    // The kernel's: the process is gone, so is the trap goroutine's range.
    c.close();
}
