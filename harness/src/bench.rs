//! `reports/BENCH.md`: how fast the corpus is caught, and what the primitives and the search
//! cost beside the anchors.
//!
//! Detection speed is measured here: each buggy kernel on each controlled engine, with seeds 1
//! to 10 (loom's search is deterministic: one run), schedules and wall time to the first
//! failure, as median, 90th percentile and maximum over the seeds; the *portfolio* (the
//! searching engines interleaved one schedule at a time, as a user running `harness` gets
//! them); the bugs each engine misses within 1,000 schedules; and the `std` baseline's
//! manifest rate. The primitive and search figures come from
//! criterion (`cargo bench -p primitives`), read from its estimates if they are there.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use bugs::run::{self, Overrides};
use bugs::{Bug, Variant};
use primitives::explore::Engine;
use serde::{Deserialize, Serialize};

/// One bug on one engine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Detection {
    pub bug: String,
    pub engine: String,
    /// Schedules to the first failure, per seed (`None`: not found within the budget).
    pub schedules: Vec<Option<u64>>,
    /// Wall seconds to the first failure (or to the end of the budget), per seed.
    pub seconds: Vec<f64>,
    /// `std` only: runs in which the bug manifested, and runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<(u64, u64)>,
}

/// The `q`-quantile (0..=1) of schedules to the first failure, a miss counting as endless
/// (`None` when the quantile falls on a miss).
fn quantile(schedules: &[Option<u64>], q: f64) -> Option<u64> {
    let mut all: Vec<u64> = schedules.iter().map(|s| s.unwrap_or(u64::MAX)).collect();
    if all.is_empty() {
        return None;
    }
    all.sort_unstable();
    let k = ((q * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1;
    Some(all[k]).filter(|&v| v != u64::MAX)
}

impl Detection {
    /// The median over every seed (a miss counts as endless, as in the other quantiles: an
    /// engine that misses at most seeds has no median).
    pub fn median_schedules(&self) -> Option<u64> {
        quantile(&self.schedules, 0.5)
    }

    /// Whether some seed found the bug.
    pub fn found(&self) -> bool {
        self.schedules.iter().any(Option::is_some)
    }

    /// The 90th percentile over every seed (a miss counts as endless).
    pub fn p90_schedules(&self) -> Option<u64> {
        quantile(&self.schedules, 0.9)
    }

    /// The worst seed (a miss counts as endless).
    pub fn max_schedules(&self) -> Option<u64> {
        quantile(&self.schedules, 1.0)
    }

    /// Seeds whose search did not find the bug within `limit` schedules.
    pub fn misses_within(&self, limit: u64) -> usize {
        self.schedules
            .iter()
            .filter(|s| s.is_none_or(|n| n > limit))
            .count()
    }

    pub fn median_seconds(&self) -> f64 {
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied().unwrap_or(0.0)
    }
}

/// `reports/bench.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bench {
    pub seeds: u64,
    pub detections: Vec<Detection>,
}

pub const SEEDS: u64 = 10;

/// The schedules a search should need at most (BENCH.md counts the misses).
pub const WITHIN: u64 = 1_000;

/// Measures one bug on every engine that applies.
pub fn measure(bug: &Bug, seeds: u64) -> Vec<Detection> {
    let mut out = Vec::new();
    for engine in Engine::ALL {
        if run::applies(bug, engine).is_err() {
            continue;
        }
        // loom and shuttle-dfs are deterministic searches; std is timed once.
        let runs = match engine {
            Engine::Loom | Engine::ShuttleDfs | Engine::Std => 1,
            _ => seeds,
        };
        let mut d = Detection {
            bug: bug.id.to_string(),
            engine: engine.as_str().to_string(),
            schedules: Vec::new(),
            seconds: Vec::new(),
            manifest: None,
        };
        for seed in 1..=runs {
            let found = run::explore(
                bug,
                Variant::Buggy,
                engine,
                Overrides {
                    budget: None,
                    seed: Some(seed),
                },
            );
            let hit = run::outcome(bug, Variant::Buggy, &found) == run::Outcome::Detected;
            if engine == Engine::Std {
                let n: u64 = found
                    .failures
                    .iter()
                    .filter(|(v, _)| bug.accepts(**v))
                    .map(|(_, n)| n)
                    .sum();
                d.manifest = Some((n, found.schedules));
            }
            d.schedules.push(
                found
                    .first_failure
                    .as_ref()
                    .filter(|_| hit)
                    .map(|f| f.schedule),
            );
            d.seconds.push(found.seconds);
        }
        out.push(d);
    }
    out
}

/// The portfolio's schedules to the first failure at each seed: the searching engines take
/// turns, one schedule each, so an engine that needs `n` schedules costs the portfolio about
/// `k × n` (`k` engines); loom's one search counts at every seed. `None` where every engine
/// missed.
pub fn portfolio(detections: &[&Detection], seeds: u64) -> Vec<Option<u64>> {
    let searching: Vec<&&Detection> = detections.iter().filter(|d| d.engine != "std").collect();
    let k = searching.len() as u64;
    (0..seeds as usize)
        .map(|i| {
            searching
                .iter()
                .filter_map(|d| {
                    let s = if d.schedules.len() == 1 {
                        d.schedules[0]
                    } else {
                        d.schedules.get(i).copied().flatten()
                    };
                    s.map(|n| k * n)
                })
                .min()
        })
        .collect()
}

/// A criterion estimate: `group/function`, nanoseconds per iteration, elements per iteration.
#[derive(Clone, Debug)]
pub struct Estimate {
    pub group: String,
    pub function: String,
    pub ns: f64,
    pub elements: Option<f64>,
}

#[derive(Deserialize)]
struct CriterionBenchmark {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<BTreeMap<String, f64>>,
}

#[derive(Deserialize)]
struct CriterionEstimates {
    /// The median sample: a run slowed by a busy neighbour moves it less than the mean.
    median: CriterionPoint,
}

#[derive(Deserialize)]
struct CriterionPoint {
    point_estimate: f64,
}

/// ours / raw per schedule for one search kernel and engine, measured in pairs by the search
/// bench (`search-paired.json` beside criterion's estimates).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Paired {
    pub kernel: String,
    pub engine: String,
    pub ratio: f64,
    pub rounds: u64,
}

/// The paired ratios the search bench left in `dir` (`target/criterion`), if any.
pub fn paired_ratios(dir: &Path) -> Vec<Paired> {
    std::fs::read_to_string(dir.join("search-paired.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Every estimate criterion left under `dir` (`target/criterion`).
pub fn criterion_estimates(dir: &Path) -> Vec<Estimate> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    let bench = std::fs::read_to_string(p.join("benchmark.json"))
                        .ok()
                        .and_then(|t| serde_json::from_str::<CriterionBenchmark>(&t).ok());
                    let est = std::fs::read_to_string(p.join("estimates.json"))
                        .ok()
                        .and_then(|t| serde_json::from_str::<CriterionEstimates>(&t).ok());
                    if let (Some(b), Some(e)) = (bench, est) {
                        let function = match (b.function_id, b.value_str) {
                            (Some(f), Some(v)) => format!("{f}/{v}"),
                            (Some(f), None) => f,
                            (None, Some(v)) => v,
                            (None, None) => String::new(),
                        };
                        out.push(Estimate {
                            group: b.group_id,
                            function,
                            ns: e.median.point_estimate,
                            elements: b.throughput.and_then(|t| t.get("Elements").copied()),
                        });
                    }
                } else if p.file_name().is_some_and(|n| n != "report") {
                    stack.push(p);
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.group, &a.function).cmp(&(&b.group, &b.function)));
    out
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// The primitive and search tables from criterion's estimates (and the search's paired
/// ratios, where the bench left them).
fn criterion_tables(estimates: &[Estimate], paired: &[Paired], out: &mut String) {
    let mut groups: BTreeMap<&str, Vec<&Estimate>> = BTreeMap::new();
    for e in estimates {
        groups.entry(&e.group).or_default().push(e);
    }
    let primitive_groups: Vec<_> = groups
        .iter()
        .filter(|(g, _)| !g.starts_with("search "))
        .collect();
    if !primitive_groups.is_empty() {
        let _ = writeln!(out, "## Primitives (criterion, `std` engine)\n");
        let _ = writeln!(
            out,
            "Time per operation (per message, per lock/unlock pair, per select, per fan-in). Ours with \
             the runtime's books on (trace and vector clocks) and off. Targets: books on within 3× \
             of the best alternative, books off within 1.5×.\n"
        );
        let _ = writeln!(
            out,
            "| benchmark | ours, books on | ours, books off | best alternative | ratio on | ratio off | targets |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (group, rows) in primitive_groups {
            // select has one row set per arm count.
            let mut variants: BTreeMap<String, Vec<&&Estimate>> = BTreeMap::new();
            for r in rows {
                let suffix = r
                    .function
                    .rsplit_once('/')
                    .filter(|(_, v)| v.chars().all(|c| c.is_ascii_digit()))
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default();
                variants.entry(suffix).or_default().push(r);
            }
            for (arms, rows) in variants {
                let name = if arms.is_empty() {
                    group.to_string()
                } else {
                    format!("{group} ({arms} arms)")
                };
                let find = |prefix: &str| {
                    rows.iter()
                        .find(|r| r.function.starts_with(prefix))
                        .map(|r| r.ns)
                };
                let (on, off) = (find("ours/books-on"), find("ours/books-off"));
                let best = rows
                    .iter()
                    .filter(|r| !r.function.starts_with("ours"))
                    .min_by(|a, b| a.ns.total_cmp(&b.ns));
                let (Some(on), Some(off), Some(best)) = (on, off, best) else {
                    continue;
                };
                let (r_on, r_off) = (on / best.ns, off / best.ns);
                let _ = writeln!(
                    out,
                    "| {name} | {} | {} | {} ({}) | {r_on:.1}× | {r_off:.1}× | {} / {} |",
                    fmt_ns(on),
                    fmt_ns(off),
                    fmt_ns(best.ns),
                    best.function.split('/').next().unwrap_or_default(),
                    if r_on <= 3.0 { "met" } else { "not met" },
                    if r_off <= 1.5 { "met" } else { "not met" },
                );
            }
        }
        out.push('\n');
    }
    let search_groups: Vec<_> = groups
        .iter()
        .filter(|(g, _)| g.starts_with("search "))
        .collect();
    if !search_groups.is_empty() {
        let _ = writeln!(out, "## The search (criterion)\n");
        let _ = writeln!(
            out,
            "Time per schedule: one exploration divided by its schedules. `raw` is the same kernel \
             written directly against `loom::sync` / `shuttle::sync` with std-like types (loom \
             with the same preemption bound; raw loom explores fewer schedules, since it has fewer \
             scheduling points). Target: ours within 1.5× raw per schedule.{}\n",
            if paired.is_empty() {
                String::new()
            } else {
                format!(
                    " The per-schedule times are criterion's medians; the ratio is measured apart, in \
                     pairs: the median over {} rounds that each time one exploration of ours and \
                     one of raw back to back, so that a slow stretch of the machine slows both \
                     sides of a pair instead of one side of the ratio.",
                    paired[0].rounds
                )
            }
        );
        let _ = writeln!(out, "| kernel | engine | ours per schedule | schedules/s | raw per schedule | ratio | target |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for (group, rows) in search_groups {
            let kernel = group.trim_start_matches("search ");
            let per = |function: &str| {
                rows.iter()
                    .find(|r| r.function == function)
                    .map(|r| r.ns / r.elements.unwrap_or(1.0))
            };
            for engine in Engine::ALL.map(Engine::as_str) {
                let Some(ours) = per(&format!("ours/{engine}")) else {
                    continue;
                };
                let raw = per(&format!("raw/{engine}"));
                let ratio = paired
                    .iter()
                    .find(|p| p.kernel == kernel && p.engine == engine)
                    .map(|p| p.ratio)
                    .or_else(|| raw.map(|r| ours / r));
                let _ = writeln!(
                    out,
                    "| {kernel} | {engine} | {} | {:.0} | {} | {} | {} |",
                    fmt_ns(ours),
                    1e9 / ours,
                    raw.map(fmt_ns).unwrap_or_else(|| "·".into()),
                    ratio
                        .map(|r| format!("{r:.2}×"))
                        .unwrap_or_else(|| "·".into()),
                    match ratio {
                        Some(r) if r <= 1.5 => "met",
                        Some(_) => "not met",
                        None => "·",
                    }
                );
            }
        }
        out.push('\n');
    }
}

/// `BENCH.md`.
pub fn render(bench: &Bench, estimates: &[Estimate], paired: &[Paired]) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        out,
        "Written by `harness bench`. Detection speed is measured in the same run; the primitive \
         and search tables are criterion's last estimates (medians; `cargo bench -p primitives`), {}.\n",
        if estimates.is_empty() {
            "absent from this machine"
        } else {
            "read from `target/criterion`"
        }
    );
    let _ = writeln!(out, "## Detection speed\n");
    let _ = writeln!(
        out,
        "Schedules to the first failure of each buggy kernel over seeds 1–{} as `median / p90 / \
         max` (a miss counts as endless: `✗`; loom: its one deterministic search), and the \
         median wall time. The portfolio is the searching engines taking turns, one schedule \
         each. `threads` (engine `std`) is this crate's runtime on OS threads, not stock Go (runs \
         in which the bug manifested, out of runs). \
         The picture is `detection.svg` (also in `index.html`).\n",
        bench.seeds
    );
    let headers: Vec<String> = Engine::ALL
        .iter()
        .map(|e| crate::summary::engine_header(*e))
        .collect();
    let _ = writeln!(out, "| bug | {} | portfolio |", headers.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---|".repeat(headers.len()));
    let mut by_bug: BTreeMap<&str, BTreeMap<&str, &Detection>> = BTreeMap::new();
    for d in &bench.detections {
        by_bug.entry(&d.bug).or_default().insert(&d.engine, d);
    }
    let n = |s: Option<u64>| s.map_or("✗".to_string(), |s| s.to_string());
    let cell = |d: Option<&&Detection>| match d {
        None => "n/a".to_string(),
        Some(d) if d.engine == "std" => {
            let (n, runs) = d.manifest.unwrap_or((0, 0));
            format!("{n}/{runs}")
        }
        Some(d) if d.schedules.len() == 1 => match d.schedules[0] {
            Some(s) => format!("{s} ({:.3} s)", d.median_seconds()),
            None => "missed".to_string(),
        },
        Some(d) => format!(
            "{} / {} / {} ({:.3} s)",
            n(d.median_schedules()),
            n(d.p90_schedules()),
            n(d.max_schedules()),
            d.median_seconds()
        ),
    };
    let mut portfolios: Vec<Vec<Option<u64>>> = Vec::new();
    for (bug, engines) in &by_bug {
        let cells: Vec<String> = Engine::ALL
            .iter()
            .map(|e| cell(engines.get(e.as_str())))
            .collect();
        let ds: Vec<&Detection> = engines.values().copied().collect();
        let p = portfolio(&ds, bench.seeds);
        let _ = writeln!(
            out,
            "| {bug} | {} | {} / {} / {} |",
            cells.join(" | "),
            n(quantile(&p, 0.5)),
            n(quantile(&p, 0.9)),
            n(quantile(&p, 1.0))
        );
        portfolios.push(p);
    }
    let _ = writeln!(out, "\n### Across the corpus\n");
    let _ = writeln!(
        out,
        "| engine | bugs found | median of medians | worst median (of the bugs that have one) | bugs missed within {WITHIN} at some seed | threads manifest rate |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for engine in Engine::ALL {
        let ds: Vec<&Detection> = bench
            .detections
            .iter()
            .filter(|d| d.engine == engine.as_str())
            .collect();
        if engine == Engine::Std {
            let (n, runs) = ds
                .iter()
                .filter_map(|d| d.manifest)
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            let some = ds
                .iter()
                .filter(|d| d.manifest.is_some_and(|m| m.0 > 0))
                .count();
            let _ = writeln!(
                out,
                "| threads | {some} of {} manifest at least once | · | · | · | {:.1}% of runs |",
                ds.len(),
                if runs > 0 {
                    100.0 * n as f64 / runs as f64
                } else {
                    0.0
                }
            );
            continue;
        }
        let meds: Vec<Option<u64>> = ds.iter().map(|d| d.median_schedules()).collect();
        let found = ds.iter().filter(|d| d.found()).count();
        let with_median = meds.iter().flatten().count();
        let missed = ds.iter().filter(|d| d.misses_within(WITHIN) > 0).count();
        let _ = writeln!(
            out,
            "| {engine} | {found} of {} ({with_median} at half the seeds or more) | {} | {} | {missed} | · |",
            ds.len(),
            n(quantile(&meds, 0.5)),
            meds.iter().flatten().max().map_or("·".to_string(), u64::to_string),
        );
    }
    let mut pmeds: Vec<u64> = portfolios.iter().filter_map(|p| quantile(p, 0.5)).collect();
    pmeds.sort_unstable();
    let pmissed = portfolios
        .iter()
        .filter(|p| p.iter().any(|s| s.is_none_or(|n| n > WITHIN)))
        .count();
    let _ = writeln!(
        out,
        "| portfolio | {} of {} | {} | {} | {pmissed} | · |",
        pmeds.len(),
        portfolios.len(),
        pmeds
            .get(pmeds.len() / 2)
            .map_or("·".to_string(), |m| m.to_string()),
        pmeds.last().map_or("·".to_string(), |m| m.to_string()),
    );
    let _ = writeln!(
        out,
        "\nTarget: the portfolio finds every buggy kernel within {WITHIN} schedules at every seed, \
         median at most 10: {} at some seed, and the median of the portfolio's medians is {}.",
        match pmissed {
            1 => "1 bug misses it".to_string(),
            n => format!("{n} bugs miss it"),
        },
        pmeds
            .get(pmeds.len() / 2)
            .map_or("·".to_string(), |m| m.to_string())
    );
    out.push('\n');
    criterion_tables(estimates, paired, &mut out);
    out
}

/// The detection-speed picture: schedules to the first failure per bug (log scale), a series
/// per engine.
pub fn svg(bench: &Bench) -> String {
    let engines = [
        ("loom", "#8250df"),
        ("shuttle-pct", "#0969da"),
        ("shuttle-random", "#1a7f37"),
        ("shuttle-urw", "#bf8700"),
    ];
    let mut bugs: Vec<&str> = bench.detections.iter().map(|d| d.bug.as_str()).collect();
    bugs.dedup();
    let (left, top, step, plot_h): (f64, f64, f64, f64) = (60.0, 30.0, 11.0, 180.0);
    let width = left + step * bugs.len() as f64 + 160.0;
    let decades = 5.0; // 1 .. 100,000 schedules
    let y = |s: u64| top + plot_h - ((s.max(1) as f64).log10() / decades).min(1.0) * plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="detection" width="{width:.0}" height="{:.0}" font-family="sans-serif" font-size="10">"#,
        top + plot_h + 110.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="16" font-size="12" font-weight="bold">Schedules to the first failure (median of seeds, log scale)</text>"#
    );
    for d in 0..=5 {
        let v = 10u64.pow(d);
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#d0d7de"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"##,
            width - 150.0,
            left - 4.0,
            yy + 3.0
        );
    }
    for (i, bug) in bugs.iter().enumerate() {
        let x = left + step * (i as f64 + 0.5);
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{:.1}" transform="rotate(60 {x:.1},{:.1})" fill="#57606a" font-size="8">{bug}</text>"##,
            top + plot_h + 8.0,
            top + plot_h + 8.0
        );
        for (k, (engine, color)) in engines.iter().enumerate() {
            let Some(d) = bench
                .detections
                .iter()
                .find(|d| d.bug == *bug && d.engine == *engine)
            else {
                continue;
            };
            let Some(m) = d.median_schedules() else {
                continue;
            };
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}" fill-opacity="0.8"><title>{bug} on {engine}: {m} schedules</title></circle>"#,
                x + (k as f64 - 1.0) * 2.5,
                y(m)
            );
        }
    }
    for (k, (engine, color)) in engines.iter().enumerate() {
        let ly = top + 10.0 + 16.0 * k as f64;
        let lx = width - 140.0;
        let _ = writeln!(
            s,
            r#"<circle cx="{lx:.1}" cy="{ly:.1}" r="4" fill="{color}"/><text x="{:.1}" y="{:.1}">{engine}</text>"#,
            lx + 8.0,
            ly + 3.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Measures `bugs` and returns the bench data (the order of `bugs` kept).
pub fn run(bugs: &[&'static Bug], seeds: u64, workers: usize) -> Bench {
    let queue = std::sync::Mutex::new(bugs.iter().copied().enumerate().collect::<Vec<_>>());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop();
                let Some((i, bug)) = next else { break };
                let d = measure(bug, seeds);
                results
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((i, d));
            });
        }
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|(i, _)| *i);
    Bench {
        seeds,
        detections: results.into_iter().flat_map(|(_, d)| d).collect(),
    }
}

impl Bench {
    pub fn read(path: &Path) -> Option<Bench> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("bench data serialize") + "\n"
    }
}

#[cfg(test)]
mod portfolio_tests {
    use super::*;

    fn d(engine: &str, schedules: Vec<Option<u64>>) -> Detection {
        Detection {
            bug: "x_1".into(),
            engine: engine.into(),
            seconds: vec![0.0; schedules.len()],
            schedules,
            manifest: None,
        }
    }

    #[test]
    fn a_miss_counts_as_endless_in_the_quantiles() {
        let x = d("shuttle-pct", vec![Some(3), Some(1), None, Some(2)]);
        assert_eq!(x.median_schedules(), Some(2));
        let mostly_missed = d("shuttle-pct", vec![Some(3), None, None, None]);
        assert_eq!(mostly_missed.median_schedules(), None);
        assert!(mostly_missed.found());
        assert_eq!(x.p90_schedules(), None);
        assert_eq!(x.max_schedules(), None);
        assert_eq!(x.misses_within(2), 2);
    }

    #[test]
    fn the_portfolio_takes_the_fastest_engine_at_each_seed_times_the_engines() {
        let pct = d("shuttle-pct", vec![Some(10), None]);
        let random = d("shuttle-random", vec![Some(2), Some(40)]);
        let native = d("std", vec![None]);
        let p = portfolio(&[&pct, &random, &native], 2);
        assert_eq!(p, [Some(4), Some(80)]);
    }

    #[test]
    fn the_search_table_judges_the_paired_ratio_where_there_is_one() {
        let e = |function: &str, ns: f64| Estimate {
            group: "search small".into(),
            function: function.into(),
            ns,
            elements: Some(100.0),
        };
        // criterion alone: 1,800 / 1,000 per schedule, not met.
        let estimates = [e("ours/shuttle-pct", 1800.0), e("raw/shuttle-pct", 1000.0)];
        let mut alone = String::new();
        criterion_tables(&estimates, &[], &mut alone);
        assert!(alone.contains("| 1.80× | not met |"), "{alone}");
        // The pairs say 1.4.
        let paired = [Paired {
            kernel: "small".into(),
            engine: "shuttle-pct".into(),
            ratio: 1.4,
            rounds: 101,
        }];
        let mut both = String::new();
        criterion_tables(&estimates, &paired, &mut both);
        assert!(both.contains("| 1.40× | met |"), "{both}");
        assert!(both.contains("median over 101 rounds"), "{both}");
    }
}
