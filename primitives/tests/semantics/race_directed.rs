//! shuttle-pct's race-directed executions: a race whose window is one Go operation wide, which
//! PCT alone reaches only by luck, is found within a few executions, replays, and an ordered
//! kernel stays clean (a hold never reports what the kernel orders). A mutex that main always
//! takes first is taken first by a goroutine forty operations away, once the lock order is
//! reversed; and a hold does not outlast a timer's firing.

use std::sync::Arc;

use primitives::explore::{explore, replay, Engine, Settings};
use primitives::sync::{AtomicBool, Mutex};
use primitives::{go, gosched, select, time, Chan, Shared, Verdict};

fn pct(seed: u64, budget: u64) -> Settings {
    let mut s = Settings::new(Engine::ShuttlePct);
    s.seed = seed;
    s.budget = budget;
    s
}

/// `g` writes `x` and then takes `mu`; main yields ten times before it takes `mu` and reads
/// `x`. The read is ordered after the write whenever `g` has its lock section first, which
/// every scheduler that lets the yielder go last gives: the race needs `g` stopped in the one
/// step between its write and its `Lock` while main runs its eleven. With `main_first`, main
/// writes `x` before it starts `g` (ordered by the `go`): an access of the variable by another
/// goroutine in the witness's prefix must not end the hold before it begins.
fn narrow_window(main_first: bool) {
    let x = Shared::new(0).named("x");
    if main_first {
        x.set(2);
    }
    let mu = Arc::new(Mutex::new());
    {
        let (x, mu) = (x.clone(), mu.clone());
        go(move || {
            x.set(1);
            mu.lock();
            mu.unlock();
        });
    }
    for _ in 0..10 {
        gosched();
    }
    mu.lock();
    mu.unlock();
    x.get();
}

/// The first execution shows the pair (`g`'s write, main's read) ordered; the second, the
/// first directed one, holds `g` after its write and finds the race.
#[test]
fn a_race_one_operation_wide_is_found_by_the_first_directed_execution() {
    for main_first in [false, true] {
        for seed in 1..=10 {
            let found = explore(&pct(seed, 10), Arc::new(move || narrow_window(main_first)));
            let failing = found
                .first_failure
                .unwrap_or_else(|| panic!("seed {seed}: no race in {} schedules", found.schedules));
            assert_eq!(failing.report.verdict, Verdict::Race, "seed {seed}");
            assert!(failing.report.message.contains("DATA RACE on x"));
            // With main's write there are two pairs (main's write against g's is the other),
            // so two directed executions at most.
            let within = if main_first { 4 } else { 2 };
            assert!(
                failing.schedule <= within,
                "seed {seed}, main_first {main_first}: {}",
                failing.schedule
            );
        }
    }
}

#[test]
fn a_directed_failing_schedule_replays_to_the_same_race() {
    let s = pct(1, 10);
    let kernel = || narrow_window(false);
    let found = explore(&s, Arc::new(kernel));
    let failing = found.first_failure.expect("a race");
    assert_eq!(failing.schedule, 2, "found by the directed execution");
    let schedule = failing.replay.expect("a schedule string");
    let again = replay(&s, &schedule, Arc::new(kernel)).expect("the schedule replays");
    assert_eq!(again.verdict, Verdict::Race);
    assert_eq!(again.message, failing.report.message);
    assert_eq!(again.dump, failing.report.dump);
}

#[test]
fn an_ordered_kernel_stays_clean_under_the_holds() {
    let ordered = || {
        let x = Shared::new(0).named("x");
        let mu = Arc::new(Mutex::new());
        {
            let (x, mu) = (x.clone(), mu.clone());
            go(move || {
                mu.lock();
                x.set(1);
                mu.unlock();
            });
        }
        gosched();
        mu.lock();
        x.get();
        mu.unlock();
    };
    for seed in 1..=10 {
        let found = explore(&pct(seed, 200), Arc::new(ordered));
        assert!(
            found.first_failure.is_none(),
            "seed {seed}: {:?}",
            found.first_failure
        );
    }
}

/// The held goroutine has 4,000 Go operations left, and main polls for its end with
/// `Gosched`: the runtime's fairness hands it a turn, and once the hold has refused those for
/// its `HOLD_CHOICES` choices it must end at the next one, or the goroutine would
/// advance one operation per fair turn and run into the step bound (a correct kernel would
/// end `bound-reached`, or `livelock` where the poller sees no progress).
#[test]
fn a_fair_turn_ends_the_hold() {
    let long = || {
        let x = Shared::new(0).named("x");
        let done = Arc::new(AtomicBool::new(false));
        {
            let (x, done, mu) = (x.clone(), done.clone(), Mutex::new());
            go(move || {
                x.set(1);
                for _ in 0..2_000 {
                    mu.lock();
                    mu.unlock();
                }
                done.store(true);
            });
        }
        while !done.load() {
            gosched();
        }
        x.get();
    };
    let found = explore(&pct(1, 100), Arc::new(long));
    assert_eq!(
        found.bound_reached, 0,
        "an execution ran into the step bound"
    );
    assert!(
        found.first_failure.is_none(),
        "{:?}",
        found.first_failure.map(|f| f.report.message)
    );
}

/// `g` makes forty Go operations, then takes `mu` and sets `late`; main takes `mu` at once and
/// panics if `late` is set. The runtime's fairness hands main a turn once it has waited
/// `STARVE_STEPS` (32) steps, before `g` gets to `mu`: a hold placed before main's `Lock`
/// finds the panic only if it outlasts that hand-over (a runnable goroutine may wait that long
/// in Go). With the hold ending at the hand-over, seed 1 finds nothing in 20 schedules.
fn lock_after_forty_operations() {
    let late = Shared::new(false).named("late");
    let mu = Arc::new(Mutex::new());
    let done = Chan::<()>::new(1);
    {
        let (late, mu, done) = (late.clone(), mu.clone(), done.clone());
        go(move || {
            let busy = AtomicBool::new(false);
            for _ in 0..40 {
                busy.store(true);
            }
            mu.lock();
            late.set(true);
            mu.unlock();
            done.send(());
        });
    }
    mu.lock();
    if late.get() {
        primitives::panic("g took mu first");
    }
    mu.unlock();
    done.recv();
}

/// The first execution shows main and `g` taking `mu` in that order; a directed execution
/// reverses it.
#[test]
fn a_lock_order_is_reversed_past_the_fairness_hand_over() {
    for seed in 1..=10 {
        let found = explore(&pct(seed, 20), Arc::new(lock_after_forty_operations));
        let failing = found
            .first_failure
            .unwrap_or_else(|| panic!("seed {seed}: no panic in {} schedules", found.schedules));
        assert_eq!(failing.report.verdict, Verdict::Panic, "seed {seed}");
        assert!(failing.report.message.contains("g took mu first"));
        assert!(failing.schedule <= 6, "seed {seed}: {}", failing.schedule);
    }
}

/// A poller wakes every millisecond until main closes `stop`, then takes `mu`, which main took
/// first. The reversal holds main before its `Lock` until the poller takes `mu`, which it does
/// only after main has closed `stop`: held through the poller's ticks, main would seem stuck
/// to the livelock rule (the same places at every firing). The hold ends at the first firing.
fn poller_then_lock() {
    let mu = Arc::new(Mutex::new());
    let stop = Chan::<()>::new(0);
    let done = Chan::<()>::new(1);
    {
        let (mu, stop, done) = (mu.clone(), stop.clone(), done.clone());
        go(move || {
            loop {
                select! {
                    recv(time::after(std::time::Duration::from_millis(1))) => {},
                    recv(stop) => break,
                }
            }
            mu.lock();
            mu.unlock();
            done.send(());
        });
    }
    mu.lock();
    mu.unlock();
    stop.close();
    done.recv();
}

#[test]
fn a_timer_firing_ends_the_hold() {
    for seed in 1..=10 {
        let found = explore(&pct(seed, 50), Arc::new(poller_then_lock));
        assert!(
            found.first_failure.is_none(),
            "seed {seed}: {:?}",
            found.first_failure.map(|f| f.report.message)
        );
        assert_eq!(found.bound_reached, 0, "seed {seed}");
    }
}
