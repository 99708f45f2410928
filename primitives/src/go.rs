//! The `go` statement, and `defer`.

use std::panic::Location;

use crate::rt::spawn_goroutine;

/// `go f()`: starts `f` in a new goroutine. It runs until `f` returns, detached, like a
/// goroutine; the execution waits for it (or reports it leaked) after `main` returns.
///
/// Happens-before: the `go` statement happens before `f` starts.
///
/// # Examples
///
/// ```
/// use primitives::{go, Chan};
/// # primitives::run(|| {
/// let done = Chan::new(0);
/// let d = done.clone();
/// go(move || d.close());
/// assert_eq!(done.recv(), None::<()>);
/// # });
/// ```
#[track_caller]
pub fn go(f: impl FnOnce() + Send + 'static) {
    spawn_goroutine(None, Location::caller(), Box::new(f));
}

/// `go f()`, with a name for the goroutine in dumps, traces and swimlanes (the name of the Go
/// function it runs, say).
#[track_caller]
pub fn go_named(name: &str, f: impl FnOnce() + Send + 'static) {
    spawn_goroutine(Some(name.to_string()), Location::caller(), Box::new(f));
}

/// `runtime.Gosched()`: lets other goroutines run (a scheduling point that deprioritizes the
/// caller under loom and shuttle).
#[track_caller]
pub fn gosched() {
    let exec = crate::rt::current_exec();
    drop(exec.enter(Location::caller()));
    crate::engine::yield_now(exec.kind);
}

/// Go's `defer`: runs `f` when the returned guard is dropped, at the end of the enclosing
/// scope. Bind it to a named variable (`let _unlock = defer(...)`): `let _ = defer(...)` runs
/// `f` at once.
///
/// While the goroutine unwinds a Go panic (a runtime panic or [`panic`](crate::panic())),
/// deferred functions run, as Go's do, so that a [`recover`](crate::recover()) further up
/// finds the state Go would leave. A panic raised by one of them replaces the panic in flight,
/// as in Go. A deferred function does not run while the goroutine unwinds for another reason:
/// the kernel's own assertion failed, or the execution is over and its goroutines are being
/// torn down.
#[must_use = "a defer guard runs its function when dropped; bind it to a named variable"]
pub fn defer<F: FnOnce()>(f: F) -> Defer<F> {
    Defer(Some(f))
}

/// The guard returned by [`defer`].
pub struct Defer<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for Defer<F> {
    fn drop(&mut self) {
        let Some(f) = self.0.take() else { return };
        if !std::thread::panicking() {
            f();
        } else if crate::rt::go_panicking() {
            // A panic cannot unwind out of a drop that runs during unwinding: keep it.
            if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                crate::rt::replace_panic(payload);
            }
        }
    }
}
