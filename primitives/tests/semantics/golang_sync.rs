//! Go's own tests of the sync package, ported from `src/sync`: `mutex_test.go`,
//! `rwmutex_test.go`, `waitgroup_test.go`, `cond_test.go`, `once_test.go` and
//! `oncefunc_test.go`. Each test is named after its Go test and says what was scaled down (as
//! in `golang.rs`: loop counts of two or three, at most four goroutines besides main where
//! loom runs it).

use std::time::Duration;

use primitives::explore::Engine;
use primitives::sync::{
    once_func, once_value, once_values, AtomicI32, Cond, Mutex, Once, RwMutex, WaitGroup,
};
use primitives::{go, gosched, recover, select, time, Chan, Shared};
use rstest::rstest;

use crate::harness::{expect_clean, expect_clean_lazy};

/// From `src/sync/mutex_test.go`, `TestMutex`: `TryLock` fails on a locked mutex and succeeds on
/// an unlocked one; then goroutines hammer the mutex (`HammerMutex`). Scaled: Go's ten
/// goroutines of a thousand iterations are two of two; a counter under the lock checks mutual
/// exclusion, as the race detector does in Go's run under `-race`.
#[rstest]
fn test_mutex(
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
        let m = Mutex::new();
        m.lock();
        assert!(!m.try_lock(), "TryLock succeeded with mutex locked");
        m.unlock();
        assert!(m.try_lock(), "TryLock failed with mutex unlocked");
        m.unlock();

        let (n, done) = (Shared::new(0), Chan::<bool>::new(0));
        for _ in 0..2 {
            let (m, n, done) = (m.clone(), n.clone(), done.clone());
            go(move || {
                for _ in 0..2 {
                    m.lock();
                    n.set(n.get() + 1);
                    m.unlock();
                }
                done.send(true);
            });
        }
        for _ in 0..2 {
            done.recv();
        }
        assert_eq!(n.get(), 4);
    });
}

/// From `src/sync/rwmutex_test.go`, `TestRWMutex` (`HammerRWMutex`): readers add 1 to an
/// activity counter and writers 10000 while holding the lock; a reader must never see a
/// writer's share, a writer must see only its own. Scaled: Go's ten readers and a writer of a
/// thousand iterations (and its GOMAXPROCS variations) are two readers and one writer of one
/// iteration each; Go's busy-wait inside the critical sections is left out.
#[rstest]
fn test_rwmutex(
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
        let (rw, activity, cdone) = (RwMutex::new(), AtomicI32::new(0), Chan::<bool>::new(0));
        {
            let (rw, activity, cdone) = (rw.clone(), activity.clone(), cdone.clone());
            go(move || {
                rw.lock();
                let n = activity.add(10000);
                assert_eq!(n, 10000, "wlock({n})");
                activity.add(-10000);
                rw.unlock();
                cdone.send(true);
            });
        }
        for _ in 0..2 {
            let (rw, activity, cdone) = (rw.clone(), activity.clone(), cdone.clone());
            go(move || {
                rw.rlock();
                let n = activity.add(1);
                assert!((1..10000).contains(&n), "rlock({n})");
                activity.add(-1);
                rw.runlock();
                cdone.send(true);
            });
        }
        for _ in 0..3 {
            cdone.recv();
        }
    });
}

/// From `src/sync/waitgroup_test.go`, `TestWaitGroup` (`testWaitGroup`): goroutines report in
/// on one WaitGroup and wait on a second; none may pass the second before main has called every
/// `Done` on it. Scaled: Go's sixteen goroutines are three.
#[rstest]
fn test_waitgroup(
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
        const N: usize = 3;
        let (wg1, wg2) = (WaitGroup::new(), WaitGroup::new());
        wg1.add(N as i64);
        wg2.add(N as i64);
        let exited = Chan::<bool>::new(N);
        for _ in 0..N {
            let (wg1, wg2, exited) = (wg1.clone(), wg2.clone(), exited.clone());
            go(move || {
                wg1.done();
                wg2.wait();
                exited.send(true);
            });
        }
        wg1.wait();
        for _ in 0..N {
            select! {
                recv(exited) -> _ => panic!("WaitGroup released group too soon"),
                default => {},
            }
            wg2.done();
        }
        for _ in 0..N {
            exited.recv();
        }
    });
}

/// From `src/sync/cond_test.go`, `TestCondSignal`: each `Signal` wakes exactly one waiter, and a
/// `Signal` with no waiter is a no-op. Scaled: Go's two waiters are kept; they already fit.
#[rstest]
fn test_cond_signal(
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
        let m = Mutex::new();
        let c = Cond::new(&m);
        let mut n = 2;
        let (running, awake) = (Chan::<bool>::new(n), Chan::<bool>::new(n));
        for _ in 0..n {
            let (m, c, running, awake) = (m.clone(), c.clone(), running.clone(), awake.clone());
            go(move || {
                m.lock();
                running.send(true);
                c.wait();
                awake.send(true);
                m.unlock();
            });
        }
        for _ in 0..n {
            running.recv();
        }
        while n > 0 {
            select! {
                recv(awake) -> _ => panic!("goroutine not asleep"),
                default => {},
            }
            m.lock();
            c.signal();
            m.unlock();
            awake.recv();
            select! {
                recv(awake) -> _ => panic!("too many goroutines awake"),
                default => {},
            }
            n -= 1;
        }
        c.signal();
    });
}

/// From `src/sync/once_test.go`, `TestOnce`: goroutines race into `Do`; the function runs once,
/// and every `Do` returns only after it has run. Scaled: Go's ten goroutines are three.
#[rstest]
fn test_once(
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
        let (once, o, c) = (Once::new(), Shared::new(0), Chan::<bool>::new(0));
        for _ in 0..3 {
            let (once, o, c) = (once.clone(), o.clone(), c.clone());
            go(move || {
                once.do_(|| o.set(o.get() + 1));
                assert_eq!(o.get(), 1, "once failed inside run");
                c.send(true);
            });
        }
        for _ in 0..3 {
            c.recv();
        }
        assert_eq!(o.get(), 1, "once failed outside run");
    });
}

/// From `src/sync/rwmutex_test.go`, `TestParallelReaders`: readers all hold the read lock at
/// once (each reports in while holding it, then waits to be told to unlock). Go's three runs
/// (one, three and four readers) are the three cases; its GOMAXPROCS settings have no
/// counterpart.
#[rstest]
fn test_parallel_readers(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(1, 3, 4)] num_readers: usize,
) {
    expect_clean(engine, move || {
        let m = RwMutex::new();
        let (clocked, cunlock, cdone) = (
            Chan::<bool>::new(0),
            Chan::<bool>::new(0),
            Chan::<bool>::new(0),
        );
        for _ in 0..num_readers {
            let (m, clocked, cunlock, cdone) =
                (m.clone(), clocked.clone(), cunlock.clone(), cdone.clone());
            go(move || {
                m.rlock();
                clocked.send(true);
                cunlock.recv();
                m.runlock();
                cdone.send(true);
            });
        }
        for _ in 0..num_readers {
            clocked.recv();
        }
        for _ in 0..num_readers {
            cunlock.send(true);
        }
        for _ in 0..num_readers {
            cdone.recv();
        }
    });
}

/// From `src/sync/rwmutex_test.go`, `TestRLocker`: `RLocker()` read-locks (a writer waits while
/// a reader holds it through the locker) and respects the write lock (the locker waits while a
/// writer holds it). Scaled: Go's ten rounds are two.
#[rstest]
fn test_rlocker(
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
        const N: usize = 2;
        let wl = RwMutex::new();
        let rl = wl.rlocker();
        let (wlocked, rlocked) = (Chan::<bool>::new(1), Chan::<bool>::new(1));
        {
            let (wl, rl, wlocked, rlocked) =
                (wl.clone(), rl.clone(), wlocked.clone(), rlocked.clone());
            go(move || {
                for _ in 0..N {
                    rl.lock();
                    rl.lock();
                    rlocked.send(true);
                    wl.lock();
                    wlocked.send(true);
                }
            });
        }
        for _ in 0..N {
            rlocked.recv();
            rl.unlock();
            select! {
                recv(wlocked) => panic!("RLocker() didn't read-lock it"),
                default => {},
            }
            rl.unlock();
            wlocked.recv();
            select! {
                recv(rlocked) => panic!("RLocker() didn't respect the write lock"),
                default => {},
            }
            wl.unlock();
        }
    });
}

/// From `src/sync/waitgroup_test.go`, `TestWaitGroupMisuse`: a second `Done` after `Add(1)`
/// panics with `sync: negative WaitGroup counter`, and the panic can be recovered.
#[rstest]
fn test_waitgroup_misuse(
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
        let err = recover(|| {
            let wg = WaitGroup::new();
            wg.add(1);
            wg.done();
            wg.done();
        })
        .expect_err("Should panic");
        assert_eq!(err.value, "sync: negative WaitGroup counter");
    });
}

/// From `src/sync/waitgroup_test.go`, `TestWaitGroupRace`: `Wait` returns only after both
/// goroutines' `Done`, so it sees both atomic increments. Scaled: Go's thousand rounds are one;
/// the engines explore the interleavings the rounds sample.
#[rstest]
fn test_waitgroup_race(
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
        let (wg, n) = (WaitGroup::new(), AtomicI32::new(0));
        for _ in 0..2 {
            wg.add(1);
            let (wg, n) = (wg.clone(), n.clone());
            go(move || {
                n.add(1);
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(n.load(), 2, "Spurious wakeup from Wait");
    });
}

/// From `src/sync/cond_test.go`, `TestCondSignalGenerations`: `Signal` wakes the goroutine that
/// has waited longest. Each new goroutine waits, then main signals; the one woken must be the
/// one that started waiting before it. Scaled: Go's hundred goroutines are three.
#[rstest]
fn test_cond_signal_generations(
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
        const N: i32 = 3;
        let m = Mutex::new();
        let c = Cond::new(&m);
        let (running, awake) = (Chan::<bool>::new(N as usize), Chan::<i32>::new(N as usize));
        for i in 0..N {
            let (m2, c2, running2, awake2) = (m.clone(), c.clone(), running.clone(), awake.clone());
            go(move || {
                m2.lock();
                running2.send(true);
                c2.wait();
                awake2.send(i);
                m2.unlock();
            });
            if i > 0 {
                let a = awake.recv().unwrap();
                assert_eq!(a, i - 1, "wrong goroutine woke up");
            }
            running.recv();
            m.lock();
            c.signal();
            m.unlock();
        }
    });
}

/// From `src/sync/cond_test.go`, `TestCondBroadcast`: every round, `Broadcast` wakes each
/// waiting goroutine exactly once; after the last round they see `exit` and leave. Scaled: Go's
/// two hundred goroutines and rounds are two of each. `exit` is a [`Shared`] read and written
/// under the mutex, as in Go.
#[rstest]
fn test_cond_broadcast(
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
        const N: usize = 2;
        let m = Mutex::new();
        let c = Cond::new(&m);
        let (running, awake) = (Chan::<usize>::new(N), Chan::<usize>::new(N));
        let exit = Shared::new(false);
        for g in 0..N {
            let (m, c, running, awake, exit) = (
                m.clone(),
                c.clone(),
                running.clone(),
                awake.clone(),
                exit.clone(),
            );
            go(move || {
                m.lock();
                while !exit.get() {
                    running.send(g);
                    c.wait();
                    awake.send(g);
                }
                m.unlock();
            });
        }
        for i in 0..N {
            for _ in 0..N {
                running.recv();
            }
            if i == N - 1 {
                m.lock();
                exit.set(true);
                m.unlock();
            }
            select! {
                recv(awake) => panic!("goroutine not asleep"),
                default => {},
            }
            m.lock();
            c.broadcast();
            m.unlock();
            let mut seen = [false; N];
            for _ in 0..N {
                let g = awake.recv().unwrap();
                assert!(!seen[g], "goroutine woke up twice");
                seen[g] = true;
            }
        }
        select! {
            recv(running) => panic!("goroutine did not exit"),
            default => {},
        }
        c.broadcast();
    });
}

/// From `src/sync/cond_test.go`, `TestRace`: three goroutines hand `x` along under the Cond's
/// lock, two of them polling with `Gosched` between unlock and lock; each must see the value
/// the one before it wrote. Kept whole; `x` is a [`Shared`], so the race detector checks that
/// the lock orders every access.
#[rstest]
fn test_race(
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
        let x = Shared::new(0);
        let m = Mutex::new();
        let c = Cond::new(&m);
        let done = Chan::<bool>::new(0);
        {
            let (x, m, c, done) = (x.clone(), m.clone(), c.clone(), done.clone());
            go(move || {
                m.lock();
                x.set(1);
                c.wait();
                assert_eq!(x.get(), 2, "want 2");
                x.set(3);
                c.signal();
                m.unlock();
                done.send(true);
            });
        }
        {
            let (x, m, c, done) = (x.clone(), m.clone(), c.clone(), done.clone());
            go(move || {
                m.lock();
                loop {
                    if x.get() == 1 {
                        x.set(2);
                        c.signal();
                        break;
                    }
                    m.unlock();
                    gosched();
                    m.lock();
                }
                m.unlock();
                done.send(true);
            });
        }
        {
            let (x, m, c, done) = (x.clone(), m.clone(), c.clone(), done.clone());
            go(move || {
                m.lock();
                loop {
                    if x.get() == 2 {
                        c.wait();
                        assert_eq!(x.get(), 3, "want 3");
                        break;
                    }
                    if x.get() == 3 {
                        break;
                    }
                    m.unlock();
                    gosched();
                    m.lock();
                }
                m.unlock();
                done.send(true);
            });
        }
        for _ in 0..3 {
            done.recv();
        }
    });
}

/// From `src/sync/cond_test.go`, `TestCondSignalStealing`: a `Broadcast` racing with a new
/// waiter must still wake the goroutine that was already waiting (the new one may or may not
/// be woken). Scaled: Go's thousand rounds are one; Go's two-second watchdog is a lazy timer,
/// which fires only if the first waiter could never be woken.
#[rstest]
fn test_cond_signal_stealing(
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
    expect_clean_lazy(engine, || {
        let m = Mutex::new();
        let cond = Cond::new(&m);
        let ch = Chan::<()>::new(0);
        {
            let (m, cond, ch) = (m.clone(), cond.clone(), ch.clone());
            go(move || {
                m.lock();
                ch.send(());
                cond.wait();
                m.unlock();
                ch.send(());
            });
        }
        ch.recv();
        m.lock();
        m.unlock();
        let done = Shared::new(false);
        let c = cond.clone();
        go(move || c.broadcast());
        {
            let (m, cond, done) = (m.clone(), cond.clone(), done.clone());
            go(move || {
                m.lock();
                while !done.get() {
                    cond.wait();
                }
                m.unlock();
            });
        }
        select! {
            recv(ch) => {},
            recv(time::after(Duration::from_secs(2))) => panic!("First waiter didn't get broadcast."),
        }
        m.lock();
        done.set(true);
        m.unlock();
        cond.broadcast();
    });
}

/// From `src/sync/once_test.go`, `TestOncePanic`: a function that panics counts as run; the
/// panic reaches `Do`'s caller, and a later `Do` does not call its function.
#[rstest]
fn test_once_panic(
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
        let once = Once::new();
        let r = recover(|| once.do_(|| primitives::panic("failed")));
        assert!(r.is_err(), "Once.Do did not panic");
        once.do_(|| panic!("Once.Do called twice"));
    });
}

/// From `src/sync/oncefunc_test.go`, `TestOnceFunc`, `TestOnceValue`, `TestOnceValues`: the
/// function runs on the first call only, and the value functions return its results on every
/// call. Go's allocation counts have no counterpart.
#[rstest]
fn test_once_func_value_values(
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
        let calls = Shared::new(0);
        let of = {
            let calls = calls.clone();
            move || calls.set(calls.get() + 1)
        };
        let f = once_func(of);
        for _ in 0..3 {
            f();
        }
        assert_eq!(calls.get(), 1, "OnceFunc: want calls==1");

        let calls = Shared::new(0);
        let of = {
            let calls = calls.clone();
            move || {
                calls.set(calls.get() + 1);
                calls.get()
            }
        };
        let f = once_value(of);
        f();
        assert_eq!((f(), calls.get()), (1, 1), "OnceValue");

        let calls = Shared::new(0);
        let of = {
            let calls = calls.clone();
            move || {
                calls.set(calls.get() + 1);
                (calls.get(), calls.get() + 1)
            }
        };
        let f = once_values(of);
        f();
        assert_eq!((f(), calls.get()), ((1, 2), 1), "OnceValues");
    });
}

/// `testOncePanicX`: the first call and a second one both panic with `x`, and the function ran
/// once.
fn once_panics_x(f: impl Fn(), calls: &Shared<i32>) {
    for label in ["first time", "second time"] {
        let p = recover(&f).expect_err(label);
        assert_eq!(p.value, "x", "{label}: want panic x");
    }
    assert_eq!(calls.get(), 1, "want calls==1");
}

/// From `src/sync/oncefunc_test.go`, `TestOnceFuncPanic`, `TestOnceValuePanic`,
/// `TestOnceValuesPanic` (`testOncePanicX`): when the function panics, the first call and every
/// later one panic with its value, and the function runs once. Go's `TestOnceFuncPanicNil`
/// (`panic(nil)`), `TestOnceFuncGoexit` (`runtime.Goexit`) and the traceback and GC tests have
/// no counterpart here.
#[rstest]
fn test_once_func_panic(
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
        let calls = Shared::new(0);
        let c = calls.clone();
        let f = once_func(move || {
            c.set(c.get() + 1);
            primitives::panic("x");
        });
        once_panics_x(f, &calls);

        let calls = Shared::new(0);
        let c = calls.clone();
        let f = once_value(move || -> i32 {
            c.set(c.get() + 1);
            primitives::panic("x")
        });
        once_panics_x(
            move || {
                f();
            },
            &calls,
        );

        let calls = Shared::new(0);
        let c = calls.clone();
        let f = once_values(move || -> (i32, i32) {
            c.set(c.get() + 1);
            primitives::panic("x")
        });
        once_panics_x(
            move || {
                f();
            },
            &calls,
        );
    });
}
