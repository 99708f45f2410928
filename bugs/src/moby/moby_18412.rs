#![doc = include_str!("moby_18412.md")]

use std::time::Duration;

use primitives::{go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_18412",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/18412",
        category: "Order violation",
        expected: primitives::Verdict::Race,
        kernel: test_run_command_with_output_for_duration_killed,
        walkthrough: include_str!("moby_18412.md"),
        // GoKer's kernel (gobench/goker/nonblocking/moby/18412) is another program: this one
        // is built from the upstream helper and its test (see the walkthrough).
        goker: Some("gobench/goker/nonblocking/moby/18412"),
        asplos: Some("non-blocking-bugs/docker/2704fd9156bfb0fb8dc16c42902bb18ea5aa94a9.txt"),
        source: Source::Test("moby/moby pkg/integration/utils_test.go @ 580534ba"),
        fix: Fix::Upstream("2704fd91"),
        review: "faithful: Checked against the fix 2704fd91 (PR #18412 thread), utils.go/utils_test.go at 580534ba, GoKer nonblocking/moby/18412 and GoReal's record: the goroutine writing the function's named result on the timeout path, fixed by exitInfo over a buffered channel, as upstream.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `*exec.ExitError`: how the process ended, when not with status 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExitError {
    /// `signal: killed` (its `WaitStatus.ExitStatus()` is -1).
    Killed,
}

/// The child process: `sh -c 'while true ; do echo 1 ; sleep .1 ; done'` never ends by itself,
/// so the only way it exits is a `Kill`. Its exit is what `Wait` waits for.
struct Process {
    exit: Chan<ExitError>,
}

impl Process {
    /// `cmd.Process.Kill()`: SIGKILL; the process dies and can be reaped.
    fn kill(&self) {
        self.exit.send(ExitError::Killed);
    }
}

/// `exec.Cmd`, after `Start`.
struct Cmd {
    process: Process,
}

impl Cmd {
    fn start() -> Cmd {
        Cmd {
            process: Process {
                exit: Chan::new(1).named("process exit"),
            },
        }
    }

    /// `cmd.Wait()`: blocks until the process has exited.
    fn wait(&self) -> Option<ExitError> {
        self.process.exit.recv()
    }
}

/// `ProcessExitCode`: the exit status an error carries (0 for no error).
fn process_exit_code(err: Option<ExitError>) -> i64 {
    match err {
        None => 0,
        Some(ExitError::Killed) => -1,
    }
}

/// What the fix's goroutine sends back instead of writing the results itself.
struct ExitInfo {
    exit_err: Option<ExitError>,
    exit_code: i64,
}

/// `RunCommandWithOutputForDuration`: runs `cmd`, killing it after `duration`. Its named
/// results are variables the goroutine below can see; `exitCode` is the one it writes.
fn run_command_with_output_for_duration(
    variant: Variant,
    duration: Duration,
) -> (i64, bool, Option<ExitError>) {
    let exit_code = Shared::new(0i64).named("exitCode");
    let mut timed_out = false;
    let mut err = None;

    // Start the command in the main thread..
    let cmd = std::sync::Arc::new(Cmd::start());

    if variant.fixed() {
        let done = Chan::new(1).named("done");
        let (cmd2, done2) = (cmd.clone(), done.clone());
        go_named("Wait", move || {
            let exit_err = cmd2.wait();
            let info = ExitInfo {
                exit_err,
                exit_code: process_exit_code(exit_err),
            };
            done2.send(info);
        });
        select! {
            recv(time::after(duration)) -> _ => {
                cmd.process.kill();
                timed_out = true;
            },
            recv(done) -> info => {
                let info = info.expect("done is never closed");
                err = info.exit_err;
                exit_code.set(info.exit_code);
            },
        }
    } else {
        let done = Chan::new(0).named("done");
        let (cmd2, done2, exit_code2) = (cmd.clone(), done.clone(), exit_code.clone());
        go_named("Wait", move || {
            // And wait for it to exit in the goroutine :)
            let exit_err = cmd2.wait();
            exit_code2.set(process_exit_code(exit_err));
            done2.send(exit_err);
        });
        select! {
            recv(time::after(duration)) -> _ => {
                cmd.process.kill();
                timed_out = true;
            },
            recv(done) -> exit_err => err = exit_err.expect("done is never closed"),
        }
    }
    // output = outputBuffer.String(), then the named results are returned.
    (exit_code.get(), timed_out, err)
}

/// `TestRunCommandWithOutputForDurationKilled` (pkg/integration).
fn test_run_command_with_output_for_duration_killed(variant: Variant) {
    let (exit_code, timed_out, err) =
        run_command_with_output_for_duration(variant, Duration::from_millis(500));
    assert!(
        exit_code == 0 && timed_out && err.is_none(),
        "assertion failed: expected the command to time out with exit code 0, got \
         exitCode:{exit_code}, timedOut:{timed_out}, err:{err:?}"
    );
}
