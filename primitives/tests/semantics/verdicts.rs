//! Each verdict, named correctly on each engine, on the smallest program that earns it.

use primitives::explore::{explore, Engine};
use primitives::{go, go_named, select, time, Chan, Verdict};
use rstest::rstest;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{expect, settings};

#[rstest]
fn a_global_deadlock(
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
    expect(engine, Verdict::Assert, "assertion", || {
        let ch = Chan::new(1);
        ch.send(1);
        assert_eq!(ch.recv(), Some(2), "the invariant");
    });
}

#[rstest]
fn a_livelock(
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
    let mut s = settings(engine);
    s.livelock_window = 200;
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
    let mut s = settings(engine);
    s.livelock_window = 200;
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

/// Explores `budget` executions of `kernel` with `settings` tuned by `tune`; returns the
/// verdicts seen.
fn verdicts_of(
    engine: Engine,
    budget: u64,
    tune: impl FnOnce(&mut primitives::explore::Settings),
    kernel: impl Fn() + Send + Sync + 'static,
) -> std::collections::BTreeSet<Verdict> {
    let mut s = settings(engine);
    s.budget = budget;
    s.stop_at_first_failure = false;
    tune(&mut s);
    let found = explore(&s, Arc::new(kernel));
    assert_eq!(found.error, None);
    let mut seen: std::collections::BTreeSet<Verdict> = found
        .failures
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(v, _)| *v)
        .collect();
    if found.bound_reached > 0 {
        seen.insert(Verdict::BoundReached);
    }
    if found.failed() + found.bound_reached < found.schedules {
        seen.insert(Verdict::Clean);
    }
    seen
}

/// Three goroutines each take a Mutex 2,000 times around an increment (about 24,000 Go
/// operations): long, but every round makes progress, so the run is clean, not a livelock.
#[rstest]
fn a_long_correct_run_is_clean(
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
    use primitives::sync::{Mutex, WaitGroup};
    use primitives::Shared;
    let seen = verdicts_of(
        engine,
        3,
        |_| {},
        || {
            let (mu, n, wg) = (
                Arc::new(Mutex::new()),
                Arc::new(Shared::new(0u32)),
                WaitGroup::new(),
            );
            for _ in 0..3 {
                let (mu, n, wg) = (mu.clone(), n.clone(), wg.clone());
                wg.add(1);
                go(move || {
                    for _ in 0..2_000 {
                        mu.lock();
                        n.set(n.get() + 1);
                        mu.unlock();
                    }
                    wg.done();
                });
            }
            wg.wait();
            assert_eq!(n.get(), 6_000);
        },
    );
    assert_eq!(seen, [Verdict::Clean].into());
}

/// A raft-like node that only ticks: every tick is sent and received, but nothing changes, and
/// the test waits forever. Only the clock moves: a livelock.
#[rstest]
fn ticking_without_change_is_a_livelock(
    #[values(
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    use primitives::time::Ticker;
    use std::time::Duration;
    let r = expect(engine, Verdict::Livelock, "only the clock moves", || {
        let (tickc, done) = (Chan::<()>::new(0), Chan::<()>::new(0));
        let rx = tickc.clone();
        go_named("node", move || loop {
            rx.recv();
        });
        go_named("ticker", move || {
            let t = Ticker::new(Duration::from_millis(100));
            loop {
                t.c().recv();
                tickc.send(());
            }
        });
        done.recv();
    });
    assert!(r.dump.contains("\"node\""), "{}", r.dump);
}

/// A worker that needs ten ticks to finish its job is not a livelock: the job ends.
#[rstest]
fn a_few_ticks_of_waiting_are_not_a_livelock(
    #[values(
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    use primitives::time::Ticker;
    use std::time::Duration;
    let seen = verdicts_of(
        engine,
        20,
        |_| {},
        || {
            let done = Chan::<()>::new(0);
            let tx = done.clone();
            go(move || {
                let t = Ticker::new(Duration::from_millis(100));
                for _ in 0..10 {
                    t.c().recv();
                }
                t.stop();
                tx.close();
            });
            done.recv();
        },
    );
    assert_eq!(seen, [Verdict::Clean].into());
}

/// How the test of [`wait_beside_an_idle_reconciler`] waits.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// `time.Sleep(d)`.
    Sleep,
    /// `<-time.After(d)`.
    Timer,
}

/// A reconciler wakes every 10 ms and finds nothing to do; every third time it also offers the
/// test a turn, which the test takes if it is waiting for one. At each turn the test waits,
/// first for `first`, then for `next` of the last wait; after `tries` turns (never, if `None`)
/// it stops the reconciler.
fn wait_beside_an_idle_reconciler(
    wait: Wait,
    first: Duration,
    next: fn(Duration) -> Duration,
    tries: Option<u32>,
) {
    let (stop, turn) = (Chan::<()>::new(0), Chan::<()>::new(0));
    let (rx, tx) = (stop.clone(), turn.clone());
    go_named("reconciler", move || {
        for round in 0u32.. {
            if round % 3 == 0 {
                select! {
                    send(tx, ()) => {},
                    default => {},
                }
            }
            let tick = time::after(Duration::from_millis(10));
            select! {
                recv(rx) => return,
                recv(tick) => {},
            }
        }
    });
    let mut d = first;
    for _ in 0..tries.unwrap_or(u32::MAX) {
        turn.recv();
        match wait {
            Wait::Sleep => time::sleep(d),
            Wait::Timer => {
                time::after(d).recv();
            }
        }
        d = next(d);
    }
    stop.close();
}

/// The test backs off exponentially (5 ms, three times longer each time, six tries, as
/// Kubernetes' `retryWithExponentialBackOff`). The firings find the goroutines in the same few
/// places again and again, and the last waits outlast dozens of them, but each wait is longer
/// than the one before: the test is getting somewhere, so the run is clean, not a livelock.
/// kubernetes_26407's fixed kernel was called a livelock in a schedule of this shape: woken,
/// its test waited through two idle wakeups before it slept again, and its longer sleeps then
/// looked like the same sleep. Of these engines only `std` ran into that schedule here (every
/// run, with either kind of wait, before the fix).
#[rstest]
fn a_backoff_that_outlasts_idle_ticks_is_not_a_livelock(
    #[values(
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(Wait::Sleep, Wait::Timer)] wait: Wait,
) {
    let seen = verdicts_of(
        engine,
        5,
        |_| {},
        move || {
            wait_beside_an_idle_reconciler(wait, Duration::from_millis(5), |d| d * 3, Some(6));
        },
    );
    assert_eq!(seen, [Verdict::Clean].into());
}

/// The same wait with a length that never grows, for ever: the firings find the same nothing
/// again and again. Only the clock moves: a livelock. (A firing that wakes the waiter ends a
/// run of stale firings but forgets none of the places seen: otherwise each round would learn
/// them afresh, and `std` called this run undecided at the step cap.)
#[rstest]
fn a_wait_that_never_ends_beside_idle_ticks_is_a_livelock(
    #[values(
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(Wait::Sleep, Wait::Timer)] wait: Wait,
) {
    let seen = verdicts_of(
        engine,
        3,
        |_| {},
        move || {
            wait_beside_an_idle_reconciler(wait, Duration::from_millis(50), |d| d, None);
        },
    );
    assert_eq!(seen, [Verdict::Livelock].into());
}

/// A wait that grows by a millisecond each round, for ever, is getting somewhere for as long as
/// the run lasts: it is never judged a livelock, and the step cap ends it, undecided.
#[rstest]
fn a_wait_that_grows_for_ever_reaches_the_bound(
    #[values(
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(Wait::Sleep, Wait::Timer)] wait: Wait,
) {
    let seen = verdicts_of(
        engine,
        2,
        |s| s.max_steps = 5_000,
        move || {
            let longer = |d| d + Duration::from_millis(1);
            wait_beside_an_idle_reconciler(wait, Duration::from_millis(5), longer, None);
        },
    );
    assert_eq!(seen, [Verdict::BoundReached].into());
}

/// Two goroutines that play ping-pong forever make progress forever: the hard cap ends the
/// run undecided, never as a livelock and never as clean.
#[rstest]
fn progress_forever_reaches_the_bound(
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
    let seen = verdicts_of(
        engine,
        2,
        |s| s.max_steps = 2_000,
        || {
            let (ping, pong) = (Chan::<u32>::new(0), Chan::<u32>::new(0));
            let (rx, tx) = (ping.clone(), pong.clone());
            go(move || loop {
                let v = rx.recv().unwrap();
                tx.send(v + 1);
            });
            let mut v = 0;
            loop {
                ping.send(v);
                v = pong.recv().unwrap();
            }
        },
    );
    assert_eq!(seen, [Verdict::BoundReached].into());
}
