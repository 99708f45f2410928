#![doc = include_str!("moby_15965.md")]

use std::cell::Cell;
use std::sync::Arc;

use primitives::sync::{Cond, Mutex};
use primitives::{defer, go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_15965",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/15965",
        category: "Communication deadlock (pipe never closed)",
        expected: primitives::Verdict::Leak,
        kernel: test_moby15965,
        walkthrough: include_str!("moby_15965.md"),
        asplos: Some("blocking-bugs/docker/3037e4f7c4eec06cf3a5afca6f58ec58b4bdd63e.txt"),
        source: Source::Diff("3037e4f7"),
        fix: Fix::Upstream("3037e4f7"),
        review: "faithful: Checked against moby 3037e4f7 (PR #15965) and graph/pull_v2.go and the Dockerfile (Go 1.4.2) at its parent: same copier leak on the success path, pipe follows Go 1.4's io.Pipe, the one-hunk fix is the variant switch, reductions admitted; faithful.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The errors that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Error {
    /// `io.ErrClosedPipe`.
    ClosedPipe,
    /// `io.EOF`.
    Eof,
    /// `errors.New("download canceled")`.
    DownloadCanceled,
}

/// Go 1.4's `io.pipe`: a writer hands its slice over and waits until readers have consumed
/// all of it; a reader waits for a writer, or for the write end to be closed.
struct Pipe {
    /// Gates readers one at a time.
    rl: Mutex,
    /// Gates writers one at a time.
    wl: Mutex,
    /// Guards the fields below.
    l: Mutex,
    /// What is left of the pending write (`nil` when there is none).
    data: Shared<Option<&'static [u8]>>,
    rwait: Cond,
    wwait: Cond,
    /// Set when the read end is closed: the error writes get.
    rerr: Shared<Option<Error>>,
    /// Set when the write end is closed: the error reads get.
    werr: Shared<Option<Error>>,
}

impl Pipe {
    fn read(&self, b: &mut [u8]) -> Result<usize, Error> {
        self.rl.lock();
        let _runlock = defer(|| self.rl.unlock());
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        loop {
            if self.rerr.get().is_some() {
                return Err(Error::ClosedPipe);
            }
            if self.data.get().is_some() {
                break;
            }
            if let Some(err) = self.werr.get() {
                return Err(err);
            }
            self.rwait.wait();
        }
        let data = self.data.get().expect("checked above");
        let n = b.len().min(data.len());
        b[..n].copy_from_slice(&data[..n]);
        if n == data.len() {
            self.data.set(None);
            self.wwait.signal();
        } else {
            self.data.set(Some(&data[n..]));
        }
        Ok(n)
    }

    fn write(&self, b: &'static [u8]) -> Result<usize, Error> {
        self.wl.lock();
        let _wunlock = defer(|| self.wl.unlock());
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        if self.werr.get().is_some() {
            return Err(Error::ClosedPipe);
        }
        self.data.set(Some(b));
        self.rwait.signal();
        let mut err = None;
        loop {
            if self.data.get().is_none() {
                break;
            }
            if let Some(e) = self.rerr.get() {
                err = Some(e);
                break;
            }
            if self.werr.get().is_some() {
                err = Some(Error::ClosedPipe);
            }
            self.wwait.wait();
        }
        let n = b.len() - self.data.get().map_or(0, <[u8]>::len);
        self.data.set(None);
        err.map_or(Ok(n), Err)
    }

    fn rclose(&self, err: Option<Error>) {
        let err = err.unwrap_or(Error::ClosedPipe);
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        self.rerr.set(Some(err));
        self.rwait.signal();
        self.wwait.signal();
    }

    fn wclose(&self, err: Option<Error>) {
        let err = err.unwrap_or(Error::Eof);
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        self.werr.set(Some(err));
        self.rwait.signal();
        self.wwait.signal();
    }
}

/// `io.PipeReader`.
#[derive(Clone)]
struct PipeReader(Arc<Pipe>);

impl PipeReader {
    fn read(&self, b: &mut [u8]) -> Result<usize, Error> {
        self.0.read(b)
    }

    fn close_with_error(&self, err: Error) {
        self.0.rclose(Some(err));
    }
}

/// `io.PipeWriter`.
#[derive(Clone)]
struct PipeWriter(Arc<Pipe>);

impl PipeWriter {
    fn write(&self, b: &'static [u8]) -> Result<usize, Error> {
        self.0.write(b)
    }

    fn close(&self) {
        self.0.wclose(None);
    }

    fn close_with_error(&self, err: Error) {
        self.0.wclose(Some(err));
    }
}

/// `io.Pipe()`.
fn io_pipe() -> (PipeReader, PipeWriter) {
    let l = Mutex::new().named("pipe.l");
    let p = Arc::new(Pipe {
        rl: Mutex::new().named("pipe.rl"),
        wl: Mutex::new().named("pipe.wl"),
        rwait: Cond::new(&l),
        wwait: Cond::new(&l),
        l,
        data: Shared::new(None).named("pipe.data"),
        rerr: Shared::new(None).named("pipe.rerr"),
        werr: Shared::new(None).named("pipe.werr"),
    });
    (PipeReader(p.clone()), PipeWriter(p))
}

/// `out`, the pull's progress stream: a `progressreader.Broadcaster`, whose writes take its
/// mutex. It only counts what it is given.
#[derive(Clone)]
struct Broadcaster(Arc<(Mutex, Shared<usize>)>);

impl Broadcaster {
    fn new() -> Self {
        Broadcaster(Arc::new((
            Mutex::new().named("Broadcaster.mu"),
            Shared::new(0).named("Broadcaster.written"),
        )))
    }

    fn write(&self, b: &[u8]) -> Result<usize, Error> {
        let (mu, written) = &*self.0;
        mu.lock();
        let _unlock = defer(|| mu.unlock());
        written.set(written.get() + b.len());
        Ok(b.len())
    }
}

/// `io.Copy(dst, src)`: copies until `src` reports EOF (`nil`) or another error.
fn io_copy(dst: &Broadcaster, src: &PipeReader) -> Result<usize, Error> {
    let mut buf = [0u8; 32];
    let mut written = 0;
    loop {
        match src.read(&mut buf) {
            Ok(n) => written += dst.write(&buf[..n])?,
            Err(Error::Eof) => return Ok(written),
            Err(err) => return Err(err),
        }
    }
}

/// `downloadInfo`: what `download` hands back to `pullV2Tag`.
struct DownloadInfo {
    err: Chan<Result<(), Error>>,
    /// Download progress is written here: the pipe's write end.
    out: PipeWriter,
}

/// `v2Puller`.
struct V2Puller {
    variant: Variant,
}

impl V2Puller {
    /// `download`: fetches one layer, reporting its progress on `di.out`.
    fn download(&self, di: &DownloadInfo) {
        // The blob is fetched and verified; the progress reader writes as it goes.
        if let Err(err) = di.out.write(b"Download complete") {
            di.err.send(Err(err));
            return;
        }
        di.err.send(Ok(()));
    }

    /// `pullV2Tag`: starts the downloads, with their progress going through a pipe into
    /// `out`, and waits for them.
    fn pull_v2_tag(self: &Arc<Self>, out: &Broadcaster) -> Result<bool, Error> {
        // The named result `err`, read by the deferred function below.
        let err: Cell<Option<Error>> = Cell::new(None);

        let (pipe_reader, pipe_writer) = io_pipe();
        let (out2, reader2) = (out.clone(), pipe_reader.clone());
        go_named("pullV2Tag.func1", move || {
            if let Err(err) = io_copy(&out2, &reader2) {
                // "error copying from layer download progress reader"
                reader2.close_with_error(err);
            }
        });
        let _close_pipe = defer(|| {
            if err.get().is_some() {
                pipe_writer.close_with_error(Error::DownloadCanceled);
            } else if self.variant.fixed() {
                pipe_writer.close();
            }
        });

        let result = (|| {
            let _ = out.write(b"Pulling from library/busybox");

            // One layer, not in the graph yet.
            let _ = out.write(b"Pulling fs layer");
            let d = Arc::new(DownloadInfo {
                err: Chan::new(1).named("downloadInfo.err"),
                out: pipe_writer.clone(),
            });
            let downloads = vec![d.clone()];
            let p = self.clone();
            go_named("download", move || p.download(&d));

            let mut tag_updated = false;
            for d in &downloads {
                d.err.recv().expect("never closed")?;
                // The layer is extracted and registered in the graph.
                let _ = out.write(b"Pull complete");
                tag_updated = true;
            }
            Ok(tag_updated)
        })();
        err.set(result.err());
        result
    }
}

/// One `docker pull` of a one-layer image from a v2 registry, which succeeds.
fn test_moby15965(variant: Variant) {
    let p = Arc::new(V2Puller { variant });
    let out = Broadcaster::new();
    p.pull_v2_tag(&out).expect("pull");
}
