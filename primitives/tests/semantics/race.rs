//! What the race detector checks besides plain variables, as `go test -race` does: a
//! WaitGroup's `Add` from zero against its first blocking `Wait` (Go's race annotations on
//! `wg.sema`), and plain accesses to a word other goroutines use atomically.

use primitives::explore::Engine;
use primitives::sync::{AtomicBool, AtomicI32, WaitGroup};
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

/// Two goroutines add atomically; main reads the word plainly.
fn counted_plainly(wait: bool, plain: bool) -> impl Fn() + Send + Sync + Clone + 'static {
    move || {
        let (n, wg) = (AtomicI32::new(0).named("n"), WaitGroup::new());
        for _ in 0..2 {
            wg.add(1);
            let (n, wg) = (n.clone(), wg.clone());
            go(move || {
                n.add(1);
                wg.done();
            });
        }
        if wait {
            wg.wait();
        }
        let seen = if plain { n.plain_load() } else { n.load() };
        if wait {
            assert_eq!(seen, 2);
        }
    }
}

/// `wg.Wait()` orders both atomic adds before main's plain read.
#[rstest]
fn a_plain_load_after_the_wait_is_clean(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, counted_plainly(true, true));
}

/// Without the Wait, the plain read is unordered with an atomic write: a race.
#[rstest]
fn a_plain_load_racing_atomic_adds_races(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::Std
    )]
    engine: Engine,
) {
    let race = race_on(engine, "n", counted_plainly(false, true));
    let (plain, atomic) = if race.current.atomic {
        (&race.previous, &race.current)
    } else {
        (&race.current, &race.previous)
    };
    assert!(!plain.atomic && plain.op.is_none(), "{race:?}");
    assert_eq!((atomic.op, atomic.write), (Some("Add"), true), "{race:?}");
}

/// Atomic operations never race among themselves, ordered or not.
#[rstest]
fn an_atomic_load_racing_atomic_adds_is_clean(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, counted_plainly(false, false));
}

/// A plain write races even with an atomic read; the plain write before the go statement is
/// ordered by it and does not.
#[rstest]
fn a_plain_store_races_with_an_atomic_load(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::Std
    )]
    engine: Engine,
) {
    let race = race_on(engine, "stopped", || {
        let stopped = AtomicBool::new(true).named("stopped");
        stopped.plain_store(false);
        let s = stopped.clone();
        go(move || {
            s.load();
        });
        stopped.plain_store(true);
    });
    let (plain, atomic) = if race.current.atomic {
        (&race.previous, &race.current)
    } else {
        (&race.current, &race.previous)
    };
    assert!(plain.write && plain.op.is_none(), "{race:?}");
    assert_eq!((atomic.op, atomic.write), (Some("Load"), false), "{race:?}");
}

/// Plain reads and atomic reads do not conflict: a word only read after the go statement is
/// clean however its reads interleave.
#[rstest]
fn plain_and_atomic_reads_do_not_race(
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
        let n = AtomicI32::new(0).named("n");
        n.add(1);
        let m = n.clone();
        go(move || {
            m.plain_load();
            m.load();
        });
        n.load();
        n.plain_load();
    });
}

/// An atomic store after another goroutine's atomic load does not order the load before
/// main's plain store that follows: still a race. (It races in every order; the sleeps make
/// the load come first, the order in which only the remembered atomic read reveals it.)
#[rstest]
fn an_atomic_store_does_not_hide_an_earlier_atomic_load_from_a_plain_store(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::Std
    )]
    engine: Engine,
) {
    let race = race_on(engine, "n", || {
        let n = AtomicI32::new(0).named("n");
        let m = n.clone();
        go(move || {
            m.load();
            time::sleep(Duration::from_millis(100));
        });
        time::sleep(Duration::from_millis(50));
        n.store(1);
        n.plain_store(2);
    });
    assert_eq!(race.previous.op, Some("Load"), "{race:?}");
    assert!(race.current.write && !race.current.atomic, "{race:?}");
}
