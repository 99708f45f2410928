//! Profiling aid: explores a small channel kernel under shuttle PCT (`perf record` it).
use primitives::explore::{explore, Engine, Settings};
use primitives::{go, Chan};
use std::sync::Arc;

fn main() {
    let mut s = Settings::new(Engine::ShuttlePct);
    s.budget = 20_000;
    s.stop_at_first_failure = false;
    let f = explore(
        &s,
        Arc::new(|| {
            let ch = Chan::new(1);
            for p in 0..2 {
                let tx = ch.clone();
                go(move || {
                    tx.send(p);
                    tx.send(p);
                });
            }
            for _ in 0..4 {
                ch.recv();
            }
        }),
    );
    println!("{} schedules in {:.2}s", f.schedules, f.seconds);
}
