//! The sync package: Mutex, RWMutex (writer preference), WaitGroup, Cond, Once, atomics.

use primitives::explore::Engine;
use primitives::sync::{AtomicI64, Cond, Mutex, Once, RwMutex, WaitGroup};
use primitives::{go, Chan, Shared, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean, expect_with, settings};

#[rstest]
fn a_mutex_is_not_reentrant(
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
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        let mu = Mutex::new();
        mu.lock();
        mu.lock();
    });
    assert!(r.dump.contains("[sync.Mutex.Lock]"), "{}", r.dump);
}

#[rstest]
fn any_goroutine_may_unlock_a_mutex(
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
        let mu = Mutex::new();
        mu.lock();
        let m = mu.clone();
        go(move || m.unlock());
        mu.lock();
        mu.unlock();
    });
}

#[rstest]
fn unlock_of_unlocked_mutex_is_fatal(
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
    expect(
        engine,
        Verdict::Panic,
        "sync: unlock of unlocked mutex",
        || Mutex::new().unlock(),
    );
}

#[rstest]
fn try_lock_does_not_block(
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
        let mu = Mutex::new();
        assert!(mu.try_lock());
        assert!(!mu.try_lock());
        mu.unlock();
    });
}

#[rstest]
fn mutex_excludes_and_counts_every_increment(
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
        let (mu, n, wg) = (Mutex::new(), Shared::new(0), WaitGroup::new());
        for _ in 0..2 {
            wg.add(1);
            let (mu, n, wg) = (mu.clone(), n.clone(), wg.clone());
            go(move || {
                mu.lock();
                n.set(n.get() + 1);
                mu.unlock();
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(n.get(), 2);
    });
}

#[rstest]
fn readers_share_the_lock_while_no_writer_waits(
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
        let rw = RwMutex::new();
        rw.rlock();
        let (r, done) = (rw.clone(), WaitGroup::new());
        done.add(1);
        let d = done.clone();
        go(move || {
            r.rlock();
            r.runlock();
            d.done();
        });
        done.wait();
        rw.rlock();
        rw.runlock();
        rw.runlock();
    });
}

/// kubernetes#62464's shape: a goroutine holds a read lock and takes it again; a writer that
/// arrives in between blocks the second RLock, and the writer waits for the first.
#[rstest]
fn recursive_read_lock_deadlocks_while_a_writer_waits(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs
    )]
    engine: Engine,
) {
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        let rw = RwMutex::new();
        let w = rw.clone();
        go(move || {
            w.lock();
            w.unlock();
        });
        rw.rlock();
        rw.rlock();
        rw.runlock();
        rw.runlock();
    });
    // (The alternative implementation, built from channels, waits on its semaphores instead.)
    if !cfg!(feature = "rwmutex-go") {
        assert!(r.dump.contains("[sync.RWMutex.RLock]"), "{}", r.dump);
        assert!(r.dump.contains("[sync.RWMutex.Lock]"), "{}", r.dump);
    }
}

#[rstest]
fn a_writer_excludes_readers(
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
        let (rw, x, wg) = (RwMutex::new(), Shared::new(0), WaitGroup::new());
        wg.add(2);
        let (w, xw, wgw) = (rw.clone(), x.clone(), wg.clone());
        go(move || {
            w.lock();
            xw.set(1);
            w.unlock();
            wgw.done();
        });
        let (r, xr, wgr) = (rw.clone(), x.clone(), wg.clone());
        go(move || {
            r.rlock();
            let _ = xr.get();
            r.runlock();
            wgr.done();
        });
        wg.wait();
    });
}

#[rstest]
fn rwmutex_misuse_is_fatal(
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
    expect(
        engine,
        Verdict::Panic,
        "sync: RUnlock of unlocked RWMutex",
        || RwMutex::new().runlock(),
    );
    expect(
        engine,
        Verdict::Panic,
        "sync: Unlock of unlocked RWMutex",
        || RwMutex::new().unlock(),
    );
}

#[rstest]
fn waitgroup_counter_may_not_go_negative(
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
    expect(
        engine,
        Verdict::Panic,
        "sync: negative WaitGroup counter",
        || WaitGroup::new().done(),
    );
}

#[rstest]
fn waitgroup_reused_before_wait_returned_panics(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs
    )]
    engine: Engine,
) {
    // With the race detector on, main's Add from zero races the blocked waiter's Wait first
    // (Go marks its own reuse tests `knownRacy`; see `race.rs`): the panic is what Go does
    // without `-race`.
    let mut s = settings(engine);
    s.race_detector = false;
    expect_with(
        &s,
        Verdict::Panic,
        "sync: WaitGroup is reused before previous Wait has returned",
        || {
            let wg = WaitGroup::new();
            wg.add(1);
            let w = wg.clone();
            go(move || w.wait());
            wg.done();
            wg.add(1);
            wg.done();
        },
    );
}

#[rstest]
fn waitgroup_wait_returns_after_every_done(
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
        let wg = WaitGroup::new();
        wg.add(2);
        for _ in 0..2 {
            let w = wg.clone();
            go(move || w.done());
        }
        wg.wait();
    });
}

/// Two goroutines wait on a condition; `wake` wakes them. Returns when both have woken.
fn two_waiters(wake: fn(&Cond)) {
    let mu = Mutex::new();
    let (cond, arrived) = (Cond::new(&mu), Cond::new(&mu));
    let (count, wg) = (Shared::new(0), WaitGroup::new());
    for _ in 0..2 {
        wg.add(1);
        let (mu, cond, arrived, count, wg) = (
            mu.clone(),
            cond.clone(),
            arrived.clone(),
            count.clone(),
            wg.clone(),
        );
        go(move || {
            mu.lock();
            count.set(count.get() + 1);
            arrived.signal();
            cond.wait();
            mu.unlock();
            wg.done();
        });
    }
    mu.lock();
    while count.get() < 2 {
        arrived.wait();
    }
    wake(&cond);
    mu.unlock();
    wg.wait();
}

#[rstest]
fn cond_signal_wakes_one_waiter(
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
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        two_waiters(Cond::signal)
    });
    assert!(r.dump.contains("[sync.Cond.Wait]"), "{}", r.dump);
}

#[rstest]
fn cond_broadcast_wakes_every_waiter(
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
    expect_clean(engine, || two_waiters(Cond::broadcast));
}

#[rstest]
fn recursive_once_do_deadlocks(
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
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        let once = Once::new();
        let inner = once.clone();
        once.do_(move || inner.do_(|| {}));
    });
    assert!(r.dump.contains("[sync.Once.Do]"), "{}", r.dump);
}

#[rstest]
fn once_runs_its_function_once_for_everyone(
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
        let (once, n, wg) = (Once::new(), Shared::new(0), WaitGroup::new());
        for _ in 0..2 {
            wg.add(1);
            let (once, n, wg) = (once.clone(), n.clone(), wg.clone());
            go(move || {
                once.do_(|| n.set(n.get() + 1));
                // Once's function happens before every Do returns: no race here.
                assert_eq!(n.get(), 1);
                wg.done();
            });
        }
        wg.wait();
    });
}

#[rstest]
fn a_reset_once_runs_its_function_again(
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
        let (once, n) = (Once::new(), Shared::new(0));
        once.do_(|| n.set(n.get() + 1));
        once.reset();
        once.do_(|| n.set(n.get() + 1));
        assert_eq!(n.get(), 2);
    });
}

#[rstest]
fn resetting_a_once_inside_its_function_is_fatal(
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
    // `once = sync.Once{}` zeroes the mutex `Do` holds; its Unlock when `f` returns throws.
    let mut s = settings(engine);
    s.race_detector = false;
    expect_with(
        &s,
        Verdict::Panic,
        "fatal error: sync: unlock of unlocked mutex",
        || {
            let once = Once::new();
            let (inside, ok, done) = (Chan::new(0), Chan::new(0), Chan::new(0));
            let (o, i, k, d) = (once.clone(), inside.clone(), ok.clone(), done.clone());
            go(move || {
                o.do_(|| {
                    i.send(());
                    k.recv();
                });
                d.send(());
            });
            inside.recv();
            once.reset();
            ok.send(());
            done.recv();
        },
    );
}

#[rstest]
fn a_reset_unordered_with_a_do_is_a_race(
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
    // The reset is a plain write of the Once; Do loads `done` atomically.
    expect(engine, Verdict::Race, "DATA RACE on Once", || {
        let once = Once::new();
        let o = once.clone();
        go(move || o.do_(|| {}));
        once.reset();
    });
}

#[rstest]
fn atomic_adds_are_never_lost(
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
        let (n, wg) = (AtomicI64::new(0), WaitGroup::new());
        for _ in 0..2 {
            wg.add(1);
            let (n, wg) = (n.clone(), wg.clone());
            go(move || {
                n.add(1);
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(n.load(), 2);
        assert!(n.compare_and_swap(2, 5));
        assert_eq!(n.swap(1), 5);
    });
}

/// A goroutine that unlocks and relocks in a loop cannot starve a waiter forever: after the
/// waiter loses one race, the mutex hands it the lock (Go's starvation mode). So every
/// execution ends, well within the step cap: one cut there would be the waiter starved.
#[rstest]
fn a_relocking_loop_does_not_starve_a_waiter(
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
    let found = expect_clean(engine, || {
        let (mu, ready) = (Mutex::new(), Shared::new(false));
        let (m, r) = (mu.clone(), ready.clone());
        go(move || {
            m.lock();
            r.set(true);
            m.unlock();
        });
        mu.lock();
        while !ready.get() {
            mu.unlock();
            mu.lock();
        }
        mu.unlock();
    });
    assert_eq!(
        found.bound_reached, 0,
        "{engine}: the waiter was starved until the step cap in some executions"
    );
}

#[rstest]
fn a_cond_over_the_read_side_of_an_rwmutex_wakes_its_reader(
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
        let rw = RwMutex::new();
        let cond = Cond::new(&rw.rlocker());
        let ready = Shared::new(false);
        let (c, r, w) = (cond.clone(), ready.clone(), rw.clone());
        go(move || {
            w.lock();
            r.set(true);
            w.unlock();
            c.broadcast();
        });
        rw.rlock();
        while !ready.get() {
            cond.wait();
        }
        rw.runlock();
    });
}

/// A waiter that returns holding the read lock, as `Cond.Wait` leaves it: the next writer
/// blocks forever (the kubernetes#20697 shape).
#[rstest]
fn a_cond_waiter_returns_holding_the_read_lock(
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
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        let rw = RwMutex::new().named("w");
        let cond = Cond::new(&rw.rlocker());
        let ready = Shared::new(false);
        let done = primitives::Chan::new(0);
        let (c, w, r, d) = (cond.clone(), rw.clone(), ready.clone(), done.clone());
        go(move || {
            w.rlock();
            while !r.get() {
                c.wait();
            }
            d.send(()); // returns still holding the read lock
        });
        rw.lock();
        ready.set(true);
        rw.unlock();
        cond.broadcast();
        done.recv();
        rw.lock();
    });
    assert!(r.dump.contains("\"g1\" [finished]"), "{}", r.dump);
}

#[rstest]
fn a_signal_between_the_unlock_and_the_wait_is_not_lost(
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
    // Signalling without the lock is allowed in Go; the waiter's ticket was taken under it.
    expect_clean(engine, || {
        let mu = Mutex::new();
        let cond = Cond::new(&mu);
        let ready = Shared::new(false);
        let (c, r, m) = (cond.clone(), ready.clone(), mu.clone());
        go(move || {
            m.lock();
            r.set(true);
            m.unlock();
            c.signal();
        });
        mu.lock();
        while !ready.get() {
            cond.wait();
        }
        mu.unlock();
    });
}

#[rstest]
fn rwmutex_try_locks_fail_while_the_other_side_holds_it(
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
        let rw = RwMutex::new();
        assert!(rw.try_rlock());
        assert!(rw.try_rlock(), "readers share the lock");
        assert!(!rw.try_lock(), "a writer cannot take a read-held lock");
        rw.runlock();
        rw.runlock();
        assert!(rw.try_lock());
        assert!(!rw.try_rlock(), "a reader cannot take a write-held lock");
        assert!(!rw.try_lock());
        rw.unlock();
    });
}

#[rstest]
fn once_func_and_once_value_run_their_function_once(
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
    use primitives::sync::{once_func, once_value, once_values};
    expect_clean(engine, || {
        let calls = Shared::new(0);
        let c = calls.clone();
        let init = once_func(move || c.set(c.get() + 1));
        let value = once_value(|| 7);
        let pair = once_values(|| (1, "one"));
        let (i, v) = (init.clone(), value.clone());
        let wg = WaitGroup::new();
        wg.go(move || {
            i();
            assert_eq!(v(), 7);
        });
        init();
        assert_eq!(value(), 7);
        assert_eq!(pair(), (1, "one"));
        wg.wait();
        assert_eq!(calls.get(), 1);
    });
}

#[rstest]
fn waitgroup_go_counts_the_goroutine_it_starts(
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
        let wg = WaitGroup::new();
        let n = Shared::new(0);
        let m = n.clone();
        wg.go(move || m.set(1));
        wg.wait();
        assert_eq!(
            n.get(),
            1,
            "Wait returns after the goroutine, and sees its write"
        );
    });
}
