//! `shuttle-dfs`: the bounded depth-first search ends exhaustive on a small kernel, finds a
//! failure at the fewest preemptions it needs, and replays it.

use std::sync::Arc;

use primitives::explore::{explore, replay, Engine, Settings};
use primitives::sync::{Mutex, WaitGroup};
use primitives::{go, Shared, Verdict};

/// Two goroutines that each read a counter under the lock and write it back under the lock
/// again: an update is lost only if one of them is preempted between its two critical sections.
fn lost_update(split: bool) -> impl Fn() + Send + Sync + 'static {
    move || {
        let mu = Arc::new(Mutex::new());
        let x = Arc::new(Shared::new(0));
        let wg = WaitGroup::new();
        for _ in 0..2 {
            wg.add(1);
            let (mu, x, wg) = (mu.clone(), x.clone(), wg.clone());
            go(move || {
                mu.lock();
                let v = x.get();
                if split {
                    mu.unlock();
                    mu.lock();
                }
                x.set(v + 1);
                mu.unlock();
                wg.done();
            });
        }
        wg.wait();
        mu.lock();
        assert_eq!(x.get(), 2, "an update was lost");
        mu.unlock();
    }
}

#[test]
fn the_search_ends_exhaustive_within_its_bound() {
    let mut s = Settings::new(Engine::ShuttleDfs);
    s.budget = 100_000;
    s.stop_at_first_failure = false;
    let found = explore(&s, Arc::new(lost_update(false)));
    assert_eq!(found.error, None);
    assert_eq!(found.failed(), 0, "one critical section each loses nothing");
    assert!(
        found.exhaustive,
        "{:?} after {} schedules",
        found.limit, found.schedules
    );
    assert!(found.schedules > 1);
}

#[test]
fn the_first_failure_has_the_fewest_preemptions_and_replays() {
    let s = Settings::new(Engine::ShuttleDfs);
    let kernel = Arc::new(lost_update(true));
    let found = explore(&s, kernel.clone());
    assert_eq!(found.error, None);
    let failing = found.first_failure.expect("the lost update is found");
    assert_eq!(failing.report.verdict, Verdict::Assert);
    assert_eq!(found.preemptions.first_failure, Some(1));
    assert_eq!(found.preemptions.explored_within, Some(0));
    let schedule = failing.replay.expect("a schedule string");
    let again = replay(&s, &schedule, kernel).expect("the schedule replays");
    assert_eq!(again.verdict, Verdict::Assert);
    assert_eq!(again.message, failing.report.message);
}

#[test]
fn a_malformed_schedule_is_refused() {
    let s = Settings::new(Engine::ShuttleDfs);
    let err = replay(&s, "0.x.1", Arc::new(lost_update(true))).unwrap_err();
    assert!(err.to_string().contains("malformed"), "{err}");
}

/// Two goroutines that each make `accesses` plain writes of their own variable inside one
/// critical section.
fn plain_in_critical_sections(accesses: usize) -> impl Fn() + Send + Sync + 'static {
    move || {
        let mu = Arc::new(Mutex::new());
        let wg = WaitGroup::new();
        for _ in 0..2 {
            wg.add(1);
            let (mu, wg) = (mu.clone(), wg.clone());
            go(move || {
                let x = Shared::new(0);
                mu.lock();
                for i in 0..accesses {
                    x.set(i);
                }
                mu.unlock();
                wg.done();
            });
        }
        wg.wait();
    }
}

/// Exhaustive schedules of `plain_in_critical_sections(accesses)` on an exhaustive engine.
fn exhaustive_schedules(engine: Engine, accesses: usize, race_detector: bool) -> u64 {
    let mut s = Settings::new(engine);
    s.budget = 100_000;
    s.stop_at_first_failure = false;
    s.race_detector = race_detector;
    let found = explore(&s, Arc::new(plain_in_critical_sections(accesses)));
    assert_eq!(found.error, None);
    assert_eq!(found.failed(), 0);
    assert!(found.exhaustive, "{:?}", found.limit);
    found.schedules
}

#[test]
fn plain_accesses_are_no_scheduling_points_while_the_race_detector_watches_them() {
    for engine in [Engine::ShuttleDfs, Engine::Loom] {
        // With the detector on, a switch at a plain access could only reorder accesses it
        // would report if they conflicted: the search is the same however many there are.
        assert_eq!(
            exhaustive_schedules(engine, 1, true),
            exhaustive_schedules(engine, 6, true),
            "{engine:?}"
        );
        // Without it, the order of plain accesses is what the search must explore.
        assert!(
            exhaustive_schedules(engine, 6, false) > exhaustive_schedules(engine, 1, false),
            "{engine:?}"
        );
    }
}
