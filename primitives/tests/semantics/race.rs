//! What the race detector checks besides plain variables, as `go test -race` does: a
//! WaitGroup's `Add` from zero against its first blocking `Wait` (Go's race annotations on
//! `wg.sema`).

use primitives::explore::Engine;
use primitives::sync::WaitGroup;
use std::time::Duration;

use primitives::{go, time, Chan, RaceReport, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean};

/// The race of `engine`'s first failing schedule, which must be one on `object`.
#[track_caller]
fn race_on(engine: Engine, object: &str, kernel: impl Fn() + Send + Sync + 'static) -> RaceReport {
    let r = expect(
        engine,
        Verdict::Race,
        &format!("DATA RACE on {object}:"),
        kernel,
    );
    let race = r.race.expect("a race report");
    assert_ne!(race.previous.g, race.current.g);
    race
}

/// Asserts that the race is the Wait's write against an Add's read, in either order.
#[track_caller]
fn add_against_wait(race: &RaceReport) {
    let (add, wait) = if race.current.write {
        (&race.previous, &race.current)
    } else {
        (&race.current, &race.previous)
    };
    assert_eq!((add.op, add.write), (Some("Add"), false), "{race:?}");
    assert_eq!((wait.op, wait.write), (Some("Wait"), true), "{race:?}");
}

/// The classic misuse: `wg.Add(1)` inside the goroutine. When the goroutine's Add comes
/// first, main's Wait blocks unordered with it: Go reports the race on the group.
#[rstest]
fn an_add_inside_the_goroutine_races_with_the_wait(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw
    )]
    engine: Engine,
) {
    let race = race_on(engine, "wg", || {
        let wg = WaitGroup::new().named("wg");
        let w = wg.clone();
        go(move || {
            w.add(1);
            w.done();
        });
        wg.wait();
    });
    add_against_wait(&race);
    assert!(
        race.current.write,
        "Wait's write reveals the race: {race:?}"
    );
}

/// Go's `TestRaceWaitGroupWrongAdd` (runtime/race/testdata/waitgroup_test.go): the sleeps
/// put both Adds before the Wait (always under lazy timers, as on `std`), so every engine
/// reports it.
#[rstest]
fn go_wrong_add_test_races_on_every_engine(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::Std
    )]
    engine: Engine,
) {
    let race = race_on(engine, "wg", || {
        let (wg, c) = (WaitGroup::new().named("wg"), Chan::new(2));
        for _ in 0..2 {
            let (wg, c) = (wg.clone(), c.clone());
            go(move || {
                wg.add(1);
                time::sleep(Duration::from_millis(100));
                wg.done();
                c.send(true);
            });
        }
        time::sleep(Duration::from_millis(50));
        wg.wait();
        c.recv();
        c.recv();
    });
    add_against_wait(&race);
}

#[rstest]
fn an_add_before_the_go_statement_is_clean(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let wg = WaitGroup::new().named("wg");
        for _ in 0..2 {
            wg.add(1);
            let w = wg.clone();
            go(move || w.done());
        }
        wg.wait();
    });
}

/// Only the first waiter to block writes `wg.sema`: two Waits blocked together do not race
/// each other (Go's `TestNoRaceWaitGroupMultipleWait`, and its variant with a counter above
/// zero so that the waiters block).
#[rstest]
fn concurrent_waits_do_not_race_each_other(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::Std
    )]
    engine: Engine,
) {
    for counter in [0, 1] {
        expect_clean(engine, move || {
            let (wg, c) = (WaitGroup::new().named("wg"), Chan::new(2));
            wg.add(counter);
            for _ in 0..2 {
                let (wg, c) = (wg.clone(), c.clone());
                go(move || {
                    wg.wait();
                    c.send(true);
                });
            }
            if counter > 0 {
                wg.done();
            }
            wg.wait();
            c.recv();
            c.recv();
        });
    }
}

/// A group reused once its waiter has returned, and main knows it (the channel): the Add
/// from zero is ordered after the waiter's write.
#[rstest]
fn an_add_from_zero_ordered_after_the_wait_returned_is_clean(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let (wg, returned) = (WaitGroup::new().named("wg"), Chan::new(0));
        wg.add(1);
        let (w, r) = (wg.clone(), returned.clone());
        go(move || {
            w.wait();
            r.send(());
        });
        wg.done();
        returned.recv();
        wg.add(1);
        wg.done();
    });
}

/// The same reuse without the channel: when the waiter blocked, main's Add from zero is not
/// ordered after its write, and Go reports the race (its own reuse test is `knownRacy`).
#[rstest]
fn an_add_from_zero_unordered_with_a_blocked_wait_races(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw
    )]
    engine: Engine,
) {
    let race = race_on(engine, "wg", || {
        let wg = WaitGroup::new().named("wg");
        wg.add(1);
        let w = wg.clone();
        go(move || w.wait());
        wg.done();
        wg.add(1);
        wg.done();
    });
    add_against_wait(&race);
}
