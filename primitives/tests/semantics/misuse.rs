//! Using primitives where they do not belong fails with one clear message.

use std::panic;
use std::sync::{Arc, Mutex};

use primitives::explore::{explore, Engine};
use primitives::{Chan, Verdict};
use rstest::rstest;

use crate::harness::settings;

#[test]
fn a_primitive_outside_any_execution_says_so() {
    let err = panic::catch_unwind(|| Chan::<i32>::new(0)).expect_err("no execution, no channel");
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("outside an execution"), "{message}");
    assert!(
        message.contains("tests/semantics/misuse.rs"),
        "names the line: {message}"
    );
}

#[rstest]
fn a_primitive_of_another_execution_is_refused(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    let smuggled: Arc<Mutex<Option<Chan<i32>>>> = Arc::new(Mutex::new(None));
    let mut s = settings(engine);
    s.budget = 1;
    let slot = smuggled.clone();
    explore(
        &s,
        Arc::new(move || *slot.lock().unwrap() = Some(Chan::new(1))),
    );
    let slot = smuggled.clone();
    let found = explore(
        &s,
        Arc::new(move || {
            let old = slot
                .lock()
                .unwrap()
                .clone()
                .expect("made by the first exploration");
            old.send(1);
        }),
    );
    let r = found.first_failure.expect("the use fails").report;
    assert_eq!(r.verdict, Verdict::Panic);
    assert!(
        r.message.contains("made in another execution"),
        "{}",
        r.message
    );
}
