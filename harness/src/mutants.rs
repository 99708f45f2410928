//! `harness mutants`: which semantic faults of the primitives the corpus and the semantics tests
//! catch (`reports/MUTANTS.md`).
//!
//! The faults are built into `primitives` behind its cargo feature `mutants`
//! (`primitives/src/mutant.rs`); one is chosen per process by the environment variable
//! `PRIMITIVES_MUTANT`. So the command builds, once, a harness and the semantics tests with the
//! feature (in `target/mutants`, apart from the everyday build), then for each mutant runs the
//! corpus and the semantics tests as child processes with the variable set. A mutant is killed
//! by the corpus when a run whose expectation holds without mutant no longer holds with it (a
//! buggy kernel missed or ending in another verdict, a fixed kernel no longer clean), and by the
//! semantics tests when one of them fails.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use primitives::mutant::{self, Mutant};
use serde::{Deserialize, Serialize};

use crate::results::Results;

/// What to run.
pub struct Options {
    pub mutants: Vec<Mutant>,
    /// Engines of the corpus runs (names as `harness run` takes them).
    pub engines: Vec<String>,
    pub budget: Option<u64>,
    pub jobs: Option<usize>,
    /// Also run the semantics tests under each mutant.
    pub semantics: bool,
    /// Longest a child process may run before it is stopped (and the mutant counted killed);
    /// by default a multiple of the same run without mutant (see [`timeout`]).
    pub timeout: Option<Duration>,
}

/// A run of the corpus that a mutant turned from holding to not holding.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Kill {
    pub bug: String,
    pub variant: String,
    pub engine: String,
    /// What the run found under the mutant: missed, wrong-verdict, false-positive, ...
    pub outcome: String,
}

/// What one side (corpus or semantics tests) made of a mutant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Side {
    /// Corpus: the runs it broke. Semantics: the tests that failed.
    pub killers: Vec<String>,
    /// The child process ran out of time (counted as a kill) or could not run.
    pub note: Option<String>,
    pub seconds: f64,
    pub killed: bool,
}

/// One mutant's row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub mutant: String,
    pub primitive: String,
    pub what: String,
    pub corpus: Side,
    /// The runs the corpus broke, in full.
    pub kills: Vec<Kill>,
    pub semantics: Option<Side>,
}

/// The whole measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub engines: Vec<String>,
    pub budget: Option<u64>,
    /// Mutants in the catalogue (the rows may be fewer when some were named).
    pub catalogue: usize,
    pub rows: Vec<Row>,
    pub seconds: f64,
}

/// Builds what the measurement needs and runs every mutant; `say` gets progress lines.
pub fn run(root: &Path, opts: &Options, say: &mut dyn FnMut(&str)) -> Result<Report, String> {
    let start = Instant::now();
    let harness = mutant_harness(root, say)?;
    let semantics = if opts.semantics {
        Some(semantics_binary(root, say)?)
    } else {
        None
    };
    let scratch = root.join("target/mutants/runs");
    say("baseline: the corpus and the semantics tests without mutant");
    let t = Instant::now();
    let baseline = corpus(&harness, None, opts, &scratch.join("baseline"), DAY)?;
    let corpus_limit = opts.timeout.unwrap_or_else(|| timeout(t.elapsed()));
    let holding: BTreeSet<(String, String, String)> = baseline
        .runs
        .iter()
        .filter(|r| r.holds)
        .map(|r| (r.bug.clone(), r.variant.clone(), r.engine.clone()))
        .collect();
    if holding.len() < baseline.runs.len() {
        say(&format!(
            "note: {} runs do not hold without mutant; they are left out of the kills",
            baseline.runs.len() - holding.len()
        ));
    }
    let t = Instant::now();
    let sem_baseline = match &semantics {
        Some(bin) => {
            let log = scratch.join("baseline/semantics.log");
            let (failed, note) = tests(bin, root, None, DAY, &log)?;
            if let Some(n) = note {
                return Err(format!(
                    "the semantics tests do not run without mutant: {n}"
                ));
            }
            failed
        }
        None => BTreeSet::new(),
    };
    let tests_limit = opts.timeout.unwrap_or_else(|| timeout(t.elapsed()));
    say(&format!(
        "a run that takes longer than {} s (corpus) or {} s (semantics tests) is stopped and \
         counts as a kill",
        corpus_limit.as_secs(),
        tests_limit.as_secs()
    ));
    if !sem_baseline.is_empty() {
        say(&format!(
            "note: {} semantics tests fail without mutant; they are left out of the kills",
            sem_baseline.len()
        ));
    }
    let mut rows = Vec::new();
    for (i, &m) in opts.mutants.iter().enumerate() {
        let t = Instant::now();
        let (kills, note) = match corpus_timed(
            &harness,
            m,
            opts,
            &scratch.join(m.name()),
            &holding,
            corpus_limit,
        ) {
            Ok(kills) => (kills, None),
            Err(note) => (Vec::new(), Some(note)),
        };
        let bugs: BTreeSet<&str> = kills.iter().map(|k| k.bug.as_str()).collect();
        let corpus_side = Side {
            killers: bugs.iter().map(|b| b.to_string()).collect(),
            killed: !kills.is_empty() || note.as_deref().is_some_and(is_timeout),
            note,
            seconds: t.elapsed().as_secs_f64(),
        };
        let semantics_side = match &semantics {
            Some(bin) => {
                let t = Instant::now();
                let log = scratch.join(m.name()).join("semantics.log");
                let (failed, note) = tests(bin, root, Some(m), tests_limit, &log)?;
                let killers: Vec<String> = failed.difference(&sem_baseline).cloned().collect();
                Some(Side {
                    killed: !killers.is_empty() || note.is_some(),
                    killers,
                    note,
                    seconds: t.elapsed().as_secs_f64(),
                })
            }
            None => None,
        };
        say(&format!(
            "[{}/{}] {}: corpus {}{}",
            i + 1,
            opts.mutants.len(),
            m.name(),
            verdict_line(&corpus_side, "bug"),
            semantics_side
                .as_ref()
                .map(|s| format!("; semantics {}", verdict_line(s, "test")))
                .unwrap_or_default()
        ));
        rows.push(Row {
            mutant: m.name().to_string(),
            primitive: m.primitive().to_string(),
            what: m.describe().to_string(),
            corpus: corpus_side,
            kills,
            semantics: semantics_side,
        });
    }
    Ok(Report {
        engines: opts.engines.clone(),
        budget: opts.budget,
        catalogue: mutant::ALL.len(),
        rows,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// No limit, in effect (the baselines).
const DAY: Duration = Duration::from_secs(86_400);

/// How long a mutant's run may take: five times the run without mutant, and at least a minute.
/// A mutant that makes executions spin to their step cap or block for good slows a run down by
/// far more than that; a slower run is still a finished one well within it.
fn timeout(baseline: Duration) -> Duration {
    (baseline * 5).max(Duration::from_secs(60))
}

fn is_timeout(note: &str) -> bool {
    note.starts_with("timed out")
}

fn verdict_line(s: &Side, what: &str) -> String {
    let mut line = match s.killers.len() {
        0 if s.killed => "killed".to_string(),
        0 => "survived".to_string(),
        1 => format!("killed by 1 {what}"),
        n => format!("killed by {n} {what}s"),
    };
    if let Some(n) = &s.note {
        let _ = write!(line, " ({n})");
    }
    let _ = write!(line, " in {:.0} s", s.seconds);
    line
}

/// The harness built with the feature: this one if it has it, else built in `target/mutants`.
fn mutant_harness(root: &Path, say: &mut dyn FnMut(&str)) -> Result<PathBuf, String> {
    if mutant::ENABLED {
        return std::env::current_exe().map_err(|e| format!("cannot find this harness: {e}"));
    }
    say("building the harness with the mutants (cargo build --release --features mutants)");
    cargo(
        root,
        &[
            "build",
            "--release",
            "-p",
            "harness",
            "--features",
            "mutants",
            "--target-dir",
            "target/mutants",
        ],
    )?;
    Ok(root.join("target/mutants/release/harness"))
}

/// Builds the semantics tests with the feature and returns the test binary.
fn semantics_binary(root: &Path, say: &mut dyn FnMut(&str)) -> Result<PathBuf, String> {
    say("building the semantics tests with the mutants");
    let out = cargo(
        root,
        &[
            "test",
            "--release",
            "-p",
            "primitives",
            "--features",
            "mutants",
            "--test",
            "semantics",
            "--target-dir",
            "target/mutants",
            "--no-run",
            "--message-format=json",
        ],
    )?;
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == "semantics")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo built no semantics test binary".to_string())
}

/// Runs cargo in the workspace; its stdout, or the tail of its stderr as the error.
fn cargo(root: &Path, args: &[&str]) -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo {}` failed ({})",
            args.join(" "),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a child process left: whether it finished in time, its status, and its output (kept
/// in a file, so that a child that writes much never blocks on a full pipe).
struct Finished {
    in_time: bool,
    status: Option<ExitStatus>,
    output: String,
}

/// Runs `cmd` with its output (stdout for `stdout`, else stderr) in `log`, stopping it after
/// `timeout`.
fn run_logged(
    cmd: &mut Command,
    log: &Path,
    stdout: bool,
    timeout: Duration,
) -> Result<Finished, String> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file =
        fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    if stdout {
        cmd.stdout(file).stderr(Stdio::null());
    } else {
        cmd.stdout(Stdio::null()).stderr(file);
    }
    let mut child: Child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let start = Instant::now();
    let (in_time, status) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (true, Some(status)),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break (false, None);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let output = fs::read_to_string(log).unwrap_or_default();
    Ok(Finished {
        in_time,
        status,
        output,
    })
}

/// Runs the corpus with `m` in force and reads what it found.
fn corpus(
    harness: &Path,
    m: Option<Mutant>,
    opts: &Options,
    out: &Path,
    limit: Duration,
) -> Result<Results, String> {
    let mut cmd = Command::new(harness);
    cmd.arg("run").arg("--quiet").arg("--out").arg(out);
    if !opts.engines.is_empty() {
        cmd.arg("--engine").args(&opts.engines);
    }
    if let Some(b) = opts.budget {
        cmd.arg("--budget").arg(b.to_string());
    }
    if let Some(j) = opts.jobs {
        cmd.arg("--jobs").arg(j.to_string());
    }
    match m {
        Some(m) => cmd.env(mutant::ENV, m.name()),
        None => cmd.env_remove(mutant::ENV),
    };
    let done = run_logged(&mut cmd, &out.join("stderr.log"), false, limit)?;
    if !done.in_time {
        return Err(format!("timed out after {} s", limit.as_secs()));
    }
    match done.status.and_then(|s| s.code()) {
        Some(0 | 1) => Results::read(&out.join("results.json")),
        _ => {
            let last = done.output.lines().last().unwrap_or("").trim();
            Err(format!("the corpus run failed: {last}"))
        }
    }
}

/// The runs `m` broke: those that held without it and do not with it.
fn corpus_timed(
    harness: &Path,
    m: Mutant,
    opts: &Options,
    out: &Path,
    holding: &BTreeSet<(String, String, String)>,
    limit: Duration,
) -> Result<Vec<Kill>, String> {
    let results = corpus(harness, Some(m), opts, out, limit)?;
    Ok(results
        .runs
        .into_iter()
        .filter(|r| {
            !r.holds && holding.contains(&(r.bug.clone(), r.variant.clone(), r.engine.clone()))
        })
        .map(|r| Kill {
            bug: r.bug,
            variant: r.variant,
            engine: r.engine,
            outcome: r.outcome,
        })
        .collect())
}

/// Runs the semantics tests with `m` in force: the failed tests, and a note when the binary
/// did not finish (timed out, or crashed).
fn tests(
    bin: &Path,
    root: &Path,
    m: Option<Mutant>,
    timeout: Duration,
    log: &Path,
) -> Result<(BTreeSet<String>, Option<String>), String> {
    let mut cmd = Command::new(bin);
    cmd.current_dir(root.join("primitives"))
        // A failure under a mutant is no regression of the real code: proptest must not
        // record its seed in the source tree, and need not shrink it.
        .env("PROPTEST_DISABLE_FAILURE_PERSISTENCE", "1")
        .env("PROPTEST_MAX_SHRINK_ITERS", "0");
    match m {
        Some(m) => cmd.env(mutant::ENV, m.name()),
        None => cmd.env_remove(mutant::ENV),
    };
    let done = run_logged(&mut cmd, log, true, timeout)?;
    let failed: BTreeSet<String> = done
        .output
        .lines()
        .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .map(test_name)
        .collect();
    let note = if !done.in_time {
        Some(format!("timed out after {} s", timeout.as_secs()))
    } else if !done.output.contains("test result:") {
        Some("the test binary died".to_string())
    } else {
        None
    };
    Ok((failed, note))
}

/// A test's name without rstest's case suffix (`::engine_3_...`, `::case_2`): the Rust test
/// function, which is what a reader looks up.
fn test_name(full: &str) -> String {
    let parts: Vec<&str> = full.split("::").collect();
    let keep = parts
        .iter()
        .position(|p| p.starts_with("engine_") || p.starts_with("case_"))
        .unwrap_or(parts.len());
    parts[..keep].join("::")
}

impl Report {
    /// How many mutants the corpus and the semantics tests kill.
    pub fn kills(&self) -> (usize, usize) {
        let corpus = self.rows.iter().filter(|r| r.corpus.killed).count();
        let semantics = self
            .rows
            .iter()
            .filter(|r| r.semantics.as_ref().is_some_and(|s| s.killed))
            .count();
        (corpus, semantics)
    }

    /// Reads a `mutants.json`.
    pub fn read(path: &Path) -> Result<Report, String> {
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a mutants report: {e}", path.display()))
    }

    /// Takes in the rows of an earlier report measured the same way, for the mutants this one
    /// did not run (so measuring a few mutants again keeps the others); rows stay in the
    /// catalogue's order. `false` when the earlier report was measured otherwise.
    pub fn keep_from(&mut self, earlier: Report) -> bool {
        if earlier.engines != self.engines || earlier.budget != self.budget {
            return false;
        }
        let ran: BTreeSet<String> = self.rows.iter().map(|r| r.mutant.clone()).collect();
        self.rows.extend(
            earlier
                .rows
                .into_iter()
                .filter(|r| !ran.contains(&r.mutant) && mutant::from_name(&r.mutant).is_some()),
        );
        let rank = |r: &Row| mutant::ALL.iter().position(|m| m.name() == r.mutant);
        self.rows.sort_by_key(rank);
        true
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes") + "\n"
    }

    /// reports/MUTANTS.md.
    pub fn render(&self) -> String {
        let m = self.rows.len();
        let (corpus, semantics) = self.kills();
        let mut s = String::new();
        s.push_str("# Mutants: does the corpus notice a wrong primitive?\n\n");
        let _ = writeln!(
            s,
            "Each mutant is one small deviation from Go's semantics built into `primitives` \
             (`primitives/src/mutant.rs`, cargo feature `mutants`, off in every other build). \
             `harness mutants` ran the corpus under each ({}, {}, seed 1) and the semantics \
             tests of `primitives/tests/semantics`. The corpus kills a mutant when a run whose \
             expectation holds without it no longer holds: a buggy kernel missed or ending in \
             another verdict, or a fixed kernel no longer clean. The semantics tests kill it \
             when one of them fails.{}\n",
            if self.engines.is_empty() {
                "every engine".to_string()
            } else {
                format!("engines {}", self.engines.join(", "))
            },
            self.budget
                .map_or("each bug's default budget".to_string(), |b| format!(
                    "budget {b}"
                )),
            if m < self.catalogue {
                format!(
                    " This run measured {m} of the catalogue's {} mutants.",
                    self.catalogue
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "Reproduce: `cargo run --release -p harness -- mutants` (about {:.0} min here); \
             `harness mutants NAME..` measures some again and keeps the other rows; one \
             mutant by hand: `PRIMITIVES_MUTANT=<name> cargo run --release -p harness \
             --features mutants -- run`.\n",
            self.rows
                .iter()
                .map(|r| r.corpus.seconds + r.semantics.as_ref().map_or(0.0, |x| x.seconds))
                .sum::<f64>()
                / 60.0
        );
        s.push_str("| mutant | primitive | what it does differently | corpus | semantics tests | seconds |\n");
        s.push_str("|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} | {:.0} |",
                r.mutant,
                r.primitive,
                r.what.replace('|', "\\|"),
                cell(&r.corpus, 6),
                r.semantics
                    .as_ref()
                    .map_or("not run".to_string(), |x| cell(x, 3)),
                r.corpus.seconds + r.semantics.as_ref().map_or(0.0, |x| x.seconds)
            );
        }
        s.push_str("\n## Gaps of the corpus\n\n");
        let gaps: Vec<&Row> = self.rows.iter().filter(|r| !r.corpus.killed).collect();
        if gaps.is_empty() {
            s.push_str("Every mutant is killed by at least one bug.\n");
        } else {
            s.push_str(
                "No bug of the corpus notices these mutants: no documented bug ported so far \
                 depends on the behaviour they change. They are listed for the ports to come, \
                 not closed with artificial bugs.\n\n",
            );
            for r in gaps {
                let _ = writeln!(s, "- `{}` ({}): {}", r.mutant, r.primitive, r.what);
            }
        }
        let weak: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.corpus.killed && r.corpus.killers.len() == 1)
            .collect();
        if !weak.is_empty() {
            s.push_str("\nKilled by a single bug (one port away from a gap):\n\n");
            for r in weak {
                let _ = writeln!(s, "- `{}`: {}", r.mutant, r.corpus.killers[0]);
            }
        }
        if self.rows.iter().any(|r| r.semantics.is_some()) {
            s.push_str("\n## Gaps of the semantics tests\n\n");
            let gaps: Vec<&Row> = self
                .rows
                .iter()
                .filter(|r| r.semantics.as_ref().is_some_and(|x| !x.killed))
                .collect();
            if gaps.is_empty() {
                s.push_str("Every mutant fails at least one semantics test.\n");
            } else {
                for r in gaps {
                    let _ = writeln!(s, "- `{}` ({}): {}", r.mutant, r.primitive, r.what);
                }
            }
        }
        let _ = writeln!(
            s,
            "\ncorpus kills {corpus} of {m} mutants; semantics tests kill {semantics} of {m}"
        );
        s
    }
}

/// A table cell: killed by whom (the first `show`), or survived.
fn cell(side: &Side, show: usize) -> String {
    let mut c = if side.killers.is_empty() {
        if side.killed {
            "**killed**".to_string()
        } else {
            "survived".to_string()
        }
    } else {
        let n = side.killers.len();
        let names: Vec<&str> = side.killers.iter().take(show).map(String::as_str).collect();
        format!(
            "**{n}**: {}{}",
            names.join(", "),
            if n > show { ", ..." } else { "" }
        )
    };
    if let Some(n) = &side.note {
        let _ = write!(c, " ({n})");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(killers: &[&str], note: Option<&str>) -> Side {
        Side {
            killers: killers.iter().map(|k| k.to_string()).collect(),
            killed: !killers.is_empty() || note.is_some_and(is_timeout),
            note: note.map(str::to_string),
            seconds: 1.0,
        }
    }

    fn row(name: &str, corpus: Side, semantics: Side) -> Row {
        Row {
            mutant: name.to_string(),
            primitive: "chan".to_string(),
            what: "does | something".to_string(),
            corpus,
            kills: Vec::new(),
            semantics: Some(semantics),
        }
    }

    #[test]
    fn test_names_lose_their_rstest_case() {
        assert_eq!(
            test_name("chan::a_full_channel::engine_1_Engine__Loom"),
            "chan::a_full_channel"
        );
        assert_eq!(
            test_name("golang::select7::case_3::engine_2_x"),
            "golang::select7"
        );
        assert_eq!(test_name("hb::plain"), "hb::plain");
    }

    #[test]
    fn the_report_ends_with_the_kill_line_and_lists_the_gaps() {
        let report = Report {
            engines: vec!["shuttle-pct".to_string()],
            budget: None,
            catalogue: 3,
            rows: vec![
                row("a", side(&["moby_1"], None), side(&["chan::x"], None)),
                row("b", side(&[], None), side(&[], Some("timed out after 9 s"))),
                row("c", side(&[], Some("timed out after 9 s")), side(&[], None)),
            ],
            seconds: 60.0,
        };
        assert_eq!(report.kills(), (2, 2));
        let md = report.render();
        assert_eq!(
            md.lines().last(),
            Some("corpus kills 2 of 3 mutants; semantics tests kill 2 of 3")
        );
        let gaps = md.split("## Gaps of the corpus").nth(1).unwrap();
        assert!(gaps.contains("- `b` (chan)"));
        assert!(!gaps
            .split("## Gaps of the semantics")
            .next()
            .unwrap()
            .contains("- `c`"));
        assert!(
            md.contains("does \\| something"),
            "pipes are escaped in the table"
        );
        assert!(md.contains("Killed by a single bug"));
    }
}
