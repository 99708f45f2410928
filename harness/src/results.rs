//! `reports/results.json`, schema 1 (see DESIGN.md): what every (bug, variant, engine) run
//! found. Other tools read it (`shared/tools/coverage`): the field names are the contract.

use std::collections::BTreeMap;
use std::path::Path;

use bugs::run::{self, Outcome};
use bugs::{Bug, Variant};
use primitives::explore::{Engine, Exploration};
use primitives::{ExecutionReport, Verdict};
use serde::{Deserialize, Serialize};

pub const SCHEMA: u32 = 1;

/// The whole file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    /// The harness version that wrote it.
    pub harness: String,
    /// The seed of the run (shuttle's schedulers, std's own choices).
    pub seed: u64,
    pub runs: Vec<Run>,
}

/// One bug, one variant, one engine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub bug: String,
    pub project: String,
    pub variant: String,
    pub engine: String,
    /// The buggy variant's expected verdict (the same on both variants' rows).
    pub expected: String,
    /// Other verdicts the buggy variant may end in, depending on the schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
    /// Executions run.
    pub schedules: u64,
    /// The search covered every schedule (loom within its bound, or a single-schedule kernel).
    pub exhaustive: bool,
    /// Failing executions by verdict.
    pub failures: BTreeMap<String, u64>,
    pub first_failure: Option<FirstFailure>,
    pub seconds: f64,
    /// detected, missed, wrong-verdict, clean, false-positive, skipped or error.
    pub outcome: String,
    /// Whether the outcome is what the corpus promises for this row.
    #[serde(default)]
    pub holds: bool,
    /// What bounded or cut the search; why the engine was skipped; the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default)]
    pub category: String,
    /// Executions in which loom took a choice Go leaves to chance (a ready `select` case, a
    /// parked select's case on a shared channel, `rand`) by its fixed rule instead of exploring
    /// it: loom's answer for this row rests on that rule.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unexplored_choices: u64,
    /// Executions that reached the hard step cap undecided (no verdict either way).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bound_reached: u64,
    /// shuttle-dfs: every schedule with at most this many preemptions was run (with
    /// `exhaustive`, the search ended there; without, the budget ran out in the next round).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explored_within: Option<usize>,
}

/// The first failing execution of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FirstFailure {
    /// Which execution (1 for the first).
    pub schedule: u64,
    pub verdict: String,
    /// The string `harness replay` takes (absent on std).
    pub replay: Option<String>,
    /// shuttle-dfs: the failing schedule's preemptions, the fewest any failing schedule has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptions: Option<usize>,
    #[serde(default)]
    pub message: String,
    pub dump: String,
    pub trace: Vec<TraceEntry>,
    /// Goroutine names by id, for the swimlanes.
    #[serde(default)]
    pub goroutines: Vec<String>,
    /// The goroutines blocked when the failure was found, and what each waits on: the
    /// wait-for picture's edges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waits: Vec<WaitEntry>,
    /// A race's two accesses (earlier first), whether or not the trace kept their events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accesses: Vec<AccessEntry>,
    /// Steps to mark in pictures: the two accesses of a race.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<u64>,
    /// Early trace events the execution did not keep.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trace_dropped: u64,
    /// Events of goroutines the failure does not involve, left out of `trace` (see
    /// `cause.rs`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trace_hidden: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One Go operation of a failing execution.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TraceEntry {
    pub step: u64,
    pub g: usize,
    pub op: String,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obj: Option<String>,
    /// The operation parked its goroutine here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    /// The operation can block in principle (a channel operation, a lock, a wait).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocking: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// This entry closes a loop's round that came back more times (folded away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Repeat>,
}

/// One access of a race.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AccessEntry {
    pub step: u64,
    pub g: usize,
    /// `read`, `write`, `atomic write`, `write in Add`...
    pub kind: String,
    pub at: String,
    pub obj: String,
}

/// A goroutine blocked at the failure.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WaitEntry {
    pub g: usize,
    /// The wait, in the dump's words (`chan send`, `sync.Mutex.Lock`, `select`).
    pub state: String,
    /// The objects it waits on, named as in the trace (several for a `select`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
}

/// A folded loop: the `round` entries ending at the one that carries it came back `times`
/// more times, the last one ending at step `until`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Repeat {
    pub round: usize,
    pub times: u64,
    pub until: u64,
}

impl FirstFailure {
    /// The failure as reports keep it: every event of the goroutines it involves, loops
    /// folded (`cause.rs`).
    pub fn from_report(schedule: u64, replay: Option<String>, r: &ExecutionReport) -> Self {
        let cause = crate::cause::of(r);
        FirstFailure {
            schedule,
            verdict: r.verdict.as_str().to_string(),
            replay,
            preemptions: None,
            message: r.message.clone(),
            dump: r.dump.clone(),
            trace: cause
                .events
                .iter()
                .map(|(e, fold)| TraceEntry {
                    step: e.step,
                    g: e.g,
                    op: e.op.to_string(),
                    at: e.at.clone(),
                    obj: e.obj.clone(),
                    blocked: e.blocked,
                    blocking: e.blocking_kind,
                    detail: e.detail.clone(),
                    repeat: fold.map(|f| Repeat {
                        round: f.round,
                        times: f.times,
                        until: f.until,
                    }),
                })
                .collect(),
            goroutines: r.goroutines.iter().map(|g| g.name.clone()).collect(),
            waits: r
                .at_failure
                .iter()
                .filter(|g| g.blocked_at.is_some() && !g.system)
                .map(|g| WaitEntry {
                    g: g.id,
                    state: g.state.clone(),
                    on: g.waiting_on.clone(),
                })
                .collect(),
            accesses: r
                .race
                .iter()
                .flat_map(|race| {
                    [&race.previous, &race.current].map(|a| AccessEntry {
                        step: a.step,
                        g: a.g,
                        kind: format!(
                            "{}{}{}",
                            if a.atomic { "atomic " } else { "" },
                            if a.write { "write" } else { "read" },
                            a.op.map(|op| format!(" in {op}")).unwrap_or_default()
                        ),
                        at: a.at.clone(),
                        obj: race.object.clone(),
                    })
                })
                .collect(),
            marks: r
                .race
                .as_ref()
                .map(|race| vec![race.previous.step, race.current.step])
                .unwrap_or_default(),
            trace_dropped: r.trace_dropped,
            trace_hidden: cause.hidden,
        }
    }
}

impl Run {
    /// The row of an exploration.
    pub fn new(bug: &Bug, variant: Variant, found: &Exploration) -> Self {
        let outcome = run::outcome(bug, variant, found);
        let bound = (found.bound_reached > 0).then(|| {
            format!(
                "{} executions reached the step cap ({}) undecided",
                found.bound_reached, bug.budget.max_steps
            )
        });
        let note = found
            .error
            .clone()
            .or_else(|| bound.clone())
            .or_else(|| found.limit.clone());
        Run {
            bug: bug.id.to_string(),
            project: bug.project.to_string(),
            variant: variant.as_str().to_string(),
            engine: found.engine.as_str().to_string(),
            expected: bug.expected.as_str().to_string(),
            also: bug.also.iter().map(|v| v.as_str().to_string()).collect(),
            schedules: found.schedules,
            exhaustive: found.exhaustive,
            failures: found
                .failures
                .iter()
                .map(|(v, n)| (v.as_str().to_string(), *n))
                .collect(),
            first_failure: found.first_failure.as_ref().map(|f| FirstFailure {
                preemptions: found.preemptions.first_failure,
                ..FirstFailure::from_report(f.schedule, f.replay.clone(), &f.report)
            }),
            seconds: found.seconds,
            outcome: outcome.as_str().to_string(),
            holds: run::holds(bug, variant, found.engine, outcome),
            note,
            category: bug.category.to_string(),
            unexplored_choices: found.unexplored_choices,
            bound_reached: found.bound_reached,
            explored_within: found.preemptions.explored_within,
        }
    }

    /// The row of an engine that does not apply.
    pub fn skipped(bug: &Bug, variant: Variant, engine: Engine, why: &str) -> Self {
        Run {
            bug: bug.id.to_string(),
            project: bug.project.to_string(),
            variant: variant.as_str().to_string(),
            engine: engine.as_str().to_string(),
            expected: bug.expected.as_str().to_string(),
            also: bug.also.iter().map(|v| v.as_str().to_string()).collect(),
            schedules: 0,
            exhaustive: false,
            failures: Verdict::FAILURES
                .iter()
                .map(|v| (v.as_str().to_string(), 0))
                .collect(),
            first_failure: None,
            seconds: 0.0,
            outcome: Outcome::Skipped.as_str().to_string(),
            holds: true,
            note: Some(why.to_string()),
            category: bug.category.to_string(),
            unexplored_choices: 0,
            bound_reached: 0,
            explored_within: None,
        }
    }

    /// Failing executions, all verdicts together.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

impl Results {
    pub fn new(seed: u64, runs: Vec<Run>) -> Self {
        let mut r = Results {
            schema: SCHEMA,
            harness: env!("CARGO_PKG_VERSION").to_string(),
            seed,
            runs,
        };
        r.sort();
        r
    }

    /// Rows in report order: by bug, variant (buggy first), engine.
    pub fn sort(&mut self) {
        let engine_rank = |e: &str| {
            Engine::ALL
                .iter()
                .position(|x| x.as_str() == e)
                .unwrap_or(9)
        };
        self.runs.sort_by(|a, b| {
            (&a.bug, &a.variant, engine_rank(&a.engine)).cmp(&(
                &b.bug,
                &b.variant,
                engine_rank(&b.engine),
            ))
        });
    }

    /// Reads a results file, or says in one line why it cannot.
    pub fn read(path: &Path) -> Result<Results, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let results: Results = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a results file: {e}", path.display()))?;
        if results.schema != SCHEMA {
            return Err(format!(
                "{} has schema {}; this harness reads schema {SCHEMA}",
                path.display(),
                results.schema
            ));
        }
        Ok(results)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("results serialize") + "\n"
    }

    /// Whether every row holds.
    pub fn all_hold(&self) -> bool {
        self.runs.iter().all(|r| r.holds)
    }
}
