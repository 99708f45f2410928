//! `harness book`: the corpus as a book (`reports/book/`), built with mdBook as a library.
//!
//! Chapters follow the primitives in the order a course teaches them (`chapters.rs`); each
//! opens with what the primitive promises in Go and its traps, then lists every bug of the
//! corpus that falls into one, across projects. A page per bug holds its walkthrough, the
//! picture of its failure (`picture.rs`: the wait-for graph of a deadlock or leak, the two
//! accesses of a race), the swimlanes of the failing schedule, the fix as a diff of the
//! kernel's variant switches (`fix.rs`), and stock Go's figures beside ours. An index by
//! project and upstream id, the exclusions, and mdBook's search complete it.
//!
//! The book is generated from the corpus and the last `results.json`, into a temporary folder
//! next to the output, and moved into place only when mdBook has built it whole.

pub mod chapters;
pub mod fix;
pub mod picture;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use bugs::Bug;
use primitives::explore::Engine;

use crate::results::{Results, Run};
use crate::summary::{buggy_cell, by_bug, engine_header, fixed_cell, BugRows};
use crate::{swimlane, walkthrough};

pub use chapters::Chapter;

/// What a build produced.
#[derive(Debug)]
pub struct Built {
    pub pages: usize,
    pub pictures: usize,
}

/// One bug as the book shows it.
struct Entry<'a> {
    bug: &'static Bug,
    rows: BugRows<'a>,
    /// The failing run the page shows: the walkthrough's engine, else the first that found one.
    run: Option<&'a Run>,
    chapter: Chapter,
}

/// The run a bug's page shows: the one its walkthrough's trace comes from, where it failed.
pub fn shown<'a>(bug: &Bug, rows: &BugRows<'a>) -> Option<&'a Run> {
    rows.buggy
        .get(walkthrough::engine_for(bug).as_str())
        .copied()
        .filter(|r| r.first_failure.is_some())
        .or_else(|| rows.shown())
}

/// The chapter a bug's row falls in (index.html's filter uses the same).
pub fn chapter_of(bug: &Bug, rows: &BugRows<'_>) -> Chapter {
    chapters::of(bug, shown(bug, rows).and_then(|r| r.first_failure.as_ref()))
}

/// Builds the book of `results` into `out`, replacing what was there only once it is whole.
pub fn build(results: &Results, out: &Path) -> Result<Built, String> {
    let entries: Vec<Entry<'_>> = by_bug(results)
        .into_iter()
        .filter_map(|rows| {
            let bug = bugs::find(rows.bug)?;
            let run = shown(bug, &rows);
            let chapter = chapters::of(bug, run.and_then(|r| r.first_failure.as_ref()));
            Some(Entry {
                bug,
                rows,
                run,
                chapter,
            })
        })
        .collect();
    if entries.is_empty() {
        return Err("the results name no bug of the corpus; nothing to put in a book".into());
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("book")
        .to_string();
    let stage = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&stage);
    let result = stage_and_build(&entries, results, &stage).and_then(|built| {
        replace_dir(&stage.join("html"), out)?;
        Ok(built)
    });
    let _ = fs::remove_dir_all(&stage);
    result
}

fn stage_and_build(
    entries: &[Entry<'_>],
    results: &Results,
    stage: &Path,
) -> Result<Built, String> {
    let src = stage.join("src");
    let write = |rel: &str, text: &str| -> Result<(), String> {
        let path = src.join(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    fs::create_dir_all(&src).map_err(|e| format!("cannot create {}: {e}", src.display()))?;
    fs::write(stage.join("book.toml"), BOOK_TOML)
        .map_err(|e| format!("cannot write book.toml: {e}"))?;
    fs::write(stage.join("book.css"), BOOK_CSS)
        .map_err(|e| format!("cannot write book.css: {e}"))?;
    let mut by_chapter: BTreeMap<Chapter, Vec<&Entry<'_>>> = BTreeMap::new();
    for e in entries {
        by_chapter.entry(e.chapter).or_default().push(e);
    }
    let mut summary = String::from("# Summary\n\n[Start here](index.md)\n\n");
    for (chapter, list) in &by_chapter {
        let _ = writeln!(summary, "- [{}]({}.md)", chapter.title(), chapter.slug());
        for e in list {
            let _ = writeln!(summary, "  - [{}](bugs/{}.md)", e.bug.id, e.bug.id);
        }
        write(
            &format!("{}.md", chapter.slug()),
            &chapter_page(*chapter, list),
        )?;
    }
    summary.push_str("\n---\n\n[Index by project](projects.md)\n[Left out](left-out.md)\n");
    write("SUMMARY.md", &summary)?;
    write("index.md", &start_page(&by_chapter, results))?;
    write("projects.md", &projects_page(entries))?;
    write("left-out.md", &left_out_page())?;
    let mut pictures = 0;
    for e in entries {
        let (page, picture) = bug_page(e);
        pictures += usize::from(picture);
        write(&format!("bugs/{}.md", e.bug.id), &page)?;
    }
    let book = mdbook_driver::MDBook::load(stage).map_err(|e| format!("mdBook: {e:#}"))?;
    book.build().map_err(|e| format!("mdBook: {e:#}"))?;
    Ok(Built {
        pages: entries.len(),
        pictures,
    })
}

/// Moves `new` to `out`, keeping the old `out` until the new one is in place.
fn replace_dir(new: &Path, out: &Path) -> Result<(), String> {
    let old = out.with_file_name(format!(
        ".{}.old-{}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("book"),
        std::process::id()
    ));
    let had = out.exists();
    if had {
        fs::rename(out, &old).map_err(|e| format!("cannot move {} aside: {e}", out.display()))?;
    }
    if let Err(e) = fs::rename(new, out) {
        if had {
            let _ = fs::rename(&old, out);
        }
        return Err(format!("cannot move the book into {}: {e}", out.display()));
    }
    if had {
        let _ = fs::remove_dir_all(&old);
    }
    Ok(())
}

const BOOK_TOML: &str = r#"[book]
title = "Go concurrency bugs, reproduced"
language = "en"
src = "src"

[build]
build-dir = "html"
create-missing = false

[output.html]
default-theme = "light"
preferred-dark-theme = "navy"
additional-css = ["book.css"]
# The book is committed: stable file names keep its diffs small.
hash-files = false

[output.html.print]
enable = false

[output.html.playground]
runnable = false

[output.html.fold]
enable = true
level = 0

[output.html.search]
enable = true
limit-results = 40
"#;

/// Pictures wider than the text column scroll rather than shrink.
const BOOK_CSS: &str = ".picture, .lanes { overflow-x: auto; margin: 1em 0; }
.picture svg, .lanes svg { max-width: none; background: #fff; }
";

fn stock_go_text(id: &str) -> Option<String> {
    let s = bugs::stock_go(id)?;
    let mut text = format!(
        "showed it in {} of {} runs of `go test` (Go {})",
        s.manifested, s.runs, s.go
    );
    if let Some(l) = s.with_leak_check.filter(|&l| l != s.manifested) {
        let _ = write!(
            text,
            ", {l} of {} with a check for goroutines left blocked",
            s.runs
        );
    }
    if let Some(g) = s.gobench_recorded {
        let _ = write!(text, "; GoBench recorded {g}");
    }
    Some(text)
}

/// The searching engines' first failures: `(schedule, engine)`.
fn found_by<'a>(e: &Entry<'a>) -> Vec<(u64, &'a str)> {
    Engine::ALL
        .iter()
        .filter(|eng| **eng != Engine::Std)
        .filter_map(|eng| e.rows.buggy.get(eng.as_str()))
        .filter(|r| r.outcome == "detected")
        .filter_map(|r| {
            r.first_failure
                .as_ref()
                .map(|f| (f.schedule, r.engine.as_str()))
        })
        .collect()
}

/// "found at schedule 3 by loom": the soonest any searching engine found it.
fn here_text(e: &Entry<'_>) -> String {
    let found = found_by(e);
    match found.iter().min() {
        Some((n, engine)) => format!(
            "found at schedule {n} by {engine} ({} of {} searching engines found it)",
            found.len(),
            e.rows
                .buggy
                .values()
                .filter(|r| r.engine != "std" && r.outcome != "skipped")
                .count()
        ),
        None => "no searching engine found it".to_string(),
    }
}

fn title_of(bug: &Bug) -> String {
    bug.walkthrough
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .unwrap_or(bug.id)
        .to_string()
}

/// The title after its `project#id: `, for tables.
fn what(bug: &Bug) -> String {
    let t = title_of(bug);
    match t.split_once(": ") {
        Some((_, rest)) => rest.to_string(),
        None => t,
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn start_page(by_chapter: &BTreeMap<Chapter, Vec<&Entry<'_>>>, results: &Results) -> String {
    let total: usize = by_chapter.values().map(Vec::len).sum();
    let mut s = String::from("# Go concurrency bugs, reproduced\n\n");
    let _ = writeln!(
        s,
        "This book holds {total} real concurrency bugs of Kubernetes, etcd, gRPC and Docker \
         (moby), each ported to Rust as a small buggy kernel and its fixed twin, and run under \
         controlled schedulers until the failure shows. Every picture and trace in it was \
         produced by the harness (seed {}, {}), not drawn by hand.\n",
        results.seed, results.harness
    );
    s.push_str(
        "## How to read it\n\n\
         The chapters follow Go's primitives in the order a course teaches them. Each opens \
         with what the primitive promises and the traps it sets, then lists the bugs that fell \
         into one. Read a chapter's opening, then any of its bugs. A bug's page has:\n\n\
         - **the walkthrough**: what the code does, its goroutines, how it goes wrong, and \
           how the kernel maps to upstream's code;\n\
         - **the picture of the failure**: for a deadlock or a leak, the wait-for graph when \
           it was found (goroutines on the left, what they wait on on the right; solid blue \
           arrows are waits, dashed grey ones point to who could release the object; a cycle \
           is red, and an object nobody alive can release is framed red); for a data race, \
           the two accesses in their goroutines' lanes and the synchronisation each did in \
           between, with the missing happens-before edge in red;\n\
         - **the swimlanes** of the failing schedule, its goroutine dump, and the command that \
           replays it;\n\
         - **the fix**, as a diff of the kernel's variant switches: `-` lines run only in the \
           buggy kernel, `+` lines only in the fixed one;\n\
         - **the figures**: how often stock `go test` showed the bug, and how soon each engine \
           here found it.\n\n\
         To see one bug caught and its fix stay clean, run `cargo test -p bugs <id>`.\n\n\
         ## Chapters\n\n\
         | chapter | bugs |\n|---|---|\n",
    );
    for (chapter, list) in by_chapter {
        let _ = writeln!(
            s,
            "| [{}]({}.md) | {} |",
            chapter.title(),
            chapter.slug(),
            list.len()
        );
    }
    let measured: Vec<_> = by_chapter
        .values()
        .flatten()
        .filter_map(|e| bugs::stock_go(e.bug.id))
        .collect();
    if !measured.is_empty() {
        let shown = measured.iter().filter(|s| s.manifested > 0).count();
        let _ = writeln!(
            s,
            "\n## Why a controlled scheduler\n\nStock `go test` (Go 1.19, 20 runs each) showed \
             {shown} of the {} GoKer kernels among these bugs even once (measured outside this \
             repository; `bugs/stock-go.tsv`). Here every buggy kernel's failure is found, named, \
             and replayable.",
            measured.len()
        );
    }
    s
}

fn chapter_page(chapter: Chapter, list: &[&Entry<'_>]) -> String {
    let mut s = format!("# {}\n\n{}\n\n", chapter.title(), chapter.intro());
    let _ = writeln!(
        s,
        "## The bugs ({})\n\n| bug | what goes wrong | verdict | stock Go | here |\n|---|---|---|---|---|",
        list.len()
    );
    for e in list {
        let here = found_by(e).into_iter().min().map_or_else(
            || "·".into(),
            |(n, engine)| format!("schedule {n} ({engine})"),
        );
        let _ = writeln!(
            s,
            "| [{id}](bugs/{id}.md) | {} | {} | {} | {} |",
            md_cell(&what(e.bug)),
            e.rows.expected_text(),
            md_cell(&crate::summary::stock_go_cell(e.bug.id)),
            here,
            id = e.bug.id
        );
    }
    s.push_str(
        "\nA bug's chapter is read off its failure: a race belongs to the memory model; a \
         panic to the primitive Go's message names; a deadlock or leak to what its blocked \
         goroutines wait on (channels with a context cancelled: context; channels with a \
         lock, WaitGroup or Cond: channels and locks together); anything else by its \
         category.\n",
    );
    s
}

fn projects_page(entries: &[Entry<'_>]) -> String {
    let mut s = String::from(
        "# Index by project\n\nEvery bug of the book by project, in upstream order (the number \
         is the pull request or issue, or the commit where there is none).\n",
    );
    let mut projects: BTreeMap<&str, Vec<&Entry<'_>>> = BTreeMap::new();
    for e in entries {
        projects.entry(e.bug.project).or_default().push(e);
    }
    for (project, mut list) in projects {
        list.sort_by_key(|e| {
            let n = e.bug.id.rsplit('_').next().unwrap_or("");
            (n.parse::<u64>().unwrap_or(u64::MAX), n.to_string())
        });
        let _ = writeln!(
            s,
            "\n## {project} ({})\n\n| bug | upstream | chapter | what goes wrong |\n|---|---|---|---|",
            list.len()
        );
        for e in list {
            let _ = writeln!(
                s,
                "| [{id}](bugs/{id}.md) | {} | [{}]({}.md) | {} |",
                md_cell(e.bug.upstream),
                e.chapter.title(),
                e.chapter.slug(),
                md_cell(&what(e.bug)),
                id = e.bug.id
            );
        }
    }
    s
}

fn left_out_page() -> String {
    let mut s = String::from(
        "# Left out\n\nDocumented bugs that are not in the book: their upstream change could \
         not be found, or it is not a concurrency bug. Each is listed with the evidence \
         (`bugs/excluded.tsv`), rather than replaced by an invented kernel.\n\n\
         | bug | reason | evidence |\n|---|---|---|\n",
    );
    for ex in bugs::excluded() {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            ex.id,
            md_cell(ex.reason),
            md_cell(ex.evidence)
        );
    }
    s
}

/// The walkthrough with the text swimlanes of its generated block replaced by `lanes`, the same
/// schedule drawn as SVG (the text table would also double the page and most of the search
/// index). The sentence that introduces it, the goroutine dump and the replay command stay.
fn lanes_drawn(md: &str, lanes: &str) -> String {
    let Some(begin) = md.find(walkthrough::BEGIN) else {
        return format!("{md}\n{lanes}");
    };
    let end = md[begin..]
        .find(walkthrough::END)
        .map_or(md.len(), |e| begin + e);
    let Some(open) = md[begin..end].find("```text\n").map(|o| begin + o) else {
        return md.to_string();
    };
    let body = open + "```text\n".len();
    let Some(close) = md[body..end]
        .find("```\n")
        .map(|c| body + c + "```\n".len())
    else {
        return md.to_string();
    };
    format!("{}{lanes}{}", &md[..open], &md[close..])
}

/// A bug's page, and whether it has a picture of its failure.
fn bug_page(e: &Entry<'_>) -> (String, bool) {
    let bug = e.bug;
    let mut md = bug.walkthrough.to_string();
    if !md.ends_with('\n') {
        md.push('\n');
    }
    let failure = e.run.and_then(|r| r.first_failure.as_ref());
    // Stock Go's figure beside ours, under the walkthrough's table of facts.
    let glance = format!(
        "> **Stock Go:** {}. **Here:** {}.\n\n",
        stock_go_text(bug.id).unwrap_or_else(|| "no GoKer kernel, so not measured".into()),
        here_text(e)
    );
    md = match md.find("\n\n## ") {
        Some(at) => format!("{}\n\n{glance}{}", &md[..at], &md[at + 2..]),
        None => format!("{md}\n{glance}"),
    };
    let picture = failure.and_then(picture::svg);
    if let (Some(svg), Some(f)) = (&picture, failure) {
        let caption = match f.verdict.as_str() {
            "race" => {
                "The two accesses the race detector reported, in their goroutines' lanes, \
                 with the synchronising steps each took between them: none of them makes a \
                 chain of happens-before edges from the first access to the second."
            }
            _ => {
                "The wait-for graph when the failure was found: each blocked goroutine, what \
                 it waits on, and who could release that (dashed)."
            }
        };
        let drawn = format!(
            "## The failure, drawn\n\n<div class=\"picture\">\n{}</div>\n\n{caption}\n\n",
            svg.trim_end()
        );
        // The drawing goes before the walkthrough's interleaving (its trace and dump).
        md = match md.find(walkthrough::BEGIN) {
            Some(at) => {
                let heading = md[..at].rfind("\n## ").map_or(at, |h| h + 1);
                format!("{}{drawn}{}", &md[..heading], &md[heading..])
            }
            None => format!("{md}\n{drawn}"),
        };
    }
    if let Some(f) = failure {
        let lanes = format!(
            "<div class=\"lanes\">\n{}</div>\n",
            swimlane::svg(f).trim_end()
        );
        md = lanes_drawn(&md, &lanes);
    }
    let _ = writeln!(md, "\n## The fix as a diff\n");
    let root = crate::workspace_root();
    let source = fs::read_to_string(root.join(bug.file)).unwrap_or_default();
    // `file!()` may be absolute; the book names files from the workspace root.
    let file = Path::new(bug.file)
        .strip_prefix(&root)
        .map_or_else(|_| bug.file.to_string(), |p| p.display().to_string());
    let diff = fix::diff(&file, &source);
    let origin = match bug.fix {
        bugs::Fix::Upstream(c) if !c.is_empty() => format!("upstream's fix ({c})"),
        bugs::Fix::Upstream(_) => "upstream's fix".to_string(),
        bugs::Fix::Ours(why) => format!("the corpus's own fix ({why})"),
    };
    if diff.is_empty() {
        let _ = writeln!(
            md,
            "The kernel has no variant switch to show; the fixed variant is {origin}."
        );
    } else {
        let _ = writeln!(
            md,
            "The fixed kernel is {origin}. Where the kernel's two variants part, `-` lines run \
             only in the buggy one and `+` lines only in the fixed one:\n\n```diff\n{diff}```"
        );
    }
    let _ = writeln!(
        md,
        "\n## Figures\n\n- **Stock Go**: {}.\n- **Here**: {}. Run it: `cargo test -p bugs {}`.\n- **Chapter**: [{}](../{}.md).\n",
        stock_go_text(bug.id).map_or_else(
            || "no GoKer kernel, so no stock Go figure".to_string(),
            |t| format!("{t} (measured outside this repository: `bugs/stock-go.tsv`)")
        ),
        here_text(e),
        bug.id,
        e.chapter.title(),
        e.chapter.slug()
    );
    md.push_str("| engine | buggy kernel | fixed kernel |\n|---|---|---|\n");
    for eng in Engine::ALL {
        let Some(b) = e.rows.buggy.get(eng.as_str()) else {
            continue;
        };
        let fixed: BTreeMap<&str, &Run> = e
            .rows
            .fixed
            .get(eng.as_str())
            .map(|r| (eng.as_str(), *r))
            .into_iter()
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            engine_header(eng),
            md_cell(&buggy_cell(Some(b))),
            md_cell(&fixed_cell(&fixed))
        );
    }
    (md, picture.is_some())
}
