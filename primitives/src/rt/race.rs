//! The race detector: accesses to plain variables checked against happens-before.
//!
//! For each variable the runtime remembers its last write and the last read of each goroutine
//! since (the FastTrack shape). An access conflicts with a remembered one of another goroutine
//! when at least one of them writes and the remembered one does not happen before the current
//! goroutine's clock. The first conflict ends the execution with verdict `race`, like Go's race
//! detector with `halt_on_error=1`.

use std::panic::Location;

use super::clock::Epoch;
use super::{Books, Ctx};
use crate::report::{AccessInfo, RaceReport};

/// One remembered access.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Access {
    epoch: Epoch,
    write: bool,
    at: &'static Location<'static>,
    step: u64,
}

/// What a variable remembers of its accesses.
#[derive(Default, Debug)]
pub(crate) struct AccessHistory {
    last_write: Option<Access>,
    /// Reads since the last write, one per goroutine (its latest).
    reads: Vec<Access>,
}

impl AccessHistory {
    /// Checks the current goroutine's access against the history and records it. Returns the
    /// race, if this access reveals one.
    pub(crate) fn access(
        &mut self,
        cx: &Ctx<'_>,
        b: &Books,
        write: bool,
        object: &str,
    ) -> Option<RaceReport> {
        let me = cx.gid;
        let clock = &b.goroutines[me].clock;
        let now = Access {
            epoch: Epoch {
                g: me,
                clock: clock.get(me),
            },
            write,
            at: cx.at,
            step: b.step,
        };
        let unordered = |a: &Access| a.epoch.g != me && !a.epoch.happens_before(clock);
        let conflict = match self.last_write.filter(|w| unordered(w)) {
            Some(w) => Some(w),
            None if write => self.reads.iter().copied().find(|r| unordered(r)),
            None => None,
        };
        if let Some(previous) = conflict {
            return Some(RaceReport {
                object: object.to_string(),
                previous: info(b, previous),
                current: info(b, now),
            });
        }
        if write {
            self.last_write = Some(now);
            self.reads.clear();
        } else {
            match self.reads.iter_mut().find(|r| r.epoch.g == me) {
                Some(r) => *r = now,
                None => self.reads.push(now),
            }
        }
        None
    }
}

fn info(b: &Books, a: Access) -> AccessInfo {
    AccessInfo {
        g: a.epoch.g,
        goroutine: b.goroutines[a.epoch.g].name.clone(),
        write: a.write,
        at: super::Site(a.at).to_string(),
        step: a.step,
    }
}

/// The one-line message of a race, in the spirit of Go's `WARNING: DATA RACE`.
pub(crate) fn race_message(r: &RaceReport) -> String {
    let kind = |w: bool| if w { "write" } else { "read" };
    format!(
        "DATA RACE on {}: {} at {} by goroutine {} \"{}\" and previous {} at {} by goroutine {} \"{}\"",
        r.object,
        kind(r.current.write),
        r.current.at,
        r.current.g,
        r.current.goroutine,
        kind(r.previous.write),
        r.previous.at,
        r.previous.g,
        r.previous.goroutine
    )
}

impl Ctx<'_> {
    /// Ends the execution with the race `r`, found at this goroutine's access `op`.
    pub(crate) fn race(&mut self, r: RaceReport, op: super::trace::Op, obj: &super::ObjMeta) -> ! {
        {
            let mut b = self.books();
            self.event(&mut b, op, Some(obj), 0);
            let message = race_message(&r);
            self.fail(&mut b, crate::report::Verdict::Race, message, Some(r));
        }
        self.unwind()
    }
}
