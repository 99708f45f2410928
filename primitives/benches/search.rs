//! The search: schedules per second on each engine for three kernels of different sizes, and
//! the cost of this crate's layer, beside the same kernels written directly against
//! `loom::sync` / `shuttle::sync` with std-like types (no Go semantics, no books), measured in
//! the same run. Each benchmark is one whole exploration; its throughput is in schedules.
//!
//! `cargo bench -p primitives --bench search`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use primitives::explore::{explore, Engine, Kernel, Settings};

const LOOM_BOUND: usize = 2;
const SHUTTLE_ITERATIONS: usize = 200;

mod common;
use common::kernels::{large, medium, small};

/// The three kernels written directly against one engine's std-like types: `$sync` and
/// `$thread` are its modules, `$channel` makes the medium kernel's channel.
macro_rules! raw_kernels {
    ($small:ident, $medium:ident, $large:ident, $sync:path, $thread:path, $channel:expr) => {
        fn $small() {
            use $sync as sync;
            use $thread as thread;
            let mu = Arc::new(sync::Mutex::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let mu = mu.clone();
                    thread::spawn(move || *mu.lock().unwrap() += 1)
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }

        fn $medium() {
            use $thread as thread;
            let (tx, rx) = $channel;
            for p in 0..2 {
                let tx = tx.clone();
                thread::spawn(move || {
                    tx.send(p).unwrap();
                    tx.send(p).unwrap();
                });
            }
            for _ in 0..4 {
                rx.recv().unwrap();
            }
        }

        fn $large() {
            use $sync as sync;
            use $thread as thread;
            let rw = Arc::new(sync::RwLock::new(0));
            let threads: Vec<_> = (0..4)
                .map(|i| {
                    let rw = rw.clone();
                    thread::spawn(move || {
                        if i == 0 {
                            *rw.write().unwrap() += 1;
                        } else {
                            let _ = *rw.read().unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
    };
}

// loom has no bounded channel; its unbounded one stands in.
raw_kernels!(
    raw_loom_small,
    raw_loom_medium,
    raw_loom_large,
    loom::sync,
    loom::thread,
    loom::sync::mpsc::channel()
);
raw_kernels!(
    raw_shuttle_small,
    raw_shuttle_medium,
    raw_shuttle_large,
    shuttle::sync,
    shuttle::thread,
    shuttle::sync::mpsc::sync_channel(1)
);

fn settings(engine: Engine) -> Settings {
    let mut s = Settings::new(engine);
    s.stop_at_first_failure = false;
    s.preemption_bound = Some(LOOM_BOUND);
    s.budget = match engine {
        Engine::Loom => 1_000_000,
        _ => SHUTTLE_ITERATIONS as u64,
    };
    s
}

/// Executions of one exploration of `kernel` on `engine` (the same every time).
fn ours_schedules(engine: Engine, kernel: &Kernel) -> u64 {
    let found = explore(&settings(engine), kernel.clone());
    assert_eq!(found.failed(), 0);
    found.schedules
}

fn raw_loom(body: fn()) -> u64 {
    let n = Arc::new(AtomicU64::new(0));
    let count = n.clone();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(LOOM_BOUND);
    b.check(move || {
        count.fetch_add(1, Ordering::Relaxed);
        body();
    });
    n.load(Ordering::Relaxed)
}

fn raw_shuttle(body: fn(), pct: bool) -> u64 {
    let mut config = shuttle::Config::new();
    config.failure_persistence = shuttle::FailurePersistence::None;
    config.silence_warnings = true;
    let n = if pct {
        shuttle::Runner::new(
            shuttle::scheduler::PctScheduler::new_from_seed(1, 3, SHUTTLE_ITERATIONS),
            config,
        )
        .run(body)
    } else {
        shuttle::Runner::new(
            shuttle::scheduler::RandomScheduler::new_from_seed(1, SHUTTLE_ITERATIONS),
            config,
        )
        .run(body)
    };
    n as u64
}

/// A kernel of ours, with its raw loom and raw shuttle twins.
type Case = (&'static str, Kernel, fn(), fn());

fn search(c: &mut Criterion) {
    let mut paired = Vec::new();
    let kernels: [Case; 3] = [
        (
            "small (2 goroutines, Mutex)",
            small(),
            raw_loom_small,
            raw_shuttle_small,
        ),
        (
            "medium (3 goroutines, channel)",
            medium(),
            raw_loom_medium,
            raw_shuttle_medium,
        ),
        (
            "large (5 goroutines, RWMutex)",
            large(),
            raw_loom_large,
            raw_shuttle_large,
        ),
    ];
    for (name, kernel, loom_body, shuttle_body) in kernels {
        let mut g = c.benchmark_group(format!("search {name}"));
        // Ours and raw are measured one after the other, so their ratio carries any drift of
        // the machine between them: enough samples that one slow stretch does not decide it.
        g.sample_size(30);
        for engine in [
            Engine::Loom,
            Engine::ShuttlePct,
            Engine::ShuttleRandom,
            Engine::Std,
        ] {
            let n = ours_schedules(engine, &kernel);
            g.throughput(Throughput::Elements(n));
            let k = kernel.clone();
            g.bench_function(format!("ours/{engine}"), move |b| {
                b.iter(|| explore(&settings(engine), k.clone()).schedules)
            });
        }
        let n = raw_loom(loom_body);
        g.throughput(Throughput::Elements(n));
        g.bench_function("raw/loom", move |b| b.iter(|| raw_loom(loom_body)));
        for (engine, pct) in [("shuttle-pct", true), ("shuttle-random", false)] {
            g.throughput(Throughput::Elements(SHUTTLE_ITERATIONS as u64));
            g.bench_function(format!("raw/{engine}"), move |b| {
                b.iter(|| raw_shuttle(shuttle_body, pct))
            });
        }
        g.finish();
        paired.extend(paired_ratios(name, &kernel, loom_body, shuttle_body));
    }
    write_paired(&paired);
}

/// Rounds of the paired measurement.
const PAIRED_ROUNDS: usize = 101;

/// ours / raw per schedule for each engine of `kernel`, as the median over rounds that each
/// time one exploration of ours and one of raw back to back (which goes first alternates):
/// a slow stretch of the machine then slows both sides of a pair, where criterion, which
/// measures ours and raw minutes apart, puts it in the ratio.
fn paired_ratios(name: &str, kernel: &Kernel, loom_body: fn(), shuttle_body: fn()) -> Vec<String> {
    let engines = [
        ("loom", Engine::Loom),
        ("shuttle-pct", Engine::ShuttlePct),
        ("shuttle-random", Engine::ShuttleRandom),
    ];
    engines
        .into_iter()
        .map(|(label, engine)| {
            let ours = || {
                let t = Instant::now();
                let n = explore(&settings(engine), kernel.clone()).schedules;
                t.elapsed().as_secs_f64() / n as f64
            };
            let raw = || {
                let t = Instant::now();
                let n = match engine {
                    Engine::Loom => raw_loom(loom_body),
                    _ => raw_shuttle(shuttle_body, engine == Engine::ShuttlePct),
                };
                t.elapsed().as_secs_f64() / n as f64
            };
            let mut ratios: Vec<f64> = (0..PAIRED_ROUNDS)
                .map(|round| {
                    if round % 2 == 0 {
                        let o = ours();
                        o / raw()
                    } else {
                        let r = raw();
                        ours() / r
                    }
                })
                .collect();
            ratios.sort_by(f64::total_cmp);
            let median = ratios[ratios.len() / 2];
            println!("search {name} {label}: paired ratio {median:.2} (median of {PAIRED_ROUNDS})");
            format!(
                "{{\"kernel\": \"{name}\", \"engine\": \"{label}\", \"ratio\": {median:.4}, \"rounds\": {PAIRED_ROUNDS}}}"
            )
        })
        .collect()
}

/// Writes the paired ratios beside criterion's estimates (`target/criterion`), where `harness
/// bench` reads them.
fn write_paired(rows: &[String]) {
    let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("criterion")))
    else {
        return;
    };
    let text = format!("[\n  {}\n]\n", rows.join(",\n  "));
    if std::fs::create_dir_all(&target).is_ok() {
        let _ = std::fs::write(target.join("search-paired.json"), text);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = search
}
criterion_main!(benches);
