#![doc = include_str!("moby_28161.md")]

use std::sync::Arc;

use primitives::explore::Engine;
use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_28161",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/29095",
        category: "Misuse WaitGroup (Add after Wait released)",
        expected: primitives::Verdict::Panic,
        kernel: test_moby28161,
        walkthrough: include_str!("moby_28161.md"),
        source: Source::Diff("e136d3ef"),
        fix: Fix::Upstream("e136d3ef"),
        review: "faithful after mends: Checked against Docker v1.12.3 (6b644ecc), v1.12.4, #28161's report, and fix e136d3ef (cherry-pick of 37a3be24, in #29095, merge 7b9deca3): the same AddProcess unlocked-window WaitGroup reuse as moby_27011, honestly declared as the corpus's attribution, fix switched at the hunk; the shuttle-urw figures are not yet in reports/ and one code comment misattributes the pre-emptions.",
        file: file!(),
        // Bound 2: loom's search reaches the panic there (at execution 52,062, past the
        // budget: see not_found_by); bound 3 does not finish within the budget.
        budget: Budget {
            shuttle: 2_000,
            preemption_bound: Some(2),
            race_detector: false,
            ..Budget::DEFAULT
        },
        not_found_by: &[
            (
                Engine::Loom,
                "loom's search at preemption bound 2 finds the panic only at execution 52,062 \
                 (harness run, budget 150,000), past its budget of 20,000: a woken goroutine's \
                 first steps are loom steps of their own, which multiplies the orders to run",
            ),
            (
                Engine::ShuttleUrw,
                "the uniform random walk needs 2,057 schedules at seed 1 (harness run, budget \
                 30,000), past the budget of 2,000, and misses it at seeds 1 and 8 of 1-10 (bench, \
                 26 to 1,081 at the others); PCT and random need 222 and 36 at seed 1",
            ),
        ],
        ..Bug::DEFAULT
    }
}

/// A stdio fifo of the exec'd process: closed (EOF) once the process has exited.
type Fifo = Chan<&'static [u8]>;

/// `libcontainerd.IOPipe`: the process's stdout and stderr fifos (no stdin here).
struct IoPipe {
    stdout: Fifo,
    stderr: Fifo,
}

/// `runconfig.StreamConfig`, which embeds a `sync.WaitGroup` counting the stream copiers.
struct StreamConfig {
    wait_group: WaitGroup,
}

/// The daemon's `exec.Config` of one `docker exec`.
struct ExecConfig {
    stream_config: StreamConfig,
    exit_code: Shared<Option<i64>>,
    running: Shared<bool>,
}

/// The daemon (`daemon.Daemon`, libcontainerd's `Backend`): the container with its exec.
struct Daemon {
    /// The container's lock (`c.Lock()`).
    container: Mutex,
    exec: Arc<ExecConfig>,
}

impl Daemon {
    /// `AttachStreams`: libcontainerd hands the fifos over; one goroutine copies each stream
    /// to the clients, counted by the exec's `StreamConfig` wait group.
    fn attach_streams(&self, iop: IoPipe) {
        // (1.12.3 attaches stdout and stderr first, then stdin; this exec has no stdin.)
        let s = self.exec.clone();
        let copy = |r: Fifo| {
            s.stream_config.wait_group.add(1);
            let s = s.clone();
            go_named("copy", move || {
                while r.recv().is_some() {} // io.Copy(w, r) until EOF
                s.stream_config.wait_group.done();
            });
        };
        copy(iop.stdout);
        copy(iop.stderr);
    }

    /// `StateChanged`, case `StateExitProcess`: the exec's process has exited.
    fn state_changed_exit_process(&self, exit_code: i64) {
        self.container.lock();
        let _unlock = defer(|| self.container.unlock());
        let exec = &self.exec;
        exec.exit_code.set(Some(exit_code));
        exec.running.set(false);
        // Wait for the copiers, then execConfig.CloseStreams() and remove the exec.
        exec.stream_config.wait_group.wait();
    }
}

/// An event of containerd's event stream.
struct Event {
    pid: &'static str,
    status: i64,
}

/// containerd, behind its gRPC API (`clnt.remote.apiClient`). `AddProcess` starts the exec's
/// process and answers; the process ends later, on containerd's side (here: `main`).
struct Remote {
    /// The started process's fifos, as containerd sees them.
    started: Chan<(&'static str, Fifo, Fifo)>,
}

impl Remote {
    fn add_process(&self, pid: &'static str) -> IoPipe {
        let iop = IoPipe {
            stdout: Chan::new(0).named("stdout fifo"),
            stderr: Chan::new(0).named("stderr fifo"),
        };
        self.started
            .send((pid, iop.stdout.clone(), iop.stderr.clone()));
        iop
    }
}

/// containerd ends the process (the report's log shows it killing exec processes as orphans):
/// its fifos reach EOF and its exit (137: SIGKILL) goes out on the event stream.
fn kill_process(remote: &Remote) -> Event {
    let (pid, stdout, stderr) = remote.started.recv().expect("a process was started");
    stdout.close();
    stderr.close();
    Event { pid, status: 137 }
}

/// libcontainerd's `client` for the one container.
struct Client {
    /// `clnt.locker`, the per-container lock (`clnt.lock(containerID)`).
    locker: Mutex,
    /// The container's processes.
    processes: GoMap<&'static str, ()>,
    remote: Remote,
    backend: Arc<Daemon>,
    variant: Variant,
}

impl Client {
    fn lock(&self) {
        self.locker.lock();
    }

    fn unlock(&self) {
        self.locker.unlock();
    }

    /// `AddProcess`: `docker exec` reaches containerd.
    fn add_process(&self, process_friendly_name: &'static str) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        let iopipe = self.remote.add_process(process_friendly_name);
        self.processes.insert(process_friendly_name, ());

        if self.variant.fixed() {
            // e136d3ef (#29095): the streams are attached (through a callback) under the lock.
            self.backend.attach_streams(iopipe);
        } else {
            self.unlock();
            self.backend.attach_streams(iopipe);
            self.lock();
        }
    }

    /// `container.handleEvent`, run by the goroutine that reads containerd's event stream.
    fn handle_event(self: &Arc<Self>, e: Event) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        // An exit of a process other than init: StateExitProcess, and ctr.cleanProcess.
        self.processes.remove(&e.pid);
        // ctr.client.q.append: StateChanged runs in a goroutine of its own.
        let backend = self.backend.clone();
        go_named("StateChanged", move || {
            backend.state_changed_exit_process(e.status)
        });
    }
}

/// A `docker exec` on Docker 1.12.3 whose process is killed soon after it started.
fn test_moby28161(variant: Variant) {
    let exec = Arc::new(ExecConfig {
        stream_config: StreamConfig {
            wait_group: WaitGroup::new().named("StreamConfig"),
        },
        exit_code: Shared::new(None).named("execConfig.ExitCode"),
        running: Shared::new(true).named("execConfig.Running"),
    });
    let clnt = Arc::new(Client {
        locker: Mutex::new().named("locker[container]"),
        processes: GoMap::new().named("processes"),
        remote: Remote {
            started: Chan::new(1).named("containerd"),
        },
        backend: Arc::new(Daemon {
            container: Mutex::new().named("container"),
            exec,
        }),
        variant,
    });
    let c = clnt.clone();
    // The API server's goroutine: postContainerExecStart -> ContainerExecStart -> AddProcess.
    go_named("ContainerExecStart", move || c.add_process("exec-1"));
    // main is containerd, then remote.handleEventStream: the exit event, container.handleEvent.
    let e = kill_process(&clnt.remote);
    clnt.handle_event(e);
}
