//! The part of a failing trace that explains the failure.
//!
//! A failing execution can run thousands of Go operations (a retry loop, a poller), and the
//! cause is often at its start: a context cancelled before the channel it races is closed. So
//! a report keeps neither the first nor the last N events, but **every event of the goroutines
//! the failure involves**, and folds a loop's repeated rounds into one round and a count.
//!
//! The goroutines a failure involves:
//! - the ones its verdict names: blocked or still running at the end (deadlock, leak,
//!   livelock), the two accesses of a race, the goroutine that panicked;
//! - every goroutine that acted on an object one of those acted on (who held the lock, who
//!   closed the channel, who never sent), and the goroutines that started any of them;
//! - the runtime's timer goroutine, when one of them armed a timer.
//!
//! Every other event is hidden, and counted, so a report says how much it left out.

use std::collections::BTreeSet;

use primitives::{ExecutionReport, TraceEvent, Verdict};

/// The shortest loop round worth folding, and the longest one looked for.
const FOLD_MIN_SAVED: usize = 6;
const FOLD_MAX_ROUND: usize = 40;

/// A run of events that repeats: the `round` events ending at the one that carries it come
/// back `times` more times, the last one ending at step `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fold {
    pub round: usize,
    pub times: u64,
    pub until: u64,
}

/// The events that explain a failure, oldest first, with the loops folded.
#[derive(Debug)]
pub struct Cause<'a> {
    /// The events kept, each with the fold it closes, if any.
    pub events: Vec<(&'a TraceEvent, Option<Fold>)>,
    /// Events of goroutines the failure does not involve.
    pub hidden: u64,
}

/// Picks and folds the events that explain `r`'s failure.
pub fn of(r: &ExecutionReport) -> Cause<'_> {
    let involved = involved(r);
    let kept: Vec<&TraceEvent> = r.trace.iter().filter(|e| involved.contains(&e.g)).collect();
    let hidden = (r.trace.len() - kept.len()) as u64;
    Cause {
        events: fold(&kept),
        hidden,
    }
}

/// The goroutines `r`'s failure involves (see the module docs).
fn involved(r: &ExecutionReport) -> BTreeSet<usize> {
    let mut named: BTreeSet<usize> = match (r.verdict, &r.race) {
        (Verdict::Race, Some(race)) => [race.previous.g, race.current.g].into(),
        (Verdict::Panic, _) => r
            .trace
            .iter()
            .rev()
            .find(|e| e.op == "panic")
            .map(|e| [e.g].into())
            .unwrap_or_default(),
        _ => r
            .goroutines
            .iter()
            .filter(|g| !g.system && g.state != "finished" && g.state != "returned")
            .map(|g| g.id)
            .collect(),
    };
    if named.is_empty() {
        // Nothing to go by (an assertion, say): everything is involved.
        return r.trace.iter().map(|e| e.g).collect();
    }
    let objects: BTreeSet<&str> = r
        .trace
        .iter()
        .filter(|e| named.contains(&e.g))
        .filter_map(|e| e.obj.as_deref())
        .collect();
    let mut partners: BTreeSet<usize> = r
        .trace
        .iter()
        .filter(|e| e.obj.as_deref().is_some_and(|o| objects.contains(o)))
        .map(|e| e.g)
        .collect();
    named.append(&mut partners);
    // Whoever started an involved goroutine, up to main.
    loop {
        let parents: BTreeSet<usize> = r
            .trace
            .iter()
            .filter(|e| e.op == "go" && !named.contains(&e.g))
            .filter(|e| started(e).is_some_and(|child| named.contains(&child)))
            .map(|e| e.g)
            .collect();
        if parents.is_empty() {
            break;
        }
        named.extend(parents);
    }
    let arms_timers = r
        .trace
        .iter()
        .any(|e| named.contains(&e.g) && (e.op == "timer start" || e.op == "Sleep"));
    if arms_timers {
        named.extend(r.goroutines.iter().filter(|g| g.system).map(|g| g.id));
    }
    named
}

/// The goroutine a `go` event started.
fn started(e: &TraceEvent) -> Option<usize> {
    e.detail
        .as_deref()?
        .strip_prefix("starts goroutine ")?
        .parse()
        .ok()
}

/// Folds consecutive repeats of a round of events (same goroutines, operations and places,
/// whatever the objects: a loop makes a new channel each round) into its first round.
fn fold<'a>(events: &[&'a TraceEvent]) -> Vec<(&'a TraceEvent, Option<Fold>)> {
    let key = |e: &TraceEvent| (e.g, e.op, e.at.clone(), e.blocked);
    let keys: Vec<_> = events.iter().map(|e| key(e)).collect();
    let mut out = Vec::with_capacity(events.len());
    let mut i = 0;
    while i < events.len() {
        // The round that saves the most rows from here, if any repeats.
        let mut best: Option<(usize, usize)> = None;
        for round in 1..=FOLD_MAX_ROUND.min((events.len() - i) / 2) {
            let mut times = 1;
            while i + (times + 1) * round <= events.len()
                && keys[i..i + round] == keys[i + times * round..i + (times + 1) * round]
            {
                times += 1;
            }
            let saved = (times - 1) * round;
            if times > 1 && best.is_none_or(|(r, t)| saved > (t - 1) * r) {
                best = Some((round, times));
            }
        }
        match best {
            Some((round, times)) if (times - 1) * round >= FOLD_MIN_SAVED => {
                for (k, e) in events[i..i + round].iter().enumerate() {
                    let fold = (k + 1 == round).then(|| Fold {
                        round,
                        times: (times - 1) as u64,
                        until: events[i + times * round - 1].step,
                    });
                    out.push((*e, fold));
                }
                i += times * round;
            }
            _ => {
                out.push((events[i], None));
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(step: u64, g: usize, op: &'static str, line: u32) -> TraceEvent {
        TraceEvent {
            step,
            g,
            op,
            obj: Some(format!("chan#{step}")),
            at: format!("x.rs:{line}"),
            blocked: false,
            blocking_kind: true,
            detail: None,
        }
    }

    #[test]
    fn a_loop_is_folded_into_its_first_round_and_a_count() {
        // A prologue, then a three-operation round ten times, then the end.
        let mut trace = vec![ev(1, 0, "go", 1)];
        for k in 0..10 {
            trace.push(ev(2 + 3 * k, 1, "select", 10));
            trace.push(ev(3 + 3 * k, 1, "cancel", 11));
            trace.push(ev(4 + 3 * k, 2, "timer fires", 99));
        }
        trace.push(ev(40, 1, "recv", 12));
        let refs: Vec<&TraceEvent> = trace.iter().collect();
        let folded = fold(&refs);
        assert_eq!(folded.len(), 1 + 3 + 1);
        assert_eq!(
            folded[3].1,
            Some(Fold {
                round: 3,
                times: 9,
                until: 31
            })
        );
        assert_eq!(folded[4].0.step, 40);
    }

    #[test]
    fn a_short_repeat_is_not_worth_folding() {
        let trace = [
            ev(1, 1, "Lock", 1),
            ev(2, 1, "Lock", 1),
            ev(3, 1, "Lock", 1),
        ];
        let refs: Vec<&TraceEvent> = trace.iter().collect();
        assert!(fold(&refs).iter().all(|(_, f)| f.is_none()));
    }
}
