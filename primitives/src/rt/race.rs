//! The race detector: accesses to plain variables checked against happens-before.
//!
//! For each variable the runtime remembers its last write and the last read of each goroutine
//! since (the FastTrack shape). An access conflicts with a remembered one of another goroutine
//! when at least one of them writes, they are not both `sync/atomic` operations, and the
//! remembered one does not happen before the current goroutine's clock: so a plain access
//! races with an unordered plain write or atomic write, a plain write with any unordered
//! access, and atomic operations never race among themselves (Go's `-race`, which is
//! ThreadSanitizer's rule). The first conflict ends the execution with verdict `race`, like
//! Go's race detector with `halt_on_error=1`.
//!
//! Remembering only the last write stays exact with atomics: every atomic operation on a
//! variable acquires the clocks of the atomic writes before it, so those writes form one chain
//! in happens-before, and an access ordered after the last is ordered after all. An atomic
//! write does not forget the atomic reads it is not ordered after (they do not conflict with
//! it but do with a later plain write).

use std::panic::Location;

use super::clock::Epoch;
use super::{Books, Ctx, ObjMeta};
use crate::mutant::{self, Mutant};
use crate::report::{AccessInfo, RaceReport};

/// How an access touches its variable: what decides whether two accesses conflict, and what a
/// report says of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kind {
    /// The access writes (else it reads).
    pub(crate) write: bool,
    /// A `sync/atomic` operation: it never conflicts with another atomic one.
    pub(crate) atomic: bool,
    /// The Go operation the access stands for, when it is not a plain read or write (`Add`,
    /// `Wait`, `CompareAndSwap`).
    pub(crate) op: Option<&'static str>,
}

impl Kind {
    /// A plain read (`x` in an expression).
    pub(crate) const READ: Kind = Kind {
        write: false,
        atomic: false,
        op: None,
    };
    /// A plain write (`x = v`).
    pub(crate) const WRITE: Kind = Kind {
        write: true,
        atomic: false,
        op: None,
    };

    /// A plain read or write.
    pub(crate) fn plain(write: bool) -> Kind {
        if write {
            Kind::WRITE
        } else {
            Kind::READ
        }
    }

    /// Whether an access of this kind and one of kind `other`, unordered, are a race.
    fn conflicts(self, other: Kind) -> bool {
        let conflicting = if mutant::on(Mutant::RaceReadWriteMissed) {
            self.write && other.write
        } else {
            self.write || other.write
        };
        conflicting && !(self.atomic && other.atomic)
    }
}

/// One remembered access.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Access {
    epoch: Epoch,
    kind: Kind,
    at: &'static Location<'static>,
    step: u64,
}

/// What a variable remembers of its accesses.
#[derive(Default, Debug)]
pub(crate) struct AccessHistory {
    last_write: Option<Access>,
    /// Reads since the last write, per goroutine its latest plain read and its latest atomic
    /// one (an atomic write keeps the atomic reads it is not ordered after).
    reads: Vec<Access>,
}

impl AccessHistory {
    /// Checks the current goroutine's plain access against the history and records it (and
    /// shows it to shuttle-pct's race-directed search). Returns the race, if this access
    /// reveals one.
    pub(crate) fn access(
        &mut self,
        cx: &Ctx<'_>,
        b: &Books,
        write: bool,
        object: &ObjMeta,
    ) -> Option<RaceReport> {
        crate::engine::shuttle_plain_access(object.id, cx.at, write);
        self.access_as(cx, b, Kind::plain(write), object)
    }

    /// Checks the current goroutine's access of kind `kind` against the history and records
    /// it. Returns the race, if this access reveals one.
    pub(crate) fn access_as(
        &mut self,
        cx: &Ctx<'_>,
        b: &Books,
        kind: Kind,
        object: &ObjMeta,
    ) -> Option<RaceReport> {
        let me = cx.gid;
        let clock = &b.goroutines[me].clock;
        let now = Access {
            epoch: Epoch {
                g: me,
                clock: clock.get(me),
            },
            kind,
            at: cx.at,
            step: b.step,
        };
        let unordered = |a: &Access| a.epoch.g != me && !a.epoch.happens_before(clock);
        let races = |a: &Access| kind.conflicts(a.kind) && unordered(a);
        let conflict = match self.last_write.filter(|w| races(w)) {
            Some(w) => Some(w),
            None if kind.write => self.reads.iter().copied().find(|r| races(r)),
            None => None,
        };
        if let Some(previous) = conflict {
            return Some(RaceReport {
                object: object.label(),
                previous: info(b, previous),
                current: info(b, now),
            });
        }
        if kind.write {
            if kind.atomic {
                // What is left unordered here is atomic reads, which a later plain write races.
                self.reads.retain(|r| unordered(r));
            } else {
                self.reads.clear();
            }
            self.last_write = Some(now);
        } else {
            let mine = |r: &&mut Access| r.epoch.g == me && r.kind.atomic == kind.atomic;
            match self.reads.iter_mut().find(mine) {
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
        goroutine: b.goroutine_name(a.epoch.g),
        write: a.kind.write,
        atomic: a.kind.atomic,
        op: a.kind.op,
        at: super::Site(a.at).to_string(),
        step: a.step,
    }
}

/// The one-line message of a race, in the spirit of Go's `WARNING: DATA RACE`.
pub(crate) fn race_message(r: &RaceReport) -> String {
    let kind = |a: &AccessInfo| {
        let atomic = if a.atomic { "atomic " } else { "" };
        let rw = if a.write { "write" } else { "read" };
        match a.op {
            Some(op) => format!("{atomic}{rw} in {op}"),
            None => format!("{atomic}{rw}"),
        }
    };
    format!(
        "DATA RACE on {}: {} at {} by goroutine {} \"{}\" and previous {} at {} by goroutine {} \"{}\"",
        r.object,
        kind(&r.current),
        r.current.at,
        r.current.g,
        r.current.goroutine,
        kind(&r.previous),
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
