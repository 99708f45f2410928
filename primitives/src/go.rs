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

/// `runtime.Goexit()`: ends the calling goroutine after running all its deferred calls
/// ([`defer`] guards run as they do while a Go panic unwinds). It is not a panic: a
/// [`recover`](crate::recover()) on the way does not stop it (Go's `recover()` returns nil
/// during a Goexit) and lets it go on, and the goroutine's end is a normal one (no verdict; a
/// deferred `wg.Done()` lets `Wait` return). A Go panic raised by a deferred call on the way
/// replaces the Goexit, as in Go: the goroutine then dies of that panic unless a `recover`
/// further up stops it; that `recover` returns `Err` and its function returns normally, the
/// Goexit forgotten, as in Go before 1.14 (since Go 1.14, golang/go#29226, the Goexit resumes
/// once the recovering deferred call returns).
///
/// On the kernel's main body: the body stands for a Go test function, which `go test` runs on
/// its own goroutine (`tRunner`), so `goexit` there ends the test function, and the execution
/// goes on as after main returns: the other goroutines run to their end, and those that stay
/// blocked are a leak. This is not what Go does in a program's `func main`, where the program
/// keeps running its other goroutines and dies with `fatal error: no goroutines (main called
/// runtime.Goexit) - deadlock!` once they have all ended; nor does it model the `testing`
/// package's own bookkeeping (`t.FailNow` marks the test failed before its Goexit, and
/// `tRunner` reports a bare Goexit as `test executed panic(nil) or runtime.Goexit`): a kernel
/// that needs those ports them.
///
/// # Examples
///
/// ```
/// use primitives::{defer, go, goexit, Chan};
/// # primitives::run(|| {
/// let done = Chan::new(0);
/// let d = done.clone();
/// go(move || {
///     let _signal = defer(move || d.close());
///     goexit();
/// });
/// assert_eq!(done.recv(), None::<()>); // the deferred close ran
/// # });
/// ```
#[track_caller]
pub fn goexit() -> ! {
    let exec = crate::rt::current_exec();
    let mut cx = exec.enter(Location::caller());
    cx.goexit()
}

/// Go's `defer`: runs `f` when the returned guard is dropped, at the end of the enclosing
/// scope. Bind it to a named variable (`let _unlock = defer(...)`): `let _ = defer(...)` runs
/// `f` at once.
///
/// While the goroutine unwinds a Go panic (a runtime panic or [`panic`](crate::panic())) or a
/// [`goexit`], deferred functions run, as Go's do, so that a [`recover`](crate::recover())
/// further up finds the state Go would leave. A panic raised by one of them replaces the panic
/// (or the Goexit) in flight, as in Go. A deferred function does not run while the goroutine
/// unwinds for another reason: the kernel's own assertion failed, or the execution is over and
/// its goroutines are being torn down.
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
        } else if crate::rt::go_unwinding() {
            crate::rt::run_deferred_call(f);
        }
    }
}
