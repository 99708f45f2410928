#![doc = include_str!("moby_256.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_256",
        project: "moby",
        upstream: "https://github.com/moby/moby/commit/58befe3081726ef74ea09198cd9488fb42c51f51",
        category: "Communication deadlock (pipes drained one after the other)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_cmd_stream_large_stderr,
        walkthrough: include_str!("moby_256.md"),
        goker: None,
        asplos: Some("blocking-bugs/docker/58befe3081726ef74ea09198cd9488fb42c51f51.txt"),
        source: Source::Diff("58befe30"),
        fix: Fix::Upstream("58befe30"),
        review: "faithful after mends: Checked against 58befe30 (merged by fdae64d8, no PR) and archive.go/archive_test.go at its parent: same drain-stdout-then-stderr cycle with the child blocked on a full stderr pipe, fix mapped hunk by hunk; Go would not detect the hang (admitted); the mends are made: the test comment is quoted correctly (\"main failure mode\", with 68278b66's timeout) and the merge commit and the id's origin are cited.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// One `dd` block (`bs=1k`); its bytes do not matter, only that it takes pipe space.
type Block = Vec<u8>;

/// How many blocks an OS pipe holds before a writer blocks (Linux: 64 KiB), shrunk.
const PIPE_CAPACITY: usize = 2;

/// How many blocks the command writes to stderr (`count=1000`), shrunk: more than a pipe holds.
const STDERR_BLOCKS: usize = 3;

/// An `error`.
type Error = String;

/// `exec.Cmd` running `/bin/sh -c "dd if=/dev/zero bs=1k count=1000 of=/dev/stderr; echo
/// hello"`: the child's stdout and stderr are OS pipes, here channels of the pipe's capacity.
struct Cmd {
    stdout: Chan<Block>,
    stderr: Chan<Block>,
    /// The child's exit status, for `Wait`.
    exited: Chan<i32>,
}

impl Cmd {
    /// `exec.Command`.
    fn new() -> Arc<Cmd> {
        Arc::new(Cmd {
            stdout: Chan::new(PIPE_CAPACITY).named("stdout pipe"),
            stderr: Chan::new(PIPE_CAPACITY).named("stderr pipe"),
            exited: Chan::new(1).named("exit status"),
        })
    }

    /// `StdoutPipe`: the read end of the child's stdout.
    fn stdout_pipe(&self) -> Chan<Block> {
        self.stdout.clone()
    }

    /// `StderrPipe`: the read end of the child's stderr.
    fn stderr_pipe(&self) -> Chan<Block> {
        self.stderr.clone()
    }

    /// `Start`: the child process runs the shell script.
    fn start(self: &Arc<Self>) {
        let cmd = self.clone();
        go_named("sh", move || {
            // dd if=/dev/zero bs=1k count=1000 of=/dev/stderr
            for _ in 0..STDERR_BLOCKS {
                cmd.stderr.send(vec![0; 1024]);
            }
            // echo hello
            cmd.stdout.send(b"hello\n".to_vec());
            // exit 0: the kernel closes the process's ends of its pipes.
            cmd.stdout.close();
            cmd.stderr.close();
            cmd.exited.send(0);
        });
    }

    /// `Wait`: waits for the child to exit.
    fn wait(&self) -> Result<(), Error> {
        match self.exited.recv() {
            Some(0) => Ok(()),
            status => Err(format!("exit status {status:?}")),
        }
    }
}

/// `io.Pipe`: a synchronous in-memory pipe; a write waits for a reader.
struct Pipe {
    data: Chan<Block>,
    mu: Mutex,
    closed: Shared<bool>,
    err: Shared<Option<Error>>,
}

impl Pipe {
    fn new() -> Arc<Pipe> {
        Arc::new(Pipe {
            data: Chan::new(0).named("io.Pipe"),
            mu: Mutex::new().named("pipe.mu"),
            closed: Shared::new(false).named("pipe.closed"),
            err: Shared::new(None).named("pipe.err"),
        })
    }

    /// `PipeWriter.Write`.
    fn write(&self, b: Block) {
        self.data.send(b);
    }

    /// `PipeWriter.CloseWithError` (`Close` is `CloseWithError(nil)`); closing twice is allowed.
    fn close_with_error(&self, err: Option<Error>) {
        self.mu.lock();
        if !self.closed.get() {
            self.closed.set(true);
            self.err.set(err);
            self.data.close();
        }
        self.mu.unlock();
    }

    /// `PipeReader.Read`: a block, or `None` and the error the writer closed with (`None`
    /// for `io.EOF`).
    fn read(&self) -> Result<Option<Block>, Error> {
        match self.data.recv() {
            Some(b) => Ok(Some(b)),
            None => match self.err.get() {
                Some(err) => Err(err),
                None => Ok(None),
            },
        }
    }
}

/// `io.Copy(pipeW, stdout)`.
fn io_copy_to_pipe(dst: &Pipe, src: &Chan<Block>) -> Result<(), Error> {
    while let Some(b) = src.recv() {
        dst.write(b);
    }
    Ok(())
}

/// `ioutil.ReadAll(stderr)`.
fn read_all(src: &Chan<Block>) -> Result<Vec<u8>, Error> {
    let mut all = Vec::new();
    while let Some(b) = src.recv() {
        all.extend_from_slice(&b);
    }
    Ok(all)
}

/// `CmdStream`: runs `cmd` and returns a reader of its stdout; the reader fails with the
/// command's stderr if the command fails.
fn cmd_stream(cmd: &Arc<Cmd>, variant: Variant) -> Result<Arc<Pipe>, Error> {
    let stdout = cmd.stdout_pipe();
    let stderr = cmd.stderr_pipe();
    let pipe = Pipe::new();
    let pipe_w = pipe.clone();
    let cmd2 = cmd.clone();
    let err_chan: Chan<Vec<u8>> = if variant.fixed() {
        Chan::new(0).named("errChan")
    } else {
        Chan::nil()
    };
    if variant.fixed() {
        let (stderr, err_chan) = (stderr.clone(), err_chan.clone());
        go_named("CmdStream.func1", move || {
            let err_text = read_all(&stderr)
                .unwrap_or_else(|e| format!("(...couldn't fetch stderr: {e})").into_bytes());
            err_chan.send(err_text);
        });
    }
    let name = if variant.fixed() {
        "CmdStream.func2"
    } else {
        "CmdStream.func1"
    };
    go_named(name, move || {
        if let Err(err) = io_copy_to_pipe(&pipe_w, &stdout) {
            pipe_w.close_with_error(Some(err));
        }
        let err_text = if variant.fixed() {
            err_chan.recv().unwrap_or_default()
        } else {
            read_all(&stderr)
                .unwrap_or_else(|e| format!("(...couldn't fetch stderr: {e})").into_bytes())
        };
        match cmd2.wait() {
            Err(err) => pipe_w.close_with_error(Some(format!(
                "{err}: {}",
                String::from_utf8_lossy(&err_text)
            ))),
            Ok(()) => pipe_w.close_with_error(None),
        }
    });
    cmd.start();
    Ok(pipe)
}

/// `TestCmdStreamLargeStderr` (added by the fix): the command fills stderr before it writes
/// its one line to stdout; the test reads the stream to its end.
fn test_cmd_stream_large_stderr(variant: Variant) {
    let cmd = Cmd::new();
    let out = cmd_stream(&cmd, variant).expect("Failed to start command");
    // io.Copy(ioutil.Discard, out)
    while let Ok(Some(_)) = out.read() {}
}
