use bugs::run::{self, Overrides};
use bugs::Variant;
use primitives::explore::Engine;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bug = bugs::find(&args[1]).unwrap();
    let engine = Engine::parse(&args[2]).unwrap();
    let variant = Variant::parse(&args[3]).unwrap();
    let budget: u64 = args.get(4).map(|s| s.parse().unwrap()).unwrap_or(100000);
    let bound: Option<usize> = args.get(5).map(|s| s.parse().unwrap());
    let mut s = run::settings(
        bug,
        variant,
        engine,
        Overrides {
            budget: Some(budget),
            seed: None,
        },
    );
    if bound.is_some() {
        s.preemption_bound = bound;
    }
    let t = std::time::Instant::now();
    let f = primitives::explore::explore(&s, run::kernel(bug, variant));
    println!(
        "{} {} {}: schedules={} failed={} exhaustive={} limit={:?} err={:?} {:.2}s",
        bug.id,
        engine,
        variant,
        f.schedules,
        f.failed(),
        f.exhaustive,
        f.limit,
        f.error,
        t.elapsed().as_secs_f64()
    );
    if let Some(ff) = f.first_failure {
        println!(
            "first failure at {}: {} {}\n{}",
            ff.schedule, ff.report.verdict, ff.report.message, ff.report.dump
        );
        println!("steps={} trace={}", ff.report.steps, ff.report.trace.len());
    }
}
