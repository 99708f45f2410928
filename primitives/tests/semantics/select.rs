//! `select`: default only when nothing is ready, a uniform choice among ready cases, blocking
//! on several channels at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use primitives::explore::{explore, Engine};
use primitives::{go, select, Chan, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean, settings};

#[rstest]
fn default_is_taken_only_when_no_case_is_ready(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    expect_clean(engine, || {
        let ready = Chan::new(1);
        ready.send(1);
        let idle = Chan::<i32>::new(0);
        select! {
            recv(idle) -> _ => unreachable!("nobody sends on idle"),
            recv(ready) -> v => assert_eq!(v, Some(1)),
            default => panic!("default taken while a case was ready"),
        }
        let taken = select! {
            recv(idle) -> _ => "idle",
            send(idle, 2) => "send",
            default => "default",
        };
        assert_eq!(taken, "default");
    });
}

/// Runs the whole budget of a kernel that records which case its select took.
fn cases_taken(engine: Engine) -> BTreeSet<&'static str> {
    let taken = Arc::new(Mutex::new(BTreeSet::new()));
    let sink = taken.clone();
    let mut s = settings(engine);
    s.stop_at_first_failure = false;
    s.budget = s.budget.min(200);
    explore(
        &s,
        Arc::new(move || {
            let (a, b) = (Chan::new(1), Chan::new(1));
            a.send(1);
            b.send(2);
            let case = select! {
                recv(a) -> _ => "a",
                recv(b) -> _ => "b",
            };
            sink.lock().unwrap().insert(case);
        }),
    );
    let seen = taken.lock().unwrap().clone();
    seen
}

#[rstest]
fn two_ready_cases_are_each_taken_in_some_schedule(
    #[values(Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    assert_eq!(cases_taken(engine), BTreeSet::from(["a", "b"]));
}

#[test]
fn loom_takes_ready_cases_in_rotation() {
    // loom cannot branch on a value (loom#84): a goroutine's selects rotate through their ready
    // cases instead, so each execution's first select takes the first ready case...
    assert_eq!(cases_taken(Engine::Loom), BTreeSet::from(["a"]));
    // ...and a case that is always ready cannot shut out another.
    crate::harness::expect_clean(Engine::Loom, || {
        let (always, once) = (Chan::<()>::new(0), Chan::new(1));
        always.close();
        once.send(());
        let mut took_once = false;
        for _ in 0..2 {
            select! {
                recv(always) -> _ => {},
                recv(once) -> _ => took_once = true,
            }
        }
        assert!(took_once);
    });
}

#[rstest]
fn a_parked_select_is_completed_by_whichever_channel_is_used(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    expect_clean(engine, || {
        let (a, b) = (Chan::<i32>::new(0), Chan::<i32>::new(0));
        let tx = b.clone();
        go(move || tx.send(5));
        select! {
            recv(a) -> _ => unreachable!("nobody sends on a"),
            recv(b) -> v => assert_eq!(v, Some(5)),
        }
    });
}

#[rstest]
fn a_parked_send_case_hands_its_value_to_a_receiver(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    expect_clean(engine, || {
        let (out, never) = (Chan::new(0), Chan::<i32>::new(0));
        let rx = out.clone();
        let got = Chan::new(1);
        let report = got.clone();
        go(move || report.send(rx.recv()));
        select! {
            send(out, 9) => {},
            recv(never) -> _ => unreachable!("nobody sends on never"),
        }
        assert_eq!(got.recv(), Some(Some(9)));
    });
}

#[rstest]
fn a_receive_case_on_a_closed_channel_is_ready(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    expect_clean(engine, || {
        let done = Chan::<()>::new(0);
        done.close();
        select! {
            recv(done) -> v => assert_eq!(v, None),
            default => panic!("a closed channel is ready"),
        }
    });
}

#[rstest]
fn a_send_case_on_a_closed_channel_panics_when_chosen(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    expect(engine, Verdict::Panic, "send on closed channel", || {
        let ch = Chan::new(1);
        ch.close();
        select! {
            send(ch, 1) => {},
        }
    });
}

#[rstest]
fn nil_channel_cases_never_proceed(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        let nil = Chan::<i32>::nil();
        select! {
            recv(nil) -> _ => {},
            send(nil, 1) => {},
        }
    });
    assert!(r.dump.contains("[select]"), "{}", r.dump);
}

#[rstest]
fn an_empty_select_blocks_forever(
    #[values(Engine::Loom, Engine::ShuttlePct, Engine::ShuttleRandom, Engine::Std)] engine: Engine,
) {
    let r = expect(engine, Verdict::Deadlock, "deadlock", || select! {});
    assert!(r.dump.contains("[select (no cases)]"), "{}", r.dump);
}
