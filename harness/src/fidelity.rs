//! `reports/FIDELITY.md`: for every bug, where its kernel and fix come from, what it was
//! checked against, the deviations its walkthrough admits and the second reader's conclusion
//! (`../shared/FIDELITY.md`); then the bugs left out, with their reasons.

use std::fmt::Write as _;

use bugs::fidelity::Mapping;
use bugs::{Bug, Fix, Source};

/// What the kernel was checked against: GoKer's folder and the upstream change, or the one
/// source it was built from.
pub fn checked_against(bug: &Bug) -> String {
    match bug.source {
        Source::Goker => {
            let kernel = bug.goker.unwrap_or("GoKer (no folder named)");
            format!("`{kernel}`; {}", fix_ref(bug))
        }
        Source::Test(s) | Source::Diff(s) | Source::Description(s) => s.to_string(),
    }
}

fn fix_ref(bug: &Bug) -> String {
    match bug.fix {
        Fix::Upstream(c) => format!("upstream {c}"),
        Fix::Ours(_) => bug.upstream.to_string(),
    }
}

fn fix_text(bug: &Bug) -> String {
    match bug.fix {
        Fix::Upstream(c) => format!("upstream {c}"),
        Fix::Ours(why) => format!("ours: {why}"),
    }
}

/// The deviations the walkthrough's mapping admits, or why they cannot be counted.
pub fn deviations(bug: &Bug) -> String {
    match Mapping::parse(bug.walkthrough) {
        Ok(m) => m.deviations().len().to_string(),
        Err(e) => format!("({e})"),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(bugs: &[&Bug]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Fidelity: where each port comes from\n");
    let count = |f: &dyn Fn(&Bug) -> bool| bugs.iter().filter(|b| f(b)).count();
    let reviewed = count(&|b| !b.review.is_empty());
    let _ = writeln!(
        out,
        "Written by `harness` from each bug's metadata and walkthrough; the bar is \
         `../shared/FIDELITY.md`. {} bugs: built from GoKer's kernel {}, an upstream test {}, \
         the upstream diff {}, a description only {}; fixed as upstream did {}, by the corpus \
         {}. Checked by a second reader: {reviewed} of {}.\n",
        bugs.len(),
        count(&|b| b.source == Source::Goker),
        count(&|b| matches!(b.source, Source::Test(_))),
        count(&|b| matches!(b.source, Source::Diff(_))),
        count(&|b| matches!(b.source, Source::Description(_))),
        count(&|b| matches!(b.fix, Fix::Upstream(_))),
        count(&|b| matches!(b.fix, Fix::Ours(_))),
        bugs.len(),
    );
    let _ = writeln!(
        out,
        "| bug | source | checked against | fix | deviations | second reader |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for b in bugs {
        let _ = writeln!(
            out,
            "| [{id}](../bugs/src/{project}/{id}.md) | {} | {} | {} | {} | {} |",
            b.source.as_str(),
            cell(&checked_against(b)),
            cell(&fix_text(b)),
            deviations(b),
            if b.review.is_empty() {
                "not yet reviewed".to_string()
            } else {
                cell(b.review)
            },
            id = b.id,
            project = b.project,
        );
    }
    out.push_str(&left_out());
    out
}

/// The bugs left out (`bugs/excluded.tsv`), as a Markdown section; empty if none.
pub fn left_out() -> String {
    let excluded = bugs::excluded();
    if excluded.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n## Left out ({})\n\nDocumented bugs that are not ported, because their upstream \
         change could not be found or is not a concurrency bug (`bugs/excluded.tsv`).\n\n\
         | bug | reason | evidence |\n|---|---|---|\n",
        excluded.len()
    );
    for ex in excluded {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            ex.id,
            cell(ex.reason),
            cell(ex.evidence)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bug_has_a_row_and_its_source() {
        let all = bugs::all();
        let text = render(&all);
        for b in &all {
            assert!(
                text.contains(&format!("[{}](", b.id)),
                "{} has no row",
                b.id
            );
        }
        let goker = all.iter().find(|b| b.source == Source::Goker).unwrap();
        assert!(checked_against(goker).contains(goker.goker.unwrap()));
    }
}
