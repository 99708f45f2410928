#![doc = include_str!("moby_8909.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_8909",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/8929",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_ps_list_containers_filter_exited,
        walkthrough: include_str!("moby_8909.md"),
        asplos: Some("blocking-bugs/docker/03ea2166b66632ee7cdd824d7acd87b15c9bccb2.txt"),
        source: Source::Diff("03ea2166"),
        fix: Fix::Upstream("03ea2166"),
        review: "faithful after mends: Checked against 03ea2166 (PR #8929, issue #8909), daemon/list.go, state.go, container.go at 03ea2166^, the ASPLOS diff and the history of the filter (84146719/#6162) and of the lock merge (517ba44e/#7775): the self-deadlock of writeCont and GetExitCode and the one-line fix are exact; the deadlock verdict is honest and the daemon-level hang is explained; the filter's history, the \"ps -a\" condition and the dropped early return are now in the walkthrough. Mends made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `daemon.State`, which embeds a `sync.Mutex`.
struct State {
    mutex: Mutex,
    running: Shared<bool>,
    exit_code: Shared<i32>,
}

impl Deref for State {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

impl State {
    /// `NewState`.
    fn new() -> State {
        State {
            mutex: Mutex::new().named("State"),
            running: Shared::new(false).named("Running"),
            exit_code: Shared::new(0).named("ExitCode"),
        }
    }

    /// `GetExitCode`: reads the exit code under the state's lock.
    fn get_exit_code(&self) -> i32 {
        self.lock();
        let res = self.exit_code.get();
        self.unlock();
        res
    }

    /// `SetRunning`.
    fn set_running(&self) {
        self.lock();
        self.running.set(true);
        self.unlock();
    }

    /// `SetStopped`.
    fn set_stopped(&self, exit_code: i32) {
        self.lock();
        self.running.set(false);
        self.exit_code.set(exit_code);
        self.unlock();
    }

    /// `StateString`.
    fn state_string(&self) -> &'static str {
        if self.running.get() {
            "running"
        } else {
            "exited"
        }
    }
}

/// `daemon.Container`, which embeds a `*State` (so `container.Lock()` is the state's lock).
struct Container {
    state: State,
    id: &'static str,
}

impl Deref for Container {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

/// `daemon.Daemon`: its containers.
struct Daemon {
    containers: Vec<Arc<Container>>,
    variant: Variant,
}

impl Daemon {
    /// `List`: every container of the daemon.
    fn list(&self) -> Vec<Arc<Container>> {
        self.containers.clone()
    }

    /// `Containers`, the `ps` job, with its `--filter=exited=...` codes: the ids it lists.
    fn containers(&self, filt_exited: &[i32]) -> Vec<&'static str> {
        let mut outs = Vec::new();
        let mut write_cont = |container: &Container| {
            container.lock();
            let _unlock = defer(|| container.unlock());
            if !filt_exited.is_empty() && !container.running.get() {
                let mut should_skip = true;
                for &code in filt_exited {
                    // The fix reads the field: the caller already holds the state's lock.
                    let exit_code = if self.variant.fixed() {
                        container.exit_code.get()
                    } else {
                        container.get_exit_code()
                    };
                    if code == exit_code {
                        should_skip = false;
                        break;
                    }
                }
                if should_skip {
                    return;
                }
            }
            let _status = container.state_string();
            outs.push(container.id);
        };
        for container in self.list() {
            write_cont(&container);
        }
        outs
    }
}

/// `TestPsListContainersFilterExited`: two containers have run and exited (`true` exits 0,
/// `false` exits 1), then `docker ps -a --filter=exited=0` lists the first.
fn test_ps_list_containers_filter_exited(variant: Variant) {
    let mut containers = Vec::new();
    for (id, code) in [("zero1", 0), ("nonzero1", 1)] {
        let container = Arc::new(Container {
            state: State::new(),
            id,
        });
        container.set_running();
        container.set_stopped(code);
        containers.push(container);
    }
    let daemon = Daemon {
        containers,
        variant,
    };
    let ids = daemon.containers(&[0]);
    assert_eq!(ids, ["zero1"], "Should be 1 zero exited container");
}
