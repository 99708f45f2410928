//! The loom engine: every interleaving of the kernel, within a preemption bound.
//!
//! loom's search is deterministic, so an execution is named by its position in it: the replay
//! string `bound=3,execution=17` means "the 17th execution of the search with preemption
//! bound 3". Replaying runs the search again up to that execution.

use std::panic::{self, Location};
use std::sync::{Arc, Mutex, PoisonError};

use super::{quietly, take_panic, Exploration, Kernel, ReplayError, Settings};
use crate::engine::{self, EngineKind};
use crate::report::ExecutionReport;
use crate::rt;

/// Unwinds out of `loom::model::Builder::check` once the exploration has what it needs.
struct StopExploring;

struct Sink {
    found: Exploration,
    /// Replaying: the execution wanted, and its report once reached.
    target: Option<u64>,
    target_report: Option<ExecutionReport>,
    /// The budget ran out before loom's search did.
    budget_cut: bool,
}

pub(super) fn explore(
    settings: &Settings,
    kernel: Kernel,
    target: Option<u64>,
) -> (Exploration, Option<ExecutionReport>) {
    let sink = Arc::new(Mutex::new(Sink {
        found: Exploration::new(settings.engine),
        target,
        target_report: None,
        budget_cut: false,
    }));
    let mut builder = loom::model::Builder::new();
    builder.max_threads = loom::MAX_THREADS;
    builder.max_branches = settings.max_branches;
    builder.preemption_bound = settings.preemption_bound;
    builder.max_permutations = None;
    builder.max_duration = None;
    builder.checkpoint_file = None;
    builder.checkpoint_interval = usize::MAX;
    builder.log = false;
    builder.location = false;

    let config = settings.exec_config(settings.seed);
    let bound = settings.preemption_bound;
    let budget = settings.budget;
    let stop_at_failure = settings.stop_at_first_failure;
    let at = Location::caller();
    let model_sink = sink.clone();
    engine::set_active_engine(Some(EngineKind::Loom));
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        builder.check(move || {
            let n = {
                let mut s = model_sink.lock().unwrap_or_else(PoisonError::into_inner);
                if s.target.is_none() && s.found.schedules >= budget {
                    s.budget_cut = true;
                    drop(s);
                    panic::resume_unwind(Box::new(StopExploring));
                }
                s.found.schedules + 1
            };
            let report = rt::run_execution(EngineKind::Loom, config.clone(), &*kernel, at);
            let mut s = model_sink.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(t) = s.target {
                s.found.schedules += 1;
                if n == t {
                    s.target_report = Some(report);
                    drop(s);
                    panic::resume_unwind(Box::new(StopExploring));
                }
                return;
            }
            let replay = Some(format_schedule(bound, n));
            if s.found.record(report, replay, stop_at_failure) {
                drop(s);
                panic::resume_unwind(Box::new(StopExploring));
            }
        })
    }));
    engine::set_active_engine(None);
    let mut s = sink.lock().unwrap_or_else(PoisonError::into_inner);
    match result {
        Ok(()) => {
            s.found.exhaustive = true;
            s.found.limit = bound.map(|b| format!("exhaustive within preemption bound {b}"));
        }
        Err(p) if p.is::<StopExploring>() => {
            if s.budget_cut {
                s.found.limit = Some(format!(
                    "stopped after {budget} executions (the budget); loom's search was not finished"
                ));
            }
        }
        Err(p) => {
            let message = take_panic()
                .map(|c| c.message)
                .unwrap_or_else(|| rt::payload_message(&*p));
            if message.contains("maximum number of branches") {
                s.found.limit = Some(format!(
                    "an execution exceeded loom's limit of {} branch points; the search stopped there",
                    settings.max_branches
                ));
            } else {
                s.found.error = Some(format!("loom: {message}"));
            }
        }
    }
    let found = std::mem::replace(&mut s.found, Exploration::new(settings.engine));
    (found, s.target_report.take())
}

pub(super) fn replay(
    settings: &Settings,
    schedule: &str,
    kernel: Kernel,
) -> Result<ExecutionReport, ReplayError> {
    let (bound, n) = parse_schedule(schedule)?;
    let mut settings = settings.clone();
    settings.preemption_bound = bound;
    let (found, report) = explore(&settings, kernel, Some(n));
    if let Some(e) = found.error {
        return Err(ReplayError::Diverged(e));
    }
    report.ok_or_else(|| {
        ReplayError::Diverged(format!(
            "loom's search has only {} executions, not {n}",
            found.schedules
        ))
    })
}

fn format_schedule(bound: Option<usize>, n: u64) -> String {
    match bound {
        Some(b) => format!("bound={b},execution={n}"),
        None => format!("bound=none,execution={n}"),
    }
}

fn parse_schedule(s: &str) -> Result<(Option<usize>, u64), ReplayError> {
    let bad = || {
        ReplayError::Malformed(format!(
            "`{s}` is not a loom schedule; expected `bound=<N|none>,execution=<N>`"
        ))
    };
    let parsed = quietly(|| {
        let (bound, execution) = s.trim().split_once(',')?;
        let bound = bound.strip_prefix("bound=")?;
        let bound = match bound {
            "none" => None,
            b => Some(b.parse().ok()?),
        };
        let n: u64 = execution.strip_prefix("execution=")?.parse().ok()?;
        (n > 0).then_some((bound, n))
    });
    parsed.ok().flatten().ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loom_schedules_read_back() {
        assert_eq!(
            parse_schedule(&format_schedule(Some(2), 17)),
            Ok((Some(2), 17))
        );
        assert_eq!(parse_schedule(&format_schedule(None, 3)), Ok((None, 3)));
        assert!(parse_schedule("bound=2").is_err());
        assert!(parse_schedule("bound=x,execution=1").is_err());
        assert!(parse_schedule("bound=1,execution=0").is_err());
    }
}
