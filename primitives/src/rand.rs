//! `math/rand`: the pseudo-random numbers some kernels branch on.
//!
//! A draw is a choice the engine makes, like the choice among ready `select` cases: shuttle's
//! scheduler draws it (it is part of the schedule, so replays draw the same), `std` draws from
//! the runtime's seeded generator, and loom, which cannot branch on a value, always draws 0
//! (and reports count the draw as a choice loom did not explore).

use std::panic::Location;

use crate::rt::current_exec;
use crate::rt::trace::Op;

/// `rand.Intn(n)`: a number in `0..n`.
///
/// # Panics
///
/// `invalid argument to Intn` if `n` is zero, as Go's does.
#[track_caller]
pub fn intn(n: usize) -> usize {
    let exec = current_exec();
    let mut cx = exec.enter(Location::caller());
    if n == 0 {
        cx.go_panic("invalid argument to Intn");
    }
    let drawn = cx.choose(n, |_| 0);
    let mut b = cx.books();
    cx.event(&mut b, Op::Rand, None, drawn as i64);
    drawn
}

/// `rand.Int()`: a non-negative number (here below 2^31, which is all kernels need).
#[track_caller]
pub fn int() -> usize {
    intn(1 << 31)
}
