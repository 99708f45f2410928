//! The books of an execution: the goroutine table, the objects, the trace, and what a report
//! and a goroutine dump are made of.

use std::fmt::Write as _;
use std::panic::Location;
use std::time::Duration;

use super::clock::VClock;
use super::timer::Timers;
use super::trace::{Op, Phase, Trace};
use super::verdict::Failure;
use super::{
    progress, Deferred, Fired, Gid, Goroutine, ObjId, ObjMeta, Site, Status, WaitReason, Waiter,
    MAIN,
};
use crate::report::{ExecutionReport, GoroutineInfo, TraceEvent, Verdict};

/// Everything the runtime knows about one execution.
pub(crate) struct Books {
    pub(crate) goroutines: Vec<Goroutine>,
    /// Objects by id, filled in when first used.
    pub(crate) objects: Vec<Option<ObjMeta>>,
    /// Go operations so far.
    pub(crate) step: u64,
    pub(crate) trace: Trace,
    /// Virtual time since the execution started.
    pub(crate) now: Duration,
    pub(crate) timers: Timers,
    /// Goroutines of the kernel (not the timer helper) that are runnable; `main` counts until
    /// it returns.
    pub(crate) running: usize,
    /// Threads started by the execution that have not exited (goroutines and the helper).
    pub(crate) live: usize,
    pub(crate) failure: Option<Failure>,
    /// The execution is over: parked goroutines unwind when they wake.
    pub(crate) aborting: bool,
    /// Teardown has begun: the timer helper exits.
    pub(crate) ending: bool,
    pub(crate) main_returned: bool,
    /// The timer helper, once started.
    pub(crate) helper: Option<Gid>,
    /// The runtime's own random state (`std` only).
    pub(crate) rng: u64,
    /// Set when the engine cannot hold the kernel.
    pub(crate) engine_error: Option<String>,
    /// What to do once the lock is released: wake goroutines, start the timer goroutine.
    pub(crate) deferred: Vec<Deferred>,
    /// The goroutine that took the last step, and how many it took in a row.
    pub(crate) last_stepper: Gid,
    pub(crate) streak: u32,
    /// Goroutines of the kernel that have not taken their first step yet.
    pub(crate) unstarted: usize,
    /// Steps that count toward the step bound (see `count_step`).
    pub(crate) bounded_steps: u64,
    /// At the last check, a runnable goroutine had waited long for its turn.
    pub(crate) starving: bool,
    /// Choices Go leaves to chance that loom took by rule instead of branching (see
    /// `Ctx::choose`).
    pub(crate) unexplored_choices: u64,
    /// Whether the goroutines are getting anywhere (livelock detection).
    pub(crate) progress: progress::Progress,
}

impl Books {
    /// Copies an object's facts into the books the first time the object is used.
    pub(crate) fn note(&mut self, meta: &ObjMeta) {
        let i = meta.id as usize;
        if self.objects.len() <= i {
            self.objects.resize(i + 1, None);
        }
        if self.objects[i].is_none() {
            self.objects[i] = Some(meta.clone());
        }
    }

    /// Goroutine `g`'s name: the one it was given, else `main` or `g<N>`.
    pub(crate) fn goroutine_name(&self, g: Gid) -> String {
        match &self.goroutines[g].name {
            Some(name) => name.clone(),
            None if g == MAIN => "main".to_string(),
            None => format!("g{g}"),
        }
    }

    pub(crate) fn label(&self, obj: ObjId) -> String {
        match self.objects.get(obj as usize) {
            Some(Some(meta)) => meta.label(),
            _ => format!("object#{obj}"),
        }
    }

    /// An object as a dump names it: its name, or its kind and where it was made.
    pub(crate) fn describe(&self, obj: ObjId) -> String {
        match self.objects.get(obj as usize) {
            Some(Some(meta)) if meta.name.is_some() => format!("{} {}", meta.kind, meta.label()),
            Some(Some(meta)) => format!("{} made at {}", meta.label(), Site(meta.created_at)),
            _ => format!("object#{obj}"),
        }
    }

    /// Whether `w` still stands for a park of its goroutine that nobody has completed.
    #[inline]
    pub(crate) fn is_waiting(&self, w: Waiter) -> bool {
        let g = &self.goroutines[w.g];
        g.token == w.token && g.fired.is_none() && matches!(g.status, Status::Blocked(_))
    }

    /// Completes the parked operation of `w`'s goroutine and makes it runnable. `deposit` is a
    /// clock it joins when it resumes (the waker's release). The caller checked `is_waiting`.
    pub(crate) fn fire(&mut self, w: Waiter, fired: Fired, deposit: Option<&VClock>) {
        let g = &mut self.goroutines[w.g];
        debug_assert!(g.token == w.token && g.fired.is_none());
        g.fired = Some(fired);
        g.status = Status::Runnable;
        if let Some(c) = deposit {
            match &mut g.deposit {
                Some(d) => d.join(c),
                None => g.deposit = Some(c.clone()),
            }
        }
        let parker = g.parker.clone();
        let system = g.system;
        self.deferred.push(Deferred::Wake(parker));
        if !system {
            self.running += 1;
        }
    }

    /// The first still-valid waiter of `queue`, removed from it.
    pub(crate) fn pop_waiter(
        &self,
        queue: &mut std::collections::VecDeque<Waiter>,
    ) -> Option<Waiter> {
        while let Some(w) = queue.pop_front() {
            if self.is_waiting(w) {
                return Some(w);
            }
        }
        None
    }

    /// Marks the execution over and wakes every goroutine that could be waiting.
    pub(crate) fn abort(&mut self) {
        self.aborting = true;
        for i in 0..self.goroutines.len() {
            if !matches!(self.goroutines[i].status, Status::Finished) {
                self.wake(i);
            }
        }
    }

    /// Wakes goroutine `g` (once the lock is released) to look at the books again.
    pub(crate) fn wake(&mut self, g: Gid) {
        let parker = self.goroutines[g].parker.clone();
        self.deferred.push(Deferred::Wake(parker));
    }

    pub(crate) fn wake_helper(&mut self) {
        if let Some(h) = self.helper {
            self.wake(h);
        }
    }

    /// Goroutines of the kernel, other than main, that have not finished.
    pub(crate) fn unfinished(&self) -> usize {
        self.goroutines
            .iter()
            .skip(1)
            .filter(|g| !g.system && !matches!(g.status, Status::Finished))
            .count()
    }

    /// A uniformly random index below `n`, from the runtime's own generator (`std`).
    pub(crate) fn random(&mut self, n: usize) -> usize {
        // xorshift64*: fast, and good enough to pick among a handful of ready cases.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }

    /// The goroutine dump: one entry per goroutine, blocked ones with their wait and line.
    /// `failing` is the goroutine that found the failure and where, shown as running.
    pub(crate) fn render_dump(&self, failing: Option<(Gid, &'static Location<'static>)>) -> String {
        let mut out = String::new();
        let mut order: Vec<Gid> = (0..self.goroutines.len()).collect();
        // Go lists live goroutines; finished ones go last so the interesting ones lead.
        order.sort_by_key(|&i| matches!(self.goroutines[i].status, Status::Finished));
        for i in order {
            let g = &self.goroutines[i];
            let _ = write!(out, "goroutine {i} \"{}\"", self.goroutine_name(i));
            match &g.status {
                Status::Blocked(w) => {
                    let _ = writeln!(out, " [{}]:", w.reason);
                    let on = w
                        .obj
                        .map(|o| format!(" on {}", self.describe(o)))
                        .unwrap_or_default();
                    let _ = writeln!(out, "\t{} (blocked since step {}{on})", Site(w.at), w.since);
                }
                Status::Runnable => {
                    let state = if failing.map(|f| f.0) == Some(i) {
                        "running"
                    } else {
                        "runnable"
                    };
                    let _ = writeln!(out, " [{state}]:");
                    if let Some((_, at)) = failing.filter(|f| f.0 == i) {
                        let _ = writeln!(out, "\t{}", Site(at));
                    }
                }
                Status::Returned => {
                    let _ = writeln!(out, " [returned]");
                }
                Status::Finished => {
                    let _ = writeln!(out, " [finished]");
                }
            }
            if g.system {
                // The helper is the runtime's; say so rather than let it pass for the kernel's.
                let _ = writeln!(out, "\t(runtime timer goroutine)");
            } else if i != MAIN {
                let _ = writeln!(out, "\tcreated at {}", Site(g.created_at));
            }
        }
        out
    }

    pub(crate) fn goroutine_infos(&self) -> Vec<GoroutineInfo> {
        self.goroutines
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let (state, blocked_at, waiting_on) = match &g.status {
                    Status::Runnable => ("runnable".to_string(), None, Vec::new()),
                    Status::Returned => ("returned".to_string(), None, Vec::new()),
                    Status::Finished => ("finished".to_string(), None, Vec::new()),
                    Status::Blocked(w) => {
                        let on = match (w.obj, w.reason) {
                            (Some(o), _) => vec![self.label(o)],
                            (None, WaitReason::Select) => {
                                g.select_objs.iter().map(|&o| self.label(o)).collect()
                            }
                            (None, _) => Vec::new(),
                        };
                        (w.reason.to_string(), Some(Site(w.at).to_string()), on)
                    }
                };
                GoroutineInfo {
                    id: i,
                    name: self.goroutine_name(i),
                    created_at: Site(g.created_at).to_string(),
                    state,
                    blocked_at,
                    waiting_on,
                    system: g.system,
                }
            })
            .collect()
    }

    pub(super) fn trace_events(&self) -> Vec<TraceEvent> {
        self.trace
            .events
            .iter()
            .map(|e| TraceEvent {
                step: e.step,
                g: e.g,
                op: e.op.name(e.arg),
                obj: e.obj.map(|o| self.label(o)),
                at: match e.op {
                    Op::Exit | Op::Return => String::new(),
                    _ => Site(e.at).to_string(),
                },
                blocked: e.phase == Phase::Blocked,
                blocking_kind: e.op.can_block(),
                detail: match e.op {
                    Op::Go => Some(format!("starts goroutine {}", e.arg)),
                    Op::Select if e.phase == Phase::Done => Some("default".to_string()),
                    Op::Recv | Op::SelectRecv if e.arg == -2 => Some("closed".to_string()),
                    Op::WgAdd if e.arg != -1 => Some(format!("delta {}", e.arg)),
                    Op::TryLock => Some(if e.arg == 1 { "acquired" } else { "busy" }.to_string()),
                    Op::Rand => Some(format!("drew {}", e.arg)),
                    _ => None,
                },
            })
            .collect()
    }
}

impl Books {
    pub(super) fn report(&mut self) -> ExecutionReport {
        let (verdict, message, dump, race, at_failure) = match self.failure.take() {
            Some(f) => (f.verdict, f.message, f.dump, f.race, Some(f.goroutines)),
            None => (Verdict::Clean, String::new(), String::new(), None, None),
        };
        // A clean execution's trace and goroutine table are read by nobody; rendering them is
        // most of an execution's cost on the model checkers, so only failures carry theirs.
        let failed = verdict.is_failure() || self.engine_error.is_some();
        ExecutionReport {
            verdict,
            message,
            dump,
            trace: if failed {
                self.trace_events()
            } else {
                Vec::new()
            },
            trace_dropped: self.trace.dropped,
            goroutines: if failed {
                self.goroutine_infos()
            } else {
                Vec::new()
            },
            at_failure: at_failure.unwrap_or_default(),
            steps: self.step,
            virtual_time: self.now,
            race,
            engine_error: self.engine_error.take(),
            unexplored_choices: self.unexplored_choices,
        }
    }
}
