//! `reports/SUMMARY.md`: the matrix a person reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use primitives::explore::Engine;

use crate::results::{Results, Run};

/// The rows of one bug, by variant and engine.
pub struct BugRows<'a> {
    pub bug: &'a str,
    pub project: &'a str,
    pub category: &'a str,
    pub expected: &'a str,
    pub also: &'a [String],
    pub buggy: BTreeMap<&'a str, &'a Run>,
    pub fixed: BTreeMap<&'a str, &'a Run>,
}

impl<'a> BugRows<'a> {
    /// The expected verdict, with any alternatives: `race (or panic)`.
    pub fn expected_text(&self) -> String {
        if self.also.is_empty() {
            self.expected.to_string()
        } else {
            format!("{} (or {})", self.expected, self.also.join(", "))
        }
    }

    /// The failing run to show for this bug: loom's if it found one, else the first engine's.
    pub fn shown(&self) -> Option<&'a Run> {
        Engine::ALL
            .iter()
            .filter_map(|e| self.buggy.get(e.as_str()))
            .find(|r| r.first_failure.is_some())
            .copied()
    }

    /// Whether every row of the bug holds.
    pub fn holds(&self) -> bool {
        self.buggy
            .values()
            .chain(self.fixed.values())
            .all(|r| r.holds)
    }
}

/// Groups rows by bug, in the results' order.
pub fn by_bug(results: &Results) -> Vec<BugRows<'_>> {
    let mut bugs: Vec<BugRows<'_>> = Vec::new();
    for r in &results.runs {
        if bugs.last().map(|b| b.bug) != Some(r.bug.as_str()) {
            bugs.push(BugRows {
                bug: &r.bug,
                project: &r.project,
                category: &r.category,
                expected: &r.expected,
                also: &r.also,
                buggy: BTreeMap::new(),
                fixed: BTreeMap::new(),
            });
        }
        let b = bugs.last_mut().expect("pushed above");
        match r.variant.as_str() {
            "buggy" => b.buggy.insert(&r.engine, r),
            _ => b.fixed.insert(&r.engine, r),
        };
    }
    bugs
}

/// A buggy run, in a cell: how soon it was found, or what went wrong.
pub fn buggy_cell(r: Option<&&Run>) -> String {
    let Some(r) = r else { return "·".to_string() };
    if r.engine == "std" {
        return match r.outcome.as_str() {
            "error" => "error".to_string(),
            "wrong-verdict" => format!("✗ {} other verdict", r.failed()),
            _ => format!(
                "{}/{}",
                r.failures.get(&r.expected).copied().unwrap_or(0),
                r.schedules
            ),
        };
    }
    let preempted = |k: usize| match k {
        1 => "1 preemption".to_string(),
        k => format!("{k} preemptions"),
    };
    match r.outcome.as_str() {
        "detected" => match r.first_failure.as_ref() {
            Some(f) => match f.preemptions {
                Some(k) => format!("✓ {} ({})", f.schedule, preempted(k)),
                None => format!("✓ {}", f.schedule),
            },
            None => "✓".to_string(),
        },
        // The bounded search's miss is the bound it cleared, not a broken promise.
        "missed" if r.holds => match r.explored_within {
            Some(k) => format!("– none ≤{} in {}", preempted(k), r.schedules),
            None => format!("– none in {}", r.schedules),
        },
        "missed" => format!("✗ missed in {}", r.schedules),
        "wrong-verdict" => format!(
            "✗ {}",
            r.first_failure.as_ref().map_or("?", |f| f.verdict.as_str())
        ),
        "skipped" => "n/a".to_string(),
        other => other.to_string(),
    }
}

/// The fixed variant over every engine, in a cell.
pub fn fixed_cell(rows: &BTreeMap<&str, &Run>) -> String {
    let ran: Vec<&&Run> = rows.values().filter(|r| r.outcome != "skipped").collect();
    let bad: Vec<String> = ran
        .iter()
        .filter(|r| r.outcome != "clean")
        .map(|r| format!("{} {}", r.engine, r.outcome))
        .collect();
    if ran.is_empty() {
        return "·".to_string();
    }
    if !bad.is_empty() {
        return format!("✗ {}", bad.join(", "));
    }
    let schedules: u64 = ran.iter().map(|r| r.schedules).sum();
    let mut covered = String::new();
    if rows.get("loom").is_some_and(|r| r.exhaustive) {
        covered.push_str(", loom exhaustive");
    }
    if let Some(dfs) = rows.get("shuttle-dfs") {
        match dfs.explored_within {
            _ if dfs.exhaustive && dfs.explored_within.is_none() => {
                covered.push_str(", dfs exhaustive")
            }
            Some(k) => covered.push_str(&format!(", dfs all ≤{k} preemptions")),
            None => {}
        }
    }
    format!("✓ clean ({schedules} schedules{covered})")
}

/// An engine's column header: its name; `std` is shown as `threads` (this crate's runtime on
/// OS threads, which is not stock Go: see [`THREADS`]).
pub fn engine_header(e: Engine) -> String {
    match e {
        Engine::Std => "threads".to_string(),
        e => e.as_str().to_string(),
    }
}

/// What the `threads` column is, for the reports' legends.
pub const THREADS: &str = "`threads` (engine `std`) is this crate's runtime on real OS threads, \
     with no controlled scheduler: runs in which the bug manifested, out of runs. It is not stock \
     Go: it reports a leak when the test returns with goroutines blocked, which `go test` does \
     not.";

/// What the `stock Go` column is, with its source.
pub const STOCK_GO: &str = "`stock Go` is how often `go test` with Go 1.19 showed the bug in \
     GoKer's own kernel, out of 20 runs (with a check for goroutines left blocked after the test, \
     where that differs), and GoBench's recorded rate where it has one: measured outside this \
     repository (`bugs/stock-go.tsv`); `·` where the bug has no GoKer kernel.";

/// Stock Go's figures for a bug, in a cell.
pub fn stock_go_cell(id: &str) -> String {
    let Some(s) = bugs::stock_go(id) else {
        return "·".to_string();
    };
    let mut cell = format!("{}/{}", s.manifested, s.runs);
    if let Some(l) = s.with_leak_check.filter(|&l| l != s.manifested) {
        let _ = write!(cell, " ({l}/{} with leak check)", s.runs);
    }
    if let Some(g) = s.gobench_recorded {
        let _ = write!(cell, "; GoBench {g}");
    }
    cell
}

pub fn render(results: &Results) -> String {
    let bugs = by_bug(results);
    let mut out = String::new();
    let _ = writeln!(out, "# Corpus results\n");
    let _ = writeln!(
        out,
        "Written by `harness` {} (seed {}). Buggy columns: ✓ and the schedule at which the engine \
         first found the expected verdict, ✗ when it did not, n/a where the engine does not apply. \
         {THREADS} The fixed column sums every engine's schedules, all of which must be clean. \
         {STOCK_GO}\n",
        results.harness, results.seed
    );
    let engines: Vec<String> = Engine::ALL.iter().map(|e| engine_header(*e)).collect();
    let _ = writeln!(
        out,
        "| bug | project | category | expected | stock Go | {} | fixed |",
        engines.join(" | ")
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|{}---|",
        "---|".repeat(engines.len())
    );
    for b in &bugs {
        let cells: Vec<String> = Engine::ALL
            .iter()
            .map(|e| buggy_cell(b.buggy.get(e.as_str())))
            .collect();
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {} | {} | {} | {} |",
            b.bug,
            if b.holds() { "" } else { " ⚠" },
            b.project,
            b.category,
            b.expected_text(),
            stock_go_cell(b.bug),
            cells.join(" | "),
            fixed_cell(&b.fixed)
        );
    }
    let _ = writeln!(out, "\n## Totals\n");
    let detected = |engine: &str| {
        bugs.iter()
            .filter(|b| b.buggy.get(engine).is_some_and(|r| r.outcome == "detected"))
            .count()
    };
    let applies = |engine: &str| {
        bugs.iter()
            .filter(|b| b.buggy.get(engine).is_some_and(|r| r.outcome != "skipped"))
            .count()
    };
    let _ = writeln!(out, "- bugs: {}", bugs.len());
    for e in Engine::ALL {
        let _ = writeln!(
            out,
            "- buggy variant detected by {}: {} of {}",
            engine_header(e),
            detected(e.as_str()),
            applies(e.as_str())
        );
    }
    let measured: Vec<bugs::StockGo> = bugs.iter().filter_map(|b| bugs::stock_go(b.bug)).collect();
    let _ = writeln!(
        out,
        "- stock Go showed the bug at least once in 20 runs of `go test`: {} of the {} GoKer \
         kernels measured ({} with the leak check)",
        measured.iter().filter(|s| s.manifested > 0).count(),
        measured.len(),
        measured
            .iter()
            .filter(|s| s.manifested > 0 || s.with_leak_check.is_some_and(|l| l > 0))
            .count()
    );
    let clean = bugs
        .iter()
        .filter(|b| {
            !b.fixed.is_empty()
                && b.fixed
                    .values()
                    .all(|r| r.outcome == "clean" || r.outcome == "skipped")
        })
        .count();
    let _ = writeln!(
        out,
        "- fixed variant clean on every engine: {clean} of {}",
        bugs.len()
    );
    let unexpected: Vec<&Run> = results.runs.iter().filter(|r| !r.holds).collect();
    let _ = writeln!(out, "- rows that do not hold: {}", unexpected.len());
    for r in &unexpected {
        let _ = writeln!(
            out,
            "  - {} {} on {}: {}{}",
            r.bug,
            r.variant,
            r.engine,
            r.outcome,
            r.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "\n## Time\n");
    let _ = writeln!(
        out,
        "| engine | runs | schedules | seconds | µs per schedule |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for e in Engine::ALL {
        let rows: Vec<&Run> = results
            .runs
            .iter()
            .filter(|r| r.engine == e.as_str() && r.outcome != "skipped")
            .collect();
        let schedules: u64 = rows.iter().map(|r| r.schedules).sum();
        let seconds: f64 = rows.iter().map(|r| r.seconds).sum();
        let per = if schedules > 0 {
            seconds * 1e6 / schedules as f64
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "| {e} | {} | {schedules} | {seconds:.1} | {per:.0} |",
            rows.len()
        );
    }
    let limits: Vec<&Run> = results
        .runs
        .iter()
        .filter(|r| r.note.is_some() && r.outcome != "skipped" && !r.exhaustive)
        .collect();
    if !limits.is_empty() {
        let _ = writeln!(out, "\n## Search limits and notes\n");
        for r in limits {
            let _ = writeln!(
                out,
                "- {} {} on {}: {}",
                r.bug,
                r.variant,
                r.engine,
                r.note.as_deref().unwrap_or_default()
            );
        }
    }
    let by_rule: Vec<&Run> = results
        .runs
        .iter()
        .filter(|r| r.unexplored_choices > 0)
        .collect();
    if !by_rule.is_empty() {
        let _ = writeln!(
            out,
            "\n## Choices loom did not explore\n\nloom cannot branch on a value, so it takes the \
             choices Go leaves to chance (which ready `select` case runs, which of a parked \
             select's cases on one channel a partner completes, what `rand` draws) by a fixed \
             rule (rotation; `rand` draws 0). Its answer for these rows rests on that rule; \
             shuttle's schedulers explore those choices.\n"
        );
        for r in by_rule {
            let _ = writeln!(
                out,
                "- {} {}: {} of {} executions",
                r.bug, r.variant, r.unexplored_choices, r.schedules
            );
        }
    }
    out.push_str(&crate::fidelity::left_out());
    let skipped: Vec<&Run> = results
        .runs
        .iter()
        .filter(|r| r.outcome == "skipped" && r.variant == "buggy")
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "\n## Engines that do not apply\n");
        for r in skipped {
            let _ = writeln!(
                out,
                "- {} on {}: {}",
                r.bug,
                r.engine,
                r.note.as_deref().unwrap_or_default()
            );
        }
    }
    out
}
