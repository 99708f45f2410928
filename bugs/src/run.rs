//! Running a bug: the settings its metadata asks for, and what an exploration means for it.
//!
//! Roles of the engines, the same in tests and in the harness:
//! - on the **buggy** variant, loom (where it applies) and both shuttle schedulers must find
//!   the failure, with the expected verdict: the search stops at the first failure. `std` is
//!   the native baseline: it runs its whole budget and reports how often the bug manifests,
//!   and it may miss it (that is the point of the comparison), but never show another verdict;
//! - on the **fixed** variant every engine runs its whole budget and must see no failure.

use std::fmt;
use std::sync::Arc;

use primitives::explore::{self, Engine, Exploration, Kernel, Settings};

use crate::{Bug, Loom, Variant};

/// What one (bug, variant, engine) run came to, in the words of the results schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Buggy: the expected verdict was seen.
    Detected,
    /// Buggy: no failure in the budget.
    Missed,
    /// Buggy: a failure, but not the expected verdict.
    WrongVerdict,
    /// Fixed: no failure.
    Clean,
    /// Fixed: a failure.
    FalsePositive,
    /// Fixed: no failure, but executions reached the step cap undecided.
    BoundReached,
    /// The engine does not apply to this bug.
    Skipped,
    /// The engine could not run the kernel.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Detected => "detected",
            Outcome::Missed => "missed",
            Outcome::WrongVerdict => "wrong-verdict",
            Outcome::Clean => "clean",
            Outcome::FalsePositive => "false-positive",
            Outcome::BoundReached => "bound-reached",
            Outcome::Skipped => "skipped",
            Outcome::Error => "error",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Changes to a bug's own budget, from the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// Executions per engine instead of the bug's budget.
    pub budget: Option<u64>,
    pub seed: Option<u64>,
}

/// `Ok` if `engine` runs `bug`, else why not.
pub fn applies(bug: &Bug, engine: Engine) -> Result<(), &'static str> {
    match (engine, bug.loom) {
        (Engine::Loom, Loom::DoesNotApply(why)) => Err(why),
        _ => Ok(()),
    }
}

/// Whether `engine` is expected to find the buggy variant's failure (not the baseline, not
/// the bounded search).
pub fn detects(bug: &Bug, engine: Engine) -> bool {
    !matches!(engine, Engine::Std | Engine::ShuttleDfs)
        && applies(bug, engine).is_ok()
        && !bug.not_found_by.iter().any(|(e, _)| *e == engine)
}

/// The exploration settings for one run.
pub fn settings(bug: &Bug, variant: Variant, engine: Engine, overrides: Overrides) -> Settings {
    let b = bug.budget;
    let mut s = Settings::new(engine);
    s.budget = overrides.budget.unwrap_or(match engine {
        Engine::Loom => b.loom,
        Engine::ShuttlePct | Engine::ShuttleRandom | Engine::ShuttleUrw | Engine::ShuttleDfs => {
            b.shuttle
        }
        Engine::Std => b.std,
    });
    s.seed = overrides.seed.unwrap_or(1);
    s.pct_depth = b.pct_depth;
    s.preemption_bound = b.preemption_bound;
    s.max_steps = b.max_steps;
    s.livelock_window = b.livelock_window;
    s.race_detector = b.race_detector;
    if engine != Engine::Std {
        s.timers = b.timers;
    }
    // A buggy search stops at its first failure; the baseline and fixed variants run it all.
    s.stop_at_first_failure = variant == Variant::Buggy && engine != Engine::Std;
    s
}

/// The kernel of one variant, as the engines take it.
pub fn kernel(bug: &Bug, variant: Variant) -> Kernel {
    let body = bug.kernel;
    Arc::new(move || body(variant))
}

/// Explores one variant of `bug` on `engine`.
pub fn explore(bug: &Bug, variant: Variant, engine: Engine, overrides: Overrides) -> Exploration {
    explore::explore(
        &settings(bug, variant, engine, overrides),
        kernel(bug, variant),
    )
}

/// What an exploration means for the bug.
pub fn outcome(bug: &Bug, variant: Variant, found: &Exploration) -> Outcome {
    if found.error.is_some() {
        return Outcome::Error;
    }
    let expected: u64 = found
        .failures
        .iter()
        .filter(|(v, _)| bug.accepts(**v))
        .map(|(_, n)| n)
        .sum();
    let other = found.failed() - expected;
    match variant {
        Variant::Buggy if other > 0 => Outcome::WrongVerdict,
        Variant::Buggy if expected > 0 => Outcome::Detected,
        Variant::Buggy => Outcome::Missed,
        Variant::Fixed if found.failed() > 0 => Outcome::FalsePositive,
        Variant::Fixed if found.bound_reached > 0 => Outcome::BoundReached,
        Variant::Fixed => Outcome::Clean,
    }
}

/// Whether `outcome` is what the corpus promises for this (bug, variant, engine).
pub fn holds(bug: &Bug, variant: Variant, engine: Engine, outcome: Outcome) -> bool {
    match (variant, outcome) {
        (_, Outcome::Skipped) => applies(bug, engine).is_err(),
        (Variant::Buggy, Outcome::Detected) => true,
        (Variant::Buggy, Outcome::Missed) => !detects(bug, engine),
        (Variant::Fixed, Outcome::Clean) => true,
        _ => false,
    }
}
