//! Each verdict, named correctly on each engine, on the smallest program that earns it.

use primitives::explore::{explore, Engine};
use primitives::{go, go_named, select, Chan, Verdict};
use rstest::rstest;
use std::sync::Arc;

use crate::harness::{expect, settings};

#[rstest]
fn a_global_deadlock(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    let r = expect(
        engine,
        Verdict::Deadlock,
        "all goroutines are asleep - deadlock!",
        || {
            let (a, b) = (Chan::<()>::new(0), Chan::<()>::new(0));
            let (a2, b2) = (a.clone(), b.clone());
            go_named("other", move || {
                b2.recv();
                a2.send(());
            });
            a.recv();
            b.send(());
        },
    );
    assert!(
        r.dump.contains("goroutine 0 \"main\" [chan receive]"),
        "{}",
        r.dump
    );
    assert!(
        r.dump.contains("goroutine 1 \"other\" [chan receive]"),
        "{}",
        r.dump
    );
}

#[rstest]
fn a_leak_after_main_returns(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    let r = expect(
        engine,
        Verdict::Leak,
        "1 goroutine is still blocked after main returned",
        || {
            let ch = Chan::new(0);
            go_named("sender", move || ch.send(1));
        },
    );
    assert!(
        r.dump.contains("goroutine 1 \"sender\" [chan send]"),
        "{}",
        r.dump
    );
    assert!(
        r.dump.contains("goroutine 0 \"main\" [returned]"),
        "{}",
        r.dump
    );
}

#[rstest]
fn a_panic_names_its_goroutine(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    let r = expect(engine, Verdict::Panic, "boom", || {
        let done = Chan::<()>::new(0);
        go_named("worker", move || panic!("boom"));
        done.recv();
    });
    assert!(
        r.message.contains("goroutine 1 \"worker\""),
        "{}",
        r.message
    );
}

#[rstest]
fn a_failed_assertion(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    expect(engine, Verdict::Assert, "assertion", || {
        let ch = Chan::new(1);
        ch.send(1);
        assert_eq!(ch.recv(), Some(2), "the invariant");
    });
}

#[rstest]
fn a_livelock(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    let mut s = settings(engine);
    s.max_steps = 200;
    let found = explore(
        &s,
        Arc::new(|| {
            let never = Chan::<()>::new(0);
            loop {
                select! {
                    recv(never) -> _ => break,
                    default => {},
                }
            }
        }),
    );
    let r = found.first_failure.expect("the busy loop is caught").report;
    assert_eq!(r.verdict, Verdict::Livelock, "{}", r.message);
}

#[rstest]
fn a_busy_goroutine_after_main_returns_is_a_leak(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    let mut s = settings(engine);
    s.max_steps = 200;
    let found = explore(
        &s,
        Arc::new(|| {
            go(|| loop {
                select! { default => {} }
            });
        }),
    );
    let r = found
        .first_failure
        .expect("the spinning goroutine is caught")
        .report;
    assert_eq!(r.verdict, Verdict::Leak, "{}", r.message);
}

/// A goroutine that polls with select/default waits for another that closes a channel: Go's
/// preemptive scheduler lets the closer run, and so do the engines (a default taken yields).
#[rstest]
fn a_polling_loop_does_not_starve_the_goroutine_it_waits_for(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    crate::harness::expect_clean(engine, || {
        let stop = Chan::<()>::new(0);
        let done = Chan::<()>::new(0);
        let (s, d) = (stop.clone(), done.clone());
        go(move || loop {
            select! {
                recv(s) -> _ => {
                    d.close();
                    return;
                },
                default => {},
            }
        });
        stop.close();
        done.recv();
    });
}
