#![doc = include_str!("kubernetes_28153.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::{Cond, Mutex, WaitGroup};
use primitives::{defer, go_named, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_28153",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/28153",
        category: "Misuse WaitGroup",
        expected: primitives::Verdict::Race,
        kernel: test_controller_sync,
        walkthrough: include_str!("kubernetes_28153.md"),
        asplos: Some("non-blocking-bugs/kubernetes/06082b1bdf4c9ff93e5acf33da49f0b091a47d3e.txt"),
        source: Source::Diff("06082b1b"),
        fix: Fix::Upstream("06082b1b"),
        review: "faithful after mends: Checked against the ASPLOS diff of 06082b1b, issue #28128's race report, PR #28153's text, the post-fix goroutinemap.go in the index and Go's waitgroup.go race annotations (no GoReal/GoKer entry). The bug, shape, fix and race verdict are faithful, and the new WaitGroup primitive matches Go's `wg.sema` read/write exactly. One walkthrough sentence wrongly blames the WaitGroup for `Wait` returning before a later `Run`, which the fix also allows. The reports do not list the bug yet (lag).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An error (`error`); its text does not matter here.
#[derive(Debug)]
struct Error;

/// `operation`: the state of one named operation.
#[derive(Clone, Copy)]
struct Operation {
    operation_pending: bool,
}

/// `goRoutineMap`: runs operations by name, one at a time per name.
struct GoRoutineMap {
    operations: GoMap<String, Operation>,
    /// Before the fix: counts the running operations for `Wait`.
    wg: WaitGroup,
    /// The fix: `Wait` sleeps on it until the map is empty.
    cond: Cond<Mutex>,
    /// `sync.Mutex`, embedded.
    mutex: Mutex,
    variant: Variant,
}

impl Deref for GoRoutineMap {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

impl GoRoutineMap {
    /// `NewGoRoutineMap`.
    fn new(variant: Variant) -> Arc<Self> {
        let mutex = Mutex::new().named("goRoutineMap.Mutex");
        Arc::new(GoRoutineMap {
            operations: GoMap::new().named("operations"),
            wg: WaitGroup::new().named("wg"),
            cond: Cond::new(&mutex),
            mutex,
            variant,
        })
    }

    /// `Run`: records the operation as pending and runs it in a goroutine of its own.
    fn run(
        self: &Arc<Self>,
        operation_name: &str,
        operation_func: impl FnOnce() -> Result<(), Error> + Send + 'static,
    ) -> Result<(), Error> {
        self.lock();
        let _unlock = defer(|| self.unlock());
        if let Some(existing_op) = self.operations.get(&operation_name.to_string()) {
            if existing_op.operation_pending {
                return Err(Error); // newAlreadyExistsError
            }
        }
        self.operations.insert(
            operation_name.to_string(),
            Operation {
                operation_pending: true,
            },
        );
        if !self.variant.fixed() {
            self.wg.add(1);
        }
        let (grm, name) = (self.clone(), operation_name.to_string());
        go_named("Run.func1", move || {
            let err = operation_func();
            grm.operation_complete(&name, &err);
        });
        Ok(())
    }

    /// `operationComplete`: forgets the operation (it succeeded) and tells `Wait`.
    fn operation_complete(&self, operation_name: &str, _err: &Result<(), Error>) {
        let _tell_wait = defer(|| {
            if self.variant.fixed() {
                self.cond.signal();
            } else {
                self.wg.done();
            }
        });
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.operations.remove(&operation_name.to_string());
    }

    /// `Wait`: blocks until every operation has completed.
    fn wait(&self) {
        if self.variant.fixed() {
            self.lock();
            let _unlock = defer(|| self.unlock());
            while !self.operations.is_empty() {
                self.cond.wait();
            }
        } else {
            self.wg.wait();
        }
    }
}

/// `TestControllerSync` in miniature: a goroutine of the controller schedules an operation
/// while the test waits for the running operations (`volumeReactor.waitTest`).
fn test_controller_sync(variant: Variant) {
    let running_operations = GoRoutineMap::new(variant);
    let grm = running_operations.clone();
    go_named("controller", move || {
        // scheduleOperation: the controller's sync starts an operation
        let _ = grm.run("provision-pvc", || Ok(()));
    });
    running_operations.wait();
}
