#![doc = include_str!("moby_0d9e5436.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_0d9e5436",
        project: "moby",
        upstream: "https://github.com/moby/moby/commit/0d9e54367f7bf7da9670de723d533eaa920868c8",
        category: "Resource deadlock (double locking)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_moby0d9e5436,
        walkthrough: include_str!("moby_0d9e5436.md"),
        asplos: Some("blocking-bugs/docker/0d9e54367f7bf7da9670de723d533eaa920868c8.txt"),
        source: Source::Diff("0d9e5436"),
        fix: Fix::Upstream("0d9e5436"),
        review: "faithful: Checked against moby 0d9e5436 and container.go/state.go/commands.go/container_test.go at its parent plus the ASPLOS diff: the kernel keeps Stop/Kill/kill/WaitTimeout/monitor in upstream order, the fix switch is the single hunk, every reduction is admitted; faithful.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An error (`error`); its text does not matter here.
#[derive(Debug)]
struct Error;

/// A signal `Stop` sends to the container's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    /// SIGTERM (15), sent through `lxc-kill`.
    Term,
    /// SIGKILL (9), sent by `cmd.Process.Kill()`.
    Kill,
}

/// The container's process as `cmd` sees it (`cmd.Process`, `cmd.Wait`). It is an OS process,
/// not a goroutine: here it is the channel `cmd.Wait` waits on, closed when the process dies.
struct Process {
    exited: Chan<()>,
}

impl Process {
    /// Delivers `sig`. The container's init ignores SIGTERM; SIGKILL ends it.
    fn signal(&self, sig: Signal) {
        if sig == Signal::Kill {
            self.exited.close();
        }
    }

    /// `cmd.Process.Kill()`.
    fn kill(&self) -> Result<(), Error> {
        self.signal(Signal::Kill);
        Ok(())
    }

    /// `cmd.Wait()`: returns once the process has exited; its exit status.
    fn wait(&self) -> i32 {
        self.exited.recv();
        137
    }
}

/// `State` (`state.go`): `Running` and `ExitCode`, and the lock `l` that `Start`, `Stop` and
/// `Kill` hold.
struct State {
    running: Shared<bool>,
    exit_code: Shared<i32>,
    l: Mutex,
}

impl State {
    /// `setRunning`.
    fn set_running(&self) {
        self.running.set(true);
        self.exit_code.set(0);
    }

    /// `setStopped`.
    fn set_stopped(&self, exit_code: i32) {
        self.running.set(false);
        self.exit_code.set(exit_code);
    }

    /// `lock`.
    fn lock(&self) {
        self.l.lock();
    }

    /// `unlock`.
    fn unlock(&self) {
        self.l.unlock();
    }
}

/// `Container` (`container.go`).
struct Container {
    state: State,
    /// `cmd`, set by `Start`.
    cmd: Shared<Option<Arc<Process>>>,
    /// `waitLock`: closed by `monitor` once the process has exited.
    wait_lock: Shared<Chan<()>>,
    variant: Variant,
}

impl Container {
    /// `Start`, reduced to what `Stop` relies on: the process, the state, `waitLock` and the
    /// `monitor` goroutine.
    fn start(self: &Arc<Self>) -> Result<(), Error> {
        self.state.lock();
        let _unlock = defer(|| self.state.unlock());
        if self.state.running.get() {
            return Err(Error); // "The container %s is already running."
        }
        self.start_process();
        self.state.set_running();
        // Init the lock
        self.wait_lock.set(Chan::new(0).named("waitLock"));
        let c = self.clone();
        go_named("monitor", move || c.monitor());
        Ok(())
    }

    /// `start`: `cmd.Start()` of `lxc-start`.
    fn start_process(&self) {
        let exited = Chan::new(0).named("process exited");
        self.cmd.set(Some(Arc::new(Process { exited })));
    }

    fn process(&self) -> Arc<Process> {
        self.cmd.get().expect("Start set cmd")
    }

    /// `monitor`: waits for the process to exit, records it and releases `Wait`.
    fn monitor(&self) {
        // Wait for the program to exit
        let exit_code = self.process().wait();
        // Report status back
        self.state.set_stopped(exit_code);
        // Release the lock
        self.wait_lock.get().close();
    }

    /// `kill` (unexported): the caller holds the state lock.
    fn kill_locked(&self) -> Result<(), Error> {
        if !self.state.running.get() || self.cmd.get().is_none() {
            return Ok(());
        }
        self.process().kill()?;
        // Wait for the container to be actually stopped
        self.wait();
        Ok(())
    }

    /// `Kill` (exported): takes the state lock, then `kill`.
    fn kill(&self) -> Result<(), Error> {
        self.state.lock();
        let _unlock = defer(|| self.state.unlock());
        self.kill_locked()
    }

    /// `Stop`: SIGTERM, ten seconds' grace, then the force.
    fn stop(self: &Arc<Self>) -> Result<(), Error> {
        self.state.lock();
        let _unlock = defer(|| self.state.unlock());
        if !self.state.running.get() {
            return Ok(());
        }

        // 1. Send a SIGTERM
        if self.lxc_kill(Signal::Term).is_err() {
            // "Failed to send SIGTERM to the process, force killing"
            self.kill_locked()?;
        }

        // 2. Wait for the process to exit on its own
        if self.wait_timeout(Duration::from_secs(10)).is_err() {
            // "Container %v failed to exit within 10 seconds of SIGTERM - using the force"
            if self.variant.fixed() {
                self.kill_locked()?;
            } else {
                self.kill()?;
            }
        }
        Ok(())
    }

    /// `exec.Command("lxc-kill", "-n", container.Id, "15").CombinedOutput()`.
    fn lxc_kill(&self, sig: Signal) -> Result<(), Error> {
        self.process().signal(sig);
        Ok(())
    }

    /// `Wait`: blocks until the container stops running, then returns its exit code.
    fn wait(&self) -> i32 {
        self.wait_lock.get().recv();
        self.state.exit_code.get()
    }

    /// `WaitTimeout`.
    fn wait_timeout(self: &Arc<Self>, timeout: Duration) -> Result<(), Error> {
        // Unbuffered upstream: see Deviations.
        let done: Chan<bool> = Chan::new(1).named("done");
        let (c, done2) = (self.clone(), done.clone());
        go_named("WaitTimeout.func1", move || {
            c.wait();
            done2.send(true);
        });

        let after = time::after(timeout);
        select! {
            recv(after) => Err(Error), // "Timed Out"
            recv(done) => Ok(()),
        }
    }
}

/// `docker stop` of a running container whose init ignores SIGTERM: `Start`, then `Stop`.
fn test_moby0d9e5436(variant: Variant) {
    let container = Arc::new(Container {
        state: State {
            running: Shared::new(false).named("State.Running"),
            exit_code: Shared::new(0).named("State.ExitCode"),
            l: Mutex::new().named("State.l"),
        },
        cmd: Shared::new(None).named("cmd"),
        wait_lock: Shared::new(Chan::nil()).named("waitLock"),
        variant,
    });
    container.start().expect("start");
    container.stop().expect("stop");
}
