//! Running many (bug, variant, engine) explorations, in parallel, with progress.

use std::collections::VecDeque;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bugs::run::{self, Overrides};
use bugs::{Bug, Variant};
use primitives::explore::Engine;

use crate::results::Run;

/// One exploration to run.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub bug: &'static Bug,
    pub variant: Variant,
    pub engine: Engine,
}

/// Every job for `bugs` × variants × `engines`, bug by bug.
pub fn jobs(bugs: &[&'static Bug], variants: &[Variant], engines: &[Engine]) -> Vec<Job> {
    let mut jobs = Vec::new();
    for &bug in bugs {
        for &variant in variants {
            for &engine in engines {
                jobs.push(Job {
                    bug,
                    variant,
                    engine,
                });
            }
        }
    }
    jobs
}

/// Runs one job (an engine that does not apply gives a `skipped` row).
pub fn run_job(job: Job, overrides: Overrides) -> Run {
    if let Err(why) = run::applies(job.bug, job.engine) {
        return Run::skipped(job.bug, job.variant, job.engine, why);
    }
    let found = run::explore(job.bug, job.variant, job.engine, overrides);
    Run::new(job.bug, job.variant, &found)
}

/// Progress, as a bar on a terminal and as plain lines elsewhere (CI logs).
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { total: usize, done: usize },
    Quiet,
}

impl Progress {
    fn new(total: usize, quiet: bool) -> Self {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            Progress::Bar(bar)
        } else {
            Progress::Lines { total, done: 0 }
        }
    }

    fn finished(&mut self, run: &Run) {
        let line = format!(
            "{} {} {}: {}{} ({} schedules, {:.2}s)",
            run.bug,
            run.variant,
            run.engine,
            run.outcome,
            if run.holds { "" } else { " [unexpected]" },
            run.schedules,
            run.seconds
        );
        match self {
            Progress::Bar(bar) => {
                bar.inc(1);
                bar.set_message(format!("{} {} {}", run.bug, run.variant, run.engine));
                if !run.holds {
                    bar.println(line);
                }
            }
            Progress::Lines { total, done } => {
                *done += 1;
                eprintln!("[{done}/{total}] {line}");
            }
            Progress::Quiet => {}
        }
    }

    fn end(self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Runs `jobs` on `workers` threads and returns their rows (in no particular order).
pub fn run_all(jobs: Vec<Job>, overrides: Overrides, workers: usize, quiet: bool) -> Vec<Run> {
    let total = jobs.len();
    let queue = Arc::new(Mutex::new(jobs.into_iter().collect::<VecDeque<_>>()));
    let rows = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let progress = Arc::new(Mutex::new(Progress::new(total, quiet)));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            let (queue, rows, progress) = (queue.clone(), rows.clone(), progress.clone());
            scope.spawn(move || loop {
                let job = queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop_front();
                let Some(job) = job else { break };
                let row = run_job(job, overrides);
                progress
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .finished(&row);
                rows.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(row);
            });
        }
    });
    let _ = start;
    if let Ok(p) = Arc::try_unwrap(progress) {
        p.into_inner().unwrap_or_else(PoisonError::into_inner).end();
    }
    Arc::try_unwrap(rows)
        .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .unwrap_or_default()
}
