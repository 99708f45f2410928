//! Swimlanes: a failing execution drawn as one lane per goroutine, one row per Go operation.
//!
//! The same model gives the text picture (`harness explain`, walkthroughs) and the SVG one
//! (`index.html`). Operations that parked their goroutine are marked; a lane that ends parked
//! is blocked for good.

use std::fmt::Write as _;

use crate::results::{FirstFailure, Repeat, TraceEntry};

/// A lane's last state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Its last operation parked it and nothing completed it.
    Blocked,
    /// It returned (main) or exited.
    Done,
    /// It panicked.
    Panicked,
    /// The runtime's timer goroutine, idle with no timer armed (its dump says so).
    Idle,
    /// Anything else: it was running when the execution ended.
    Running,
}

/// One row of the picture: an operation, or the note that a loop's round above came back.
enum Row<'a> {
    Op(&'a TraceEntry),
    Repeat(Repeat),
}

struct Lanes<'a> {
    failure: &'a FirstFailure,
    /// Goroutine ids that appear in the trace, in id order.
    ids: Vec<usize>,
    /// Every entry the report kept (`cause.rs`), and a row after each folded loop.
    rows: Vec<Row<'a>>,
}

impl<'a> Lanes<'a> {
    fn new(failure: &'a FirstFailure) -> Self {
        let mut ids: Vec<usize> = failure.trace.iter().map(|e| e.g).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows = Vec::with_capacity(failure.trace.len());
        for e in &failure.trace {
            rows.push(Row::Op(e));
            if let Some(r) = e.repeat {
                rows.push(Row::Repeat(r));
            }
        }
        Lanes { failure, ids, rows }
    }

    /// What the picture leaves out, in a line (empty if nothing).
    fn left_out(&self) -> String {
        let f = self.failure;
        match (f.trace_hidden, f.trace_dropped) {
            (0, 0) => String::new(),
            (h, 0) => format!("… {h} operations of goroutines not involved in the failure are hidden"),
            (0, d) => format!("… {d} earlier operations were not recorded"),
            (h, d) => format!(
                "… {h} operations of goroutines not involved in the failure are hidden; {d} earlier ones were not recorded"
            ),
        }
    }

    fn name(&self, g: usize) -> String {
        match self.failure.goroutines.get(g) {
            Some(n) => format!("g{g} {n}"),
            None => format!("g{g}"),
        }
    }

    fn lane(&self, g: usize) -> usize {
        self.ids
            .iter()
            .position(|&i| i == g)
            .expect("every event's goroutine has a lane")
    }

    /// How each lane ends.
    fn ends(&self) -> Vec<End> {
        self.ids
            .iter()
            .map(
                |&g| match self.failure.trace.iter().rev().find(|e| e.g == g) {
                    Some(e) if e.blocked => End::Blocked,
                    Some(e) if e.op == "panic" => End::Panicked,
                    Some(e) if e.op == "exit" || e.op == "return" => End::Done,
                    _ if self.status(g) == Some("timer helper idle") => End::Idle,
                    _ => End::Running,
                },
            )
            .collect()
    }

    /// Goroutine `g`'s status in the dump (`goroutine 4 "timers" [timer helper idle]:`).
    fn status(&self, g: usize) -> Option<&str> {
        let head = format!("goroutine {g} ");
        let line = self.failure.dump.lines().find(|l| l.starts_with(&head))?;
        let open = line.rfind('[')?;
        let close = open + line[open..].find(']')?;
        Some(&line[open + 1..close])
    }

    fn marked(&self, e: &TraceEntry) -> bool {
        self.failure.marks.contains(&e.step)
    }
}

/// The text of one operation.
fn cell(e: &TraceEntry) -> String {
    let mut s = e.op.clone();
    if let Some(obj) = &e.obj {
        s.push(' ');
        s.push_str(obj);
    }
    if let Some(d) = &e.detail {
        if let Some(g) = d.strip_prefix("starts goroutine ") {
            s = format!("go g{g}");
        } else {
            let _ = write!(s, " ({d})");
        }
    }
    s
}

/// `file.rs:line` of a location, without folders.
fn short_site(at: &str) -> String {
    let file = at.rsplit('/').next().unwrap_or(at);
    // Drop the column: `file.rs:12:5` -> `file.rs:12`.
    match file.rsplit_once(':') {
        Some((head, col)) if head.contains(':') && col.chars().all(|c| c.is_ascii_digit()) => {
            head.to_string()
        }
        _ => file.to_string(),
    }
}

/// `s` cut to `width` characters, with an ellipsis where it was cut.
pub(crate) fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// What a folded loop's row says.
fn repeat_note(r: &Repeat) -> String {
    let ops = if r.round == 1 {
        "the operation above".to_string()
    } else {
        format!("the {} operations above", r.round)
    };
    let times = if r.times == 1 {
        "once more".to_string()
    } else {
        format!("{} more times", r.times)
    };
    format!("↻ {ops}, {times}, to step {}", r.until)
}

/// The text picture: a table of steps × goroutines, then how each goroutine ended.
pub fn text(failure: &FirstFailure) -> String {
    const LANE: usize = 30;
    let lanes = Lanes::new(failure);
    let mut cells: Vec<Vec<String>> = Vec::new();
    for row in &lanes.rows {
        let Row::Op(e) = row else {
            cells.push(Vec::new());
            continue;
        };
        let mut row = vec![String::new(); lanes.ids.len()];
        let mut c = cell(e);
        if e.blocked {
            c.push_str(" ⏸");
        }
        if lanes.marked(e) {
            c.push_str(" ◀ race");
        }
        row[lanes.lane(e.g)] = c;
        cells.push(row);
    }
    let ends: Vec<String> = lanes
        .ends()
        .iter()
        .map(|end| match end {
            End::Blocked => "⏸ blocked for good".to_string(),
            End::Done => "✓ finished".to_string(),
            End::Panicked => "✗ panicked".to_string(),
            End::Idle => "⏸ idle".to_string(),
            End::Running => "… still running".to_string(),
        })
        .collect();
    let headers: Vec<String> = lanes.ids.iter().map(|&g| lanes.name(g)).collect();
    let widths: Vec<usize> = (0..lanes.ids.len())
        .map(|i| {
            let widest = cells
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([headers[i].chars().count(), ends[i].chars().count()])
                .max()
                .unwrap_or(0);
            widest.min(LANE)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, step: &str, row: &[String], site: &str| {
        let _ = write!(out, "{step:>5} │");
        for (c, w) in row.iter().zip(&widths) {
            let _ = write!(out, " {:<w$} │", clip(c, *w), w = *w);
        }
        let _ = writeln!(out, " {site}");
        // Trailing spaces are noise in Markdown and diffs.
        let trimmed = out.trim_end_matches([' ', '\n']).len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut out, "step", &headers, "where");
    let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
    let _ = write!(out, "──────┼");
    for r in &rule {
        let _ = write!(out, "─{r}─┼");
    }
    out.push_str("──────\n");
    let left_out = lanes.left_out();
    if !left_out.is_empty() {
        let _ = writeln!(out, "  {left_out}");
    }
    for (r, row) in lanes.rows.iter().zip(&cells) {
        match r {
            Row::Op(e) => line(&mut out, &e.step.to_string(), row, &short_site(&e.at)),
            Row::Repeat(rep) => {
                let _ = writeln!(out, "      │ {}", repeat_note(rep));
            }
        }
    }
    line(&mut out, "end", &ends, "");
    out
}

/// `s` escaped for HTML and SVG text and attributes.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG picture, self-contained (no external fonts or styles).
pub fn svg(failure: &FirstFailure) -> String {
    const LEFT: usize = 56;
    const LANE_W: usize = 210;
    const ROW_H: usize = 22;
    const TOP: usize = 34;
    let lanes = Lanes::new(failure);
    let n = lanes.ids.len().max(1);
    let rows = lanes.rows.len();
    let left_out = lanes.left_out();
    let extra = usize::from(!left_out.is_empty());
    let width = LEFT + n * LANE_W + 10;
    let height = TOP + (rows + extra + 2) * ROW_H;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="swimlanes" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">"#
    );
    let lane_x = |i: usize| LEFT + i * LANE_W;
    let row_y = |r: usize| TOP + (r + extra) * ROW_H;
    for (i, &g) in lanes.ids.iter().enumerate() {
        let x = lane_x(i);
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="0" width="{}" height="{height}" fill="{}"/>"##,
            LANE_W - 4,
            if i % 2 == 0 { "#f6f8fa" } else { "#ffffff" }
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="20" font-weight="bold">{}</text>"#,
            x + 6,
            esc(&clip(&lanes.name(g), 28))
        );
    }
    if extra > 0 {
        let _ = writeln!(
            s,
            r##"<text x="6" y="{}" fill="#57606a">{}</text>"##,
            TOP + 15,
            esc(&left_out)
        );
    }
    // Bars for parked goroutines: from the operation that parked to the one that resumed.
    for (r, row) in lanes.rows.iter().enumerate() {
        let Row::Op(e) = row else { continue };
        if !e.blocked {
            continue;
        }
        let lane = lanes.lane(e.g);
        let resumed = lanes.rows[r + 1..]
            .iter()
            .position(|x| matches!(x, Row::Op(x) if x.g == e.g))
            .map(|p| r + 1 + p);
        let (y2, forever) = match resumed {
            Some(r2) => (row_y(r2), false),
            None => (row_y(rows) + ROW_H / 2, true),
        };
        let x = lane_x(lane) + 3;
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{}" width="4" height="{}" fill="#cf222e"><title>{} blocked here</title></rect>"##,
            row_y(r) + 4,
            y2.saturating_sub(row_y(r) + 4),
            esc(&lanes.name(e.g))
        );
        if forever {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" fill="#cf222e">blocked for good</text>"##,
                x + 10,
                row_y(rows) + 15
            );
        }
    }
    for (r, row) in lanes.rows.iter().enumerate() {
        let y = row_y(r);
        let e = match row {
            Row::Op(e) => e,
            Row::Repeat(rep) => {
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{}" fill="#57606a">{}</text>"##,
                    LEFT + 6,
                    y + 15,
                    esc(&repeat_note(rep))
                );
                continue;
            }
        };
        let x = lane_x(lanes.lane(e.g)) + 10;
        let (fill, stroke) = if lanes.marked(e) {
            ("#fff8c5", "#bf8700")
        } else if e.blocked {
            ("#ffebe9", "#cf222e")
        } else if e.blocking {
            ("#ddf4ff", "#0969da")
        } else {
            ("#eaeef2", "#8c959f")
        };
        let _ = writeln!(
            s,
            r##"<text x="6" y="{}" fill="#57606a">{}</text>"##,
            y + 15,
            e.step
        );
        let _ = writeln!(
            s,
            r#"<g><title>step {} · {} · {}</title><rect x="{x}" y="{}" width="{}" height="{}" rx="4" fill="{fill}" stroke="{stroke}"/><text x="{}" y="{}">{}</text></g>"#,
            e.step,
            esc(&cell(e)),
            esc(&e.at),
            y + 2,
            LANE_W - 18,
            ROW_H - 4,
            x + 5,
            y + 15,
            esc(&clip(&cell(e), 29))
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(step: u64, g: usize, op: &str, blocked: bool) -> TraceEntry {
        TraceEntry {
            step,
            g,
            op: op.to_string(),
            at: format!("bugs/src/x/x_1.rs:{step}:5"),
            obj: Some("mu".to_string()),
            blocked,
            blocking: true,
            detail: None,
            repeat: None,
        }
    }

    fn failure() -> FirstFailure {
        FirstFailure {
            schedule: 3,
            verdict: "deadlock".into(),
            replay: None,
            preemptions: None,
            message: String::new(),
            dump: String::new(),
            trace: vec![
                entry(1, 0, "Lock", false),
                entry(2, 1, "Lock", true),
                entry(3, 0, "Lock", true),
            ],
            goroutines: vec!["main".into(), "worker".into()],
            waits: vec![],
            accesses: vec![],
            marks: vec![],
            trace_dropped: 0,
            trace_hidden: 0,
        }
    }

    #[test]
    fn text_lanes_show_each_goroutine_and_how_it_ends() {
        let t = text(&failure());
        assert!(t.contains("g0 main"), "{t}");
        assert!(t.contains("g1 worker"), "{t}");
        assert!(t.contains("Lock mu ⏸"), "{t}");
        assert!(
            t.lines().last().unwrap().contains("blocked for good"),
            "{t}"
        );
        assert!(t.contains("x_1.rs:2"), "{t}");
        assert!(
            !t.lines().any(|l| l.ends_with(' ')),
            "no trailing spaces: {t}"
        );
    }

    #[test]
    fn the_idle_timer_goroutine_ends_idle_not_running() {
        let mut f = failure();
        f.goroutines.push("timers".into());
        f.trace.insert(2, entry(3, 2, "timer", false));
        f.trace[3].step = 4;
        f.dump = "goroutine 0 \"main\" [sync.Mutex.Lock]:\ngoroutine 2 \"timers\" [timer helper idle]:\n\tprimitives/src/rt/timer.rs:324:14\n".into();
        let t = text(&f);
        let last = t.lines().last().unwrap();
        assert!(last.contains("⏸ idle"), "{t}");
        assert!(!last.contains("still running"), "{t}");
    }

    #[test]
    fn a_folded_loop_gets_a_row_that_says_how_often_it_came_back() {
        let mut f = failure();
        f.trace[0].repeat = Some(Repeat {
            round: 1,
            times: 40,
            until: 41,
        });
        f.trace_hidden = 7;
        let t = text(&f);
        assert!(
            t.contains("↻ the operation above, 40 more times, to step 41"),
            "{t}"
        );
        assert!(t.contains("7 operations of goroutines not involved"), "{t}");
        assert!(svg(&f).contains("40 more times"));
    }

    #[test]
    fn svg_is_well_formed_enough_and_escapes_text() {
        let mut f = failure();
        f.trace[0].obj = Some("<chan>".into());
        let s = svg(&f);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("&lt;chan&gt;") && !s.contains("<chan>"));
        assert_eq!(s.matches("blocked for good").count(), 2);
    }
}
