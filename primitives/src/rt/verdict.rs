//! Panics and failures: Go panics raised and recovered, and the verdict an execution ends with.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, Location};

use super::trace::{Event, Op, Phase};
use super::{Books, Ctx, Site};
use crate::engine;
use crate::report::{RaceReport, Verdict};

/// The failure an execution ended in, recorded by whoever found it.
pub(crate) struct Failure {
    pub(crate) verdict: Verdict,
    pub(crate) message: String,
    pub(crate) dump: String,
    pub(crate) race: Option<RaceReport>,
}

/// The panic payload that unwinds goroutines once the execution is over.
pub(crate) struct Abort;

/// The payload of a Go runtime panic (`send on closed channel`, ...).
pub(crate) struct GoPanic {
    pub(crate) message: String,
    pub(crate) at: &'static Location<'static>,
}

impl Ctx<'_> {
    /// Raises a Go runtime panic (`send on closed channel`, ...) in this goroutine. A message
    /// starting `fatal error:` is Go's `throw`/`fatal` instead: no deferred call runs and no
    /// `recover` stops it.
    pub(crate) fn go_panic(&mut self, message: impl Into<String>) -> ! {
        let message = message.into();
        let fatal = message.starts_with("fatal error:");
        let at = self.at;
        {
            let mut b = self.books();
            let step = b.step;
            let g = self.gid;
            b.trace.push(Event {
                step,
                g,
                op: Op::Panic,
                obj: None,
                arg: 0,
                at,
                phase: Phase::Done,
            });
        }
        self.release();
        if !fatal {
            engine::with_current(|c| {
                if let Some(c) = c {
                    c.go_panicking.set(true);
                }
            });
        }
        panic::resume_unwind(Box::new(GoPanic { message, at }))
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
            b.failure = Some(Failure {
                verdict,
                message,
                dump,
                race,
            });
        }
        b.abort();
    }
}

/// Whether the calling goroutine is unwinding a Go panic (its deferred calls run then).
pub(crate) fn go_panicking() -> bool {
    engine::with_current(|c| c.is_some_and(|c| c.go_panicking.get()))
}

/// Keeps a panic raised by a deferred call while the goroutine unwinds a Go panic: it cannot
/// unwind from inside the unwinding, and replaces the panic in flight once that is caught.
pub(crate) fn replace_panic(payload: Box<dyn Any + Send>) {
    engine::with_current(|c| {
        if let Some(c) = c {
            *c.replaced.borrow_mut() = Some(payload);
        }
    });
}

/// The payload a caught unwinding ends with (a replacement raised by a deferred call, if any);
/// the goroutine is no longer panicking.
pub(crate) fn settle_unwind(payload: Box<dyn Any + Send>) -> Box<dyn Any + Send> {
    engine::with_current(|c| match c {
        Some(c) => {
            c.go_panicking.set(false);
            c.replaced.borrow_mut().take().unwrap_or(payload)
        }
        None => payload,
    })
}

/// Turns a goroutine's unwinding payload into the execution's failure (unless it is `Abort`).
pub(super) fn record_panic(cx: &Ctx<'_>, b: &mut Books, payload: Box<dyn Any + Send>) {
    if payload.is::<Abort>() {
        return;
    }
    let name = b.goroutines[cx.gid].name.clone();
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
