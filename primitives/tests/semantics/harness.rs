//! Running small kernels and checking what they end in.

use std::sync::Arc;

use primitives::explore::{explore, Engine, Exploration, Settings};
use primitives::{ExecutionReport, TimerMode, Verdict};

/// Settings for semantics tests: budgets small enough for a test run, large enough to find
/// the one interleaving that matters in kernels of a few goroutines.
pub fn settings(engine: Engine) -> Settings {
    let mut s = Settings::new(engine);
    s.budget = match engine {
        Engine::Loom => 50_000,
        Engine::Std => 100,
        Engine::ShuttlePct | Engine::ShuttleRandom | Engine::ShuttleUrw | Engine::ShuttleDfs => 500,
    };
    s
}

pub fn search(engine: Engine, kernel: impl Fn() + Send + Sync + 'static) -> Exploration {
    search_with(&settings(engine), kernel)
}

fn search_with(s: &Settings, kernel: impl Fn() + Send + Sync + 'static) -> Exploration {
    let found = explore(s, Arc::new(kernel));
    assert_eq!(found.error, None, "the engine could not run the kernel");
    found
}

/// Explores until a failure; asserts it is `verdict` and its message contains `message`.
#[track_caller]
pub fn expect(
    engine: Engine,
    verdict: Verdict,
    message: &str,
    kernel: impl Fn() + Send + Sync + 'static,
) -> ExecutionReport {
    expect_with(&settings(engine), verdict, message, kernel)
}

/// [`expect`] under settings of the test's own (the race detector off, say).
#[track_caller]
pub fn expect_with(
    s: &Settings,
    verdict: Verdict,
    message: &str,
    kernel: impl Fn() + Send + Sync + 'static,
) -> ExecutionReport {
    let engine = s.engine;
    let found = search_with(s, kernel);
    let failing = found.first_failure.unwrap_or_else(|| {
        panic!(
            "{engine}: no failure in {} schedules; expected {verdict}",
            found.schedules
        )
    });
    let report = failing.report;
    assert_eq!(
        report.verdict, verdict,
        "{engine}: {}\n{}",
        report.message, report.dump
    );
    assert!(
        report.message.contains(message),
        "{engine}: message {:?} lacks {message:?}",
        report.message
    );
    report
}

/// Explores the whole budget; asserts no execution failed.
#[track_caller]
pub fn expect_clean(engine: Engine, kernel: impl Fn() + Send + Sync + 'static) -> Exploration {
    expect_clean_timers(engine, None, kernel)
}

/// [`expect_clean`] with lazy timers: a timer fires only once every goroutine is blocked, so a
/// watchdog on a timer fires exactly when the operation it guards would block forever.
#[track_caller]
pub fn expect_clean_lazy(engine: Engine, kernel: impl Fn() + Send + Sync + 'static) -> Exploration {
    expect_clean_timers(engine, Some(TimerMode::Lazy), kernel)
}

#[track_caller]
fn expect_clean_timers(
    engine: Engine,
    timers: Option<TimerMode>,
    kernel: impl Fn() + Send + Sync + 'static,
) -> Exploration {
    let mut s = settings(engine);
    s.stop_at_first_failure = false;
    s.timers = timers;
    if engine == Engine::Loom {
        s.budget = 20_000;
    }
    let found = explore(&s, Arc::new(kernel));
    assert_eq!(found.error, None, "the engine could not run the kernel");
    if let Some(f) = &found.first_failure {
        panic!(
            "{engine}: schedule {} failed: {}: {}\n{}",
            f.schedule, f.report.verdict, f.report.message, f.report.dump
        );
    }
    found
}
