//! The picture of a failure, as inline SVG:
//!
//! - a deadlock or leak: the **wait-for graph** when it was found. Goroutines on the left,
//!   what they wait on on the right; an edge from a goroutine to what it waits on, and from an
//!   object to the goroutines that could release it (who holds a lock, who else uses a
//!   channel, who signalled a Cond, who runs a Once). A cycle is drawn red; an object nobody
//!   left alive can release (a channel's missing partner, a WaitGroup's Done that never
//!   comes) is framed red with a note.
//! - a data race: the two accesses in their goroutines' lanes, with the synchronisation each
//!   goroutine did between them, and the happens-before edge that is missing drawn as a red
//!   dashed arrow.
//!
//! Everything is read from the failure as results.json keeps it: the blocked goroutines and
//! what they wait on, the trace (kept whole for the goroutines a failure involves), the dump.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::results::{FirstFailure, TraceEntry};
use crate::swimlane::{clip, esc};

/// The picture of `f`, or `None` for a failure without one (a panic, an assertion).
pub fn svg(f: &FirstFailure) -> Option<String> {
    match f.verdict.as_str() {
        "deadlock" | "leak" if !f.waits.is_empty() => Some(WaitFor::of(f).svg()),
        "race" if f.marks.len() == 2 => race(f),
        _ => None,
    }
}

/// The kernel's goroutines' states in the dump (`goroutine 3 "name" [chan send]:`); the
/// runtime's timer goroutine is left out.
fn dump_states(dump: &str) -> BTreeMap<usize, String> {
    let mut states = BTreeMap::new();
    let mut last = None;
    for l in dump.lines() {
        if l.trim() == "(runtime timer goroutine)" {
            if let Some(g) = last.take() {
                states.remove(&g);
            }
            continue;
        }
        let parsed = (|| {
            let rest = l.strip_prefix("goroutine ")?;
            let (id, rest) = rest.split_once(' ')?;
            let state = rest.rsplit_once('[')?.1.split(']').next()?;
            Some((id.parse::<usize>().ok()?, state.to_string()))
        })();
        if let Some((g, state)) = parsed {
            states.insert(g, state);
            last = Some(g);
        }
    }
    states
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Goroutine → object (`true`), or object → goroutine.
    pub waits: bool,
    pub g: usize,
    pub obj: usize,
    pub label: String,
    pub cycle: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub label: String,
    pub kind: &'static str,
    /// Why nobody can release it, when nobody alive can.
    pub missing: Option<String>,
    /// A fact worth showing (a WaitGroup's counter).
    pub note: Option<String>,
}

/// The wait-for graph of a blocked execution.
#[derive(Clone, Debug)]
pub struct WaitFor {
    /// Goroutines drawn, with their names and states.
    pub goroutines: Vec<(usize, String, String)>,
    pub objects: Vec<Object>,
    pub edges: Vec<Edge>,
}

/// The object kind a wait names.
fn kind_of(state: &str) -> &'static str {
    if state.starts_with("chan") || state.starts_with("select") {
        "chan"
    } else if state.starts_with("sync.RWMutex") {
        "RWMutex"
    } else if state.starts_with("sync.Mutex") {
        "Mutex"
    } else if state.starts_with("sync.WaitGroup") {
        "WaitGroup"
    } else if state.starts_with("sync.Cond") {
        "Cond"
    } else if state.starts_with("sync.Once") {
        "Once"
    } else {
        "object"
    }
}

/// The operation of a wait, short: `send`, `receive`, `Lock`, `RLock`, `Wait`, `Do`, `select`.
fn op_of(state: &str) -> String {
    if let Some(rest) = state.strip_prefix("chan ") {
        return rest.replace(" (nil chan)", " (nil)");
    }
    state.rsplit('.').next().unwrap_or(state).to_string()
}

impl WaitFor {
    pub fn of(f: &FirstFailure) -> WaitFor {
        let states = dump_states(&f.dump);
        let alive = |g: usize| {
            states
                .get(&g)
                .is_some_and(|s| s != "finished" && s != "returned")
        };
        let blocked: BTreeMap<usize, &crate::results::WaitEntry> =
            f.waits.iter().map(|w| (w.g, w)).collect();
        let mut objects: Vec<Object> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut edges: Vec<Edge> = Vec::new();
        for w in &f.waits {
            for on in &w.on {
                let obj = *index.entry(on.clone()).or_insert_with(|| {
                    objects.push(Object {
                        label: on.clone(),
                        kind: kind_of(&w.state),
                        missing: None,
                        note: None,
                    });
                    objects.len() - 1
                });
                edges.push(Edge {
                    waits: true,
                    g: w.g,
                    obj,
                    label: op_of(&w.state),
                    cycle: false,
                });
            }
        }
        let times = multiplicity(&f.trace);
        // Who could release each object.
        for (obj, o) in objects.iter_mut().enumerate() {
            // Each event with the times it ran (a folded loop's round ran again).
            let on_obj: Vec<(&TraceEntry, i64)> = f
                .trace
                .iter()
                .zip(&times)
                .filter(|(e, _)| e.obj.as_deref() == Some(o.label.as_str()))
                .map(|(e, &n)| (e, n))
                .collect();
            let waiters: BTreeSet<usize> = f
                .waits
                .iter()
                .filter(|w| w.on.contains(&o.label))
                .map(|w| w.g)
                .collect();
            let mut release = |g: usize, label: &str| {
                if !edges
                    .iter()
                    .any(|e| !e.waits && e.g == g && e.obj == obj && e.label == label)
                {
                    edges.push(Edge {
                        waits: false,
                        g,
                        obj,
                        label: label.to_string(),
                        cycle: false,
                    });
                }
            };
            match o.kind {
                "Mutex" | "RWMutex" => {
                    let mut held: BTreeMap<(usize, bool), i64> = BTreeMap::new();
                    for &(e, n) in &on_obj {
                        let acquired = e.detail.as_deref() == Some("acquired");
                        match (e.op.as_str(), e.blocked) {
                            ("Lock", false) => *held.entry((e.g, false)).or_default() += n,
                            ("TryLock", _) if acquired => {
                                *held.entry((e.g, false)).or_default() += n
                            }
                            ("RLock", false) => *held.entry((e.g, true)).or_default() += n,
                            ("Unlock", _) => *held.entry((e.g, false)).or_default() -= n,
                            ("RUnlock", _) => *held.entry((e.g, true)).or_default() -= n,
                            _ => {}
                        }
                    }
                    // Go's locks are not owned: an Unlock by another goroutine releases a
                    // lock its holder took. Balance what the trace shows per kind.
                    for read in [false, true] {
                        let total: i64 = held
                            .iter()
                            .filter(|((_, r), _)| *r == read)
                            .map(|(_, n)| n)
                            .sum();
                        if total <= 0 {
                            continue;
                        }
                        for (&(g, r), &n) in &held {
                            if r == read && n > 0 {
                                release(g, if read { "read-held by" } else { "held by" });
                            }
                        }
                    }
                    if o.kind == "RWMutex" {
                        // A waiting writer holds back new readers.
                        for w in f
                            .waits
                            .iter()
                            .filter(|w| w.on.contains(&o.label) && w.state == "sync.RWMutex.Lock")
                        {
                            if waiters.iter().any(|&r| {
                                blocked
                                    .get(&r)
                                    .is_some_and(|x| x.state == "sync.RWMutex.RLock")
                            }) {
                                release(w.g, "writer waiting first");
                            }
                        }
                    }
                    if !edges.iter().any(|e| !e.waits && e.obj == obj) {
                        // Not a missing partner: the holder's steps may be before the trace.
                        o.note = Some("its holder is not in the trace".into());
                    }
                }
                "WaitGroup" => {
                    let mut counter: i64 = 0;
                    for &(e, times) in &on_obj {
                        match e.op.as_str() {
                            "Add" => {
                                let delta = e
                                    .detail
                                    .as_deref()
                                    .and_then(|d| d.strip_prefix("delta "))
                                    .and_then(|d| d.parse::<i64>().ok())
                                    .unwrap_or(0);
                                counter += delta * times;
                            }
                            "Done" => counter -= times,
                            _ => {}
                        }
                    }
                    o.note = Some(format!("counter {counter}"));
                    o.missing = Some(format!(
                        "{counter} Done call{} never came",
                        if counter == 1 { "" } else { "s" }
                    ));
                }
                "Cond" => {
                    // When the earliest of the waits still pending began: each waiter's last
                    // parked Cond.Wait.
                    let since = waiters
                        .iter()
                        .filter_map(|&g| {
                            f.trace
                                .iter()
                                .filter(|e| e.g == g && e.blocked && e.op == "Cond.Wait")
                                .map(|e| e.step)
                                .max()
                        })
                        .min()
                        .unwrap_or(0);
                    for (e, _) in &on_obj {
                        if matches!(e.op.as_str(), "Signal" | "Broadcast") && alive(e.g) {
                            release(e.g, &format!("{} before", e.op));
                        }
                    }
                    let later = on_obj.iter().any(|(e, _)| {
                        matches!(e.op.as_str(), "Signal" | "Broadcast") && e.step > since
                    });
                    if !later {
                        o.missing = Some("not signalled since its Wait".into());
                    }
                }
                "Once" => {
                    for (e, _) in &on_obj {
                        if e.op == "Once.Do" && !waiters.contains(&e.g) && alive(e.g) {
                            release(e.g, "running its function");
                        }
                    }
                    if !edges.iter().any(|e| !e.waits && e.obj == obj) {
                        o.missing = Some("waits for its own Do".into());
                    }
                }
                _ => {
                    // A channel: the other goroutines that used it.
                    let partners: BTreeSet<usize> = on_obj
                        .iter()
                        .map(|(e, _)| e.g)
                        .filter(|g| !waiters.contains(g))
                        .collect();
                    for &p in &partners {
                        release(
                            p,
                            if alive(p) {
                                "also uses it"
                            } else {
                                "used it, finished"
                            },
                        );
                    }
                    // Nobody can ever complete the operation when every goroutine but its
                    // waiters has ended; a live goroutine that has not used the channel yet
                    // might, so that is only noted.
                    let others_alive = states.keys().any(|&g| !waiters.contains(&g) && alive(g));
                    if !partners.iter().any(|&p| alive(p)) && others_alive {
                        o.note = Some("no live goroutine has used it".into());
                    } else if !partners.iter().any(|&p| alive(p)) {
                        let sends = f
                            .waits
                            .iter()
                            .filter(|w| w.on.contains(&o.label))
                            .all(|w| w.state.contains("send"));
                        let recvs = f
                            .waits
                            .iter()
                            .filter(|w| w.on.contains(&o.label))
                            .all(|w| w.state.contains("receive"));
                        o.missing = Some(
                            match (sends, recvs) {
                                (true, _) => "no goroutine left to receive",
                                (_, true) => "no goroutine left to send or close",
                                _ => "no other goroutine left to use it",
                            }
                            .into(),
                        );
                    }
                }
            }
        }
        let mut graph = WaitFor {
            goroutines: Vec::new(),
            objects,
            edges,
        };
        graph.mark_cycles();
        let mut shown: BTreeSet<usize> = f.waits.iter().map(|w| w.g).collect();
        shown.extend(graph.edges.iter().map(|e| e.g));
        graph.goroutines = shown
            .into_iter()
            .map(|g| {
                let name = f.goroutines.get(g).cloned().unwrap_or_default();
                let state = blocked
                    .get(&g)
                    .map(|w| w.state.clone())
                    .or_else(|| states.get(&g).cloned())
                    .unwrap_or_default();
                (g, name, state)
            })
            .collect();
        // Blocked goroutines first, then the others.
        graph
            .goroutines
            .sort_by_key(|(g, _, _)| (!blocked.contains_key(g), *g));
        graph
    }

    /// Marks the edges on a cycle: goroutine `a` waits on an object that goroutine `b` could
    /// release, and so on back to `a` (a goroutine waiting on a lock it holds is a cycle of one).
    fn mark_cycles(&mut self) {
        // g -> h when g waits on an object h could release.
        let mut next: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for w in self.edges.iter().filter(|e| e.waits) {
            for r in self.edges.iter().filter(|e| !e.waits && e.obj == w.obj) {
                next.entry(w.g).or_default().insert(r.g);
            }
        }
        let reaches = |from: usize, to: usize| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from];
            while let Some(g) = stack.pop() {
                for &h in next.get(&g).into_iter().flatten() {
                    if h == to {
                        return true;
                    }
                    if seen.insert(h) {
                        stack.push(h);
                    }
                }
            }
            false
        };
        let on_cycle: Vec<bool> = self
            .edges
            .iter()
            .map(|e| {
                if e.waits {
                    // g waits on obj, obj released by h, and h reaches back to g.
                    self.edges
                        .iter()
                        .filter(|r| !r.waits && r.obj == e.obj)
                        .any(|r| r.g == e.g || reaches(r.g, e.g))
                } else {
                    // obj released by h, some g waits on obj, and h reaches g (or is g).
                    self.edges
                        .iter()
                        .filter(|w| w.waits && w.obj == e.obj)
                        .any(|w| w.g == e.g || reaches(e.g, w.g))
                }
            })
            .collect();
        for (e, c) in self.edges.iter_mut().zip(on_cycle) {
            e.cycle = c;
        }
    }

    pub fn has_cycle(&self) -> bool {
        self.edges.iter().any(|e| e.cycle)
    }

    pub fn svg(&self) -> String {
        const ROW: i64 = 74;
        const TOP: i64 = 34;
        const GX: i64 = 8;
        const OX: i64 = 470;
        const W: i64 = 240;
        const H: i64 = 46;
        let rows = self.goroutines.len().max(self.objects.len()).max(1) as i64;
        let height = TOP + rows * ROW + 8;
        let width = OX + W + 8;
        let gy = |g: usize| -> i64 {
            let i = self
                .goroutines
                .iter()
                .position(|(id, _, _)| *id == g)
                .unwrap_or(0);
            TOP + i as i64 * ROW
        };
        let oy = |o: usize| TOP + o as i64 * ROW;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"waitfor\" role=\"img\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"12\">"
        );
        let _ = writeln!(
            s,
            "<title>Wait-for graph: goroutines (left), what they wait on (right){}</title>",
            if self.has_cycle() {
                "; the cycle in red"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "<defs><marker id=\"wf-arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"context-stroke\"/></marker></defs>"
        );
        let _ = writeln!(
            s,
            "<text x=\"{GX}\" y=\"18\" font-weight=\"bold\">goroutines</text><text x=\"{OX}\" y=\"18\" font-weight=\"bold\">what they wait on</text>"
        );
        for (g, name, state) in &self.goroutines {
            let y = gy(*g);
            let blocked = self.edges.iter().any(|e| e.waits && e.g == *g);
            let (fill, stroke) = if blocked {
                ("#ffebe9", "#cf222e")
            } else if state == "finished" || state == "returned" {
                ("#f6f8fa", "#8c959f")
            } else {
                ("#ddf4ff", "#0969da")
            };
            let _ = writeln!(
                s,
                "<g class=\"goroutine\"><rect x=\"{GX}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\"/><text x=\"{}\" y=\"{}\">G{g} {}</text><text x=\"{}\" y=\"{}\" fill=\"#57606a\">[{}]</text></g>",
                GX + 8,
                y + 18,
                esc(&clip(name, 27)),
                GX + 8,
                y + 36,
                esc(&clip(state, 28))
            );
        }
        for (i, o) in self.objects.iter().enumerate() {
            let y = oy(i);
            let (stroke, dash) = match o.missing {
                Some(_) => ("#cf222e", " stroke-dasharray=\"5 3\" stroke-width=\"2\""),
                None => ("#8c959f", ""),
            };
            let title = format!("{} {}", o.kind, o.label);
            let second = match (&o.missing, &o.note) {
                (Some(m), _) => m.clone(),
                (None, Some(n)) => n.clone(),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                s,
                "<g class=\"object{}\"><rect x=\"{OX}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"2\" fill=\"#fff8c5\" stroke=\"{stroke}\"{dash}/><text x=\"{}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" fill=\"{}\" font-size=\"11\">{}</text></g>",
                if o.missing.is_some() { " missing" } else { "" },
                OX + 8,
                y + 18,
                esc(&clip(&title, 31)),
                OX + 8,
                y + 36,
                if o.missing.is_some() { "#cf222e" } else { "#57606a" },
                esc(&clip(&second, 34))
            );
        }
        // Waits leave a goroutine's upper half and reach an object's upper half; releases
        // leave the object's lower half and reach the goroutine's lower half, each at its own
        // height, with its label beside its arrowhead. (A goroutine's wait is written in its
        // box, so wait edges carry no label.)
        let mut out_of_g: BTreeMap<usize, i64> = BTreeMap::new();
        let mut into_o: BTreeMap<usize, i64> = BTreeMap::new();
        let mut out_of_o: BTreeMap<usize, i64> = BTreeMap::new();
        let mut into_g: BTreeMap<usize, i64> = BTreeMap::new();
        let bump = |m: &mut BTreeMap<usize, i64>, k: usize| {
            let n = m.entry(k).or_default();
            *n += 1;
            *n - 1
        };
        for e in &self.edges {
            let color = if e.cycle {
                "#cf222e"
            } else if e.waits {
                "#0969da"
            } else {
                "#57606a"
            };
            let width = if e.cycle { 2.5 } else { 1.5 };
            let (x1, y1, x2, y2) = if e.waits {
                let a = gy(e.g) + 10 + 6 * bump(&mut out_of_g, e.g).min(3);
                let b = oy(e.obj) + 10 + 6 * bump(&mut into_o, e.obj).min(3);
                (GX + W, a, OX, b)
            } else {
                let a = oy(e.obj) + 28 + 6 * bump(&mut out_of_o, e.obj).min(3);
                let b = gy(e.g) + 28 + 12 * bump(&mut into_g, e.g);
                (OX, a, GX + W, b)
            };
            let (cx, cy) = (
                (x1 + x2) / 2,
                (y1 + y2) / 2 + if e.waits { -14 } else { 14 },
            );
            let dash = if e.waits {
                ""
            } else {
                " stroke-dasharray=\"6 3\""
            };
            let label = if e.waits {
                String::new()
            } else {
                format!(
                    "<text x=\"{}\" y=\"{}\" fill=\"{color}\" font-size=\"11\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
                    GX + W + 12,
                    y2 + 12,
                    esc(&e.label)
                )
            };
            let _ = writeln!(
                s,
                "<g class=\"edge{}\"><path d=\"M{x1},{y1} Q{cx},{cy} {x2},{y2}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\"{dash} marker-end=\"url(#wf-arrow)\"/>{label}</g>",
                if e.cycle { " cycle" } else { "" },
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// How many times each entry of a trace ran: a folded loop's round (the `round` entries
/// ending at the one that carries the fold) ran `times` more.
fn multiplicity(trace: &[TraceEntry]) -> Vec<i64> {
    let mut n = vec![1i64; trace.len()];
    for (i, e) in trace.iter().enumerate() {
        if let Some(r) = e.repeat {
            for m in n
                .iter_mut()
                .take(i + 1)
                .skip((i + 1).saturating_sub(r.round))
            {
                *m += r.times as i64;
            }
        }
    }
    n
}

/// The picture of a race: the two goroutines' lanes from one access to the other.
fn race(f: &FirstFailure) -> Option<String> {
    let (s1, s2) = (f.marks[0], f.marks[1]);
    // An access inside a folded loop round has no event of its own in the trace: draw it from
    // the race report.
    let reported: Vec<TraceEntry> = f
        .accesses
        .iter()
        .filter(|a| !f.trace.iter().any(|e| e.step == a.step))
        .map(|a| TraceEntry {
            step: a.step,
            g: a.g,
            op: a.kind.clone(),
            at: a.at.clone(),
            obj: Some(a.obj.clone()),
            blocked: false,
            blocking: false,
            detail: None,
            repeat: None,
        })
        .collect();
    let mut trace: Vec<&TraceEntry> = f.trace.iter().chain(&reported).collect();
    trace.sort_by_key(|e| e.step);
    let first = trace.iter().find(|e| e.step == s1)?;
    let second = trace.iter().find(|e| e.step == s2)?;
    let (a, b) = (first.g, second.g);
    let sync = |e: &TraceEntry| {
        !matches!(e.op.as_str(), "read" | "write" | "map read" | "map write")
            || e.step == s1
            || e.step == s2
    };
    let mut rows: Vec<&TraceEntry> = trace
        .iter()
        .copied()
        .filter(|e| (e.g == a || e.g == b) && e.step >= s1 && e.step <= s2 && sync(e))
        .collect();
    // Before the first access, the two goroutines' last few synchronising steps, for context.
    let before: Vec<&TraceEntry> = trace
        .iter()
        .copied()
        .filter(|e| (e.g == a || e.g == b) && e.step < s1 && sync(e))
        .collect();
    let context: Vec<&TraceEntry> = before.iter().rev().take(4).rev().copied().collect();
    const MAX: usize = 22;
    let mut elided = 0;
    if rows.len() > MAX {
        // Keep both ends: what follows the first access and what leads to the second.
        elided = rows.len() - MAX;
        let tail = rows.split_off(rows.len() - MAX / 2);
        rows.truncate(MAX / 2);
        rows.extend(tail);
    }
    let all: Vec<&TraceEntry> = context
        .iter()
        .copied()
        .chain(rows.iter().copied())
        .collect();
    const ROW: i64 = 22;
    const TOP: i64 = 44;
    const STEPX: i64 = 8;
    const AX: i64 = 60;
    const BX: i64 = 360;
    const LW: i64 = 280;
    let gap = i64::from(elided > 0) * ROW;
    let height = TOP + all.len() as i64 * ROW + gap + 40;
    let width = BX + LW + 8;
    let name = |g: usize| f.goroutines.get(g).cloned().unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"race\" role=\"img\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<title>The two racing accesses, and no chain of happens-before edges between them</title>"
    );
    let _ = writeln!(
        s,
        "<defs><marker id=\"race-arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#cf222e\"/></marker></defs>"
    );
    let _ = writeln!(
        s,
        "<text x=\"{STEPX}\" y=\"18\" font-weight=\"bold\">step</text><text x=\"{AX}\" y=\"18\" font-weight=\"bold\">G{a} {}</text><text x=\"{BX}\" y=\"18\" font-weight=\"bold\">G{b} {}</text>",
        esc(&clip(&name(a), 30)),
        esc(&clip(&name(b), 30))
    );
    let _ = writeln!(
        s,
        "<line x1=\"{}\" y1=\"28\" x2=\"{}\" y2=\"{}\" stroke=\"#d0d7de\" stroke-width=\"2\"/><line x1=\"{}\" y1=\"28\" x2=\"{}\" y2=\"{}\" stroke=\"#d0d7de\" stroke-width=\"2\"/>",
        AX + 4,
        AX + 4,
        height - 30,
        BX + 4,
        BX + 4,
        height - 30
    );
    let mut y = TOP;
    let mut at: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for (i, e) in all.iter().enumerate() {
        if elided > 0 && i == context.len() + MAX / 2 {
            let _ = writeln!(
                s,
                "<text x=\"{AX}\" y=\"{}\" fill=\"#57606a\">… {elided} more steps of the two goroutines …</text>",
                y + 14
            );
            y += ROW;
        }
        let x = if e.g == a && !(a == b && e.step == s2) {
            AX
        } else {
            BX
        };
        let marked = e.step == s1 || e.step == s2;
        let text = match &e.obj {
            Some(o) => format!("{} {o}", e.op),
            None => match &e.detail {
                Some(d) => format!("{} ({d})", e.op),
                None => e.op.clone(),
            },
        };
        let (fill, stroke) = if marked {
            ("#fff8c5", "#bf8700")
        } else {
            ("#eaeef2", "#8c959f")
        };
        let _ = writeln!(
            s,
            "<g class=\"{}\"><text x=\"{STEPX}\" y=\"{}\" fill=\"#57606a\">{}</text><rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"18\" rx=\"4\" fill=\"{fill}\" stroke=\"{stroke}\"/><text x=\"{}\" y=\"{}\">{}</text></g>",
            if marked { "access" } else { "step" },
            y + 13,
            e.step,
            LW - 20,
            x + 6,
            y + 13,
            esc(&clip(&text, 36))
        );
        at.insert(e.step, (x, y));
        y += ROW;
    }
    if let (Some(&(x1, y1)), Some(&(x2, y2))) = (at.get(&s1), at.get(&s2)) {
        let (sx, ex) = if x1 < x2 {
            (x1 + LW - 20, x2)
        } else {
            (x1, x2 + LW - 20)
        };
        let _ = writeln!(
            s,
            "<g class=\"missing-edge\"><path d=\"M{sx},{} L{ex},{}\" stroke=\"#cf222e\" stroke-width=\"2\" stroke-dasharray=\"6 4\" fill=\"none\" marker-end=\"url(#race-arrow)\"/></g>",
            y1 + 9,
            y2 + 9
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{STEPX}\" y=\"{}\" fill=\"#cf222e\">red dashed: the happens-before edge that is missing between the two accesses</text>",
        height - 10
    );
    s.push_str("</svg>\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::WaitEntry;

    fn ev(step: u64, g: usize, op: &str, obj: &str, blocked: bool) -> TraceEntry {
        TraceEntry {
            step,
            g,
            op: op.into(),
            at: "k.rs:1:1".into(),
            obj: Some(obj.into()),
            blocked,
            blocking: true,
            detail: None,
            repeat: None,
        }
    }

    fn failure(
        verdict: &str,
        trace: Vec<TraceEntry>,
        waits: Vec<(usize, &str, &str)>,
        dump: &str,
    ) -> FirstFailure {
        FirstFailure {
            schedule: 1,
            verdict: verdict.into(),
            replay: None,
            preemptions: None,
            message: String::new(),
            dump: dump.into(),
            trace,
            goroutines: vec!["main".into(), "a".into(), "b".into()],
            waits: waits
                .into_iter()
                .map(|(g, state, on)| WaitEntry {
                    g,
                    state: state.into(),
                    on: vec![on.into()],
                })
                .collect(),
            accesses: vec![],
            marks: vec![],
            trace_dropped: 0,
            trace_hidden: 0,
        }
    }

    #[test]
    fn ab_ba_is_a_cycle_of_two() {
        let f = failure(
            "deadlock",
            vec![
                ev(1, 1, "Lock", "A", false),
                ev(2, 2, "Lock", "B", false),
                ev(3, 1, "Lock", "B", true),
                ev(4, 2, "Lock", "A", true),
            ],
            vec![(1, "sync.Mutex.Lock", "B"), (2, "sync.Mutex.Lock", "A")],
            "goroutine 0 \"main\" [sync.WaitGroup.Wait]:\ngoroutine 1 \"a\" [sync.Mutex.Lock]:\ngoroutine 2 \"b\" [sync.Mutex.Lock]:\n",
        );
        let g = WaitFor::of(&f);
        assert_eq!(g.edges.len(), 4, "{:?}", g.edges);
        assert!(g.edges.iter().all(|e| e.cycle), "{:?}", g.edges);
        assert!(g.svg().contains("class=\"edge cycle\""));
    }

    #[test]
    fn locking_twice_is_a_cycle_of_one() {
        let f = failure(
            "deadlock",
            vec![ev(1, 0, "Lock", "mu", false), ev(2, 0, "Lock", "mu", true)],
            vec![(0, "sync.Mutex.Lock", "mu")],
            "goroutine 0 \"main\" [sync.Mutex.Lock]:\n",
        );
        let g = WaitFor::of(&f);
        assert!(g.has_cycle());
        assert!(g
            .edges
            .iter()
            .any(|e| !e.waits && e.g == 0 && e.label == "held by"));
    }

    #[test]
    fn a_send_whose_receiver_returned_has_no_partner() {
        let f = failure(
            "leak",
            vec![ev(1, 0, "recv", "ch", false), ev(2, 1, "send", "ch", true)],
            vec![(1, "chan send", "ch")],
            "goroutine 0 \"main\" [returned]\ngoroutine 1 \"a\" [chan send]:\n",
        );
        let g = WaitFor::of(&f);
        assert!(!g.has_cycle());
        assert_eq!(
            g.objects[0].missing.as_deref(),
            Some("no goroutine left to receive")
        );
        assert!(g
            .edges
            .iter()
            .any(|e| !e.waits && e.g == 0 && e.label == "used it, finished"));
    }

    #[test]
    fn a_waitgroup_shows_the_done_calls_owed() {
        let mut add = ev(1, 0, "Add", "wg", false);
        add.detail = Some("delta 2".into());
        let f = failure(
            "deadlock",
            vec![
                add,
                ev(2, 1, "Done", "wg", false),
                ev(3, 0, "Wait", "wg", true),
            ],
            vec![(0, "sync.WaitGroup.Wait", "wg")],
            "goroutine 0 \"main\" [sync.WaitGroup.Wait]:\ngoroutine 1 \"a\" [finished]\n",
        );
        let g = WaitFor::of(&f);
        assert_eq!(g.objects[0].note.as_deref(), Some("counter 1"));
        assert_eq!(
            g.objects[0].missing.as_deref(),
            Some("1 Done call never came")
        );
    }

    #[test]
    fn a_cond_signalled_only_before_the_last_wait_has_no_partner() {
        let f = failure(
            "leak",
            vec![
                ev(1, 1, "Cond.Wait", "c", true),
                ev(2, 2, "Signal", "c", false),
                ev(3, 1, "Cond.Wait", "c", false),
                ev(4, 1, "Cond.Wait", "c", true),
            ],
            vec![(1, "sync.Cond.Wait", "c")],
            "goroutine 0 \"main\" [returned]\ngoroutine 1 \"a\" [sync.Cond.Wait]:\ngoroutine 2 \"b\" [finished]\n",
        );
        let g = WaitFor::of(&f);
        assert_eq!(
            g.objects[0].missing.as_deref(),
            Some("not signalled since its Wait")
        );
    }

    #[test]
    fn a_race_is_drawn_between_its_two_accesses() {
        let mut f = failure(
            "race",
            vec![
                ev(1, 1, "write", "x", false),
                ev(2, 1, "Unlock", "mu", false),
                ev(3, 2, "read", "x", false),
            ],
            vec![],
            "",
        );
        f.marks = vec![1, 3];
        let svg = svg(&f).expect("a picture");
        assert_eq!(svg.matches("class=\"access\"").count(), 2);
        assert!(svg.contains("Unlock mu"));
        assert!(svg.contains("class=\"missing-edge\""));
    }
}
