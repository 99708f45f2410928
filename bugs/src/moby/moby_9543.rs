#![doc = include_str!("moby_9543.md")]

use std::sync::Arc;

use primitives::sync::{AtomicU32, WaitGroup};
use primitives::{defer, go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_9543",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/9543",
        category: "Atomicity violation (check then act on an atomic)",
        expected: primitives::Verdict::Assert,
        kernel: test_moby9543,
        walkthrough: include_str!("moby_9543.md"),
        asplos: Some("non-blocking-bugs/docker/46b1194d996f6535e657bcb88428303305d3fe68.txt"),
        source: Source::Diff("46b1194d"),
        fix: Fix::Upstream("46b1194d"),
        review: "faithful after mends: Checked against 46b1194d (PR #9543, merged f91a79e0), pkg/signal/trap.go and docker/daemon.go at 46b1194d^ and the ASPLOS diff: the add-then-load atomicity violation and its one-line fix are exact; upstream nothing blocks and cleanup is skipped, so the kernel now waits for the handlers and asserts the doc comment's promise (trap.go:16), verdict `assert`; the third-signal sentence is corrected. Mends made.",
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

/// `os.Exit(code)`: not modelled. The process would end here; the handler returns right
/// after it instead, so nothing that follows `os.Exit` upstream runs in the kernel either.
fn exit(_code: i32) {}

/// `pkg/signal.Trap`: makes `c`, registers it (the kernel returns it to its caller, which
/// plays the operating system) and starts the goroutine that ranges over it. `wg` is the
/// kernel's, so that the test can wait for the handlers.
fn trap(
    variant: Variant,
    wg: &WaitGroup,
    cleanup: impl Fn() + Send + Sync + 'static,
) -> Chan<Signal> {
    let cleanup = Arc::new(cleanup);
    let c: Chan<Signal> = Chan::new(1).named("c");
    let (c2, wg2) = (c.clone(), wg.clone());
    wg.add(1);
    go_named("Trap.func1", move || {
        let interrupt_count = AtomicU32::new(0).named("interruptCount");
        while let Some(sig) = c2.recv() {
            let (interrupt_count, cleanup, wg3) =
                (interrupt_count.clone(), cleanup.clone(), wg2.clone());
            wg2.add(1);
            go_named("Trap.func1.1", move || {
                let _done = defer(|| wg3.done());
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
                                exit(0);
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
                exit(128 + sig.number());
            });
        }
        wg2.done();
    });
    c
}

/// The daemon (`docker -d`) with its trap set (`signal.Trap(eng.Shutdown)`): the user presses
/// Ctrl-C twice in quick succession. Once the handlers are done, `Trap`'s promise is checked:
/// on SIGINT the cleanup has run, once (trap.go:16 at 46b1194d^).
fn test_moby9543(variant: Variant) {
    let wg = WaitGroup::new().named("wg");
    // `eng.Shutdown` (a stub that counts its calls).
    let shutdown_calls = AtomicU32::new(0).named("eng.Shutdown calls");
    let shutdown = {
        let shutdown_calls = shutdown_calls.clone();
        move || {
            shutdown_calls.add(1);
        }
    };
    let c = trap(variant, &wg, shutdown);
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
    assert_eq!(
        shutdown_calls.load(),
        1,
        "SIGINT received: Trap must call cleanup (eng.Shutdown) once (trap.go:16); \
         46b1194d: cleanup not called at all"
    );
}
