//! `select`: default only when nothing is ready, a uniform choice among ready cases, blocking
//! on several channels at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use primitives::explore::{explore, Engine};
use primitives::{go, select, time, Chan, TimerMode, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean, settings};

#[rstest]
fn default_is_taken_only_when_no_case_is_ready(
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
    #[values(
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
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
        let (a, b) = (Chan::<i32>::new(0), Chan::<i32>::new(0));
        let tx = b.clone();
        go(move || tx.send(5));
        select! {
            recv(a) -> _ => unreachable!("nobody sends on a"),
            recv(b) -> v => assert_eq!(v, Some(5)),
        }
    });
}

/// Runs the whole budget of a kernel whose select parks with two cases on one channel (two
/// receives, or two sends) before its partner comes; returns the cases completed.
fn same_channel_cases_taken(engine: Engine, sends: bool) -> BTreeSet<&'static str> {
    let taken = Arc::new(Mutex::new(BTreeSet::new()));
    let sink = taken.clone();
    let mut s = settings(engine);
    s.stop_at_first_failure = false;
    s.budget = s.budget.min(200);
    // Lazy timers: the partner's sleep ends only once every goroutine is blocked, that is once
    // the select has parked with both cases queued.
    s.timers = Some(TimerMode::Lazy);
    let found = explore(
        &s,
        Arc::new(move || {
            let ch = Chan::new(0);
            let partner = ch.clone();
            go(move || {
                time::sleep(Duration::from_secs(1));
                if sends {
                    partner.recv();
                } else {
                    partner.send(1);
                }
            });
            let case = if sends {
                select! {
                    send(ch, 1) => "first",
                    send(ch, 2) => "second",
                }
            } else {
                select! {
                    recv(ch) -> _ => "first",
                    recv(ch) -> _ => "second",
                }
            };
            sink.lock().unwrap().insert(case);
        }),
    );
    assert_eq!(found.first_failure.map(|f| f.report.message), None);
    let seen = taken.lock().unwrap().clone();
    seen
}

#[rstest]
fn a_partner_completes_either_of_a_parked_selects_cases_on_one_channel(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(false, true)] sends: bool,
) {
    // Go shuffles same-channel cases in its lock order (runtime/select.go), and
    // TestPseudoRandomSend checks that both get taken. loom cannot branch on the choice: its
    // rule (rotation over the goroutine's choices) gives this select, main's first choice, the
    // first case in every schedule, and the run counts that choice as unexplored.
    let expected = if engine == Engine::Loom {
        BTreeSet::from(["first"])
    } else {
        BTreeSet::from(["first", "second"])
    };
    assert_eq!(same_channel_cases_taken(engine, sends), expected);
}

#[test]
fn loom_counts_the_choices_it_takes_by_rule() {
    let found = crate::harness::search(Engine::Loom, || {
        let (a, b) = (Chan::new(1), Chan::new(1));
        a.send(1);
        b.send(2);
        select! {
            recv(a) -> _ => {},
            recv(b) -> _ => {},
        }
    });
    assert_eq!(found.unexplored_choices, found.schedules);
    let found = crate::harness::search(Engine::ShuttleRandom, || {
        let (a, b) = (Chan::new(1), Chan::new(1));
        a.send(1);
        b.send(2);
        select! {
            recv(a) -> _ => {},
            recv(b) -> _ => {},
        }
    });
    assert_eq!(found.unexplored_choices, 0);
}

#[rstest]
fn a_parked_send_case_hands_its_value_to_a_receiver(
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
        done.close();
        select! {
            recv(done) -> v => assert_eq!(v, None),
            default => panic!("a closed channel is ready"),
        }
    });
}

#[rstest]
fn a_send_case_on_a_closed_channel_panics_when_chosen(
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
        let ch = Chan::new(1);
        ch.close();
        select! {
            send(ch, 1) => {},
        }
    });
}

#[rstest]
fn nil_channel_cases_never_proceed(
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
    let r = expect(engine, Verdict::Deadlock, "deadlock", || select! {});
    assert!(r.dump.contains("[select (no cases)]"), "{}", r.dump);
}
