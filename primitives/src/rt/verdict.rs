//! Panics and failures: Go panics raised and recovered, and the verdict an execution ends with.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, Location};

use super::trace::{Event, Op, Phase};
use super::{Books, Ctx, ObjMeta, Site};
use crate::engine;
use crate::report::{RaceReport, Verdict};

/// The failure an execution ended in, recorded by whoever found it.
pub(crate) struct Failure {
    pub(crate) verdict: Verdict,
    pub(crate) message: String,
    pub(crate) dump: String,
    pub(crate) race: Option<RaceReport>,
    /// The goroutines as the dump shows them (the execution then unwinds them).
    pub(crate) goroutines: Vec<crate::report::GoroutineInfo>,
}

/// The panic payload that unwinds goroutines once the execution is over.
pub(crate) struct Abort;

/// The payload of a Go runtime panic (`send on closed channel`, ...).
pub(crate) struct GoPanic {
    pub(crate) message: String,
    pub(crate) at: &'static Location<'static>,
}

/// The payload that unwinds a goroutine which called `runtime.Goexit`: its deferred calls run,
/// no `recover` stops it, and the goroutine's end is a normal one.
pub(crate) struct Goexit;

impl Ctx<'_> {
    /// Raises a Go runtime panic (`send on closed channel`, ...) in this goroutine. A message
    /// starting `fatal error:` is Go's `throw`/`fatal` instead: no deferred call runs and no
    /// `recover` stops it.
    pub(crate) fn go_panic(&mut self, message: impl Into<String>) -> ! {
        self.go_panic_on(None, message)
    }

    /// [`Ctx::go_panic`] raised by an operation on `obj` (a map caught being written): the
    /// panic's event names the object, so a report can show who else was using it.
    pub(crate) fn go_panic_on(&mut self, obj: Option<&ObjMeta>, message: impl Into<String>) -> ! {
        let message = message.into();
        let fatal = message.starts_with("fatal error:");
        let at = self.at;
        {
            let mut b = self.books();
            let step = b.step;
            let g = self.gid;
            if let Some(meta) = obj {
                b.note(meta);
            }
            b.trace.push(Event {
                step,
                g,
                op: Op::Panic,
                obj: obj.map(|m| m.id),
                arg: 0,
                at,
                phase: Phase::Done,
            });
        }
        self.release();
        if !fatal {
            set_go_unwinding(true);
        }
        panic::resume_unwind(Box::new(GoPanic { message, at }))
    }

    /// `runtime.Goexit()`: unwinds this goroutine through its deferred calls and ends it
    /// normally (see [`Goexit`]).
    pub(crate) fn goexit(&mut self) -> ! {
        {
            let mut b = self.books();
            self.event(&mut b, Op::Goexit, None, 0);
        }
        self.release();
        set_go_unwinding(true);
        panic::resume_unwind(Box::new(Goexit))
    }

    /// Ends the execution with `verdict` (the first failure wins) and wakes everyone so the
    /// goroutines unwind.
    pub(crate) fn fail(
        &self,
        b: &mut Books,
        verdict: Verdict,
        message: String,
        race: Option<RaceReport>,
    ) {
        if b.failure.is_none() {
            let dump = b.render_dump(Some((self.gid, self.at)));
            let goroutines = b.goroutine_infos();
            b.failure = Some(Failure {
                verdict,
                message,
                dump,
                race,
                goroutines,
            });
        }
        b.abort();
    }
}

/// Whether the calling goroutine is unwinding a Go panic or a Goexit (its deferred calls run
/// then).
pub(crate) fn go_unwinding() -> bool {
    engine::with_current(|c| c.is_some_and(|c| c.go_unwinding.get()))
}

fn set_go_unwinding(on: bool) {
    engine::with_current(|c| {
        if let Some(c) = c {
            c.go_unwinding.set(on);
        }
    });
}

/// Runs a deferred call `f` while the goroutine unwinds a Go panic or a Goexit. A panic or a
/// Goexit escaping `f` replaces the unwinding in flight (as in Go: a panic raised by a deferred
/// call replaces the one in flight; a Goexit in a deferred call during a panic ends the
/// goroutine quietly); a Go fatal error escaping it stops further deferred calls. What `f`
/// does inside (raising and recovering a panic of its own) leaves the unwinding in flight as
/// it was.
pub(crate) fn run_deferred_call(f: impl FnOnce()) {
    // The replacement already pending, if any, is put aside while `f` runs, so that what `f`
    // raises and recovers inside never meets it.
    let pending = engine::with_current(|c| c.map(|c| c.replaced.borrow_mut().take()));
    let result = panic::catch_unwind(panic::AssertUnwindSafe(f));
    let Some(pending) = pending else { return };
    match result {
        Ok(()) => {
            set_go_unwinding(true);
            replace_panic_with(pending);
        }
        Err(payload) => {
            // A panic cannot unwind out of a drop that runs during unwinding: keep it.
            let payload = settle_unwind(payload);
            let fatal = payload
                .downcast_ref::<GoPanic>()
                .is_some_and(|p| p.message.starts_with("fatal error:"));
            let goes_on = payload.is::<GoPanic>() || payload.is::<Goexit>();
            set_go_unwinding(goes_on && !fatal);
            replace_panic_with(Some(payload));
        }
    }
}

fn replace_panic_with(payload: Option<Box<dyn Any + Send>>) {
    engine::with_current(|c| {
        if let Some(c) = c {
            *c.replaced.borrow_mut() = payload;
        }
    });
}

/// The payload a caught unwinding ends with (a replacement raised by a deferred call, if any);
/// the goroutine is no longer unwinding.
pub(crate) fn settle_unwind(payload: Box<dyn Any + Send>) -> Box<dyn Any + Send> {
    engine::with_current(|c| match c {
        Some(c) => {
            c.go_unwinding.set(false);
            c.replaced.borrow_mut().take().unwrap_or(payload)
        }
        None => payload,
    })
}

/// Goes on unwinding a Goexit that a `recover` (or another catch on the way) caught: the
/// goroutine's remaining deferred calls run.
pub(crate) fn resume_goexit(payload: Box<dyn Any + Send>) -> ! {
    set_go_unwinding(true);
    panic::resume_unwind(payload)
}

/// A goroutine's result as its end books it: a Goexit is a normal end.
pub(crate) fn goexit_is_normal_end(
    result: Result<(), Box<dyn Any + Send>>,
) -> Result<(), Box<dyn Any + Send>> {
    match result {
        Err(payload) if payload.is::<Goexit>() => Ok(()),
        other => other,
    }
}

/// Turns a goroutine's unwinding payload into the execution's failure (unless it is `Abort`).
pub(super) fn record_panic(cx: &Ctx<'_>, b: &mut Books, payload: Box<dyn Any + Send>) {
    if payload.is::<Abort>() {
        return;
    }
    let name = b.goroutine_name(cx.gid);
    let (verdict, message, at) = match payload.downcast::<GoPanic>() {
        Ok(p) => (Verdict::Panic, p.message, Some(Site(p.at).to_string())),
        Err(payload) => {
            let caught = take_panic();
            let message = caught
                .as_ref()
                .map(|c| c.message.clone())
                .unwrap_or_else(|| payload_message(&*payload));
            let verdict = if message.starts_with("assertion") {
                Verdict::Assert
            } else {
                Verdict::Panic
            };
            (verdict, message, caught.and_then(|c| c.location))
        }
    };
    let at = at.map(|a| format!(" at {a}")).unwrap_or_default();
    let message = format!("panic: {message} [goroutine {} \"{name}\"{at}]", cx.gid);
    cx.fail(b, verdict, message, None);
}

/// The text of a panic payload, as the default hook would print it.
pub(crate) fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// A panic the hook caught inside an execution (the explorer installs the hook; the runtime
/// reads what it caught when a goroutine unwinds).
pub(crate) struct CaughtPanic {
    pub(crate) message: String,
    pub(crate) location: Option<String>,
}

std::thread_local! {
    static CAUGHT: RefCell<Option<CaughtPanic>> = const { RefCell::new(None) };
}

/// Keeps the panic the hook just caught on this thread.
pub(crate) fn keep_panic(p: CaughtPanic) {
    CAUGHT.with(|c| *c.borrow_mut() = Some(p));
}

/// The last panic caught on this thread inside an execution.
pub(crate) fn take_panic() -> Option<CaughtPanic> {
    CAUGHT.with(|c| c.borrow_mut().take())
}
