#![doc = include_str!("kubernetes_62464.md")]

use std::ops::Deref;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, rand};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_62464",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/62464",
        category: "RWR deadlock",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes62464,
        walkthrough: include_str!("kubernetes_62464.md"),
        goker: Some("gobench/goker/blocking/kubernetes/62464"),
        asplos: Some("blocking-bugs/kubernetes/c1b19fce903675b82e9fdd1befcc5f5d658bfe78.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("c1b19fce"),
        review: "faithful: Checked against GoKer blocking/kubernetes/62464 and the c1b19fce diff (ASPLOS): GoKer's kernel exactly, upstream's one-hunk fix as a variant switch, leak verdict right; only a cosmetic prose/trace mismatch on which nested RLock blocks.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The CPU manager's in-memory state: Go's `stateMemory`, which embeds a `sync.RWMutex`.
struct StateMemory {
    rw_mutex: RwMutex,
    variant: Variant,
}

impl Deref for StateMemory {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

impl StateMemory {
    fn get_cpu_set_or_default(&self) {
        // The fix removes this read lock: the two getters below take their own.
        let locked = self.variant == Variant::Buggy;
        if locked {
            self.rlock();
        }
        let _runlock = defer(|| {
            if locked {
                self.runlock()
            }
        });
        if self.get_cpu_set() {
            return;
        }
        self.get_default_cpu_set();
    }

    fn get_cpu_set(&self) -> bool {
        self.rlock();
        let _runlock = defer(|| self.runlock());
        rand::intn(10) > 5
    }

    fn get_default_cpu_set(&self) {
        self.rlock();
        let _runlock = defer(|| self.runlock());
    }

    fn set_default_cpu_set(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
    }
}

/// The static CPU policy (`staticPolicy`).
struct StaticPolicy;

impl StaticPolicy {
    fn remove_container(&self, s: &StateMemory) {
        s.get_default_cpu_set();
        s.set_default_cpu_set();
    }
}

/// The CPU manager (`manager`).
struct Manager {
    state: std::sync::Arc<StateMemory>,
}

impl Manager {
    fn reconcile_state(&self) {
        self.state.get_cpu_set_or_default();
    }
}

fn new_policy_and_manager(variant: Variant) -> (StaticPolicy, Manager) {
    let s = std::sync::Arc::new(StateMemory {
        rw_mutex: RwMutex::new().named("stateMemory"),
        variant,
    });
    (StaticPolicy, Manager { state: s })
}

/// `TestKubernetes62464`.
fn test_kubernetes62464(variant: Variant) {
    let (p, m) = new_policy_and_manager(variant);
    let state = m.state.clone();
    go_named("reconcileState", move || m.reconcile_state());
    go_named("RemoveContainer", move || p.remove_container(&state));
}
