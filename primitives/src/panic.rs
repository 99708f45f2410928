//! Go's `panic` and `recover`.
//!
//! A Go panic unwinds its goroutine, running its deferred calls ([`defer`](crate::defer)); if a
//! deferred `recover()` stops it, the function returns normally, else the program dies with
//! `panic: <value>` (verdict `panic`). Go's idiom
//!
//! ```go
//! func f() (err error) {
//!     defer func() {
//!         if r := recover(); r != nil {
//!             err = fmt.Errorf("recovered: %v", r)
//!         }
//!     }()
//!     ...
//! }
//! ```
//!
//! is written `recover(|| { ... })`, which returns `Err` with the panic's value where the Go
//! function would have recovered. Runtime panics (`send on closed channel`, ...) and
//! [`panic`](panic()) can be recovered; Go's fatal errors (`fatal error: sync: unlock of
//! unlocked mutex`, `fatal error: concurrent map writes`) cannot, and run no deferred call; a
//! failed Rust assertion in a kernel is the corpus's own check (verdict `assert`) and cannot.
//! A [`goexit`](crate::goexit) is not a panic: `recover` lets it go on (Go's `recover()`
//! returns nil during a Goexit).

use std::fmt;
use std::panic::{self, Location};

use crate::rt::trace::Op;
use crate::rt::{current_exec, resume_goexit, settle_unwind, GoPanic, Goexit, Site};

/// Go's `panic(v)`: starts a Go panic with `v`'s text as its value.
#[track_caller]
pub fn panic(value: impl fmt::Display) -> ! {
    let exec = current_exec();
    let mut cx = exec.enter(Location::caller());
    cx.go_panic(value.to_string())
}

/// The value of a recovered panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The panic's value, as Go would print it (`send on closed channel`).
    pub value: String,
    /// Where it was raised.
    pub at: String,
}

impl fmt::Display for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// Runs `body` as the body of a Go function whose first statement is
/// `defer func() { r := recover() ... }()`: `Ok` with its result if it returns, `Err` with the
/// panic's value if a Go panic unwound it (its deferred calls have run). A
/// [`goexit`](crate::goexit) in `body` goes on through: `recover` does not stop it.
#[track_caller]
pub fn recover<T>(body: impl FnOnce() -> T) -> Result<T, Recovered> {
    let at = Location::caller();
    match panic::catch_unwind(panic::AssertUnwindSafe(body)) {
        Ok(v) => Ok(v),
        Err(payload) => match settle_unwind(payload).downcast::<GoPanic>() {
            // Go's fatal errors (`throw`) are not panics: nothing recovers them.
            Ok(p) if p.message.starts_with("fatal error:") => panic::resume_unwind(p),
            Ok(p) => {
                let exec = current_exec();
                let cx = exec.enter(at);
                let mut b = cx.books();
                cx.event(&mut b, Op::Recover, None, 0);
                Err(Recovered {
                    value: p.message,
                    at: Site(p.at).to_string(),
                })
            }
            Err(other) if other.is::<Goexit>() => resume_goexit(other),
            Err(other) => panic::resume_unwind(other),
        },
    }
}
