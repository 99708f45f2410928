#![doc = include_str!("etcd_3593.md")]

use std::cell::RefCell;
use std::time::Duration;

use primitives::sync::RwMutex;
use primitives::time::{self, Timer};
use primitives::{defer, go_named, goexit, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_3593",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/3593",
        category: "Data race (library: testing's FailNow called off the test goroutine)",
        expected: primitives::Verdict::Race,
        kernel: test_etcd3593,
        walkthrough: include_str!("etcd_3593.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/etcd/5d033c22afdf947649b680ed7ad3c1527432ca9e.txt"),
        source: Source::Test("etcd-io/etcd pkg/transport/timeout_listener_test.go @ 5d033c22^"),
        fix: Fix::Upstream("5d033c22"),
        review: "faithful after mends: Checked against 5d033c22 and its parent 385e1758 (test, timeout_conn/listener, test script, .travis.yml), issue #3576's race report, PRs #3593 and #3625, and etcd's later history (3c1ecf70c, d3ebecddd, b340dfdcb, each read with `git show`). It is the right bug, with the right shape, fix and verdict, and eager timers find the race rather than forcing it. The four source mends are now made in the walkthrough, and the Go-1.4 closure-naming claim is marked as an inference backed by issues #2936 and #6728.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `testing.common` (Go's `src/testing/testing.go` of 2015), reduced to what `Fatal`, `Errorf`
/// and `tRunner` touch.
struct Common {
    /// `mu sync.RWMutex // guards output and failed`.
    mu: RwMutex,
    output: Shared<Vec<String>>,
    failed: Shared<bool>,
    /// Set by `FailNow` and by `tRunner` once the test function returns; read by `tRunner`'s
    /// deferred function. No lock guards it.
    finished: Shared<bool>,
}

/// `*testing.T`.
type T = std::sync::Arc<Common>;

impl Common {
    fn new() -> Self {
        Common {
            mu: RwMutex::new().named("t.mu"),
            output: Shared::new(Vec::new()).named("t.output"),
            failed: Shared::new(false).named("t.failed"),
            finished: Shared::new(false).named("t.finished"),
        }
    }

    /// `c.Fail()`: marks the test failed, under `c.mu`.
    fn fail(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.failed.set(true);
    }

    /// `c.FailNow()`: marks the test failed and finished, and ends the calling goroutine with
    /// `runtime.Goexit` (which is meant to be the test's own: tRunner's deferred function then
    /// reports the test done).
    fn fail_now(&self) {
        self.fail();
        self.finished.set(true);
        goexit();
    }

    /// `c.log(s)`: appends to the test's output, under `c.mu`.
    fn log(&self, s: &str) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.output.write(|o| o.push(s.to_string()));
    }

    /// `c.Fatal(args...)`: `log`, then `FailNow`.
    fn fatal(&self, s: &str) {
        self.log(s);
        self.fail_now();
    }

    /// `c.Errorf(format, args...)`: `log`, then `Fail`.
    fn errorf(&self, s: &str) {
        self.log(s);
        self.fail();
    }
}

/// `tRunner(t, test)`: runs the test function on this goroutine, then marks the test
/// finished; its deferred function tells a test that ended without finishing (`panic(nil)` or
/// a bare `runtime.Goexit`) from one that returned or called `FailNow`.
fn t_runner(t: &T, test: impl FnOnce(&T)) {
    let _done = defer(|| {
        if !t.finished.get() {
            t.fail();
            primitives::panic("test executed panic(nil) or runtime.Goexit");
        }
        // t.signal <- t: RunTests reports the test.
    });
    test(t);
    t.finished.set(true);
}

/// `*net.OpError`, reduced to what the test checks.
#[derive(Clone, Debug, PartialEq)]
struct OpError {
    op: &'static str,
    timeout: bool,
}

/// The connection the listener accepts (a `*net.TCPConn`): its peer never reads or writes, so
/// a write blocks once the socket buffer is full and a read blocks until data comes; either
/// ends at the deadline set before it, or when the connection is closed.
#[derive(Clone)]
struct NetConn {
    /// Closed by `Close`: a blocked `Write` or `Read` returns.
    closing: Chan<()>,
}

impl NetConn {
    /// Blocks until `d` has passed (the deadline) or the connection is closed.
    fn wait(&self, op: &'static str, d: Duration) -> OpError {
        select! {
            recv(self.closing) => OpError { op, timeout: false },
            recv(time::after(d)) => OpError { op, timeout: true },
        }
    }

    fn close(&self) {
        self.closing.close();
    }
}

/// `timeoutConn`: a connection that sets a deadline before each `Write` and `Read`.
#[derive(Clone)]
struct TimeoutConn {
    conn: NetConn,
    wtimeoutd: Duration,
    rdtimeoutd: Duration,
}

impl TimeoutConn {
    /// `c.SetWriteDeadline(time.Now().Add(c.wtimeoutd))`, then `c.Conn.Write(b)`: `b` is
    /// larger than the socket buffer and the peer reads nothing, so the write ends at the
    /// deadline.
    fn write(&self, _b: &[u8]) -> (usize, Option<OpError>) {
        (0, Some(self.conn.wait("write", self.wtimeoutd)))
    }

    /// `c.SetReadDeadline(time.Now().Add(c.rdtimeoutd))`, then `c.Conn.Read(b)`: the peer
    /// sends nothing, so the read ends at the deadline.
    fn read(&self, _b: &mut [u8]) -> (usize, Option<OpError>) {
        (0, Some(self.conn.wait("read", self.rdtimeoutd)))
    }

    fn close(&self) {
        self.conn.close();
    }
}

/// `rwTimeoutListener`: a listener whose accepted connections time out.
struct RwTimeoutListener {
    wtimeoutd: Duration,
    rdtimeoutd: Duration,
}

impl RwTimeoutListener {
    /// `rwln.Accept()`: the listener's next connection (a client has dialled), wrapped.
    fn accept(&self) -> (TimeoutConn, Option<OpError>) {
        let c = NetConn {
            closing: Chan::new(0).named("conn.closing"),
        };
        let conn = TimeoutConn {
            conn: c,
            wtimeoutd: self.wtimeoutd,
            rdtimeoutd: self.rdtimeoutd,
        };
        (conn, None)
    }
}

/// The test's data: in upstream 5 MiB, more than the socket buffer holds.
const DATA_LEN: usize = 64;

/// `TestWriteReadTimeoutListener` (`pkg/transport/timeout_listener_test.go`).
fn test_write_read_timeout_listener(t: &T, variant: Variant) {
    let wln = RwTimeoutListener {
        wtimeoutd: Duration::from_millis(10),
        rdtimeoutd: Duration::from_millis(10),
    };

    let (c, e) = wln.accept();
    let (conn, err) = (Shared::new(c).named("conn"), Shared::new(e).named("err"));
    if err.get().is_some() {
        t.fatal("unexpected accept error");
    }
    let first = conn.get();
    let _close = defer(move || first.close());

    // fill the socket buffer
    let data = vec![0u8; DATA_LEN];
    let done: Chan<()> = if variant.fixed() {
        Chan::new(1).named("done")
    } else {
        Chan::nil()
    };
    let timer: RefCell<Option<Timer>> = RefCell::new(None);
    if variant.fixed() {
        let (c, e, d, data) = (conn.clone(), err.clone(), done.clone(), data.clone());
        go_named("TestWriteReadTimeoutListener.func2", move || {
            e.set(c.get().write(&data).1);
            d.send(());
        });
        select! {
            recv(done) => {},
            recv(time::after(wln.wtimeoutd * 5)) => t.fatal("wait timeout"),
        }
    } else {
        let t = t.clone();
        *timer.borrow_mut() = Some(time::after_func(wln.wtimeoutd * 5, move || {
            t.fatal("wait timeout")
        }));
    }
    let _stop = defer(|| {
        if let Some(timer) = timer.borrow().as_ref() {
            timer.stop();
        }
    });
    if !variant.fixed() {
        err.set(conn.get().write(&data).1);
    }

    if !err.get().is_some_and(|e| e.op == "write" && e.timeout) {
        t.errorf("err = ..., want write i/o timeout error");
    }

    if !variant.fixed() {
        // timer.Reset(wln.rdtimeoutd * 5): Stop, and the same function again.
        let old = timer.borrow_mut().take();
        if let Some(old) = old {
            old.stop();
        }
        let t = t.clone();
        *timer.borrow_mut() = Some(time::after_func(wln.rdtimeoutd * 5, move || {
            t.fatal("wait timeout")
        }));
    }

    let (c, e) = wln.accept();
    conn.set(c);
    err.set(e);
    if err.get().is_some() {
        t.fatal("unexpected accept error");
    }
    let mut buf = [0u8; 10];

    if variant.fixed() {
        let (c, e, d) = (conn.clone(), err.clone(), done.clone());
        go_named("TestWriteReadTimeoutListener.func3", move || {
            e.set(c.get().read(&mut buf).1);
            d.send(());
        });
        select! {
            recv(done) => {},
            recv(time::after(wln.rdtimeoutd * 5)) => t.fatal("wait timeout"),
        }
    } else {
        err.set(conn.get().read(&mut buf).1);
    }

    if !err.get().is_some_and(|e| e.op == "read" && e.timeout) {
        t.errorf("err = ..., want write i/o timeout error");
    }
}

/// The kernel: `tRunner` running the test, on the test's goroutine.
fn test_etcd3593(variant: Variant) {
    let t: T = std::sync::Arc::new(Common::new());
    t_runner(&t, |t| test_write_read_timeout_listener(t, variant));
}
