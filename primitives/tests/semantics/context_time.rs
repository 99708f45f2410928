//! context cancellation and virtual time.

use std::time::Duration;

use primitives::context::{self, ContextError};
use primitives::explore::Engine;
use primitives::time::{self, Ticker, Timer};
use primitives::{go, select, Chan, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean};

#[rstest]
fn cancel_closes_done_of_every_descendant(
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
        let (parent, cancel) = context::with_cancel(&context::background());
        let (child, _c1) = context::with_cancel(&parent);
        let (grandchild, _c2) = context::with_cancel(&child);
        let (sibling, _c3) = context::with_cancel(&context::background());
        let seen = Chan::new(1);
        let (g, s) = (grandchild.clone(), seen.clone());
        go(move || s.send(g.done().recv()));
        cancel.call();
        assert_eq!(seen.recv(), Some(None));
        assert_eq!(child.done().recv(), None);
        assert_eq!(grandchild.err(), Some(ContextError::Canceled));
        assert_eq!(sibling.err(), None);
    });
}

#[rstest]
fn a_context_derived_from_a_cancelled_one_starts_cancelled(
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
        let (parent, cancel) = context::with_cancel(&context::background());
        cancel.call();
        cancel.call(); // a second call does nothing
        let (child, _cancel) = context::with_cancel(&parent);
        assert_eq!(child.err(), Some(ContextError::Canceled));
    });
}

#[rstest]
fn background_is_never_done(
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
        context::background().done().recv();
    });
    assert!(r.dump.contains("nil chan"), "{}", r.dump);
}

#[rstest]
fn a_timeout_fires_in_virtual_time(
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
        let (ctx, _cancel) =
            context::with_timeout(&context::background(), Duration::from_secs(3600));
        assert_eq!(ctx.done().recv(), None);
        assert_eq!(ctx.err(), Some(ContextError::DeadlineExceeded));
        assert_eq!(time::now().since_start(), Duration::from_secs(3600));
    });
    assert!(found.schedules >= 1);
}

#[rstest]
fn sleep_moves_virtual_time_only(
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
        let start = time::now();
        time::sleep(Duration::from_secs(24 * 3600));
        assert_eq!(time::now() - start, Duration::from_secs(24 * 3600));
    });
}

/// Go's `Time.Add` never panics: past the end of virtual time, it stays there.
#[rstest]
fn time_added_past_the_end_of_time_saturates(
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
        time::sleep(Duration::MAX);
        let end = time::now();
        assert_eq!(end + Duration::from_secs(1), end);
        assert_eq!(end + Duration::MAX, end);
    });
}

#[rstest]
fn a_timer_fires_at_its_deadline(
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
        let armed = time::now();
        let fired = time::after(Duration::from_secs(2)).recv();
        assert_eq!(fired, Some(armed + Duration::from_secs(2)));
        let armed = time::now();
        let t = Timer::new(Duration::from_secs(1));
        assert_eq!(t.c().recv(), Some(armed + Duration::from_secs(1)));
        t.reset(Duration::from_secs(5));
        assert_eq!(t.c().recv(), Some(armed + Duration::from_secs(6)));
    });
}

#[test]
fn lazy_timers_fire_in_deadline_order() {
    expect_clean(Engine::Std, || {
        let late = time::after(Duration::from_secs(2));
        let early = time::after(Duration::from_secs(1));
        let first = select! {
            recv(late) -> _ => "late",
            recv(early) -> _ => "early",
        };
        assert_eq!(first, "early");
    });
}

#[rstest]
fn a_stopped_timer_never_fires(
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
        let t = Timer::new(Duration::from_secs(1));
        if t.stop() {
            t.c().recv();
        } else {
            // It fired before the stop: drain the tick, and block for good like the other branch.
            t.c().recv();
            Chan::<()>::new(0).recv();
        }
    });
    assert!(r.dump.contains("[chan receive]"), "{}", r.dump);
}

#[rstest]
fn a_ticker_ticks_until_stopped(
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
        let t = Ticker::new(Duration::from_millis(10));
        let a = t.c().recv().expect("a tick");
        let b = t.c().recv().expect("a tick");
        assert!(b > a);
        t.stop();
    });
}

#[rstest]
fn an_unread_ticker_does_not_keep_a_finished_kernel_alive(
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
        let _t = Ticker::new(Duration::from_millis(1));
    });
}

#[rstest]
fn a_timeout_can_beat_a_completion(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs
    )]
    engine: Engine,
) {
    // Eager timers: the timeout may fire before the worker sends, however quick the worker is;
    // the worker then blocks forever on its send (the classic leak).
    expect(
        engine,
        Verdict::Leak,
        "still blocked after main returned",
        || {
            let result = Chan::new(0);
            let tx = result.clone();
            go(move || tx.send(1));
            select! {
                recv(result) -> _ => {},
                recv(time::after(Duration::from_secs(1))) -> _ => {},
            }
        },
    );
}

#[test]
fn lazy_timers_fire_only_when_everything_is_blocked() {
    // On std, timers are lazy: the quick worker always wins, so this never leaks.
    expect_clean(Engine::Std, || {
        let result = Chan::new(0);
        let tx = result.clone();
        go(move || tx.send(1));
        select! {
            recv(result) -> _ => {},
            recv(time::after(Duration::from_secs(1))) -> _ => panic!("the timeout fired first"),
        }
    });
}

#[rstest]
fn after_func_runs_its_function_in_a_goroutine_of_its_own(
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
        let done = Chan::new(0);
        let d = done.clone();
        let start = time::now();
        time::after_func(Duration::from_secs(3), move || d.send(time::since(start)));
        assert_eq!(done.recv(), Some(Duration::from_secs(3)));
    });
}

#[rstest]
fn a_stopped_after_func_never_runs(
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
        let ran = Chan::new(1);
        let r = ran.clone();
        let t = time::after_func(Duration::from_secs(3), move || r.send(()));
        // Eager timers may fire before the stop; a stop that came first must prevent the run.
        if t.stop() {
            time::sleep(Duration::from_secs(10));
            assert!(ran.is_empty(), "the function ran after Stop returned true");
        }
    });
}
