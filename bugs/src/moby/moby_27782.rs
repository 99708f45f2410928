#![doc = include_str!("moby_27782.md")]

use std::sync::Arc;

use primitives::context;
use primitives::sync::{AtomicI64, Cond, Mutex, Once};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_27782",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/27782",
        category: "Channel & Condition Variable",
        expected: primitives::Verdict::Leak,
        kernel: test_moby27782,
        walkthrough: include_str!("moby_27782.md"),
        // GoKer has a kernel for this bug (gobench/goker/blocking/moby/27782), but this one is
        // not built from it: see the walkthrough's `## Mapping to upstream`.
        goker: Some("gobench/goker/blocking/moby/27782"),
        asplos: Some("blocking-bugs/docker/a69a59ffc7e3d028a72d1195c2c1535f447eaa84.txt"),
        source: Source::Diff("a69a59ff"),
        fix: Fix::Upstream("a69a59ff"),
        review: "faithful after mends: Checked against a69a59ff and its parent 6314bec6 (read.go, jsonfilelog.go, logger.go, vendored fsnotify inotify.go), GoKer blocking/moby/27782 and native-go.tsv: the IN_MODIFY-before-IN_IGNORED wait of fsnotify `Remove` inside the only `Events` reader, fixed by a69a59ff's goroutine + ctx at the lines it touched; one sentence on rarity ignores the corpus's own 195/200 std figure.",
        file: file!(),
        // Three to four goroutines and many locks: bound 1 keeps loom's search exhaustive.
        budget: Budget { preemption_bound: Some(1), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

// ---- The Linux kernel's side: the log file and its inotify instance ----

const IN_MODIFY: u32 = 0x2;
const IN_IGNORED: u32 = 0x8000;
/// The one watch descriptor of this kernel.
const WD: u32 = 1;

/// An inotify instance: its queue of raw events (what `read` on the fd returns) and whether
/// the watch on the log file is active. `mu` stands for the kernel's own locking.
struct Inotify {
    mu: Mutex,
    watching: Shared<bool>,
    queue: Chan<u32>,
}

impl Inotify {
    fn new() -> Arc<Inotify> {
        Arc::new(Inotify {
            mu: Mutex::new().named("inotify (kernel)"),
            watching: Shared::new(false).named("inotify watch"),
            queue: Chan::new(4).named("inotify fd"),
        })
    }

    /// `inotify_add_watch`.
    fn add_watch(&self) -> u32 {
        self.mu.lock();
        self.watching.set(true);
        self.mu.unlock();
        WD
    }

    /// `inotify_rm_watch`: the watch goes, and `IN_IGNORED` is queued behind pending events.
    fn rm_watch(&self, _wd: u32) -> Result<(), &'static str> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if !self.watching.get() {
            return Err("EINVAL");
        }
        self.watching.set(false);
        self.queue.send(IN_IGNORED);
        Ok(())
    }

    /// A write to the watched file queues `IN_MODIFY`.
    fn modified(&self) {
        self.mu.lock();
        if self.watching.get() {
            self.queue.send(IN_MODIFY);
        }
        self.mu.unlock();
    }
}

/// The container's JSON log file: how many lines it holds.
struct LogFile {
    lines: AtomicI64,
    inotify: Arc<Inotify>,
}

impl LogFile {
    fn write_line(&self) {
        self.lines.add(1);
        self.inotify.modified();
    }
}

// ---- fsnotify (vendored gopkg.in/fsnotify.v1, inotify backend) ----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Write,
    Other,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    op: Op,
}

fn new_event(mask: u32) -> Event {
    Event {
        op: if mask & IN_MODIFY != 0 {
            Op::Write
        } else {
            Op::Other
        },
    }
}

/// fsnotify's `Watcher`.
struct Watcher {
    events: Chan<Event>,
    /// Guards `watches` and `paths`.
    mu: Mutex,
    /// Signalled when `IN_IGNORED` has removed a watch (`Remove` waits for it).
    cv: Cond,
    fd: Arc<Inotify>,
    watches: GoMap<&'static str, u32>,
    paths: GoMap<u32, &'static str>,
    done: Chan<()>,
    done_resp: Chan<()>,
}

impl Watcher {
    /// `NewWatcher`: also starts the goroutine that reads the inotify fd.
    fn new(fd: Arc<Inotify>) -> Arc<Watcher> {
        let mu = Mutex::new().named("Watcher.mu");
        let w = Arc::new(Watcher {
            events: Chan::new(0).named("Events"),
            cv: Cond::new(&mu),
            mu,
            fd,
            watches: GoMap::new().named("watches"),
            paths: GoMap::new().named("paths"),
            done: Chan::new(0).named("done"),
            done_resp: Chan::new(0).named("doneResp"),
        });
        let w2 = w.clone();
        go_named("readEvents", move || w2.read_events());
        w
    }

    fn is_closed(&self) -> bool {
        select! {
            recv(self.done) => true,
            default => false,
        }
    }

    /// `Close`: stops `readEvents` and waits for it.
    fn close(&self) {
        if self.is_closed() {
            return;
        }
        self.done.close();
        // w.poller.wake(): readEvents also selects on done, below.
        self.done_resp.recv();
    }

    /// `Add`: starts watching `name`.
    fn add(&self, name: &'static str) {
        let wd = self.fd.add_watch();
        self.mu.lock();
        self.watches.insert(name, wd);
        self.paths.insert(wd, name);
        self.mu.unlock();
    }

    /// `Remove`: stops watching `name`, and waits until `readEvents` has seen the watch go.
    fn remove(&self, name: &'static str) -> Result<(), &'static str> {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        let Some(wd) = self.watches.get(&name) else {
            return Err("can't remove non-existent inotify watch");
        };
        self.fd.rm_watch(wd)?;
        // Wait until ignoreLinux() has deleted the maps' entries.
        let mut exists = true;
        while exists {
            self.cv.wait();
            exists = self.watches.contains_key(&name);
        }
        Ok(())
    }

    /// `readEvents`: turns raw inotify events into `Event`s on `Events`.
    fn read_events(&self) {
        let _close_done_resp = defer(|| self.done_resp.close());
        let _close_events = defer(|| self.events.close());
        loop {
            if self.is_closed() {
                return;
            }
            // poller.wait() and read(): until the fd has an event or Close wakes the poller.
            let mask = select! {
                recv(self.fd.queue) -> mask => mask.expect("the fd stays open"),
                recv(self.done) => continue,
            };
            if self.is_closed() {
                return;
            }
            self.mu.lock();
            let _name = self.paths.get(&WD);
            self.mu.unlock();
            let event = new_event(mask);
            if !event.ignore_linux(self, WD, mask) {
                select! {
                    send(self.events, event) => {},
                    recv(self.done) => return,
                }
            }
        }
    }
}

impl Event {
    /// `ignoreLinux`: `IN_IGNORED` removes the watch's entries and wakes `Remove`. (A MODIFY
    /// of a file that no longer exists is dropped too; the log file exists.)
    fn ignore_linux(&self, w: &Watcher, wd: u32, mask: u32) -> bool {
        if mask & IN_IGNORED == IN_IGNORED {
            w.mu.lock();
            let _unlock = defer(|| w.mu.unlock());
            if let Some(name) = w.paths.get(&wd) {
                w.paths.remove(&wd);
                w.watches.remove(&name);
            }
            w.cv.broadcast();
            return true;
        }
        false
    }
}

// ---- The daemon: the json-file log driver and its readers ----

/// A decoded log line (its number).
type Message = i64;

/// `logger.LogWatcher`: what a `docker logs -f` client reads from.
struct LogWatcher {
    msg: Chan<Message>,
    close_once: Once,
    close_notifier: Chan<()>,
}

impl LogWatcher {
    fn new() -> Arc<LogWatcher> {
        Arc::new(LogWatcher {
            msg: Chan::new(4).named("LogWatcher.Msg"),
            close_once: Once::new(),
            close_notifier: Chan::new(0).named("closeNotifier"),
        })
    }

    /// `Close`: tells the reader to stop.
    fn close(&self) {
        self.close_once.do_(|| self.close_notifier.close());
    }

    fn watch_close(&self) -> &Chan<()> {
        &self.close_notifier
    }
}

const LOG_PATH: &str = "container-json.log";

/// `JSONFileLogger`: `mu` guards `readers`, and writes to the file.
struct JsonFileLogger {
    mu: Mutex,
    readers: GoMap<usize, Arc<LogWatcher>>,
    file: Arc<LogFile>,
    variant: Variant,
}

impl JsonFileLogger {
    /// `Log`: one line from the container.
    fn log(&self) {
        self.mu.lock();
        self.file.write_line();
        self.mu.unlock();
    }

    /// `ReadLogs` with `Follow`: the reading runs in a goroutine of its own.
    fn read_logs(self: &Arc<Self>) -> Arc<LogWatcher> {
        let log_watcher = LogWatcher::new();
        let (l, lw) = (self.clone(), log_watcher.clone());
        go_named("readLogs", move || l.read_logs_follow(lw));
        log_watcher
    }

    fn read_logs_follow(&self, log_watcher: Arc<LogWatcher>) {
        let _close_msg = defer(|| log_watcher.msg.close());
        self.mu.lock();
        self.readers.insert(0, log_watcher.clone());
        self.mu.unlock();

        follow_logs(&self.file, &log_watcher, self.variant);

        self.mu.lock();
        self.readers.remove(&0);
        self.mu.unlock();
    }

    /// `Close`: the container stopped; its readers are told to stop.
    fn close(&self) {
        self.mu.lock();
        let readers: Vec<(usize, Arc<LogWatcher>)> = self
            .readers
            .with(|m| m.iter().map(|(k, r)| (*k, r.clone())).collect());
        for (k, r) in readers {
            r.close();
            self.readers.remove(&k);
        }
        self.mu.unlock();
    }
}

/// `decodeLogLine`: the next line after `offset`, or EOF.
fn decode_log_line(f: &LogFile, offset: &mut i64) -> Option<Message> {
    if *offset < f.lines.load() {
        *offset += 1;
        Some(*offset)
    } else {
        None // io.EOF
    }
}

/// Why `waitRead` did not simply report a write.
enum WaitErr {
    /// `errRetry`: an event other than a write, rotation or removal.
    Retry,
    /// `errDone`: the reader was closed.
    Done,
}

/// `waitRead`'s handling of a file event.
fn on_event(e: Option<Event>) -> Result<(), WaitErr> {
    match e.map(|e| e.op) {
        // dec = json.NewDecoder(f). (Rename and Remove, for rotations, never happen here.)
        Some(Op::Write) => Ok(()),
        _ => Err(WaitErr::Retry),
    }
}

/// `followLogs`: sends new lines as they are written, until the reader is closed.
fn follow_logs(f: &LogFile, log_watcher: &Arc<LogWatcher>, variant: Variant) {
    let mut offset = 0; // the decoder's position in the file
    let name = LOG_PATH;
    // watchFile(name)
    let file_watcher = Watcher::new(f.inotify.clone());
    file_watcher.add(name);
    let fw = file_watcher.clone();
    let _close = defer(move || {
        // f.Close()
        if variant.fixed() {
            let _ = fw.remove(name);
        }
        fw.close();
    });

    // The fix: a goroutine of its own removes the watch when the reader is closed, and
    // cancels ctx, which is what the selects below wait for instead of WatchClose.
    let (ctx, cancel) = context::with_cancel(&context::background());
    let _cancel = defer({
        let cancel = cancel.clone();
        move || cancel.call()
    });
    if variant.fixed() {
        let (fw, lw, ctx) = (file_watcher.clone(), log_watcher.clone(), ctx.clone());
        go_named("followLogs.func1", move || {
            select! {
                recv(lw.watch_close()) => {
                    let _ = fw.remove(name);
                    cancel.call();
                },
                recv(ctx.done()) => {},
            }
        });
    }
    let closed = if variant.fixed() {
        ctx.done()
    } else {
        log_watcher.watch_close().clone()
    };

    let wait_read = || -> Result<(), WaitErr> {
        if variant.fixed() {
            select! {
                recv(file_watcher.events) -> e => on_event(e),
                recv(closed) => Err(WaitErr::Done),
            }
        } else {
            select! {
                recv(file_watcher.events) -> e => on_event(e),
                recv(closed) => {
                    let _ = file_watcher.remove(name);
                    Err(WaitErr::Done)
                },
            }
        }
    };

    // main loop
    loop {
        let Some(msg) = decode_log_line(f, &mut offset) else {
            // handleDecodeErr(io.EOF): wait for the file to change (on errRetry, wait again).
            loop {
                match wait_read() {
                    Ok(()) => break,
                    Err(WaitErr::Retry) => continue,
                    Err(WaitErr::Done) => return,
                }
            }
            continue;
        };
        select! {
            send(log_watcher.msg, msg) => {},
            recv(closed) => {
                log_watcher.msg.send(msg);
                while let Some(msg) = decode_log_line(f, &mut offset) {
                    log_watcher.msg.send(msg);
                }
                return;
            },
        }
    }
}

/// A container writes its log while `docker logs -f` follows it; then the container stops.
fn test_moby27782(variant: Variant) {
    let l = Arc::new(JsonFileLogger {
        mu: Mutex::new().named("JSONFileLogger.mu"),
        readers: GoMap::new().named("readers"),
        file: Arc::new(LogFile {
            lines: AtomicI64::new(0),
            inotify: Inotify::new(),
        }),
        variant,
    });
    let log_watcher = l.read_logs();
    l.log();
    // The client got the first line: the reader is following the file.
    log_watcher.msg.recv();
    l.log();
    l.close();
}
