#![doc = include_str!("moby_21022.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::{defer, go_named, select, time, Chan, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_21022",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/21022",
        category: "Order violation (terminal closed before resize)",
        expected: primitives::Verdict::Race,
        kernel: test_exec_start_and_resize,
        walkthrough: include_str!("moby_21022.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/docker/dc56a76bc9f16b2d57b9d64822e305c1e787fcf0.txt"),
        source: Source::Diff("dc56a76b"),
        fix: Fix::Upstream("dc56a76b"),
        loom: Loom::Applies,
        review: "faithful: Checked against moby dc56a76b (#21022, merge cc12d2bf) and exec.go/exec/exec.go/driver.go/runc console at dc56a76b^: same close-before-resize order violation, a true Go data race on os.File.fd, fix is upstream's waitResize; only a missing source for the os.File detail.",
        file: file!(),
        // Upstream's one-second timeouts stand for "the other request is late": they fire
        // only once every goroutine is blocked.
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// What `Fd()` returns once the console's file is closed: `^uintptr(0)`, "a large invalid
/// number" (os.File sets its fd to -1 on Close).
const CLOSED_FD: i64 = -1;

/// execdriver's `TtyConsole`: the exec's pseudo-terminal (its master `*os.File`).
struct Terminal {
    /// The master file's descriptor, `os.File.fd`.
    fd: Shared<i64>,
}

impl Terminal {
    /// `Resize`: `term.SetWinsize(t.console.Fd(), ...)`.
    fn resize(&self, _h: u32, _w: u32) -> Result<(), &'static str> {
        if self.fd.get() == CLOSED_FD {
            return Err("bad file descriptor");
        }
        Ok(())
    }

    /// `Close`: closes the console's file.
    fn close(&self) -> Result<(), &'static str> {
        self.fd.set(CLOSED_FD);
        Ok(())
    }
}

/// daemon/exec's `Config`: one exec instance.
struct Config {
    id: &'static str,
    /// `ProcessConfig.Terminal`.
    terminal: Terminal,
    /// Closed as soon as the exec's process has started.
    wait_start: Chan<()>,
    /// The fix: closed when `Resize` has finished.
    wait_resize: Chan<()>,
}

impl Config {
    /// `Wait`: returns once the process is running, or with the error of its start.
    fn wait(&self, c_err: &Chan<Result<(), &'static str>>) -> Result<(), &'static str> {
        select! {
            recv(self.wait_start) => {},
            recv(c_err) -> err => return err.unwrap_or(Ok(())),
        }
        Ok(())
    }

    /// The fix's `WaitResize`: waits until resizing the terminal is done, or a second.
    fn wait_resize(&self) -> Result<(), String> {
        select! {
            recv(self.wait_resize) => {},
            recv(time::after(Duration::from_secs(1))) => {
                return Err(format!("Terminal resize for exec {} time out.", self.id));
            },
        }
        Ok(())
    }

    /// `Close`: the process has started.
    fn close(&self) {
        self.wait_start.close();
    }

    /// The fix's `CloseResize`.
    fn close_resize(&self) {
        self.wait_resize.close();
    }

    /// `Resize`: resizes the exec's terminal once its process has started.
    fn resize(&self, h: u32, w: u32, variant: Variant) -> Result<(), String> {
        let _close_resize = variant.fixed().then(|| defer(|| self.close_resize()));
        select! {
            recv(self.wait_start) => {},
            recv(time::after(Duration::from_secs(1))) => {
                return Err(format!(
                    "Exec {} is not running, so it can not be resized.",
                    self.id
                ));
            },
        }
        self.terminal.resize(h, w).map_err(String::from)
    }
}

struct Daemon {
    variant: Variant,
}

impl Daemon {
    /// `containerExec`: runs the exec's process on its own goroutine, waits until it started.
    fn container_exec(&self, ec: &Arc<Config>) -> Result<(), &'static str> {
        // The driver's start callback: the process is running.
        let callback = {
            let ec = ec.clone();
            move || ec.close()
        };
        // promise.Go(func() error { return d.monitorExec(container, ec, callback) })
        let c_err = Chan::new(1).named("cErr");
        {
            let (ec, c_err) = (ec.clone(), c_err.clone());
            let variant = self.variant;
            go_named("monitorExec", move || {
                let d = Daemon { variant };
                c_err.send(d.monitor_exec(&ec, callback));
            });
        }
        ec.wait(&c_err)
    }

    /// `monitorExec`: runs the process to its end, then closes its streams and terminal.
    fn monitor_exec(
        &self,
        exec_config: &Config,
        callback: impl FnOnce(),
    ) -> Result<(), &'static str> {
        // d.Exec: the driver starts the process, calls back, and the process (`ls`) exits.
        callback();
        if self.variant.fixed() {
            if let Err(_err) = exec_config.wait_resize() {
                // logrus.Errorf("Error waiting for resize: %v", err)
            }
        }
        if let Err(_err) = exec_config.terminal.close() {
            // logrus.Errorf("Error closing terminal while running in container ...")
        }
        Ok(())
    }

    /// `ContainerExecResize`.
    fn container_exec_resize(
        &self,
        exec_config: &Config,
        height: u32,
        width: u32,
    ) -> Result<(), String> {
        exec_config.resize(height, width, self.variant)
    }
}

/// `docker exec -ti test ls`: the client posts `/exec/<id>/start` and `/exec/<id>/resize`,
/// which the daemon serves on two goroutines.
fn test_exec_start_and_resize(variant: Variant) {
    let ec = Arc::new(Config {
        id: "9677ecd7aa9d",
        terminal: Terminal {
            fd: Shared::new(3).named("console.fd"),
        },
        wait_start: Chan::new(0).named("waitStart"),
        wait_resize: Chan::new(0).named("waitResize"),
    });
    {
        let ec = ec.clone();
        go_named("POST /exec/resize", move || {
            let d = Daemon { variant };
            if let Err(_err) = d.container_exec_resize(&ec, 24, 80) {
                // The router logs "Handler for POST /exec/<id>/resize returned error: ..."
            }
        });
    }
    // POST /exec/<id>/start, served here.
    let d = Daemon { variant };
    let _ = d.container_exec(&ec);
}
