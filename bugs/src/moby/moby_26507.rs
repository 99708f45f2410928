#![doc = include_str!("moby_26507.md")]

use std::sync::Arc;

use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_26507",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/26507",
        category: "Traditional (data race: two writers share an unsynchronised buffer)",
        expected: primitives::Verdict::Race,
        kernel: test_moby26507,
        walkthrough: include_str!("moby_26507.md"),
        goker: None,
        asplos: None,
        source: Source::Diff("c3319445"),
        fix: Fix::Upstream("c3319445"),
        review: "faithful after mends: Checked against c3319445 (#26596) and its parent, #26507's own 49dc97db/9366ba24 on 1.12.x, and issues #26384/#26361: the right race, fix and verdict; the mends are made: the false \"#26507 not in the mirror\" claim is replaced (49dc97db/9366ba24 cited), `main` is mapped to the probe goroutine (health.go:158, not :233), and the dropped stdin goroutine is listed.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `maxOutputLen`: how much probe output is kept (4096 upstream).
const MAX_OUTPUT_LEN: usize = 4096;

/// `limitedBuffer`: the health probe's output, capped at `maxOutputLen` bytes.
struct LimitedBuffer {
    buf: Shared<Vec<u8>>,
    mu: Mutex,
    /// Whether data has been dropped.
    truncated: Shared<bool>,
    variant: Variant,
}

impl LimitedBuffer {
    /// `Write`: appends while there is room.
    fn write(&self, data: &[u8]) -> usize {
        let _unlock = if self.variant.fixed() {
            self.mu.lock();
            Some(defer(|| self.mu.unlock()))
        } else {
            None
        };

        let buf_len = self.buf.read(|b| b.len());
        let data_len = data.len();
        let keep = (MAX_OUTPUT_LEN as isize - buf_len as isize).min(data_len as isize);
        if keep > 0 {
            self.buf
                .write(|b| b.extend_from_slice(&data[..keep as usize]));
        }
        if keep < data_len as isize {
            self.truncated.set(true);
        }
        data_len
    }

    /// `String`: the contents, with "..." if something was dropped.
    fn string(&self) -> String {
        let _unlock = if self.variant.fixed() {
            self.mu.lock();
            Some(defer(|| self.mu.unlock()))
        } else {
            None
        };

        let mut out = self.buf.read(|b| String::from_utf8_lossy(b).into_owned());
        if self.truncated.get() {
            out.push_str("...");
        }
        out
    }
}

/// `io.Copy(stream, streamPipe)`.
fn io_copy(dst: &LimitedBuffer, src: &Chan<Vec<u8>>) {
    while let Some(b) = src.recv() {
        dst.write(&b);
    }
}

/// `AttachStreams` for an exec with stdout and stderr and no stdin: one copy per stream into
/// the caller's writers, and a promise that resolves when both are done.
fn attach_streams(
    c_stdout: Chan<Vec<u8>>,
    c_stderr: Chan<Vec<u8>>,
    stdout: Arc<LimitedBuffer>,
    stderr: Arc<LimitedBuffer>,
) -> Chan<Option<String>> {
    let wg = WaitGroup::new().named("wg");
    wg.add(1);
    wg.add(1);

    // go attachStream("stdout", stdout, cStdout); go attachStream("stderr", stderr, cStderr)
    for (stream, stream_pipe) in [(stdout, c_stdout), (stderr, c_stderr)] {
        let wg = wg.clone();
        go_named("attachStream", move || {
            io_copy(&stream, &stream_pipe);
            wg.done();
        });
    }

    // promise.Go(func() error { ... })
    let promise: Chan<Option<String>> = Chan::new(1).named("attachErr");
    let ch = promise.clone();
    go_named("AttachStreams.func3", move || {
        wg.wait();
        ch.send(None);
    });
    promise
}

/// `cmdProbe.run`: a container's `HEALTHCHECK` command that writes to both stdout and stderr
/// (in issue #26384, `curl -f ...` without redirections).
fn test_moby26507(variant: Variant) {
    // The exec's stdout and stderr streams.
    let c_stdout: Chan<Vec<u8>> = Chan::new(1).named("exec stdout");
    let c_stderr: Chan<Vec<u8>> = Chan::new(1).named("exec stderr");

    // output := &limitedBuffer{}
    let output = Arc::new(LimitedBuffer {
        buf: Shared::new(Vec::new()).named("limitedBuffer.buf"),
        mu: Mutex::new().named("limitedBuffer.mu"),
        truncated: Shared::new(false).named("limitedBuffer.truncated"),
        variant,
    });

    // d.ContainerExecStart(ctx, execConfig.ID, nil, output, output)
    let attach_err = attach_streams(
        c_stdout.clone(),
        c_stderr.clone(),
        output.clone(),
        output.clone(),
    );
    // The health check command runs in the container and writes to both streams.
    go_named("healthcheck command", move || {
        c_stdout.send(b"out".to_vec());
        c_stderr.send(b"err".to_vec());
        c_stdout.close();
        c_stderr.close();
    });
    let _ = attach_err.recv();

    let _out = output.string();
}
