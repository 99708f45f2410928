//! A developer's probe: explore one bug variant on one engine and print what happened.
//!
//! `cargo run --release -p bugs --example probe -- <id> <engine> <buggy|fixed> [budget] [bound]`

use bugs::run::{self, Overrides};
use bugs::Variant;
use primitives::explore::Engine;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: probe <id> <loom|shuttle-pct|shuttle-random|shuttle-urw|std> <buggy|fixed> [budget] [preemption-bound]";
    let (Some(bug), Some(engine), Some(variant)) = (
        args.get(1).and_then(|a| bugs::find(a)),
        args.get(2).and_then(|a| Engine::parse(a)),
        args.get(3).and_then(|a| Variant::parse(a)),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let budget = args.get(4).and_then(|s| s.parse().ok());
    let mut s = run::settings(bug, variant, engine, Overrides { budget, seed: None });
    if let Some(b) = args.get(5).and_then(|s| s.parse().ok()) {
        s.preemption_bound = Some(b);
    }
    let t = std::time::Instant::now();
    let f = primitives::explore::explore(&s, run::kernel(bug, variant));
    println!(
        "{} {engine} {variant}: schedules={} failures={:?} outcome={} exhaustive={} limit={:?} error={:?} {:.2}s",
        bug.id,
        f.schedules,
        f.failures.iter().filter(|(_, n)| **n > 0).collect::<Vec<_>>(),
        run::outcome(bug, variant, &f),
        f.exhaustive,
        f.limit,
        f.error,
        t.elapsed().as_secs_f64()
    );
    if let Some(ff) = f.first_failure {
        let r = &ff.report;
        println!(
            "first failure at schedule {} (replay {:?}): {}: {}",
            ff.schedule, ff.replay, r.verdict, r.message
        );
        println!("{}", r.dump);
        for e in &r.trace {
            let name = &r.goroutines[e.g].name;
            println!(
                "{:>4} {:<18} {:<10}{} {:<24} {}{}",
                e.step,
                format!("g{} {}", e.g, name),
                e.op,
                if e.blocked { " BLOCKS" } else { "" },
                e.obj.clone().unwrap_or_default(),
                e.at,
                e.detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
    }
}
