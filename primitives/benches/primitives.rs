//! The primitives on the `std` engine, each beside the crates a Rust programmer would use
//! instead, measured in the same run: channels (crossbeam-channel, flume, std mpsc), locks
//! (std, parking_lot), select (crossbeam's), and a WaitGroup fan-in (std threads). Ours run with
//! the runtime's books on (trace and vector clocks, as in every exploration) and off.
//!
//! `cargo bench -p primitives --bench primitives`; `harness bench` puts the figures in
//! `reports/BENCH.md`.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use primitives::explore::{explore, Engine, Settings};
use primitives::sync::{Mutex, RwMutex, WaitGroup};
use primitives::{go, select, Chan};

/// Runs `body(iters)` as the main goroutine of one `std` execution and returns the time it took.
fn ours(books: bool, iters: u64, body: impl Fn(u64) + Send + Sync + 'static) -> Duration {
    let elapsed = Arc::new(StdMutex::new(Duration::ZERO));
    let out = elapsed.clone();
    let mut s = Settings::new(Engine::Std);
    s.budget = 1;
    s.books = books;
    s.max_steps = u64::MAX;
    s.trace_limit = 4096;
    let found = explore(
        &s,
        Arc::new(move || {
            let start = Instant::now();
            body(iters);
            *out.lock().unwrap() = start.elapsed();
        }),
    );
    assert!(
        found.first_failure.is_none(),
        "{:?}",
        found.first_failure.map(|f| f.report.message)
    );
    let d = *elapsed.lock().unwrap();
    d
}

const BOOKS: [(bool, &str); 2] = [(true, "ours/books-on"), (false, "ours/books-off")];

/// Benchmarks `body` (given the iteration count) on our primitives, books on and off.
fn bench_ours(
    g: &mut BenchmarkGroup<'_, WallTime>,
    body: impl Fn(u64) + Clone + Send + Sync + 'static,
) {
    for (books, name) in BOOKS {
        g.bench_function(name, |b| b.iter_custom(|n| ours(books, n, body.clone())));
    }
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("unbuffered ping-pong");
    g.throughput(Throughput::Elements(1));
    bench_ours(&mut g, |n| {
        let (ping, pong) = (Chan::new(0), Chan::new(0));
        let (rx, tx) = (ping.clone(), pong.clone());
        go(move || {
            for _ in 0..n {
                let v: u64 = rx.recv().unwrap();
                tx.send(v);
            }
        });
        for i in 0..n {
            ping.send(i);
            pong.recv();
        }
    });
    macro_rules! alternative {
        ($name:literal, $make:expr) => {
            g.bench_function($name, |b| {
                b.iter_custom(|n| {
                    let (ping_tx, ping_rx) = $make;
                    let (pong_tx, pong_rx) = $make;
                    let t = std::thread::spawn(move || {
                        for _ in 0..n {
                            pong_tx.send(ping_rx.recv().unwrap()).unwrap();
                        }
                    });
                    let start = Instant::now();
                    for i in 0..n {
                        ping_tx.send(i).unwrap();
                        pong_rx.recv().unwrap();
                    }
                    let d = start.elapsed();
                    t.join().unwrap();
                    d
                })
            });
        };
    }
    alternative!("crossbeam-channel", crossbeam_channel::bounded::<u64>(0));
    alternative!("flume", flume::bounded::<u64>(0));
    alternative!("std-mpsc", std::sync::mpsc::sync_channel::<u64>(0));
    g.finish();
}

const CAP: usize = 128;

/// `producers` goroutines send `n` values in all through a buffered channel to main.
fn channel_throughput(c: &mut Criterion, group: &str, producers: u64) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    bench_ours(&mut g, move |n| {
        let ch = Chan::new(CAP);
        for p in 0..producers {
            let tx = ch.clone();
            let share = n / producers + u64::from(p < n % producers);
            go(move || {
                for i in 0..share {
                    tx.send(i);
                }
            });
        }
        for _ in 0..n {
            ch.recv();
        }
    });
    macro_rules! alternative {
        ($name:literal, $make:expr) => {
            g.bench_function($name, |b| {
                b.iter_custom(|n| {
                    let (tx, rx) = $make;
                    let start = Instant::now();
                    let threads: Vec<_> = (0..producers)
                        .map(|p| {
                            let tx = tx.clone();
                            let share = n / producers + u64::from(p < n % producers);
                            std::thread::spawn(move || {
                                for i in 0..share {
                                    tx.send(i).unwrap();
                                }
                            })
                        })
                        .collect();
                    for _ in 0..n {
                        rx.recv().unwrap();
                    }
                    let d = start.elapsed();
                    for t in threads {
                        t.join().unwrap();
                    }
                    d
                })
            });
        };
    }
    alternative!("crossbeam-channel", crossbeam_channel::bounded::<u64>(CAP));
    alternative!("flume", flume::bounded::<u64>(CAP));
    alternative!("std-mpsc", std::sync::mpsc::sync_channel::<u64>(CAP));
    g.finish();
}

fn spsc(c: &mut Criterion) {
    channel_throughput(c, "buffered SPSC", 1);
}

fn mpsc(c: &mut Criterion) {
    channel_throughput(c, "buffered MPSC (4 producers)", 4);
}

fn mutex(c: &mut Criterion) {
    let mut g = c.benchmark_group("Mutex uncontended");
    g.throughput(Throughput::Elements(1));
    bench_ours(&mut g, |n| {
        let mu = Mutex::new();
        for _ in 0..n {
            mu.lock();
            mu.unlock();
        }
    });
    g.bench_function("std", |b| {
        let mu = StdMutex::new(0u64);
        b.iter(|| *mu.lock().unwrap() += 1)
    });
    g.bench_function("parking_lot", |b| {
        let mu = parking_lot::Mutex::new(0u64);
        b.iter(|| *mu.lock() += 1)
    });
    g.finish();

    let mut g = c.benchmark_group("Mutex contended (2 threads)");
    g.throughput(Throughput::Elements(1));
    bench_ours(&mut g, |n| {
        let (mu, wg) = (Mutex::new(), WaitGroup::new());
        for t in 0..2 {
            wg.add(1);
            let (mu, wg) = (mu.clone(), wg.clone());
            go(move || {
                for _ in 0..(n / 2 + u64::from(t == 0 && n % 2 == 1)) {
                    mu.lock();
                    mu.unlock();
                }
                wg.done();
            });
        }
        wg.wait();
    });
    macro_rules! contended {
        ($name:literal, $mu:expr, $lock:expr) => {
            g.bench_function($name, |b| {
                b.iter_custom(|n| {
                    let mu = Arc::new($mu);
                    let start = Instant::now();
                    let threads: Vec<_> = (0..2)
                        .map(|t| {
                            let mu = mu.clone();
                            std::thread::spawn(move || {
                                for _ in 0..(n / 2 + u64::from(t == 0 && n % 2 == 1)) {
                                    #[allow(clippy::redundant_closure_call)]
                                    ($lock)(&mu);
                                }
                            })
                        })
                        .collect();
                    for t in threads {
                        t.join().unwrap();
                    }
                    start.elapsed()
                })
            });
        };
    }
    contended!("std", StdMutex::new(0u64), |m: &StdMutex<u64>| *m
        .lock()
        .unwrap() +=
        1);
    contended!(
        "parking_lot",
        parking_lot::Mutex::new(0u64),
        |m: &parking_lot::Mutex<u64>| *m.lock() += 1
    );
    g.finish();
}

fn rwmutex(c: &mut Criterion) {
    let mut g = c.benchmark_group("RwMutex read uncontended");
    g.throughput(Throughput::Elements(1));
    bench_ours(&mut g, |n| {
        let rw = RwMutex::new();
        for _ in 0..n {
            rw.rlock();
            rw.runlock();
        }
    });
    g.bench_function("std", |b| {
        let rw = std::sync::RwLock::new(0u64);
        b.iter(|| *rw.read().unwrap())
    });
    g.bench_function("parking_lot", |b| {
        let rw = parking_lot::RwLock::new(0u64);
        b.iter(|| *rw.read())
    });
    g.finish();

    let mut g = c.benchmark_group("RwMutex contended (reader and writer)");
    g.throughput(Throughput::Elements(1));
    bench_ours(&mut g, |n| {
        let (rw, wg) = (RwMutex::new(), WaitGroup::new());
        wg.add(1);
        let (w, wg2) = (rw.clone(), wg.clone());
        go(move || {
            for _ in 0..n / 2 {
                w.lock();
                w.unlock();
            }
            wg2.done();
        });
        for _ in 0..(n - n / 2) {
            rw.rlock();
            rw.runlock();
        }
        wg.wait();
    });
    macro_rules! contended {
        ($name:literal, $rw:expr, $read:expr, $write:expr) => {
            g.bench_function($name, |b| {
                b.iter_custom(|n| {
                    let rw = Arc::new($rw);
                    let w = rw.clone();
                    let start = Instant::now();
                    let t = std::thread::spawn(move || {
                        for _ in 0..n / 2 {
                            #[allow(clippy::redundant_closure_call)]
                            ($write)(&w);
                        }
                    });
                    for _ in 0..(n - n / 2) {
                        #[allow(clippy::redundant_closure_call)]
                        ($read)(&rw);
                    }
                    t.join().unwrap();
                    start.elapsed()
                })
            });
        };
    }
    contended!(
        "std",
        std::sync::RwLock::new(0u64),
        |r: &std::sync::RwLock<u64>| drop(r.read().unwrap()),
        |r: &std::sync::RwLock<u64>| *r.write().unwrap() += 1
    );
    contended!(
        "parking_lot",
        parking_lot::RwLock::new(0u64),
        |r: &parking_lot::RwLock<u64>| drop(r.read()),
        |r: &parking_lot::RwLock<u64>| *r.write() += 1
    );
    g.finish();
}

/// A select over `arms` channels, each always ready: the cost of choosing.
fn selects(c: &mut Criterion) {
    let mut g = c.benchmark_group("select");
    g.throughput(Throughput::Elements(1));
    for arms in [2usize, 8] {
        for (books, name) in BOOKS {
            g.bench_with_input(BenchmarkId::new(name, arms), &arms, |b, &arms| {
                b.iter_custom(|n| {
                    ours(books, n, move |n| {
                        let chans: Vec<Chan<()>> = (0..arms).map(|_| Chan::new(0)).collect();
                        for ch in &chans {
                            ch.close();
                        }
                        for _ in 0..n {
                            if arms == 2 {
                                select! {
                                    recv(chans[0]) -> _ => {},
                                    recv(chans[1]) -> _ => {},
                                }
                            } else {
                                select! {
                                    recv(chans[0]) -> _ => {},
                                    recv(chans[1]) -> _ => {},
                                    recv(chans[2]) -> _ => {},
                                    recv(chans[3]) -> _ => {},
                                    recv(chans[4]) -> _ => {},
                                    recv(chans[5]) -> _ => {},
                                    recv(chans[6]) -> _ => {},
                                    recv(chans[7]) -> _ => {},
                                }
                            }
                        }
                    })
                })
            });
        }
        g.bench_with_input(
            BenchmarkId::new("crossbeam-channel", arms),
            &arms,
            |b, &arms| {
                let chans: Vec<_> = (0..arms)
                    .map(|_| {
                        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
                        drop(tx);
                        rx
                    })
                    .collect();
                b.iter(|| {
                    if arms == 2 {
                        crossbeam_channel::select! {
                            recv(chans[0]) -> _ => {},
                            recv(chans[1]) -> _ => {},
                        }
                    } else {
                        crossbeam_channel::select! {
                            recv(chans[0]) -> _ => {},
                            recv(chans[1]) -> _ => {},
                            recv(chans[2]) -> _ => {},
                            recv(chans[3]) -> _ => {},
                            recv(chans[4]) -> _ => {},
                            recv(chans[5]) -> _ => {},
                            recv(chans[6]) -> _ => {},
                            recv(chans[7]) -> _ => {},
                        }
                    }
                })
            },
        );
    }
    g.finish();
}

/// 64 goroutines each call `Done`; main waits. Goroutines are threads on `std`: the figure is
/// mostly the cost of starting them, next to starting as many std threads.
fn waitgroup(c: &mut Criterion) {
    let mut g = c.benchmark_group("WaitGroup fan-in of 64");
    g.sample_size(20);
    bench_ours(&mut g, |n| {
        for _ in 0..n {
            let wg = WaitGroup::new();
            for _ in 0..64 {
                wg.add(1);
                let wg = wg.clone();
                go(move || wg.done());
            }
            wg.wait();
        }
    });
    g.bench_function("std threads (scope)", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for _ in 0..64 {
                    s.spawn(|| {});
                }
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = ping_pong, spsc, mpsc, mutex, rwmutex, selects, waitgroup
}
criterion_main!(benches);
