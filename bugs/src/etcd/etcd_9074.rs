#![doc = include_str!("etcd_9074.md")]

use std::sync::Arc;

use primitives::sync::{Cond, Mutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_9074",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/9074",
        category: "Mixed deadlock (lock & blocking read)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_echo,
        walkthrough: include_str!("etcd_9074.md"),
        asplos: Some("blocking-bugs/etcd/b2a15ec327ead1caf6d6983092dae17e09c88dd1.txt"),
        source: Source::Test("etcd-io/etcd pkg/expect/expect_test.go @ b2a15ec3^"),
        fix: Fix::Upstream("b2a15ec3"),
        review: "faithful after mends: Checked against b2a15ec3 (PR #9074, merge c699470d; = ASPLOS entry), pkg/expect/expect.go and expect_test.go at b2a15ec3^: right lock-held-across-blocking-read deadlock, shape and fix; mends: say upstream's hang is an OS-blocked read (no Go \"all goroutines are asleep\", test timeout instead) and qualify the lesson's claim about Close interrupting reads.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// What a read of a closed `*os.File` returns.
const ERR_FILE_CLOSED: &str = "read /dev/ptmx: file already closed";

/// The master side of the pseudo-terminal: what the child writes, and whether the file is
/// closed. On macOS a read keeps blocking after the child has exited, until the file is
/// closed (the fix's commit message).
struct Pty {
    /// The terminal's buffer: lines the child wrote, not yet read.
    out: Chan<&'static str>,
    /// Closed by `Close`.
    closed: Chan<()>,
}

impl Pty {
    /// `bufio.Reader.ReadString('\n')` on the pty: the next line, or the error of a read on
    /// a closed file.
    fn read_string(&self) -> Result<&'static str, &'static str> {
        select! {
            recv(self.out) -> l => Ok(l.expect("the pty's buffer is never closed")),
            recv(self.closed) => Err(ERR_FILE_CLOSED),
        }
    }

    /// `fpty.Close()`.
    fn close(&self) {
        self.closed.close();
    }
}

/// The child process (`exec.Cmd`): `Wait` returns once it has exited.
struct Cmd {
    exited: Chan<()>,
}

impl Cmd {
    fn wait(&self) -> Result<(), &'static str> {
        self.exited.recv();
        Ok(())
    }
}

/// `pty.Start(cmd)` for `/bin/echo hello world`: the child writes its one line on the
/// terminal and exits.
fn pty_start(args: &'static str) -> (Arc<Cmd>, Arc<Pty>) {
    let cmd = Arc::new(Cmd {
        exited: Chan::new(0).named("cmd exited"),
    });
    let fpty = Arc::new(Pty {
        out: Chan::new(1).named("pty"),
        closed: Chan::new(0).named("fpty closed"),
    });
    let (c, p) = (cmd.clone(), fpty.clone());
    go_named("echo", move || {
        p.out.send(args);
        c.exited.close();
    });
    (cmd, fpty)
}

/// `pkg/expect`'s `ExpectProcess`.
struct ExpectProcess {
    cmd: Shared<Option<Arc<Cmd>>>,
    fpty: Arc<Pty>,
    wg: WaitGroup,

    /// protects accessing fpty (removed by the fix)
    pty_mu: Mutex,
    /// for broadcasting updates are available
    cond: Cond<Mutex>,
    /// protects lines and err
    mu: Mutex,
    lines: Shared<Vec<&'static str>>,
    count: Shared<usize>,
    err: Shared<Option<&'static str>>,
    variant: Variant,
}

/// `NewExpect("/bin/echo", "hello world")`.
fn new_expect(variant: Variant) -> Arc<ExpectProcess> {
    let (cmd, fpty) = pty_start("hello world\r\n");
    let mu = Mutex::new().named("ep.mu");
    let ep = Arc::new(ExpectProcess {
        cmd: Shared::new(Some(cmd)).named("ep.cmd"),
        fpty,
        wg: WaitGroup::new().named("ep.wg"),
        pty_mu: Mutex::new().named("ep.ptyMu"),
        cond: Cond::new(&mu),
        mu,
        lines: Shared::new(Vec::new()).named("ep.lines"),
        count: Shared::new(0).named("ep.count"),
        err: Shared::new(None).named("ep.err"),
        variant,
    });
    ep.wg.add(1);
    let e = ep.clone();
    go_named("read", move || e.read());
    ep
}

impl ExpectProcess {
    fn read(&self) {
        let _done = defer(|| self.wg.done());
        let r = &self.fpty;
        while self.err.get().is_none() {
            let (l, rerr) = if self.variant.fixed() {
                split(r.read_string())
            } else {
                self.pty_mu.lock();
                let read = split(r.read_string());
                self.pty_mu.unlock();
                read
            };
            self.mu.lock();
            self.err.set(rerr);
            if !l.is_empty() {
                self.lines.write(|lines| lines.push(l));
                self.count.set(self.count.get() + 1);
                if self.lines.read(|lines| lines.len()) == 1 {
                    self.cond.signal();
                }
            }
            self.mu.unlock();
        }
        self.cond.signal();
    }

    /// `ExpectFunc`: the first line satisfying `f`.
    fn expect_func(&self, f: impl Fn(&str) -> bool) -> Result<&'static str, &'static str> {
        self.mu.lock();
        loop {
            while self.lines.read(|lines| lines.is_empty()) && self.err.get().is_none() {
                self.cond.wait();
            }
            if self.lines.read(|lines| lines.is_empty()) {
                break;
            }
            let l = self.lines.write(|lines| lines.remove(0));
            if f(l) {
                self.mu.unlock();
                return Ok(l);
            }
        }
        self.mu.unlock();
        Err(self.err.get().unwrap_or(""))
    }

    /// `Expect`: the first line containing `s`.
    fn expect(&self, s: &str) -> Result<&'static str, &'static str> {
        self.expect_func(|txt| txt.contains(s))
    }

    /// `Close`, that is `close(false)`: waits for the process to exit.
    fn close(&self) -> Result<(), &'static str> {
        let Some(cmd) = self.cmd.get() else {
            return match self.err.get() {
                Some(err) => Err(err),
                None => Ok(()),
            };
        };

        let err = cmd.wait();
        if self.variant.fixed() {
            self.fpty.close();
        } else {
            self.pty_mu.lock();
            self.fpty.close();
            self.pty_mu.unlock();
        }
        self.wg.wait();

        self.cmd.set(None);
        err
    }
}

/// `ReadString`'s two results: the line ("" on error) and the error.
fn split(r: Result<&'static str, &'static str>) -> (&'static str, Option<&'static str>) {
    match r {
        Ok(l) => (l, None),
        Err(e) => ("", Some(e)),
    }
}

/// `TestEcho` (`pkg/expect/expect_test.go` at b2a15ec3^).
fn test_echo(variant: Variant) {
    let ep = new_expect(variant);
    let l = ep.expect("world").unwrap_or_else(|e| panic!("{e}"));
    let wstr = "hello world";
    assert_eq!(&l[..wstr.len()], wstr, r#"got "{l}", expected "{wstr}""#);
    if let Err(cerr) = ep.close() {
        panic!("{cerr}");
    }
    assert!(
        ep.expect("...").is_err(),
        "expected error on closed expect process"
    );
}
