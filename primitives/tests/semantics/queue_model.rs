//! A property: any single-goroutine sequence of buffered-channel operations agrees with a plain
//! queue, including close and drain.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use primitives::explore::{explore, Engine, Settings};
use primitives::{Chan, Verdict};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Send(u8),
    Recv,
    Close,
    Len,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => any::<u8>().prop_map(Step::Send),
        4 => Just(Step::Recv),
        1 => Just(Step::Close),
        1 => Just(Step::Len),
    ]
}

/// What the model predicts a step observes, or that it ends the execution.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Sent,
    Received(Option<u8>),
    Len(usize),
    Panic(&'static str),
}

/// Steps that would block forever are skipped (the model knows when): the property is about
/// values, order, close and drain.
fn model(cap: usize, steps: &[Step]) -> Vec<Seen> {
    let (mut q, mut closed, mut seen) = (VecDeque::new(), false, Vec::new());
    for s in steps {
        match s {
            Step::Send(_) if closed => {
                seen.push(Seen::Panic("send on closed channel"));
                break;
            }
            Step::Send(v) if q.len() < cap => {
                q.push_back(*v);
                seen.push(Seen::Sent);
            }
            Step::Recv if !q.is_empty() || closed => seen.push(Seen::Received(q.pop_front())),
            Step::Close if closed => {
                seen.push(Seen::Panic("close of closed channel"));
                break;
            }
            Step::Close => closed = true,
            Step::Len => seen.push(Seen::Len(q.len())),
            _ => {}
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn buffered_channel_agrees_with_a_queue(cap in 1usize..4, steps in prop::collection::vec(step(), 0..24)) {
        let expected = model(cap, &steps);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, script) = (seen.clone(), steps.clone());
        let mut s = Settings::new(Engine::Std);
        s.budget = 1;
        let found = explore(&s, Arc::new(move || {
            let ch = Chan::new(cap);
            let (mut len, mut closed) = (0, false);
            for step in &script {
                match step {
                    Step::Send(v) if closed => {
                        log.lock().unwrap().push(Seen::Panic("send on closed channel"));
                        ch.send(*v);
                    }
                    Step::Send(v) if len < cap => {
                        ch.send(*v);
                        len += 1;
                        log.lock().unwrap().push(Seen::Sent);
                    }
                    Step::Recv if len > 0 || closed => {
                        let v = ch.recv();
                        len = len.saturating_sub(1);
                        log.lock().unwrap().push(Seen::Received(v));
                    }
                    Step::Close => {
                        if closed {
                            log.lock().unwrap().push(Seen::Panic("close of closed channel"));
                        }
                        ch.close();
                        closed = true;
                    }
                    Step::Len => log.lock().unwrap().push(Seen::Len(ch.len())),
                    _ => {}
                }
            }
        }));
        let seen = seen.lock().unwrap().clone();
        match (&found.first_failure, seen.last()) {
            (Some(f), Some(Seen::Panic(message))) => {
                prop_assert_eq!(f.report.verdict, Verdict::Panic);
                prop_assert!(f.report.message.contains(message), "{}", f.report.message);
            }
            (Some(f), _) => prop_assert!(false, "unexpected failure: {}", f.report.message),
            (None, _) => {}
        }
        prop_assert_eq!(seen, expected);
    }
}
