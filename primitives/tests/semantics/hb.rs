//! The race detector against the Go memory model: for each happens-before rule, a kernel that
//! races without the edge and is clean with it.

use std::sync::Arc;

use primitives::context;
use primitives::explore::{explore, Engine, Settings};
use primitives::sync::{AtomicI64, Cond, Mutex, Once, RwMutex, WaitGroup};
use primitives::{go, Chan, GoMap, Shared, Verdict};
use proptest::prelude::*;
use rstest::rstest;

use crate::harness::{expect, expect_clean};

/// Every engine: the racy kernels below race in every schedule.
macro_rules! every_engine {
    () => {
        [
            Engine::Loom,
            Engine::ShuttlePct,
            Engine::ShuttleRandom,
            Engine::Std,
        ]
    };
}

#[track_caller]
fn races(kernel: impl Fn() + Send + Sync + Clone + 'static) {
    for engine in every_engine!() {
        let r = expect(engine, Verdict::Race, "DATA RACE on x", kernel.clone());
        let race = r.race.expect("a race report");
        assert_ne!(race.previous.g, race.current.g);
        assert!(race.previous.write || race.current.write);
    }
}

#[track_caller]
fn clean(kernel: impl Fn() + Send + Sync + Clone + 'static) {
    for engine in every_engine!() {
        expect_clean(engine, kernel.clone());
    }
}

fn x() -> Shared<i32> {
    Shared::new(0).named("x")
}

#[test]
fn go_statement_orders_what_came_before() {
    clean(|| {
        let x = x();
        x.set(1);
        let y = x.clone();
        go(move || assert_eq!(y.get(), 1));
    });
    races(|| {
        let x = x();
        let y = x.clone();
        go(move || y.set(1));
        x.get();
    });
}

#[test]
fn a_send_happens_before_its_receive_completes() {
    clean(|| {
        let (x, ch) = (x(), Chan::new(0));
        let (y, tx) = (x.clone(), ch.clone());
        go(move || {
            y.set(1);
            tx.send(());
        });
        ch.recv();
        x.get();
    });
    races(|| {
        let (x, ch) = (x(), Chan::new(0));
        let (y, tx) = (x.clone(), ch.clone());
        go(move || {
            tx.send(());
            y.set(1);
        });
        ch.recv();
        x.get();
    });
}

#[test]
fn an_unbuffered_receive_happens_before_its_send_completes() {
    clean(|| {
        let (x, ch) = (x(), Chan::new(0));
        let (y, rx) = (x.clone(), ch.clone());
        go(move || {
            y.set(1);
            rx.recv();
        });
        ch.send(());
        x.get();
    });
    races(|| {
        let (x, ch) = (x(), Chan::new(0));
        let (y, rx) = (x.clone(), ch.clone());
        go(move || {
            rx.recv();
            y.set(1);
        });
        ch.send(());
        x.get();
    });
}

#[test]
fn the_kth_receive_happens_before_send_k_plus_cap_completes() {
    // A buffered channel of capacity 1 used as a semaphore.
    clean(|| {
        let (x, sem) = (x(), Chan::new(1));
        sem.send(());
        let (y, s) = (x.clone(), sem.clone());
        go(move || {
            y.set(1);
            s.recv();
        });
        sem.send(());
        x.get();
    });
    races(|| {
        let (x, sem) = (x(), Chan::new(1));
        sem.send(());
        let (y, s) = (x.clone(), sem.clone());
        go(move || {
            s.recv();
            y.set(1);
        });
        sem.send(());
        x.get();
    });
}

#[test]
fn close_happens_before_a_receive_that_sees_it() {
    clean(|| {
        let (x, done) = (x(), Chan::<()>::new(0));
        let (y, d) = (x.clone(), done.clone());
        go(move || {
            y.set(1);
            d.close();
        });
        done.recv();
        x.get();
    });
    races(|| {
        let (x, done) = (x(), Chan::<()>::new(0));
        let (y, d) = (x.clone(), done.clone());
        go(move || {
            d.close();
            y.set(1);
        });
        done.recv();
        x.get();
    });
}

/// Two goroutines increment `x`; `locked` says whether under `mu`.
fn two_increments(locked: bool) {
    let (x, mu, wg) = (x(), Mutex::new(), WaitGroup::new());
    for _ in 0..2 {
        wg.add(1);
        let (x, mu, wg) = (x.clone(), mu.clone(), wg.clone());
        go(move || {
            if locked {
                mu.lock();
            }
            x.set(x.get() + 1);
            if locked {
                mu.unlock();
            }
            wg.done();
        });
    }
    wg.wait();
}

#[test]
fn unlock_happens_before_the_next_lock() {
    clean(|| two_increments(true));
    races(|| two_increments(false));
}

/// A writer and a reader of `x`; the writer takes the write lock only if `locked`.
fn writer_and_reader(locked: bool) {
    let (x, rw, wg) = (x(), RwMutex::new(), WaitGroup::new());
    wg.add(2);
    let (xw, w, wgw) = (x.clone(), rw.clone(), wg.clone());
    go(move || {
        if locked {
            w.lock();
        }
        xw.set(1);
        if locked {
            w.unlock();
        }
        wgw.done();
    });
    let (xr, r, wgr) = (x.clone(), rw.clone(), wg.clone());
    go(move || {
        r.rlock();
        xr.get();
        r.runlock();
        wgr.done();
    });
    wg.wait();
}

#[test]
fn rwmutex_orders_writers_and_readers() {
    clean(|| writer_and_reader(true));
    races(|| writer_and_reader(false));
}

#[test]
fn done_happens_before_wait_returns() {
    clean(|| {
        let (x, wg) = (x(), WaitGroup::new());
        wg.add(1);
        let (y, w) = (x.clone(), wg.clone());
        go(move || {
            y.set(1);
            w.done();
        });
        wg.wait();
        x.get();
    });
    races(|| {
        let (x, wg) = (x(), WaitGroup::new());
        wg.add(1);
        let (y, w) = (x.clone(), wg.clone());
        go(move || {
            w.done();
            y.set(1);
        });
        wg.wait();
        x.get();
    });
}

/// A waiter and a signaller that never holds the lock while it writes: only the `Signal`
/// orders the write before the read. (The signaller takes the lock once first, which returns
/// only after the waiter's `Wait` has released it, so the waiter is counted before the signal;
/// that edge runs from the waiter to the signaller, before the write.)
fn signal_and_wait(write_first: bool) {
    let (x, mu) = (x(), Mutex::new());
    let cond = Cond::new(&mu);
    mu.lock();
    let (y, m, c) = (x.clone(), mu.clone(), cond.clone());
    go(move || {
        m.lock();
        m.unlock();
        if write_first {
            y.set(1);
        }
        c.signal();
        if !write_first {
            y.set(1);
        }
    });
    cond.wait();
    x.get();
    mu.unlock();
}

#[test]
fn signal_happens_before_the_wait_it_wakes_returns() {
    clean(|| signal_and_wait(true));
    races(|| signal_and_wait(false));
}

#[test]
fn once_function_happens_before_every_do_returns() {
    clean(|| {
        let (x, once, done) = (x(), Once::new(), Chan::new(0));
        let (y, o, d) = (x.clone(), once.clone(), done.clone());
        go(move || {
            o.do_(|| y.set(1));
            d.send(());
        });
        once.do_(|| x.set(1));
        x.get();
        done.recv();
    });
    races(|| {
        let (x, once, done) = (x(), Once::new(), Chan::new(0));
        let (y, o, d) = (x.clone(), once.clone(), done.clone());
        go(move || {
            o.do_(|| {});
            y.set(1);
            d.send(());
        });
        once.do_(|| {});
        x.get();
        done.recv();
    });
}

#[test]
fn cancel_happens_before_done_is_seen_closed() {
    clean(|| {
        let x = x();
        let (ctx, cancel) = context::with_cancel(&context::background());
        let y = x.clone();
        go(move || {
            y.set(1);
            cancel.call();
        });
        ctx.done().recv();
        x.get();
    });
    races(|| {
        let x = x();
        let (ctx, cancel) = context::with_cancel(&context::background());
        let y = x.clone();
        go(move || {
            cancel.call();
            y.set(1);
        });
        ctx.done().recv();
        x.get();
    });
}

#[rstest]
fn an_atomic_store_happens_before_the_load_that_sees_it(
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
    expect_clean(engine, || {
        let (x, flag) = (x(), AtomicI64::new(0));
        let (y, f) = (x.clone(), flag.clone());
        go(move || {
            y.set(1);
            f.store(1);
        });
        if flag.load() == 1 {
            assert_eq!(x.get(), 1);
        }
    });
}

#[rstest]
fn a_write_after_the_atomic_store_races(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs
    )]
    engine: Engine,
) {
    // Only the schedules where main sees the flag read x: found by the model checkers.
    expect(engine, Verdict::Race, "DATA RACE on x", || {
        let (x, flag) = (x(), AtomicI64::new(0));
        let (y, f) = (x.clone(), flag.clone());
        go(move || {
            f.store(1);
            y.set(1);
        });
        if flag.load() == 1 {
            x.get();
        }
    });
}

#[test]
fn a_map_written_by_two_goroutines_races() {
    for engine in every_engine!() {
        let r = expect(engine, Verdict::Race, "DATA RACE on m", || {
            let (m, wg) = (GoMap::new().named("m"), WaitGroup::new());
            for k in 0..2 {
                wg.add(1);
                let (m, wg) = (m.clone(), wg.clone());
                go(move || {
                    m.insert(k, k);
                    wg.done();
                });
            }
            wg.wait();
        });
        assert!(r.race.unwrap().current.write);
    }
}

#[rstest]
fn without_the_race_detector_overlapping_map_writes_are_fatal(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs
    )]
    engine: Engine,
) {
    let mut s = crate::harness::settings(engine);
    s.race_detector = false;
    let found = explore(
        &s,
        Arc::new(|| {
            let (m, wg) = (GoMap::new(), WaitGroup::new());
            for k in 0..2 {
                wg.add(1);
                let (m, wg) = (m.clone(), wg.clone());
                go(move || {
                    m.insert(k, k);
                    wg.done();
                });
            }
            wg.wait();
        }),
    );
    let r = found
        .first_failure
        .expect("some schedule overlaps the writes")
        .report;
    assert_eq!(r.verdict, Verdict::Panic);
    assert!(r.message.contains("concurrent map writes"), "{}", r.message);
}

#[derive(Clone, Debug)]
enum Access {
    Read(usize),
    Write(usize),
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        (0usize..3).prop_map(Access::Read),
        (0usize..3).prop_map(Access::Write)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Programs whose every access is under one Mutex are never reported.
    #[test]
    fn accesses_under_one_mutex_never_race(
        programs in prop::collection::vec(prop::collection::vec(access(), 1..5), 1..4),
    ) {
        let mut s = Settings::new(Engine::ShuttleRandom);
        s.budget = 30;
        s.stop_at_first_failure = false;
        let found = explore(&s, Arc::new(move || {
            let vars: Vec<Shared<i32>> = (0..3).map(|_| Shared::new(0)).collect();
            let (mu, wg) = (Mutex::new(), WaitGroup::new());
            for program in programs.clone() {
                wg.add(1);
                let (vars, mu, wg) = (vars.clone(), mu.clone(), wg.clone());
                go(move || {
                    for a in program {
                        mu.lock();
                        match a {
                            Access::Read(i) => { vars[i].get(); }
                            Access::Write(i) => vars[i].set(1),
                        }
                        mu.unlock();
                    }
                    wg.done();
                });
            }
            wg.wait();
        }));
        prop_assert_eq!(found.failed(), 0, "{:?}", found.first_failure.map(|f| f.report.message));
    }
}
