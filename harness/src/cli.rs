//! The `harness` command line.
//!
//! Exit status: 0 when every expectation holds (or the command did what it was asked), 1 when
//! an expectation does not hold, 2 for bad usage or input (one line on stderr says what was
//! wrong and what is accepted).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use bugs::run::Overrides;
use bugs::{Bug, Variant};
use clap::{Parser, Subcommand};
use primitives::explore::{self, Engine};

use crate::results::{FirstFailure, Results};
use crate::{html, matrix, output, summary, swimlane, walkthrough};

#[derive(Parser, Debug)]
#[command(
    name = "harness",
    version,
    about = "Explore the corpus of Go concurrency bugs under loom, shuttle and std; write reports/",
    long_about = "Without a command: run the whole corpus with default budgets, write reports/, and \
                  exit 0 when every expectation holds, 1 otherwise."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the bugs of the corpus.
    List,
    /// Explore bugs (all by default) and write results.json, SUMMARY.md and index.html.
    Run(RunArgs),
    /// Run one recorded schedule again and print the goroutine dump and the trace.
    Replay(ReplayArgs),
    /// Print a bug's walkthrough with its first failing interleaving as swimlanes.
    Explain(ExplainArgs),
    /// Join results files (of shards) into one report.
    Merge(MergeArgs),
    /// Regenerate the trace blocks of walkthroughs from real runs.
    Bless(BlessArgs),
    /// Measure detection speed (and gather criterion's figures) into BENCH.md.
    Bench(BenchArgs),
    /// Build the book (chapters by primitive, a page per bug) from the last results.
    Book(BookArgs),
    /// Measure which semantic faults of the primitives the corpus and the semantics tests
    /// catch, into MUTANTS.md.
    Mutants(MutantsArgs),
}

#[derive(clap::Args, Debug)]
struct MutantsArgs {
    /// Mutant names (default: every mutant; `--list` shows them).
    mutants: Vec<String>,
    /// List the mutants and what each does, and exit.
    #[arg(long)]
    list: bool,
    /// Engines of the corpus runs.
    #[arg(
        long = "engine",
        value_name = "ENGINE",
        num_args = 1..,
        default_values_t = ["shuttle-pct".to_string(), "shuttle-random".to_string(), "shuttle-urw".to_string()]
    )]
    engines: Vec<String>,
    /// Executions per engine and variant, instead of each bug's own budget.
    #[arg(long)]
    budget: Option<u64>,
    /// Explorations run in parallel within a corpus run (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only the corpus, not the semantics tests.
    #[arg(long)]
    no_semantics: bool,
    /// Seconds a corpus run or a run of the semantics tests may take before it is stopped
    /// (and the mutant counted killed). Default: five times the same run without mutant, at
    /// least a minute.
    #[arg(long)]
    timeout: Option<u64>,
    #[arg(long, default_value = "reports")]
    out: PathBuf,
}

#[derive(clap::Args, Debug, Default)]
struct RunArgs {
    /// Bug ids (default: every bug).
    bugs: Vec<String>,
    /// Engines: loom, shuttle-pct, shuttle-random, shuttle-urw, shuttle-dfs, std (default: all).
    #[arg(long = "engine", value_name = "ENGINE", num_args = 1..)]
    engines: Vec<String>,
    /// Executions per engine and variant, instead of each bug's own budget.
    #[arg(long)]
    budget: Option<u64>,
    /// Seed of shuttle's schedulers and of the std runtime's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run only shard K of N (bugs dealt round-robin by id), e.g. 2/4.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Where to write the reports.
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// Explorations run in parallel (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    bug: String,
    /// buggy or fixed.
    #[arg(long, default_value = "buggy")]
    variant: String,
    /// loom, shuttle-pct, shuttle-random, shuttle-urw or shuttle-dfs.
    #[arg(long)]
    engine: String,
    /// The schedule string from results.json (`replay`) or a walkthrough.
    #[arg(long)]
    schedule: String,
}

#[derive(clap::Args, Debug)]
struct ExplainArgs {
    bug: String,
    /// The engine whose first failing schedule to show (default: loom where it applies).
    #[arg(long)]
    engine: Option<String>,
}

#[derive(clap::Args, Debug)]
struct MergeArgs {
    /// results.json files to join.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[arg(long, default_value = "reports")]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Bug ids (default: every bug).
    bugs: Vec<String>,
    /// Seeds per shuttle engine (medians are taken over them).
    #[arg(long, default_value_t = crate::bench::SEEDS)]
    seeds: u64,
    #[arg(long, default_value = "reports")]
    out: PathBuf,
    /// Where criterion keeps its estimates (default: the workspace's target/criterion).
    #[arg(long)]
    criterion: Option<PathBuf>,
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(clap::Args, Debug)]
struct BookArgs {
    /// The results to build it from.
    #[arg(long, default_value = "reports/results.json")]
    results: PathBuf,
    /// Where to write the book (replaced whole once built).
    #[arg(long, default_value = "reports/book")]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
struct BlessArgs {
    /// Bug ids (default: every bug).
    bugs: Vec<String>,
}

/// A failure of the command itself: bad input (2) or a failed write (1).
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("bad usage")
                .trim_start_matches("error: ");
            eprintln!("harness: {first}; see `harness --help`");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        None => run(RunArgs {
            out: PathBuf::from("reports"),
            seed: 1,
            ..RunArgs::default()
        })
        .and_then(|code| {
            bench(BenchArgs {
                bugs: Vec::new(),
                seeds: crate::bench::SEEDS,
                out: PathBuf::from("reports"),
                criterion: None,
                jobs: None,
            })
            .map(|_| code)
        })
        .and_then(|code| {
            book(BookArgs {
                results: PathBuf::from("reports/results.json"),
                out: PathBuf::from("reports/book"),
            })
            .map(|_| code)
        }),
        Some(Command::List) => list(),
        Some(Command::Run(args)) => run(args),
        Some(Command::Replay(args)) => replay(args),
        Some(Command::Explain(args)) => explain(args),
        Some(Command::Merge(args)) => merge(args),
        Some(Command::Bless(args)) => bless(args),
        Some(Command::Bench(args)) => bench(args),
        Some(Command::Book(args)) => book(args),
        Some(Command::Mutants(args)) => mutants(args),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("harness: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn find_bug(id: &str) -> Result<&'static Bug, Failure> {
    bugs::find(id).ok_or_else(|| {
        usage(format!(
            "unknown bug `{id}`; `harness list` shows the {} bugs of the corpus",
            bugs::all().len()
        ))
    })
}

/// The bugs named on the command line, or the whole corpus when none is named.
fn select_bugs(ids: &[String]) -> Result<Vec<&'static Bug>, Failure> {
    if ids.is_empty() {
        return Ok(bugs::all());
    }
    ids.iter().map(|id| find_bug(id)).collect()
}

fn parse_engine(name: &str) -> Result<Engine, Failure> {
    Engine::parse(name).ok_or_else(|| {
        usage(format!(
            "unknown engine `{name}`; one of {}",
            Engine::names()
        ))
    })
}

fn parse_variant(name: &str) -> Result<Variant, Failure> {
    Variant::parse(name).ok_or_else(|| usage(format!("unknown variant `{name}`; buggy or fixed")))
}

fn parse_shard(s: &str) -> Result<(usize, usize), Failure> {
    let bad = || {
        usage(format!(
            "bad shard `{s}`; expected K/N with 1 <= K <= N, e.g. 2/4"
        ))
    };
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

fn list() -> Result<ExitCode, Failure> {
    println!(
        "{:<24} {:<10} {:<9} {:<6} category",
        "bug", "project", "expected", "loom"
    );
    for b in bugs::all() {
        println!(
            "{:<24} {:<10} {:<9} {:<6} {}",
            b.id,
            b.project,
            b.expected.as_str(),
            if bugs::run::applies(b, Engine::Loom).is_ok() {
                "yes"
            } else {
                "no"
            },
            b.category
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let mut selected: Vec<&'static Bug> = select_bugs(&args.bugs)?;
    let engines: Vec<Engine> = if args.engines.is_empty() {
        Engine::ALL.to_vec()
    } else {
        args.engines
            .iter()
            .map(|e| parse_engine(e))
            .collect::<Result<_, _>>()?
    };
    if let Some(shard) = &args.shard {
        let (k, n) = parse_shard(shard)?;
        selected = selected
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, b)| b)
            .collect();
    }
    if args.budget == Some(0) {
        return Err(usage("bad budget 0; a budget is at least one execution"));
    }
    let overrides = Overrides {
        budget: args.budget,
        seed: Some(args.seed),
    };
    let workers = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let jobs = matrix::jobs(&selected, &Variant::ALL, &engines);
    let start = Instant::now();
    let rows = matrix::run_all(jobs, overrides, workers, args.quiet);
    let results = Results::new(args.seed, rows);
    write_reports(&args.out, &results)?;
    let wall = start.elapsed().as_secs_f64();
    let bad: Vec<_> = results.runs.iter().filter(|r| !r.holds).collect();
    println!(
        "{} bugs, {} runs in {wall:.1} s: {} expectation{} not held. Reports in {}/",
        selected.len(),
        results.runs.len(),
        bad.len(),
        if bad.len() == 1 { "" } else { "s" },
        args.out.display()
    );
    for r in &bad {
        println!("  {} {} on {}: {}", r.bug, r.variant, r.engine, r.outcome);
    }
    Ok(if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_reports(dir: &std::path::Path, results: &Results) -> Result<(), Failure> {
    let bench = crate::bench::Bench::read(&dir.join("bench.json"));
    output::write_all(
        dir,
        &[
            ("results.json", results.to_json()),
            ("SUMMARY.md", summary::render(results)),
            ("index.html", html::render(results, bench.as_ref())),
            ("FIDELITY.md", crate::fidelity::render(&bugs::all())),
        ],
    )
    .map_err(|message| Failure { code: 1, message })
}

fn bench(args: BenchArgs) -> Result<ExitCode, Failure> {
    let selected: Vec<&'static Bug> = select_bugs(&args.bugs)?;
    if args.seeds == 0 {
        return Err(usage("bad --seeds 0; at least one seed"));
    }
    let workers = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let start = Instant::now();
    let data = crate::bench::run(&selected, args.seeds, workers);
    let criterion_dir = args
        .criterion
        .unwrap_or_else(|| crate::workspace_root().join("target/criterion"));
    let estimates = crate::bench::criterion_estimates(&criterion_dir);
    let paired = crate::bench::paired_ratios(&criterion_dir);
    let mut files = vec![
        ("bench.json", data.to_json()),
        ("BENCH.md", crate::bench::render(&data, &estimates, &paired)),
        ("detection.svg", crate::bench::svg(&data)),
    ];
    if let Ok(results) = Results::read(&args.out.join("results.json")) {
        files.push(("index.html", html::render(&results, Some(&data))));
    }
    output::write_all(&args.out, &files).map_err(|message| Failure { code: 1, message })?;
    println!(
        "measured {} bugs in {:.1} s ({} criterion estimates); BENCH.md in {}/",
        selected.len(),
        start.elapsed().as_secs_f64(),
        estimates.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn book(args: BookArgs) -> Result<ExitCode, Failure> {
    let results = Results::read(&args.results).map_err(|e| {
        usage(format!(
            "{e}; `harness run` writes the results a book is built from"
        ))
    })?;
    let built =
        crate::book::build(&results, &args.out).map_err(|message| Failure { code: 1, message })?;
    println!(
        "book of {} bugs ({} with a picture of the failure) in {}/; open {}/index.html",
        built.pages,
        built.pictures,
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_failure(id: &str, variant: Variant, engine: &str, f: &FirstFailure) {
    println!("{}: {}\n", f.verdict, f.message);
    print!("{}", f.dump);
    println!();
    print!("{}", swimlane::text(f));
    if let Some(s) = &f.replay {
        println!(
            "\nreplay: {}",
            walkthrough::replay_command(id, variant, engine, s)
        );
    }
}

fn replay(args: ReplayArgs) -> Result<ExitCode, Failure> {
    let bug = find_bug(&args.bug)?;
    let variant = parse_variant(&args.variant)?;
    let engine = parse_engine(&args.engine)?;
    if !engine.replayable() {
        let replayable: Vec<&str> = Engine::ALL
            .into_iter()
            .filter(|e| e.replayable())
            .map(Engine::as_str)
            .collect();
        return Err(usage(format!(
            "the {engine} engine runs real threads and has no schedules to replay; use one of {}",
            replayable.join(", ")
        )));
    }
    if let Err(why) = bugs::run::applies(bug, engine) {
        return Err(usage(format!(
            "{engine} does not apply to {}: {why}",
            bug.id
        )));
    }
    let settings = bugs::run::settings(bug, variant, engine, Overrides::default());
    let report = explore::replay(&settings, &args.schedule, bugs::run::kernel(bug, variant))
        .map_err(|e| usage(e.to_string()))?;
    println!("replayed {} {variant} on {engine}", bug.id);
    if report.verdict.is_failure() {
        let f = FirstFailure::from_report(1, Some(args.schedule.clone()), &report);
        print_failure(bug.id, variant, engine.as_str(), &f);
    } else {
        println!("clean: the schedule runs to the end without a failure");
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(args: ExplainArgs) -> Result<ExitCode, Failure> {
    let bug = find_bug(&args.bug)?;
    let engine = match &args.engine {
        Some(e) => parse_engine(e)?,
        None => walkthrough::engine_for(bug),
    };
    if let Err(why) = bugs::run::applies(bug, engine) {
        return Err(usage(format!(
            "{engine} does not apply to {}: {why}",
            bug.id
        )));
    }
    let run = walkthrough::failing_run(bug, engine);
    let block = walkthrough::block(bug, &run);
    let text = walkthrough::splice(bug.walkthrough, &block)
        .unwrap_or_else(|_| format!("{}\n{block}", bug.walkthrough));
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn merge(args: MergeArgs) -> Result<ExitCode, Failure> {
    let mut runs = Vec::new();
    let mut seed = None;
    for path in &args.files {
        let r = Results::read(path).map_err(usage)?;
        if seed.is_some_and(|s| s != r.seed) {
            eprintln!(
                "harness: note: {} was run with seed {}",
                path.display(),
                r.seed
            );
        }
        seed.get_or_insert(r.seed);
        runs.extend(r.runs);
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &runs {
        if !seen.insert((r.bug.clone(), r.variant.clone(), r.engine.clone())) {
            return Err(usage(format!(
                "{} {} on {} appears in more than one input; merge joins disjoint shards",
                r.bug, r.variant, r.engine
            )));
        }
    }
    let results = Results::new(seed.unwrap_or(1), runs);
    write_reports(&args.out, &results)?;
    println!(
        "merged {} files, {} runs, into {}/",
        args.files.len(),
        results.runs.len(),
        args.out.display()
    );
    Ok(if results.all_hold() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn bless(args: BlessArgs) -> Result<ExitCode, Failure> {
    let selected: Vec<&'static Bug> = select_bugs(&args.bugs)?;
    let mut changed = 0;
    for bug in &selected {
        match walkthrough::bless(bug) {
            Ok(true) => {
                changed += 1;
                println!("blessed {}", walkthrough::path(bug).display());
            }
            Ok(false) => {}
            Err(message) => return Err(Failure { code: 1, message }),
        }
    }
    println!("{} walkthroughs checked, {changed} updated", selected.len());
    Ok(ExitCode::SUCCESS)
}

fn mutants(args: MutantsArgs) -> Result<ExitCode, Failure> {
    use primitives::mutant;
    if args.list {
        for m in mutant::ALL {
            println!("{:<40} {:<14} {}", m.name(), m.primitive(), m.describe());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let chosen = if args.mutants.is_empty() {
        mutant::ALL.to_vec()
    } else {
        args.mutants
            .iter()
            .map(|n| {
                mutant::from_name(n).ok_or_else(|| {
                    usage(format!(
                        "unknown mutant `{n}`; `harness mutants --list` shows the {}",
                        mutant::ALL.len()
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    for e in &args.engines {
        parse_engine(e)?;
    }
    if args.budget == Some(0) {
        return Err(usage("bad budget 0; a budget is at least one execution"));
    }
    let opts = crate::mutants::Options {
        mutants: chosen,
        engines: args.engines,
        budget: args.budget,
        jobs: args.jobs,
        semantics: !args.no_semantics,
        timeout: args
            .timeout
            .map(|t| std::time::Duration::from_secs(t.max(1))),
    };
    let some = opts.mutants.len() < mutant::ALL.len();
    let mut report = crate::mutants::run(&crate::workspace_root(), &opts, &mut |line| {
        println!("{line}")
    })
    .map_err(|message| Failure { code: 1, message })?;
    let earlier = args.out.join("mutants.json");
    if some && earlier.exists() {
        // Measuring a few mutants again updates their rows and keeps the others.
        // keep_from leaves the report as it is when the earlier one was measured otherwise.
        let kept = crate::mutants::Report::read(&earlier).is_ok_and(|old| report.keep_from(old));
        match kept {
            true => println!("kept the other rows of {}", earlier.display()),
            false => println!(
                "note: {} was measured otherwise; it is replaced by these {} mutants",
                earlier.display(),
                report.rows.len()
            ),
        }
    }
    output::write_all(
        &args.out,
        &[
            ("MUTANTS.md", report.render()),
            ("mutants.json", report.to_json()),
        ],
    )
    .map_err(|message| Failure { code: 1, message })?;
    let (corpus, semantics) = report.kills();
    let m = report.rows.len();
    println!(
        "corpus kills {corpus} of {m} mutants; semantics tests kill {semantics} of {m}. \
         MUTANTS.md in {}/",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
