#![doc = include_str!("moby_25111.md")]

use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::time::Duration;

use primitives::sync::{Mutex, Once, RwMutex, WaitGroup};
use primitives::{defer, go_named, select, time, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_25111",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/25111",
        category: "Misuse of lock (deferred Unlock of an RWMutex released early)",
        expected: primitives::Verdict::Panic,
        kernel: test_moby25111,
        walkthrough: include_str!("moby_25111.md"),
        source: Source::Diff(
            "c75de8e3^ libcontainerd/client_linux.go, client.go, container_linux.go, \
             queue_linux.go, remote_linux.go",
        ),
        fix: Fix::Upstream("c75de8e3"),
        review: "faithful after mends: Checked against c75de8e33c and the five libcontainerd files plus daemon/daemon.go and cmd/dockerd/daemon.go at c75de8e33c^, ac068a1f, the threads of #25110 and #25111, and golang/go#23039: same bug, same shape and the upstream fix; mend two citations.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `syscall.SIGKILL` and `syscall.SIGTERM`.
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// `StateExit`: the event type containerd sends when a container's process exits.
const STATE_EXIT: &str = "exit";

/// A `containerd.Event` from containerd's event stream.
#[derive(Clone, Copy)]
struct Event {
    type_: &'static str,
    id: &'static str,
    status: u32,
}

/// A `containerd.Container`, as containerd's `State` call describes it.
struct ContainerdContainer {
    id: &'static str,
    status: &'static str,
    bundle_path: &'static str,
}

/// `containerd.APIClient`: containerd is a process of its own, so its calls are gRPC, not Go
/// memory; its event stream (`events`) stands for the connection. Its one container ignores
/// SIGTERM and dies of SIGKILL, and containerd then reports the exit on the stream.
struct ApiClient {
    events: Chan<Event>,
}

impl ApiClient {
    /// `apiClient.State`: the container is still running.
    fn state(&self, id: &'static str) -> Result<ContainerdContainer, String> {
        Ok(ContainerdContainer {
            id,
            status: "Running",
            bundle_path: "/var/run/docker/libcontainerd/c1",
        })
    }

    /// `apiClient.Signal`: containerd signals the container's init process. SIGTERM changes
    /// nothing; SIGKILL ends it, and containerd puts the exit event on the stream.
    fn signal(&self, id: &'static str, signal: i32) -> Result<(), String> {
        if signal == SIGKILL {
            self.events.send(Event {
                type_: STATE_EXIT,
                id,
                status: 137,
            });
        }
        Ok(())
    }
}

/// libcontainerd's `remote`: the connection to containerd. The embedded `sync.RWMutex`
/// synchronises `Restore` with the live events.
struct Remote {
    rw_mutex: RwMutex,
    api_client: ApiClient,
    clients: Shared<Vec<Arc<Client>>>,
}

impl Deref for Remote {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

/// `libcontainerd.New`: connects to containerd and starts watching its events.
fn new_remote() -> Arc<Remote> {
    let r = Arc::new(Remote {
        rw_mutex: RwMutex::new().named("remote"),
        api_client: ApiClient {
            events: Chan::new(1).named("events"),
        },
        clients: Shared::new(Vec::new()).named("remote.clients"),
    });
    r.start_events_monitor();
    r
}

impl Remote {
    /// `startEventsMonitor`: subscribes to the event stream and handles it in a goroutine.
    fn start_events_monitor(self: &Arc<Self>) {
        let r = self.clone();
        let events = self.api_client.events.clone();
        go_named("handleEventStream", move || r.handle_event_stream(events));
    }

    /// `handleEventStream`: hands each event to the container it is about.
    fn handle_event_stream(&self, events: Chan<Event>) {
        loop {
            // The connection was closed by `Cleanup`.
            let Some(e) = events.recv() else { return };

            let mut container = None;
            self.rlock();
            for c in self.clients.get() {
                if let Ok(ct) = c.get_container(e.id) {
                    container = Some(ct);
                    break;
                }
            }
            self.runlock();
            let Some(container) = container else {
                continue; // unknown container
            };

            let _ = container.handle_event(e);
        }
    }

    /// `remote.Client`: a client of containerd for the daemon.
    fn client(self: &Arc<Self>, backend: Backend, variant: Variant) -> Arc<Client> {
        let c = Arc::new(Client {
            backend,
            containers: GoMap::new().named("containers"),
            locker: Mutex::new().named("locker"),
            map_mutex: RwMutex::new().named("mapMutex"),
            remote: Arc::downgrade(self),
            q: Queue {
                mutex: Mutex::new().named("queue"),
                fns: GoMap::new().named("queue.fns"),
            },
            exit_notifiers: GoMap::new().named("exitNotifiers"),
            live_restore: false,
            variant,
        });
        self.lock();
        self.clients.write(|clients| clients.push(c.clone()));
        self.unlock();
        c
    }

    /// `Cleanup`: closes the connection to containerd.
    fn cleanup(&self) {
        self.api_client.events.close();
    }
}

/// The daemon, as libcontainerd's `Backend`.
struct Backend;

impl Backend {
    /// `StateChanged`: the daemon's side of a state change (for an exit, its cleanup of the
    /// container).
    fn state_changed(&self, _id: &'static str, _exit_code: u32) -> Result<(), String> {
        Ok(())
    }
}

/// libcontainerd's `queue`: runs the functions of one container in order, each in a goroutine.
struct Queue {
    mutex: Mutex,
    fns: GoMap<&'static str, Chan<()>>,
}

impl Queue {
    /// `append`: runs `f` once the container's previous function has finished.
    fn append(&self, id: &'static str, f: impl FnOnce() + Send + 'static) {
        self.mutex.lock();
        let _unlock = defer(|| self.mutex.unlock());

        let done: Chan<()> = Chan::new(0).named("done");

        let prev = self.fns.get(&id);
        self.fns.insert(id, done.clone());
        go_named("queue.append", move || {
            if let Some(prev) = prev {
                prev.recv();
            }
            f();
            done.close();
        });
    }
}

/// libcontainerd's `container`, the daemon's view of one containerd container.
struct Container {
    container_id: &'static str,
    client: Weak<Client>,
}

impl Container {
    /// `handleEvent`: updates the daemon for a state change of the container.
    fn handle_event(&self, e: Event) -> Result<(), String> {
        let client = self.client.upgrade().expect("the daemon holds its client");
        client.lock(self.container_id);
        let _unlock = defer(|| client.unlock(self.container_id));
        if e.type_ == STATE_EXIT {
            // Remove process from list if we have exited
            client.delete_container(e.id);
            let c = client.clone();
            client.q.append(e.id, move || {
                let _ = c.backend.state_changed(e.id, e.status);
                if let Some(en) = c.get_exit_notifier(e.id) {
                    en.close();
                }
            });
        }
        Ok(())
    }
}

/// `exitNotifier`: closed when the container's exit has been handled.
struct ExitNotifier {
    id: &'static str,
    client: Weak<Client>,
    c: Chan<()>,
    once: Once,
}

impl ExitNotifier {
    fn close(self: &Arc<Self>) {
        self.once.do_(|| {
            self.c.close();
            let client = self.client.upgrade().expect("the daemon holds its client");
            client.map_mutex.lock();
            if client
                .exit_notifiers
                .get(&self.id)
                .is_some_and(|en| Arc::ptr_eq(&en, self))
            {
                client.exit_notifiers.remove(&self.id);
            }
            client.map_mutex.unlock();
        });
    }

    fn wait(&self) -> &Chan<()> {
        &self.c
    }
}

/// libcontainerd's `client` (with its `clientCommon`).
struct Client {
    backend: Backend,
    containers: GoMap<&'static str, Arc<Container>>,
    /// `locker`: the per-container locks; the kernel has one container.
    locker: Mutex,
    /// Protects `containers` and `exitNotifiers`.
    map_mutex: RwMutex,
    /// Go's collector frees the cycle remote ↔ client; Rust's `Arc` would not, so the client
    /// holds its remote weakly.
    remote: Weak<Remote>,
    q: Queue,
    exit_notifiers: GoMap<&'static str, Arc<ExitNotifier>>,
    live_restore: bool,
    variant: Variant,
}

impl Client {
    fn remote(&self) -> Arc<Remote> {
        self.remote.upgrade().expect("the daemon holds the remote")
    }

    fn lock(&self, _container_id: &'static str) {
        self.locker.lock();
    }

    fn unlock(&self, _container_id: &'static str) {
        self.locker.unlock();
    }

    fn append_container(&self, cont: Arc<Container>) {
        self.map_mutex.lock();
        self.containers.insert(cont.container_id, cont);
        self.map_mutex.unlock();
    }

    fn delete_container(&self, friendly_name: &'static str) {
        self.map_mutex.lock();
        self.containers.remove(&friendly_name);
        self.map_mutex.unlock();
    }

    fn get_container(&self, container_id: &'static str) -> Result<Arc<Container>, String> {
        self.map_mutex.rlock();
        let container = self.containers.get(&container_id);
        let _runlock = defer(|| self.map_mutex.runlock());
        container.ok_or_else(|| format!("invalid container: {container_id}"))
    }

    fn signal(&self, container_id: &'static str, sig: i32) -> Result<(), String> {
        self.lock(container_id);
        let _unlock = defer(|| self.unlock(container_id));
        self.remote().api_client.signal(container_id, sig)
    }

    fn set_exited(&self, container_id: &'static str, exit_code: u32) -> Result<(), String> {
        self.lock(container_id);
        let _unlock = defer(|| self.unlock(container_id));

        self.backend.state_changed(container_id, exit_code)
    }

    fn get_containerd_container(
        &self,
        container_id: &'static str,
    ) -> Result<ContainerdContainer, String> {
        self.remote().api_client.state(container_id)
    }

    fn new_container(self: &Arc<Self>, dir: &'static str) -> Arc<Container> {
        Arc::new(Container {
            container_id: dir.rsplit('/').next().expect("a path has a base"),
            client: Arc::downgrade(self),
        })
    }

    fn get_exit_notifier(&self, container_id: &'static str) -> Option<Arc<ExitNotifier>> {
        self.map_mutex.rlock();
        let _runlock = defer(|| self.map_mutex.runlock());
        self.exit_notifiers.get(&container_id)
    }

    fn get_or_create_exit_notifier(
        self: &Arc<Self>,
        container_id: &'static str,
    ) -> Arc<ExitNotifier> {
        self.map_mutex.lock();
        let w = self.exit_notifiers.get(&container_id);
        let _unlock = defer(|| self.map_mutex.unlock());
        w.unwrap_or_else(|| {
            // Upstream leaves the notifier's `id` empty here.
            let w = Arc::new(ExitNotifier {
                id: "",
                client: Arc::downgrade(self),
                c: Chan::new(0).named("exitNotifier.c"),
                once: Once::new(),
            });
            self.exit_notifiers.insert(container_id, w.clone());
            w
        })
    }

    /// `Restore`: takes back a container that was running when the daemon stopped; without
    /// live restore, that means stopping it. The remote's lock is released while the exit is
    /// awaited and taken again on the two ways out that see it, so that the deferred `Unlock`
    /// finds it held; the third way out, when both timers fire first, does not take it again.
    fn restore(self: &Arc<Self>, container_id: &'static str) -> Result<(), String> {
        let remote = self.remote();
        // Synchronize with live events
        remote.lock();
        let _unlock = defer(|| remote.unlock());
        // Check that containerd still knows this container.
        let cont = self.get_containerd_container(container_id)?;
        if cont.status == "Stopped" {
            // containerd has reaped it already: upstream reports the exit it missed
            // (`setExited`) and returns. The kernel's container is running.
            return Ok(());
        }

        // container is still alive
        if self.live_restore {
            // `clnt.restore(cont, ev, options...)`: not this daemon, which has no live restore.
            return Ok(());
        }

        // Kill the container if liveRestore == false
        let w = self.get_or_create_exit_notifier(container_id);
        self.lock(cont.id);
        let container = self.new_container(cont.bundle_path);
        self.append_container(container);
        self.unlock(cont.id);

        let _ = self.signal(container_id, SIGTERM);
        // Let the main loop handle the exit event
        remote.unlock();
        select! {
            recv(time::after(Duration::from_secs(10))) => {
                let _ = self.signal(container_id, SIGKILL);
                select! {
                    recv(time::after(Duration::from_secs(2))) => {},
                    recv(w.wait()) => {
                        // relock because of the defer
                        remote.lock();
                        return Ok(());
                    },
                }
            },
            recv(w.wait()) => {
                // relock because of the defer
                remote.lock();
                return Ok(());
            },
        }
        if self.variant.fixed() {
            // relock because of the defer
            remote.lock();
        }

        self.delete_container(container_id);

        self.set_exited(container_id, 255)
    }
}

/// No upstream test: the daemon restarts and finds one container that was running. `dockerd`
/// connects to containerd, `NewDaemon` registers its client, and `restore` restores the
/// container in a goroutine of its own and waits; the daemon's shutdown closes the connection.
fn test_moby25111(variant: Variant) {
    let remote = new_remote();
    let containerd = remote.client(Backend, variant);

    let wg = WaitGroup::new().named("wg");
    wg.add(1);
    let c = containerd.clone();
    let done = wg.clone();
    go_named("restore.func1", move || {
        let _done = defer(|| done.done());
        let _ = c.restore("c1");
    });
    wg.wait();

    remote.cleanup();
}
