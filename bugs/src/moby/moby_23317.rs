#![doc = include_str!("moby_23317.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{Cond, Mutex, WaitGroup};
use primitives::{go_named, select, time, Chan, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_23317",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/23317",
        category: "Traditional (data race: field read after the mutex is released)",
        expected: primitives::Verdict::Race,
        kernel: test_moby23317,
        walkthrough: include_str!("moby_23317.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/docker/b32478488ce6d373e44bb8a6c9cb986c773ad48e.txt"),
        source: Source::Diff("b3247848"),
        fix: Fix::Upstream("b3247848"),
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        review: "faithful: Checked against b3247848 (#23317) and its parent's attach/exit path (container.go, daemon/monitor.go, bytespipe.go): same unlock-then-read of closeErr racing the promise goroutine's second close, fix is the one hunk; faithful; the one mend is made (the dropped no-op stderr attachStream and stdin goroutines are now in Deviations).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An `error`; `EOF` stands for `io.EOF`.
type Error = &'static str;

/// `io.EOF`.
const EOF: Error = "EOF";

/// `ioutils.BytesPipe`: an in-memory pipe whose reader waits on `wait` for data or a close.
struct BytesPipe {
    mu: Mutex,
    wait: Cond<Mutex>,
    buf: Shared<Vec<u8>>,
    buf_len: Shared<usize>,
    /// The error the next `Read` returns; `None` while the pipe is open.
    close_err: Shared<Option<Error>>,
    variant: Variant,
}

impl BytesPipe {
    /// `NewBytesPipe`.
    fn new(variant: Variant) -> Arc<BytesPipe> {
        let mu = Mutex::new().named("bp.mu");
        Arc::new(BytesPipe {
            wait: Cond::new(&mu),
            mu,
            buf: Shared::new(Vec::new()).named("bp.buf"),
            buf_len: Shared::new(0).named("bp.bufLen"),
            close_err: Shared::new(None).named("bp.closeErr"),
            variant,
        })
    }

    /// `CloseWithError`: every later `Read` returns `err` (or `io.EOF`).
    fn close_with_error(&self, err: Option<Error>) {
        self.mu.lock();
        self.close_err.set(Some(err.unwrap_or(EOF)));
        self.wait.broadcast();
        self.mu.unlock();
    }

    /// `Close`.
    fn close(&self) {
        self.close_with_error(None);
    }

    /// `Read`: waits once for data or a close, then copies what is buffered.
    fn read(&self, p: &mut [u8]) -> (usize, Option<Error>) {
        self.mu.lock();
        if self.buf_len.get() == 0 {
            if self.close_err.get().is_some() {
                self.mu.unlock();
                return (0, self.close_err.get());
            }
            self.wait.wait();
            if self.buf_len.get() == 0 && self.close_err.get().is_some() {
                if self.variant.fixed() {
                    let err = self.close_err.get();
                    self.mu.unlock();
                    return (0, err);
                } else {
                    self.mu.unlock();
                    return (0, self.close_err.get());
                }
            }
        }

        let mut n = 0;
        while self.buf_len.get() > 0 && n < p.len() {
            let read = self.buf.write(|b| {
                let k = b.len().min(p.len() - n);
                p[n..n + k].copy_from_slice(&b[..k]);
                b.drain(..k);
                k
            });
            n += read;
            self.buf_len.set(self.buf_len.get() - read);
        }

        self.wait.broadcast();
        self.mu.unlock();
        (n, None)
    }
}

/// `io.Copy(dst, src)`: reads until `io.EOF` (a clean end) or another error.
fn io_copy(dst: &Shared<Vec<u8>>, src: &BytesPipe) -> Option<Error> {
    let mut buf = [0u8; 8];
    loop {
        let (n, err) = src.read(&mut buf);
        if n > 0 {
            dst.write(|d| d.extend_from_slice(&buf[..n]));
        }
        match err {
            Some(EOF) => return None,
            Some(err) => return Some(err),
            None => {}
        }
    }
}

/// `broadcaster.Unbuffered`: the container's stdout, copied to every attached pipe.
struct Unbuffered {
    mu: Mutex,
    writers: Shared<Vec<Arc<BytesPipe>>>,
}

impl Unbuffered {
    /// `Add`.
    fn add(&self, writer: Arc<BytesPipe>) {
        self.mu.lock();
        self.writers.write(|w| w.push(writer));
        self.mu.unlock();
    }

    /// `Clean`: closes and forgets every writer.
    fn clean(&self) {
        self.mu.lock();
        for sw in self.writers.get() {
            sw.close();
        }
        self.writers.set(Vec::new());
        self.mu.unlock();
    }
}

/// `runconfig.StreamConfig` (its stdout only).
struct StreamConfig {
    stdout: Unbuffered,
    variant: Variant,
}

impl StreamConfig {
    /// `StdoutPipe`: a new bytes pipe, added to the stdout broadcaster.
    fn stdout_pipe(&self) -> Arc<BytesPipe> {
        let bytes_pipe = BytesPipe::new(self.variant);
        self.stdout.add(bytes_pipe.clone());
        bytes_pipe
    }

    /// `CloseStreams`.
    fn close_streams(&self) {
        self.stdout.clean();
    }
}

/// `container.attachContext`.
struct AttachContext {
    ctx: Shared<Option<(Context, CancelFunc)>>,
    mu: Mutex,
}

/// `container.Container`, the parts the attach and the exit touch.
struct Container {
    stream_config: Arc<StreamConfig>,
    attach_context: AttachContext,
}

impl Container {
    /// `InitAttachContext`.
    fn init_attach_context(&self) -> Context {
        self.attach_context.mu.lock();
        if self.attach_context.ctx.read(|c| c.is_none()) {
            self.attach_context
                .ctx
                .set(Some(context::with_cancel(&context::background())));
        }
        let ctx = self
            .attach_context
            .ctx
            .read(|c| c.as_ref().unwrap().0.clone());
        self.attach_context.mu.unlock();
        ctx
    }

    /// `CancelAttachContext`.
    fn cancel_attach_context(&self) {
        self.attach_context.mu.lock();
        if let Some((_, cancel)) = self.attach_context.ctx.get() {
            cancel.call();
            self.attach_context.ctx.set(None);
        }
        self.attach_context.mu.unlock();
    }

    /// `Reset(false)`: closes the streams once the container has exited.
    fn reset(&self) {
        self.stream_config.close_streams();
    }
}

/// `AttachStreams` with only `stdout` attached: starts the copy and returns the promise.
fn attach_streams(
    ctx: Context,
    stream_config: &StreamConfig,
    stdout: Shared<Vec<u8>>,
) -> Chan<Option<Error>> {
    let wg = WaitGroup::new().named("wg");
    let errors: Chan<Error> = Chan::new(3).named("errors");

    let c_stdout = stream_config.stdout_pipe();
    wg.add(1);

    // go attachStream("stdout", stdout, cStdout)
    let (stream_pipe, errs, wg2) = (c_stdout.clone(), errors.clone(), wg.clone());
    go_named("attachStream", move || {
        if let Some(err) = io_copy(&stdout, &stream_pipe) {
            errs.send(err);
        }
        stream_pipe.close();
        wg2.done();
    });

    // promise.Go(func() error { ... })
    let promise: Chan<Option<Error>> = Chan::new(1).named("promise");
    let ch = promise.clone();
    go_named("AttachStreams.func3", move || {
        let done: Chan<()> = Chan::new(0).named("done");
        let done2 = done.clone();
        go_named("AttachStreams.func3.1", move || {
            wg.wait();
            done2.close();
        });
        select! {
            recv(done) => {},
            recv(ctx.done()) => {
                // close all pipes
                c_stdout.close();
                done.recv();
            },
        }
        errors.close();
        // for err := range errors { if err != nil { return err } }; return nil
        ch.send(errors.recv());
    });
    promise
}

/// `docker run` in the foreground, then the container is terminated: the daemon attaches the
/// client's stdout, and the exit event closes the streams and cancels the attach context.
fn test_moby23317(variant: Variant) {
    let c = Arc::new(Container {
        stream_config: Arc::new(StreamConfig {
            stdout: Unbuffered {
                mu: Mutex::new().named("Unbuffered.mu"),
                writers: Shared::new(Vec::new()).named("Unbuffered.writers"),
            },
            variant,
        }),
        attach_context: AttachContext {
            ctx: Shared::new(None).named("attachContext.ctx"),
            mu: Mutex::new().named("attachContext.mu"),
        },
    });

    // The attach handler: `container.Attach`.
    let ctx = c.init_attach_context();
    let client_stdout = Shared::new(Vec::new()).named("client stdout");
    let attach_err = attach_streams(ctx, &c.stream_config, client_stdout);

    // The container runs until it is terminated; then libcontainerd's exit event arrives.
    let c2 = c.clone();
    go_named("queue.append.func1", move || {
        time::sleep(Duration::from_secs(1));
        // case libcontainerd.StateExit:
        c2.reset();
        // daemon.Cleanup(c)
        c2.cancel_attach_context();
    });

    let _ = attach_err.recv();
}
