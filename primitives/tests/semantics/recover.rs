//! `panic` and `recover`: a Go panic unwinds its goroutine through its deferred calls, and a
//! `recover` stops it; one nobody recovers still ends the execution with verdict `panic`.

use primitives::explore::Engine;
use primitives::sync::Mutex;
use primitives::{defer, go, recover, Chan, Shared, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean};

#[rstest]
fn a_runtime_panic_is_recovered_with_gos_words(
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
        let ch = Chan::<()>::new(0);
        ch.close();
        let r = recover(|| ch.close());
        assert_eq!(r.unwrap_err().value, "close of closed channel");
        let r = recover(|| primitives::panic("boom"));
        assert_eq!(r.unwrap_err().value, "boom");
        assert_eq!(recover(|| 7), Ok(7));
    });
}

#[rstest]
fn deferred_calls_run_while_a_go_panic_unwinds(
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
        let r = recover(|| {
            mu.lock();
            let _unlock = defer(|| mu.unlock());
            primitives::panic("in the critical section");
        });
        assert!(r.is_err());
        // The deferred Unlock ran: the lock is free again.
        assert!(mu.try_lock());
        mu.unlock();
    });
}

#[rstest]
fn a_panic_in_a_deferred_call_replaces_the_first(
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
        let r = recover(|| {
            let _second = defer(|| primitives::panic("second"));
            primitives::panic("first");
        });
        assert_eq!(r.unwrap_err().value, "second");
    });
}

#[rstest]
fn a_panic_nobody_recovers_ends_the_execution(
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
    expect(engine, Verdict::Panic, "send on closed channel", || {
        let (ch, done) = (Chan::new(1), Chan::<()>::new(0));
        ch.close();
        let d = done.clone();
        go(move || {
            // Go runs this deferred close while the panic unwinds, then dies.
            let _close = defer(|| d.close());
            ch.send(1);
        });
        done.recv();
        // main may get here before the panic ends the execution.
    });
}

#[rstest]
fn a_kernel_assertion_is_not_a_go_panic(
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
        let _ = recover(|| assert_eq!(1, 2, "the kernel's own invariant"));
    });
}

/// Go's fatal errors (`throw`: unlock of an unlocked mutex, concurrent map writes) are not
/// panics: no `recover` stops them and no deferred call runs.
#[rstest]
fn a_fatal_error_is_not_recovered_and_runs_no_deferred_call(
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
        "fatal error: sync: unlock of unlocked mutex",
        || {
            let (mu, ran) = (Mutex::new(), Shared::new(false));
            let r = ran.clone();
            let _ = recover(move || {
                let _mark = defer(|| r.set(true));
                mu.unlock();
            });
            // Reached only if the fatal error were recovered; the deferred mark tells whether
            // the deferred call ran on the way.
            assert!(!ran.get(), "a deferred call ran during a fatal error");
        },
    );
}
