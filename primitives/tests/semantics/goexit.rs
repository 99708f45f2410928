//! `runtime.Goexit`: the calling goroutine ends after running its deferred calls; `recover`
//! does not stop it; the goroutine's end is a normal one; a panic raised by a deferred call on
//! the way replaces it. Go's programs named here are in src/runtime/testdata/testprog/deadlock.go
//! (run by src/runtime/crash_test.go), ported to what they check: where Go's expect `fatal
//! error: no goroutines (main called runtime.Goexit) - deadlock!`, the Goexit of main's
//! goroutine, these run it on a goroutine main waits for (see `goexit`'s docs for main).

use primitives::explore::Engine;
use primitives::sync::{Mutex, Once, WaitGroup};
use primitives::{defer, go, goexit, recover, Chan, Shared, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean};

/// `t.FailNow()` in miniature: a function that Goexits, whose caller looks as if it returns.
fn fail_now() {
    goexit();
}

/// Goexits, then marks `after` (which must never happen).
fn goexit_and_mark(after: &Shared<bool>) {
    fail_now();
    after.set(true);
}

/// The deferred calls run, last deferred first, and a deferred Unlock frees the lock.
#[rstest]
fn deferred_calls_run_during_goexit_last_first(
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
        let (done, order, mu) = (Chan::<()>::new(0), Shared::new(0u32), Mutex::new());
        let (d, o, m) = (done.clone(), order.clone(), mu.clone());
        go(move || {
            let _close = defer(move || d.close());
            let o2 = o.clone();
            let _first = defer(move || o.set(o.get() * 10 + 1));
            let _second = defer(move || o2.set(o2.get() * 10 + 2));
            m.lock();
            let _unlock = defer(|| m.unlock());
            goexit();
        });
        done.recv();
        assert_eq!(
            order.get(),
            21,
            "deferred calls ran out of order (or not at all)"
        );
        assert!(mu.try_lock(), "the deferred Unlock did not run");
        mu.unlock();
    });
}

/// `recover` does not stop a Goexit (Go's `recover()` returns nil during one): the unwinding
/// goes on through it, and the code after it never runs; nor does the code after a call of a
/// function that Goexits (`t.FailNow()`'s caller).
#[rstest]
fn recover_does_not_stop_goexit_and_code_after_it_never_runs(
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
        let (done, after) = (Chan::<()>::new(0), Shared::new(0u32));
        let (d, a) = (done.clone(), after.clone());
        go(move || {
            let _close = defer(move || d.close());
            let r = recover(|| {
                fail_now();
                a.set(1); // after the call that Goexits
            });
            let _ = r;
            a.set(2); // after the recover
        });
        done.recv();
        assert_eq!(after.get(), 0, "code after the Goexit ran");
    });
}

/// A goroutine that Goexits has ended: a `wg.Done()` it deferred lets `Wait` return, as does
/// `wg.Go`'s own, and nothing is reported (no leak, no panic).
#[rstest]
fn a_goroutine_that_goexits_has_ended_normally(
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
        wg.add(1);
        let w = wg.clone();
        go(move || {
            let _done = defer(move || w.done());
            goexit();
        });
        wg.go(|| goexit());
        wg.wait();
    });
}

/// Go's `PanicAfterGoexit` (src/runtime/testdata/testprog/deadlock.go): a panic raised by a
/// deferred call during a Goexit replaces it, and nobody recovers it; here on a goroutine,
/// whose earlier deferred close still runs while the panic unwinds.
#[rstest]
fn a_panic_in_a_deferred_call_replaces_goexit(
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
    expect(engine, Verdict::Panic, "panic: hello", || {
        let done = Chan::<()>::new(0);
        let d = done.clone();
        go(move || {
            let _close = defer(move || d.close());
            let _panic = defer(|| primitives::panic("hello"));
            goexit();
        });
        done.recv();
    });
}

/// `PanicAfterGoexit` as Go writes it, on main: the panic replaces main's Goexit.
#[rstest]
fn a_panic_in_a_deferred_call_replaces_goexit_on_main(
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
    expect(engine, Verdict::Panic, "panic: hello", || {
        let _panic = defer(|| primitives::panic("hello"));
        goexit();
    });
}

/// Go's `RecoveredPanicAfterGoexit`: a deferred call that raises a panic and recovers it
/// itself leaves the Goexit going: the deferred calls before it still run.
#[rstest]
fn a_panic_recovered_inside_a_deferred_call_leaves_goexit_going(
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
        let (done, after) = (Chan::<()>::new(0), Shared::new(false));
        let (d, a) = (done.clone(), after.clone());
        go(move || {
            let _close = defer(move || d.close());
            let _inner = defer(|| {
                let r = recover(|| primitives::panic("hello"));
                assert_eq!(r.unwrap_err().value, "hello", "bad recover");
            });
            goexit_and_mark(&a);
        });
        done.recv();
        assert!(!after.get(), "code after the Goexit ran");
    });
}

/// Go's `GoexitInPanic`: a Goexit called by a deferred call while a panic unwinds ends the
/// goroutine quietly (the panic is dropped, as in Go, where the program then runs on).
#[rstest]
fn goexit_in_a_deferred_call_ends_a_panicking_goroutine_quietly(
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
        let done = Chan::<()>::new(0);
        let d = done.clone();
        go(move || {
            let _close = defer(move || d.close());
            let _exit = defer(|| goexit());
            primitives::panic("hello");
        });
        done.recv();
    });
}

/// Go's `RecoverBeforePanicAfterGoexit`, where this crate keeps Go's behaviour before 1.14: a
/// `recover` further up stops the panic that replaced a Goexit, and its function returns
/// normally, the Goexit forgotten. (Since Go 1.14 the Goexit resumes once the recovering
/// deferred call returns, and the code after it never runs; see `goexit`'s docs.)
#[rstest]
fn a_recovered_panic_that_replaced_goexit_ends_it_as_before_go_1_14(
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
        let (done, after) = (Chan::<()>::new(0), Shared::new(false));
        let (d, a) = (done.clone(), after.clone());
        go(move || {
            let _close = defer(move || d.close());
            let r = recover(|| {
                let _panic = defer(|| primitives::panic("hello"));
                goexit();
            });
            assert_eq!(r.unwrap_err().value, "hello", "bad recover");
            a.set(true);
        });
        done.recv();
        assert!(after.get(), "the function did not return after its recover");
    });
}

/// `Once.Do` whose function Goexits counts as done (Go's `doSlow` marks it in a deferred call):
/// a later `Do` returns without calling anything.
#[rstest]
fn a_once_whose_function_goexits_is_done(
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
        let (once, calls, wg) = (Once::new(), Shared::new(0u32), WaitGroup::new());
        let (o, c) = (once.clone(), calls.clone());
        wg.go(move || {
            o.do_(|| {
                c.set(c.get() + 1);
                goexit();
            })
        });
        wg.wait();
        once.do_(|| calls.set(calls.get() + 1));
        assert_eq!(calls.get(), 1, "want calls==1");
    });
}

/// Goexit on the kernel's main body, which stands for a Go test function on `tRunner`'s
/// goroutine: the body ends after its deferred calls (here a close another goroutine waits
/// for), and the execution goes on as after main returns; clean once the others end.
#[rstest]
fn goexit_on_main_ends_the_body_after_its_deferred_calls(
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
        let (release, done) = (Chan::<()>::new(0), Shared::new(false));
        let (r, d) = (release.clone(), done.clone());
        go(move || {
            r.recv();
            d.set(true);
        });
        let _release = defer(move || release.close());
        goexit_and_mark(&done);
    });
}

/// ... and goroutines still blocked after main's Goexit are a leak, as after a return (a Go
/// program's `main` would die of `no goroutines (main called runtime.Goexit) - deadlock!` only
/// once all others had ended; a test function's Goexit ends the test).
#[rstest]
fn goroutines_blocked_after_goexit_on_main_are_a_leak(
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
    expect(engine, Verdict::Leak, "", || {
        let stuck = Chan::<()>::new(0);
        let s = stuck.clone();
        go(move || {
            s.recv();
        });
        goexit();
    });
}
