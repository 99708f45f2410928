//! Profiling aid: explores one of the search benchmark's kernels under a shuttle engine, for
//! `perf record`. `cargo run --release -p primitives --example profile_shuttle -- [small|medium]
//! [pct|random|urw] [SCHEDULES]`.
use primitives::explore::{explore, Engine, Settings};
use std::process::ExitCode;

#[path = "../benches/common/kernels.rs"]
#[allow(dead_code)] // `large` is the benchmark's alone
mod kernels;
use kernels::{medium, small};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &'static str| args.get(i).map_or(default, String::as_str);
    let kernel = match arg(0, "medium") {
        "small" => small(),
        "medium" => medium(),
        other => {
            eprintln!("profile_shuttle: unknown kernel {other:?} (small, medium)");
            return ExitCode::from(2);
        }
    };
    let engine = match arg(1, "pct") {
        "pct" => Engine::ShuttlePct,
        "random" => Engine::ShuttleRandom,
        "urw" => Engine::ShuttleUrw,
        other => {
            eprintln!("profile_shuttle: unknown engine {other:?} (pct, random, urw)");
            return ExitCode::from(2);
        }
    };
    let Ok(budget) = arg(2, "20000").parse() else {
        eprintln!("profile_shuttle: the schedule count must be a number");
        return ExitCode::from(2);
    };
    let mut s = Settings::new(engine);
    s.budget = budget;
    s.stop_at_first_failure = false;
    let f = explore(&s, kernel);
    println!(
        "{} schedules in {:.2}s ({:.2} µs each)",
        f.schedules,
        f.seconds,
        f.seconds * 1e6 / f.schedules as f64
    );
    ExitCode::SUCCESS
}
