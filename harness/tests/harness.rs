//! The harness end to end: its command line, reports, replays, walkthroughs, and the page in a
//! real browser. One test binary.

use std::path::PathBuf;
use std::process::{Command, Output};

use harness::results::Results;
use harness::walkthrough;

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("the harness binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("harness-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Bad input: exit 2 and one line on stderr that says what is accepted.
#[track_caller]
fn refused(args: &[&str], says: &str) {
    let out = harness(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line, got {err:?}"
    );
    assert!(err.contains(says), "{args:?}: {err:?} lacks {says:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gets_one_line_and_exit_2() {
    refused(&["run", "no_such_bug"], "unknown bug `no_such_bug`");
    refused(
        &["run", "--engine", "tsan"],
        &format!("one of {}", primitives::explore::Engine::names()),
    );
    refused(&["run", "--shard", "3/2"], "expected K/N");
    refused(&["run", "--shard", "x"], "expected K/N");
    refused(&["run", "--budget", "0"], "at least one execution");
    refused(
        &["book", "--results", "/nonexistent/results.json"],
        "`harness run` writes the results",
    );
    refused(
        &[
            "replay",
            "etcd_6857",
            "--engine",
            "loom",
            "--schedule",
            "nonsense",
        ],
        "malformed schedule",
    );
    refused(
        &[
            "replay",
            "etcd_6857",
            "--engine",
            "shuttle-pct",
            "--schedule",
            "zz",
        ],
        "malformed schedule",
    );
    let replayable: Vec<&str> = primitives::explore::Engine::ALL
        .into_iter()
        .filter(|e| e.replayable())
        .map(|e| e.as_str())
        .collect();
    assert!(replayable.contains(&"shuttle-dfs"));
    refused(
        &["replay", "etcd_6857", "--engine", "std", "--schedule", "1"],
        &format!(
            "real threads and has no schedules to replay; use one of {}",
            replayable.join(", ")
        ),
    );
    refused(
        &[
            "replay",
            "etcd_6857",
            "--variant",
            "sideways",
            "--engine",
            "loom",
            "--schedule",
            "x",
        ],
        "buggy or fixed",
    );
    refused(&["merge", "/nonexistent/results.json"], "cannot read");
    refused(&["frobnicate"], "see `harness --help`");
}

#[test]
fn a_run_writes_the_reports_and_replay_reproduces_the_recorded_failure() {
    let dir = scratch("run");
    let out = harness(&[
        "run",
        "etcd_6857",
        "--engine",
        "shuttle-pct",
        "loom",
        "--out",
        dir.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["results.json", "SUMMARY.md", "index.html"] {
        assert!(dir.join(f).is_file(), "{f} written");
    }
    let results = Results::read(&dir.join("results.json")).unwrap();
    assert_eq!(results.runs.len(), 4);
    assert!(results.all_hold());
    for engine in ["loom", "shuttle-pct"] {
        let row = results
            .runs
            .iter()
            .find(|r| r.variant == "buggy" && r.engine == engine)
            .unwrap();
        let f = row.first_failure.as_ref().expect("the buggy variant fails");
        let schedule = f.replay.as_deref().expect("a replay string");
        let out = harness(&[
            "replay",
            "etcd_6857",
            "--engine",
            engine,
            "--schedule",
            schedule,
        ]);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&f.dump),
            "{engine}: the replay prints the recorded dump\n{text}\n---\n{}",
            f.dump
        );
        assert!(
            text.contains(&harness::swimlane::text(f)),
            "{engine}: and the same trace"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shards_merge_into_the_whole() {
    let dir = scratch("shards");
    for k in ["1/2", "2/2"] {
        let out = harness(&[
            "run",
            "--engine",
            "shuttle-random",
            "--budget",
            "20",
            "--shard",
            k,
            "--out",
            dir.join(k.replace('/', "of")).to_str().unwrap(),
            "-q",
        ]);
        assert!(out.status.code().is_some());
    }
    let a = dir.join("1of2/results.json");
    let b = dir.join("2of2/results.json");
    let merged = dir.join("merged");
    let out = harness(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole = Results::read(&merged.join("results.json")).unwrap();
    let bugs: std::collections::BTreeSet<_> = whole.runs.iter().map(|r| r.bug.clone()).collect();
    assert_eq!(
        bugs.len(),
        bugs::all().len(),
        "every bug in exactly one shard"
    );
    let out = harness(&[
        "merge",
        a.to_str().unwrap(),
        a.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "overlapping shards are refused");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_leaves_the_previous_reports_intact() {
    let dir = scratch("interrupt");
    let out = harness(&[
        "run",
        "moby_36114",
        "--engine",
        "shuttle-pct",
        "--out",
        dir.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let before: Vec<Vec<u8>> = ["results.json", "SUMMARY.md", "index.html"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "run",
            "--budget",
            "100000000",
            "--engine",
            "shuttle-random",
            "--out",
            dir.to_str().unwrap(),
            "-q",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    // SIGINT, as Ctrl-C sends.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was interrupted");
    let after: Vec<Vec<u8>> = ["results.json", "SUMMARY.md", "index.html"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    assert!(before == after, "the previous reports are untouched");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every walkthrough's trace block is what the harness finds now.
#[test]
fn walkthroughs_show_the_trace_the_harness_finds() {
    let mut stale = Vec::new();
    for bug in bugs::all() {
        let md = bug.walkthrough;
        let current = walkthrough::current(md)
            .unwrap_or_else(|| panic!("{}: the walkthrough has no trace markers", bug.id));
        let (_, live) = walkthrough::live(bug);
        if current != live {
            stale.push(bug.id);
        }
    }
    assert!(
        stale.is_empty(),
        "stale walkthrough traces: {stale:?}; regenerate them with `cargo run -p harness -- bless`"
    );
}

/// The recorded schedule of each walkthrough replays to the same dump and trace, byte for byte.
#[test]
fn walkthrough_schedules_replay_byte_for_byte() {
    for bug in bugs::all() {
        let engine = walkthrough::engine_for(bug);
        let run = walkthrough::failing_run(bug, engine);
        let f = run
            .first_failure
            .as_ref()
            .unwrap_or_else(|| panic!("{} fails", bug.id));
        let settings = bugs::run::settings(bug, bugs::Variant::Buggy, engine, Default::default());
        let report = primitives::explore::replay(
            &settings,
            f.replay.as_deref().expect("a replay string"),
            bugs::run::kernel(bug, bugs::Variant::Buggy),
        )
        .unwrap();
        let again =
            harness::results::FirstFailure::from_report(f.schedule, f.replay.clone(), &report);
        assert_eq!(again.dump, f.dump, "{}: dump", bug.id);
        assert_eq!(
            harness::swimlane::text(&again),
            harness::swimlane::text(f),
            "{}: trace",
            bug.id
        );
    }
}

/// Debian's chromium (installed by .ci/run), or `None` where this machine has none and the
/// run does not require it.
fn chromium() -> Option<PathBuf> {
    let found = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("REQUIRE_CHROMIUM").is_none(),
            "REQUIRE_CHROMIUM is set but no chromium is installed"
        );
        eprintln!("skipped: no chromium on this machine (.ci/run installs it)");
    }
    found
}

/// Headless chromium on `url` with a fresh profile in `dir`: its standard output.
fn headless(browser: &std::path::Path, dir: &std::path::Path, url: &str, extra: &[&str]) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of `url` that is not a blank page.
#[track_caller]
fn not_blank(browser: &std::path::Path, dir: &std::path::Path, url: &str) {
    let shot = dir.join("page.png");
    headless(
        browser,
        dir,
        url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 20_000,
        "a page with content renders to more than a blank PNG ({} bytes)",
        png.len()
    );
}

/// The report page renders in a real browser (Debian's chromium, installed by .ci/run), with
/// a swimlane picture per failing bug.
#[test]
fn the_report_page_renders_in_headless_chromium() {
    let Some(browser) = chromium() else { return };
    let dir = scratch("render");
    let out = harness(&[
        "run",
        "--engine",
        "shuttle-pct",
        "--out",
        dir.to_str().unwrap(),
        "-q",
    ]);
    assert!(out.status.code().is_some());
    let page = format!("file://{}", dir.join("index.html").display());
    let dom = headless(&browser, &dir, &page, &["--dump-dom"]);
    let bugs = bugs::all().len();
    assert_eq!(dom.matches("<section").count(), bugs, "a section per bug");
    // PCT alone ran: a bug it is not expected to find (`not_found_by`) has no failure to draw.
    let found = bugs::all()
        .iter()
        .filter(|b| bugs::run::detects(b, primitives::explore::Engine::ShuttlePct))
        .count();
    assert!(
        dom.matches("<svg").count() >= found,
        "a swimlane picture per bug PCT finds"
    );
    // The filters run: a chosen primitive hides the other rows.
    let filtered = headless(
        &browser,
        &dir,
        &format!("{page}?chapter=sync.Mutex"),
        &["--dump-dom"],
    );
    assert!(
        filtered.contains(&format!(" of {bugs} bugs"))
            && !filtered.contains(&format!("{bugs} of {bugs} bugs")),
        "the primitive filter leaves only its rows"
    );
    not_blank(&browser, &dir, &page);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every `href` and `src` of a built book that points inside it names a file that exists.
fn dangling_links(book: &std::path::Path) -> Vec<String> {
    let mut dangling = Vec::new();
    let mut stack = vec![book.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("html") {
                continue;
            }
            let html = std::fs::read_to_string(&path).unwrap();
            for attr in ["href=\"", "src=\""] {
                for piece in html.split(attr).skip(1) {
                    let link = piece.split('"').next().unwrap_or("");
                    let target = link.split(['#', '?']).next().unwrap_or("");
                    if target.is_empty()
                        || target.contains("://")
                        || target.starts_with("mailto:")
                        || target.starts_with("javascript:")
                        || target.starts_with("data:")
                    {
                        continue;
                    }
                    if !path.parent().unwrap().join(target).exists() {
                        dangling.push(format!("{}: {link}", path.display()));
                    }
                }
            }
        }
    }
    dangling
}

/// The bugs whose page should carry the picture of its failure, by the verdict it shows.
fn pictured(results: &Results) -> Vec<(String, String)> {
    harness::summary::by_bug(results)
        .iter()
        .filter_map(|rows| {
            let bug = bugs::find(rows.bug)?;
            let f = harness::book::shown(bug, rows)?.first_failure.as_ref()?;
            // A leak of goroutines still running has nothing to wait for.
            let drawn = match f.verdict.as_str() {
                "deadlock" | "leak" => !f.waits.is_empty(),
                "race" => true,
                _ => false,
            };
            drawn.then(|| (rows.bug.to_string(), f.verdict.clone()))
        })
        .collect()
}

/// `harness book` from the committed results into `dir/book`: the book and the results.
fn build_book(dir: &std::path::Path) -> (PathBuf, Results) {
    let book = dir.join("book");
    let results = harness::workspace_root().join("reports/results.json");
    let out = harness(&[
        "book",
        "--results",
        results.to_str().unwrap(),
        "--out",
        book.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (book, Results::read(&results).unwrap())
}

/// The book, built from the committed results: a page per bug and per chapter, the picture
/// of every deadlock, leak and race, and no link that leads nowhere.
#[test]
fn the_book_is_built_whole_and_its_links_resolve() {
    let dir = scratch("book");
    let (book, results) = build_book(&dir);
    for bug in bugs::all() {
        assert!(
            book.join(format!("bugs/{}.html", bug.id)).exists(),
            "{}: no page",
            bug.id
        );
    }
    let index = std::fs::read_to_string(book.join("index.html")).unwrap();
    assert!(
        index.contains("sync.Mutex"),
        "the start page lists the chapters"
    );
    for (id, verdict) in pictured(&results) {
        let page = std::fs::read_to_string(book.join(format!("bugs/{id}.html"))).unwrap();
        let class = if verdict == "race" { "race" } else { "waitfor" };
        assert!(
            page.contains(&format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"{class}\""
            )),
            "{id}: its {verdict} is not drawn"
        );
        assert!(
            page.contains("language-diff") || page.contains("no variant switch"),
            "{id}: no fix"
        );
    }
    let dangling = dangling_links(&book);
    assert!(dangling.is_empty(), "links that lead nowhere: {dangling:?}");
    // Built whole or not at all: nothing staged is left beside it.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp") || n.contains(".old"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The book in a real browser: its start page, three bug pages with their pictures, and its
/// search.
#[test]
fn the_book_renders_in_headless_chromium() {
    let Some(browser) = chromium() else { return };
    let dir = scratch("book-chromium");
    let (book, results) = build_book(&dir);
    let chrome = |url: String, extra: &[&str]| headless(&browser, &dir, &url, extra);
    let url = |page: &str| format!("file://{}/{page}", book.display());
    let start = chrome(url("index.html"), &["--dump-dom"]);
    assert!(start.contains("How to read it"), "the start page renders");
    assert!(
        start.contains("sync.WaitGroup"),
        "the sidebar lists the chapters"
    );
    // One bug page of each picture: a deadlock, a leak, a race.
    let pictured = pictured(&results);
    for verdict in ["deadlock", "leak", "race"] {
        let (id, _) = pictured
            .iter()
            .find(|(_, v)| v == verdict)
            .unwrap_or_else(|| panic!("no {verdict} in the corpus"));
        let dom = chrome(url(&format!("bugs/{id}.html")), &["--dump-dom"]);
        let class = if verdict == "race" { "race" } else { "waitfor" };
        assert!(
            dom.contains(&format!("class=\"{class}\"")),
            "{id}: its picture is in the rendered page"
        );
        assert!(dom.contains("class=\"lanes\""), "{id}: its swimlanes");
        assert!(dom.contains("The fix as a diff"), "{id}: its fix");
    }
    // mdBook's search opens with `?search=`: a kernel's object name finds its page.
    let found = chrome(url("index.html?search=podStatusesLock"), &["--dump-dom"]);
    assert!(found.contains("search results for"), "the search answers");
    assert!(
        found.contains("kubernetes_10182"),
        "and finds the page that names it"
    );
    let (deadlock, _) = pictured.iter().find(|(_, v)| v == "deadlock").unwrap();
    not_blank(&browser, &dir, &url(&format!("bugs/{deadlock}.html")));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `reports/book/` was built from the committed results: a page per bug of the corpus.
#[test]
fn committed_book_covers_the_corpus() {
    let book = harness::workspace_root().join("reports/book");
    assert!(
        book.join("index.html").exists(),
        "reports/book/ is committed; build it with `cargo run --release -p harness -- book`"
    );
    for bug in bugs::all() {
        assert!(
            book.join(format!("bugs/{}.html", bug.id)).exists(),
            "{}: reports/book/ lacks its page; rebuild it with `harness book`",
            bug.id
        );
    }
}

/// `reports/` was regenerated after the corpus last changed: it has every registered bug,
/// with its current expected verdict, on every engine, and every row holds.
#[test]
fn committed_reports_cover_the_corpus() {
    let path = harness::workspace_root().join("reports/results.json");
    let results = Results::read(&path).expect("reports/results.json is committed");
    for bug in bugs::all() {
        let rows: Vec<_> = results.runs.iter().filter(|r| r.bug == bug.id).collect();
        assert_eq!(
            rows.len(),
            2 * primitives::explore::Engine::ALL.len(),
            "{}: reports/ lacks its runs; regenerate with `cargo run --release -p harness`",
            bug.id
        );
        assert!(
            rows.iter().all(|r| r.expected == bug.expected.as_str()),
            "{}: reports/ has a stale expected verdict; regenerate them",
            bug.id
        );
    }
    let known: std::collections::BTreeSet<_> = bugs::all().iter().map(|b| b.id).collect();
    let unknown: Vec<_> = results
        .runs
        .iter()
        .filter(|r| !known.contains(r.bug.as_str()))
        .map(|r| &r.bug)
        .collect();
    assert!(
        unknown.is_empty(),
        "reports/ lists bugs the corpus no longer has: {unknown:?}"
    );
    let failing: Vec<_> = results
        .runs
        .iter()
        .filter(|r| !r.holds)
        .map(|r| format!("{} {} {}", r.bug, r.variant, r.engine))
        .collect();
    assert!(
        failing.is_empty(),
        "rows of reports/ that do not hold: {failing:?}"
    );
}
