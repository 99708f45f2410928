//! Walkthroughs show a real trace: the block between `<!-- trace:begin -->` and
//! `<!-- trace:end -->` in each `<id>.md` is generated from the bug's first failing schedule
//! (`harness bless`), and a test fails when it no longer matches what the harness finds.

use std::fmt::Write as _;
use std::path::PathBuf;

use bugs::run::{self, Overrides};
use bugs::{Bug, Variant};
use primitives::explore::Engine;

use crate::results::{FirstFailure, Run};
use crate::swimlane;

pub const BEGIN: &str = "<!-- trace:begin -->";
pub const END: &str = "<!-- trace:end -->";

/// The engine a walkthrough's trace comes from: loom where it applies and finds the bug (its
/// search finds the schedules with the fewest preemptions first, which read best), else PCT,
/// or the first searching engine the bug does not list as missing it (`not_found_by`).
pub fn engine_for(bug: &Bug) -> Engine {
    let misses = |e: Engine| bug.not_found_by.iter().any(|(n, _)| *n == e);
    if run::applies(bug, Engine::Loom).is_ok() && !misses(Engine::Loom) {
        return Engine::Loom;
    }
    [
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
    ]
    .into_iter()
    .find(|&e| !misses(e))
    .unwrap_or(Engine::ShuttlePct)
}

/// Explores the buggy variant on `engine` with the bug's own budget and seed 1.
pub fn failing_run(bug: &Bug, engine: Engine) -> Run {
    let found = run::explore(bug, Variant::Buggy, engine, Overrides::default());
    Run::new(bug, Variant::Buggy, &found)
}

/// The walkthrough's file.
pub fn path(bug: &Bug) -> PathBuf {
    crate::workspace_root()
        .join("bugs/src")
        .join(bug.project)
        .join(format!("{}.md", bug.id))
}

/// The generated block (without its markers) for a bug's failing run.
pub fn block(bug: &Bug, run: &Run) -> String {
    let mut out = String::from("\n");
    let Some(f) = &run.first_failure else {
        let _ = writeln!(
            out,
            "No failing schedule was found by {} in {} schedules.\n",
            run.engine, run.schedules
        );
        return out;
    };
    let bound = match (run.engine.as_str(), bug.budget.preemption_bound) {
        ("loom", Some(b)) => format!(" (preemption bound {b})"),
        _ => String::new(),
    };
    let period = if f.message.ends_with('.') { "" } else { "." };
    let _ = writeln!(
        out,
        "Found by **{}** at schedule {}{bound}. Verdict **{}**: {}{period}\n",
        run.engine, f.schedule, f.verdict, f.message
    );
    let _ = writeln!(out, "```text\n{}```\n", swimlane::text(f));
    let _ = writeln!(
        out,
        "<details>\n<summary>Goroutine dump</summary>\n\n```text\n{}```\n\n</details>\n",
        f.dump
    );
    if let Some(replay) = &f.replay {
        let _ = writeln!(
            out,
            "Replay it: `{}`\n",
            replay_command(bug.id, Variant::Buggy, &run.engine, replay)
        );
    }
    out
}

/// The command that replays `schedule` of bug `id`'s `variant` on `engine`.
pub fn replay_command(id: &str, variant: Variant, engine: &str, schedule: &str) -> String {
    format!(
        "cargo run -p harness -- replay {id} --variant {variant} --engine {engine} --schedule {schedule}"
    )
}

/// The block currently in `md`, if it has the markers.
pub fn current(md: &str) -> Option<&str> {
    let start = md.find(BEGIN)? + BEGIN.len();
    let end = start + md[start..].find(END)?;
    Some(&md[start..end])
}

/// `md` with its block replaced by `block`.
pub fn splice(md: &str, block: &str) -> Result<String, String> {
    let start = md
        .find(BEGIN)
        .ok_or_else(|| format!("no `{BEGIN}` marker"))?
        + BEGIN.len();
    let end = start
        + md[start..]
            .find(END)
            .ok_or_else(|| format!("no `{END}` marker after `{BEGIN}`"))?;
    Ok(format!("{}{}{}", &md[..start], block, &md[end..]))
}

/// The first failing schedule a walkthrough should show, with the run it came from.
pub fn live(bug: &Bug) -> (Run, String) {
    let run = failing_run(bug, engine_for(bug));
    let block = block(bug, &run);
    (run, block)
}

/// Rewrites a walkthrough's block; `Ok(true)` if the file changed.
pub fn bless(bug: &Bug) -> Result<bool, String> {
    let path = path(bug);
    let md = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (_, block) = live(bug);
    let new = splice(&md, &block).map_err(|e| format!("{}: {e}", path.display()))?;
    if new == md {
        return Ok(false);
    }
    let dir = path.parent().expect("a walkthrough lives in a folder");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 file name");
    crate::output::write_all(dir, &[(name, new)])?;
    Ok(true)
}

/// The failure a run found, for callers that print it.
pub fn failure(run: &Run) -> Option<&FirstFailure> {
    run.first_failure.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_block() {
        let md = format!("# t\n\nbefore\n{BEGIN}\nold\n{END}\nafter\n");
        let new = splice(&md, "\nnew\n").unwrap();
        assert_eq!(new, format!("# t\n\nbefore\n{BEGIN}\nnew\n{END}\nafter\n"));
        assert_eq!(current(&new), Some("\nnew\n"));
        assert!(splice("# no markers", "x").is_err());
    }

    #[test]
    fn the_replay_command_names_the_variant_it_replays() {
        for variant in Variant::ALL {
            let command = replay_command("etcd_6857", variant, "shuttle-pct", "0.1");
            assert!(
                command.contains(&format!(" --variant {variant} ")),
                "{command}"
            );
        }
    }
}
