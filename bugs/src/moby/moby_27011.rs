#![doc = include_str!("moby_27011.md")]

use std::sync::Arc;

use primitives::explore::Engine;
use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_27011",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/27467",
        category: "Misuse WaitGroup (Add after Wait released)",
        expected: primitives::Verdict::Panic,
        kernel: test_moby27011,
        walkthrough: include_str!("moby_27011.md"),
        source: Source::Diff("37a3be24"),
        fix: Fix::Upstream("37a3be24"),
        review: "faithful after mends: Checked against Docker v1.11.2 (b9f10c95: client_linux.go AddProcess, container_linux.go handleEvent, queue_linux.go, daemon/monitor.go StateChanged/AttachStreams), the #27011 stack dump and fix 37a3be24 (#27467, merge 8ed31089): same Add-after-released-Wait panic through AddProcess's unlocked attach window, upstream's client_linux.go hunk switched; one loom sentence misattributes the pre-emptions to the waiter.",
        file: file!(),
        // Bound 2 reaches the panic (schedule 13,703) and explores the fixed variant
        // exhaustively; bound 3 does not finish within the budget.
        budget: Budget { preemption_bound: Some(2), race_detector: false, ..Budget::DEFAULT },
        not_found_by: &[(
            Engine::ShuttleUrw,
            "the uniform random walk needs 2,057 schedules at seed 1 (harness run, budget \
             30,000), past the budget of 1,000, and misses it within 1,000 at seeds 1, 6 and 9 \
             of 1-10 (bench); PCT and random need 76 and 36 at seed 1",
        )],
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
    /// to the clients, counted by the exec's `StreamConfig` wait group. (Stdin comes first in
    /// 1.11.2; this exec has none.)
    fn attach_streams(&self, iop: IoPipe) {
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

/// containerd, behind its gRPC API (`clnt.remote.apiClient`): starting an exec makes a
/// process, and this one exits at once (its fifos reach EOF and its exit is queued on the
/// event stream).
struct Remote {
    events: Chan<Event>,
}

impl Remote {
    fn add_process(&self, pid: &'static str) -> IoPipe {
        let iop = IoPipe {
            stdout: Chan::new(0).named("stdout fifo"),
            stderr: Chan::new(0).named("stderr fifo"),
        };
        iop.stdout.close();
        iop.stderr.close();
        self.events.send(Event { pid, status: 0 });
        iop
    }
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
            // 37a3be24: the streams are attached (through a callback) under the lock.
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

/// A `docker exec` whose process exits at once, on a daemon of Docker 1.11.2.
fn test_moby27011(variant: Variant) {
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
            events: Chan::new(1).named("events"),
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
    // main is remote.handleEventStream: the exit event, then container.handleEvent.
    let e = clnt
        .remote
        .events
        .recv()
        .expect("containerd reports the exit");
    clnt.handle_event(e);
}
