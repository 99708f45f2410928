#![doc = include_str!("moby_28682.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, Context};
use primitives::sync::Once;
use primitives::{defer, go_named, select, time, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_28682",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/28682",
        category: "Misuse of channel (select between two ready cases skips a required action)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_slow_stdin_closing,
        walkthrough: include_str!("moby_28682.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/docker/4e262f63876018ca78d54a98eee3f533352b0ac9.txt"),
        source: Source::Diff("4e262f63"),
        fix: Fix::Upstream("4e262f63"),
        loom: Loom::DoesNotApply(
            "the failure needs the stdin goroutine's select to take ctx.Done() while ready is \
             also closed; under loom a goroutine's first select choice goes to the first ready \
             case (ready), so loom never takes the failing branch",
        ),
        review: "faithful after mends: Checked against 4e262f63 (#28682, merged as 3373227f), `libcontainerd/container_unix.go`, `process_unix.go` and `container/stream/streams.go` at its parent, `TestSlowStdinClosing`, issue #28658 and the ASPLOS diff: the right bug (select picks `ctx.Done()` over a ready `ready`), exact fix, right deadlock verdict, honest loom exclusion; the mends are made: the `main` = daemon+client merge is in Deviations, and both optional notes (the mirror's hunk header, ASPLOS's non-blocking class) are added.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A request to containerd's API: `UpdateProcess` with `CloseStdin: true`.
struct CloseStdin;

/// containerd, seen from libcontainerd: it takes requests, and reports the container's exit.
struct Remote {
    update_process: Chan<CloseStdin>,
    exit_events: Chan<&'static str>,
}

/// libcontainerd's `container`.
struct Container {
    remote: Arc<Remote>,
    variant: Variant,
}

/// `IOPipe.Stdin`: the wrapper `start` puts around the stdin FIFO; `Close` runs the closure.
struct StdinWrapper {
    close: Box<dyn Fn() + Send + Sync>,
}

impl Container {
    /// `sendCloseStdin`: asks containerd to close the process's stdin.
    fn send_close_stdin(&self) -> Result<(), String> {
        self.remote.update_process.send(CloseStdin);
        Ok(())
    }

    /// `start`: starts the container; stdin's close is forwarded to containerd only once the
    /// container exists (`ready`).
    fn start(self: &Arc<Self>, attach_stdio: impl FnOnce(StdinWrapper)) -> Result<(), String> {
        let (ctx, cancel) = context::with_cancel(&context::background());
        let _cancel = defer(move || cancel.call());
        let ready: Chan<()> = Chan::new(0).named("ready");

        let stdin_once = Arc::new(Once::new());
        let ctr = self.clone();
        let (ready2, ctx2) = (ready.clone(), ctx.clone());
        let stdin = StdinWrapper {
            close: Box::new(move || {
                // on error from attach we don't know if stdin was already closed
                stdin_once.do_(|| {
                    // stdin.Close(): the FIFO's write end.
                    let (ctr, ready, ctx) = (ctr.clone(), ready2.clone(), ctx2.clone());
                    go_named("start.func1.1", move || {
                        ctr.close_stdin_when_ready(&ready, &ctx)
                    });
                });
            }),
        };

        attach_stdio(stdin);

        // ctr.client.remote.apiClient.CreateContainer(...): the container now exists.
        ready.close();
        Ok(())
    }

    /// The goroutine `start`'s stdin wrapper starts when stdin is closed.
    fn close_stdin_when_ready(&self, ready: &Chan<()>, ctx: &Context) {
        if self.variant.fixed() {
            select! {
                recv(ready) => {},
                recv(ctx.done()) => {},
            }
            select! {
                recv(ready) => {
                    if let Err(_err) = self.send_close_stdin() {
                        // failed to close stdin
                    }
                },
                default => {},
            }
        } else {
            select! {
                recv(ready) => {
                    if let Err(_err) = self.send_close_stdin() {
                        // failed to close stdin
                    }
                },
                recv(ctx.done()) => {},
            }
        }
    }
}

/// `TestSlowStdinClosing` (added by the fix), one round: `docker run --rm -i busybox cat`
/// whose stdin reaches EOF after 500 ms; the run must end.
fn test_slow_stdin_closing(variant: Variant) {
    let remote = Arc::new(Remote {
        update_process: Chan::new(1).named("UpdateProcess"),
        exit_events: Chan::new(1).named("exit events"),
    });

    // containerd and the container's `cat`: cat reads stdin until EOF, which it gets when
    // containerd is asked to close the process's stdin; then it exits.
    let r = remote.clone();
    go_named("containerd", move || {
        if r.update_process.recv().is_some() {
            r.exit_events.send("exit");
        }
    });

    let ctr = Arc::new(Container {
        remote: remote.clone(),
        variant,
    });
    // The daemon starts the container; attachStdio is InitializeStdio → CopyToPipe.
    ctr.start(|iop_stdin| {
        go_named("CopyToPipe.func2", move || {
            // pools.Copy(iop.Stdin, stdin): the client's delayedReader answers EOF after 500 ms.
            time::sleep(Duration::from_millis(500));
            (iop_stdin.close)();
        });
    })
    .expect("start");

    // `docker run` ends when the container exits.
    let _ = remote.exit_events.recv();
}
