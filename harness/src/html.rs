//! `reports/index.html`: one self-contained page (no network, no external assets) with every
//! bug, its verdicts, and the swimlanes of its first failing schedule.

use std::fmt::Write as _;

use bugs::Variant;
use primitives::explore::Engine;

use crate::bench::Bench;
use crate::results::Results;
use crate::summary::{buggy_cell, by_bug, fixed_cell};
use crate::swimlane::{self, esc};

const STYLE: &str = "
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em; color: #1f2328; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr.bad td { background: #ffebe9; }
section { margin-top: 2.5em; border-top: 1px solid #d0d7de; padding-top: 1em; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
.verdict { font-weight: bold; }
.lanes { overflow-x: auto; }
.legend span { display: inline-block; padding: 1px 6px; margin-right: 8px; border: 1px solid; border-radius: 4px; font-size: 12px; }
code { font-size: 12px; }
.filters { margin: 1em 0; font-size: 13px; }
.filters label { margin-right: 1em; }
";

/// What a row of the table is filtered on.
struct Row<'a> {
    chapter: Option<crate::book::Chapter>,
    provenance: &'static str,
    verdict: &'a str,
}

fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    values
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Shows the rows whose data attributes match every chosen filter.
const FILTER_JS: &str = "
(function () {
  var form = document.getElementById('filters');
  var rows = document.querySelectorAll('#bugs tbody tr');
  function apply() {
    var shown = 0;
    rows.forEach(function (tr) {
      var ok = Array.prototype.every.call(form.querySelectorAll('select'), function (s) {
        return s.value === '' || tr.dataset[s.name] === s.value;
      });
      tr.hidden = !ok;
      if (ok) shown++;
    });
    document.getElementById('shown').textContent = shown + ' of ' + rows.length + ' bugs';
  }
  form.addEventListener('change', apply);
  var params = new URLSearchParams(location.search);
  form.querySelectorAll('select').forEach(function (s) {
    if (params.has(s.name)) s.value = params.get(s.name);
  });
  apply();
})();
";

pub fn render(results: &Results, bench: Option<&Bench>) -> String {
    let bugs = by_bug(results);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Go concurrency bugs: results</title>\n<style>{STYLE}</style>\n</head>\n<body>"
    );
    let _ = writeln!(
        out,
        "<h1>Go concurrency bugs, reproduced</h1>\n<p>{} bugs. Harness {} (seed {}). Each bug's buggy kernel is explored by loom, shuttle (PCT, random and uniform random walk) and real threads (threads: this crate's runtime on OS threads, not stock Go); its fixed kernel must stay clean everywhere. Each bug's name opens its page in the <a href=\"book/index.html\">book</a> (chapters by primitive, the picture of each failure, the fix as a diff). The stock Go column is how often <code>go test</code> with Go 1.19 showed the bug in GoKer's kernel, out of 20 runs (measured outside this repository: <code>bugs/stock-go.tsv</code>).</p>",
        bugs.len(),
        esc(&results.harness),
        results.seed
    );
    let headers: String = Engine::ALL
        .iter()
        .map(|e| format!("<th>{}</th>", esc(&crate::summary::engine_header(*e))))
        .collect();
    // Each row carries what the filters match on.
    let rows: Vec<Row<'_>> = bugs
        .iter()
        .map(|b| {
            let bug = bugs::find(b.bug);
            Row {
                chapter: bug.map(|bug| crate::book::chapter_of(bug, b)),
                provenance: bug.map_or("", |bug| bug.source.as_str()),
                verdict: b.expected,
            }
        })
        .collect();
    let _ = writeln!(out, "<form id=\"filters\" class=\"filters\">");
    for (key, label, values) in [
        (
            "project",
            "project",
            distinct(bugs.iter().map(|b| b.project.to_string())),
        ),
        (
            "chapter",
            "primitive",
            crate::book::Chapter::ALL
                .iter()
                .filter(|c| rows.iter().any(|r| r.chapter == Some(**c)))
                .map(|c| c.title().to_string())
                .collect(),
        ),
        (
            "verdict",
            "verdict",
            distinct(rows.iter().map(|r| r.verdict.to_string())),
        ),
        (
            "provenance",
            "provenance",
            distinct(rows.iter().map(|r| r.provenance.to_string())),
        ),
    ] {
        let options: String = values
            .iter()
            .map(|v| format!("<option>{}</option>", esc(v)))
            .collect();
        let _ = writeln!(
            out,
            "<label>{label} <select name=\"{key}\"><option value=\"\">all</option>{options}</select></label>"
        );
    }
    let _ = writeln!(
        out,
        "<span id=\"shown\">{n} of {n} bugs</span></form>",
        n = bugs.len()
    );
    let _ = writeln!(
        out,
        "<table id=\"bugs\">\n<thead><tr><th>bug</th><th>project</th><th>primitive</th><th>category</th><th>provenance</th><th>expected</th><th>stock Go</th>{headers}<th>fixed</th></tr></thead>\n<tbody>"
    );
    for (b, row) in bugs.iter().zip(&rows) {
        let cells: String = Engine::ALL
            .iter()
            .map(|e| format!("<td>{}</td>", esc(&buggy_cell(b.buggy.get(e.as_str())))))
            .collect();
        let chapter = row.chapter.map_or("", |c| c.title());
        let _ = writeln!(
            out,
            "<tr{} data-project=\"{}\" data-chapter=\"{}\" data-verdict=\"{}\" data-provenance=\"{}\"><td><a href=\"book/bugs/{id}.html\" title=\"its page in the book\">{id}</a> <a href=\"#{id}\" title=\"its swimlanes below\">↓</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{cells}<td>{}</td></tr>",
            if b.holds() { "" } else { " class=\"bad\"" },
            esc(b.project),
            esc(chapter),
            esc(row.verdict),
            esc(row.provenance),
            esc(b.project),
            esc(chapter),
            esc(b.category),
            esc(row.provenance),
            esc(&b.expected_text()),
            esc(&crate::summary::stock_go_cell(b.bug)),
            esc(&fixed_cell(&b.fixed)),
            id = esc(b.bug),
        );
    }
    let _ = writeln!(out, "</tbody>\n</table>\n<script>{FILTER_JS}</script>");
    let excluded = bugs::excluded();
    if !excluded.is_empty() {
        let _ = writeln!(
            out,
            "<h2 id=\"left-out\">Left out ({})</h2>\n<p>Documented bugs that are not ported: their upstream change could not be found, or it is not a concurrency bug (<code>bugs/excluded.tsv</code>).</p>\n<table>\n<thead><tr><th>bug</th><th>reason</th><th>evidence</th></tr></thead>\n<tbody>",
            excluded.len()
        );
        for ex in excluded {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(ex.id),
                esc(ex.reason),
                esc(ex.evidence)
            );
        }
        let _ = writeln!(out, "</tbody>\n</table>");
    }
    if let Some(bench) = bench {
        let _ = writeln!(
            out,
            "<h2 id=\"detection\">Detection speed</h2>\n<p>Median schedules to the first failure over {} seeds (loom: its one deterministic search); details in BENCH.md.</p>\n<div class=\"lanes\">\n{}</div>",
            bench.seeds,
            crate::bench::svg(bench)
        );
    }
    let _ = writeln!(
        out,
        "<p class=\"legend\">Swimlanes: <span style=\"background:#ddf4ff;border-color:#0969da\">operation that can block</span><span style=\"background:#ffebe9;border-color:#cf222e\">parks its goroutine</span><span style=\"background:#fff8c5;border-color:#bf8700\">racing access</span><span style=\"background:#eaeef2;border-color:#8c959f\">other</span> A red bar runs while a goroutine is parked.</p>"
    );
    for b in &bugs {
        let _ = writeln!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>",
            esc(b.bug),
            esc(b.bug)
        );
        let _ = writeln!(
            out,
            "<p>{} · {} · expected verdict <span class=\"verdict\">{}</span></p>",
            esc(b.project),
            esc(b.category),
            esc(&b.expected_text())
        );
        match b.shown() {
            None => {
                let _ = writeln!(out, "<p>No engine found a failing schedule.</p>");
            }
            Some(run) => {
                let f = run
                    .first_failure
                    .as_ref()
                    .expect("shown runs have a failure");
                let _ = writeln!(
                    out,
                    "<p>First failing schedule found by <b>{}</b> (schedule {}): <span class=\"verdict\">{}</span>: {}</p>",
                    esc(&run.engine),
                    f.schedule,
                    esc(&f.verdict),
                    esc(&f.message)
                );
                let _ = writeln!(out, "<div class=\"lanes\">\n{}</div>", swimlane::svg(f));
                if let Some(replay) = &f.replay {
                    let _ = writeln!(
                        out,
                        "<p>Replay: <code>{}</code></p>",
                        esc(&crate::walkthrough::replay_command(
                            b.bug,
                            Variant::Buggy,
                            &run.engine,
                            replay
                        ))
                    );
                }
                let _ = writeln!(
                    out,
                    "<details><summary>Goroutine dump</summary>\n<pre>{}</pre>\n</details>",
                    esc(&f.dump)
                );
            }
        }
        let _ = writeln!(out, "</section>");
    }
    let _ = writeln!(out, "</body>\n</html>");
    out
}
