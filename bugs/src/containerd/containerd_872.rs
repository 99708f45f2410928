#![doc = include_str!("containerd_872.md")]

use std::sync::Arc;

use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, select, Chan, GoMap};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "containerd_872",
        project: "containerd",
        upstream: "https://github.com/containerd/containerd/pull/872",
        category: "Order violation (channel looked up after its entry was deleted)",
        expected: primitives::Verdict::Panic,
        kernel: test_containerd872,
        walkthrough: include_str!("containerd_872.md"),
        loom: Loom::DoesNotApply(
            "six goroutines besides main: more than loom's five threads",
        ),
        source: Source::Diff("containerd/containerd de0e943d"),
        fix: Fix::Upstream("containerd/containerd de0e943d"),
        review: "faithful after mends: Checked against containerd de0e943d (PR #872, merged as dbe1bddb on v0.2.x) and its parent 9d06c06c: right bug, shape, fix and panic verdict, honest failure; mend the unsourced docker-ce#14 sentence, a Deviations line for the invented exec_sync_map_or_nil, and minor citations.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `runtime.InitProcessID`: the container's first process.
const INIT_PROCESS_ID: &str = "init";

/// `StateExit`: the event type of a process's (or the container's) exit.
const STATE_EXIT: &str = "exit";

/// `defaultBufferSize`: the capacity of the task queue and of a subscriber's channel.
const DEFAULT_BUFFER_SIZE: usize = 2048;

/// `Event`, without its timestamp.
#[derive(Clone)]
struct Event {
    id: &'static str,
    type_: &'static str,
    pid: &'static str,
    #[allow(dead_code)] // carried to the subscriber, as upstream; the kernel reads no status
    status: u32,
}

/// `runtime.container`: its id and the ids of its live processes.
struct Container {
    id: &'static str,
    processes: GoMap<&'static str, ()>,
}

impl Container {
    /// `RemoveProcess`: forgets the process (its state directory is left out).
    fn remove_process(&self, pid: &'static str) {
        self.processes.remove(&pid);
    }
}

/// `runtime.process`: one process of the container, run by its own shim.
struct Process {
    id: &'static str,
    container: Arc<Container>,
    /// Closed once `cmd.Wait()` returns for the shim (`createCmd`'s goroutine).
    cmd_done_ch: Chan<()>,
}

impl Process {
    /// `Wait`: until the shim has been reaped.
    fn wait(&self) {
        self.cmd_done_ch.recv();
    }
}

/// `ExitTask`: a process has exited; its `baseTask`'s error channel.
struct ExitTask {
    process: Arc<Process>,
    err_ch: Chan<Option<&'static str>>,
}

/// `Monitor`: reports, through `exits`, each shim whose exit FIFO hung up.
struct Monitor {
    m: Mutex,
    receivers: GoMap<i32, Arc<Process>>,
    exits: Chan<Arc<Process>>,
}

impl Monitor {
    /// `Monitor`: the process's exit FIFO joins the epoll set.
    fn monitor(&self, fd: i32, p: Arc<Process>) {
        self.m.lock();
        let _unlock = defer(|| self.m.unlock());
        self.receivers.insert(fd, p);
    }

    /// `processEvent` for an `EPOLLHUP` on a process's exit FIFO.
    fn process_event(&self, fd: i32) {
        self.m.lock();
        let t = self.receivers.get(&fd);
        self.receivers.remove(&fd);
        // The epoll removal and closing the process's IO are left out.
        self.m.unlock();
        // Deferred upstream until after the unlock.
        if let Some(t) = t {
            self.exits.send(t);
        }
    }
}

/// `Supervisor`, with the fields the exit path uses.
struct Supervisor {
    containers: GoMap<&'static str, Arc<Container>>,
    subscriber_lock: RwMutex,
    /// Keyed by subscription order (upstream: by the channel itself).
    subscribers: GoMap<usize, Chan<Event>>,
    tasks: Chan<ExitTask>,
    monitor: Monitor,
    // This is used to ensure that exec process death events are sent
    // before the init process death
    container_exec_sync_lock: Mutex,
    container_exec_sync: GoMap<&'static str, GoMap<&'static str, Chan<()>>>,
    variant: Variant,
}

impl Supervisor {
    /// `Events`: a new subscriber (no replay of past events).
    fn events(&self) -> Chan<Event> {
        let c = Chan::new(DEFAULT_BUFFER_SIZE).named("c");
        self.subscriber_lock.lock();
        let _unlock = defer(|| self.subscriber_lock.unlock());
        self.subscribers.insert(self.subscribers.len(), c.clone());
        c
    }

    /// `notifySubscribers`: a non-blocking send to every subscriber.
    fn notify_subscribers(&self, e: Event) {
        self.subscriber_lock.rlock();
        let _unlock = defer(|| self.subscriber_lock.runlock());
        let subs: Vec<Chan<Event>> = self.subscribers.with(|m| m.values().cloned().collect());
        for sub in subs {
            // do a non-blocking send for the channel
            select! {
                send(sub, e.clone()) => {},
                default => {}, // "containerd: event not sent to subscriber"
            }
        }
    }

    /// `Start`: the event loop, the only goroutine that changes containers and processes.
    fn start(self: &Arc<Self>) {
        let s = self.clone();
        go_named("Start.func1", move || {
            while let Some(i) = s.tasks.recv() {
                s.handle_task(i);
            }
        });
    }

    /// `SendTask`.
    fn send_task(&self, evt: ExitTask) {
        self.tasks.send(evt);
    }

    /// `exitHandler`: turns each exit the monitor reports into a task for the event loop.
    fn exit_handler(&self) {
        while let Some(p) = self.monitor.exits.recv() {
            let e = ExitTask {
                process: p,
                err_ch: Chan::new(1).named("errCh"),
            };
            self.send_task(e);
        }
    }

    /// `monitorProcess`.
    fn monitor_process(&self, fd: i32, p: Arc<Process>) {
        self.monitor.monitor(fd, p);
    }

    /// `handleTask`, for the one kind of task the kernel sends.
    fn handle_task(self: &Arc<Self>, i: ExitTask) {
        let err = self.exit(&i);
        i.err_ch.send(err);
        i.err_ch.close();
    }

    /// `exit`: an exec process's exit, or the container's (its init process).
    fn exit(self: &Arc<Self>, t: &ExitTask) -> Option<&'static str> {
        let proc = t.process.clone();
        let status = 128 + 9; // ExitStatus: the shim was SIGKILLed

        // if the process is the the init process of the container then
        // fire a separate event for this process
        if proc.id != INIT_PROCESS_ID {
            self.exec_exit(proc.container.id, proc.id, status, proc.clone());
            return None;
        }
        let container = proc.container.clone();
        self.delete(container.id, status, proc.id, proc);
        None
    }

    /// `execExit`.
    fn exec_exit(
        self: &Arc<Self>,
        id: &'static str,
        pid: &'static str,
        status: u32,
        process: Arc<Process>,
    ) {
        let container = process.container.clone();
        // exec process: we remove this process without notifying the main event loop
        container.remove_process(pid);
        let syn_ch = self.get_exec_sync_channel(id, pid);
        // If the exec spawned children which are still using its IO
        // waiting here will block until they die or close their IO
        // descriptors.
        // Hence, we use a go routine to avoid blocking all other operations
        let s = self.clone();
        go_named("execExit.func1", move || {
            process.wait();
            s.notify_subscribers(Event {
                id,
                type_: STATE_EXIT,
                pid,
                status,
            });
            syn_ch.close();
        });
    }

    /// `delete`, with `NoEvent` false.
    fn delete(self: &Arc<Self>, id: &'static str, status: u32, pid: &'static str, p: Arc<Process>) {
        if let Some(i) = self.containers.get(&id) {
            self.delete_container(&i);
            p.wait();
            let exec_map = if self.variant.fixed() {
                self.get_exec_sync_map(id)
            } else {
                self.get_delete_exec_sync_map(id)
            };
            let s = self.clone();
            go_named("delete.func1", move || {
                // Wait for all exec processe events to be sent (we seem
                // to sometimes receive them after the init event)
                let chs: Vec<Chan<()>> = exec_map.with(|m| m.values().cloned().collect());
                for ch in chs {
                    ch.recv();
                }
                if s.variant.fixed() {
                    s.delete_exec_sync_map(id);
                }
                s.notify_subscribers(Event {
                    type_: STATE_EXIT,
                    id,
                    status,
                    pid,
                });
            });
        }
    }

    /// `deleteContainer` (runc's delete is left out).
    fn delete_container(&self, container: &Container) {
        self.containers.remove(&container.id);
    }

    /// `newExecSyncMap`: when the container starts.
    fn new_exec_sync_map(&self, container_id: &'static str) {
        self.container_exec_sync_lock.lock();
        self.container_exec_sync
            .insert(container_id, GoMap::new().named("execSync"));
        self.container_exec_sync_lock.unlock();
    }

    /// `newExecSyncChannel`: when an exec process is added.
    fn new_exec_sync_channel(&self, container_id: &'static str, pid: &'static str) {
        self.container_exec_sync_lock.lock();
        if let Some(m) = self.container_exec_sync.get(&container_id) {
            m.insert(pid, Chan::new(0).named("synCh"));
        }
        self.container_exec_sync_lock.unlock();
    }

    /// `getExecSyncChannel`: nil when the container's map, or the pid's entry, is gone.
    fn get_exec_sync_channel(&self, container_id: &'static str, pid: &'static str) -> Chan<()> {
        self.container_exec_sync_lock.lock();
        let ch = self
            .container_exec_sync
            .get(&container_id)
            .and_then(|m| m.get(&pid))
            .unwrap_or_else(Chan::nil);
        self.container_exec_sync_lock.unlock();
        ch
    }

    /// `getDeleteExecSyncMap` (before the fix): takes the map and deletes it at once.
    fn get_delete_exec_sync_map(
        &self,
        container_id: &'static str,
    ) -> GoMap<&'static str, Chan<()>> {
        self.container_exec_sync_lock.lock();
        let chs = self.exec_sync_map_or_nil(container_id);
        self.container_exec_sync.remove(&container_id);
        self.container_exec_sync_lock.unlock();
        chs
    }

    /// `getExecSyncMap` (the fix).
    fn get_exec_sync_map(&self, container_id: &'static str) -> GoMap<&'static str, Chan<()>> {
        self.container_exec_sync_lock.lock();
        let _unlock = defer(|| self.container_exec_sync_lock.unlock());
        self.exec_sync_map_or_nil(container_id)
    }

    /// `deleteExecSyncMap` (the fix).
    fn delete_exec_sync_map(&self, container_id: &'static str) {
        self.container_exec_sync_lock.lock();
        let _unlock = defer(|| self.container_exec_sync_lock.unlock());
        self.container_exec_sync.remove(&container_id);
    }

    /// `s.containerExecSync[containerID]`: an absent entry reads as an empty (nil) map.
    fn exec_sync_map_or_nil(&self, container_id: &'static str) -> GoMap<&'static str, Chan<()>> {
        self.container_exec_sync
            .get(&container_id)
            .unwrap_or_else(GoMap::new)
    }
}

/// The scenario of PR #872: `docker run`, `docker exec` into the container, then its shims
/// die; main plays the daemon's start and the client waiting for the container's exit.
fn test_containerd872(variant: Variant) {
    // supervisor.New and Start: the monitor, the exit handler and the event loop.
    let s = Arc::new(Supervisor {
        containers: GoMap::new().named("containers"),
        subscriber_lock: RwMutex::new().named("subscriberLock"),
        subscribers: GoMap::new().named("subscribers"),
        tasks: Chan::new(DEFAULT_BUFFER_SIZE).named("tasks"),
        monitor: Monitor {
            m: Mutex::new().named("Monitor.m"),
            receivers: GoMap::new().named("receivers"),
            exits: Chan::new(1024).named("exits"),
        },
        container_exec_sync_lock: Mutex::new().named("containerExecSyncLock"),
        container_exec_sync: GoMap::new().named("containerExecSync"),
        variant,
    });
    let s1 = s.clone();
    go_named("exitHandler", move || s1.exit_handler());
    s.start();

    // `docker run`: the worker starts the container's init process.
    let container = Arc::new(Container {
        id: "d2a397b12d19",
        processes: GoMap::new().named("processes"),
    });
    s.containers.insert(container.id, container.clone());
    let new_process = |id: &'static str| {
        container.processes.insert(id, ());
        Arc::new(Process {
            id,
            container: container.clone(),
            cmd_done_ch: Chan::new(0).named("cmdDoneCh"),
        })
    };
    let init = new_process(INIT_PROCESS_ID);
    s.monitor_process(3, init.clone());
    s.new_exec_sync_map(container.id);

    // `docker exec`: addProcess.
    let exec = new_process("exec1");
    s.new_exec_sync_channel(container.id, exec.id);
    s.monitor_process(4, exec.clone());

    // The client (dockerd's libcontainerd) follows the events.
    let events = s.events();

    // The shims die: each is reaped and its exit FIFO hangs up, in whatever order.
    for (fd, p) in [(3, init), (4, exec)] {
        let s = s.clone();
        go_named("processEvent", move || {
            p.cmd_done_ch.close();
            s.monitor.process_event(fd);
        });
    }

    // Until the container's exit is reported.
    while let Some(e) = events.recv() {
        if e.type_ == STATE_EXIT && e.pid == INIT_PROCESS_ID && e.id == container.id {
            break;
        }
    }

    // The daemon stops: its loops end (upstream, the process exits).
    s.monitor.exits.close();
    s.tasks.close();
}
