#![doc = include_str!("moby_21311.md")]

use std::cell::Cell;
use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, GoMap};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_21311",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/21311",
        category: "Order violation (channel closed while a goroutine still sends)",
        expected: primitives::Verdict::Panic,
        kernel: test_follow_journal_logs,
        walkthrough: include_str!("moby_21311.md"),
        goker: None,
        asplos: Some(
            "non-blocking-bugs/docker/4d200cd6938c1416e34bf43576b0d528b73e8ba3.txt;\
             non-blocking-bugs/docker/52c0f36f7b7aa794932fa41dfe50dc85f78e6146.txt",
        ),
        source: Source::Diff("52c0f36f"),
        fix: Fix::Upstream("#21311"),
        review: "faithful after mends: Checked against moby #21311 (4d200cd6, 52c0f36f, merge 8ef56e1f) and journald/read.go at 4d200cd6^: right send-on-closed-Msg order violation, both fix commits mapped as small switches; mend one false history sentence and the header wording.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `logWatcherBufferSize`.
const LOG_WATCHER_BUFFER_SIZE: usize = 4096;

/// The key of `readers` (upstream keys the map by the `*LogWatcher` pointer).
type WatcherId = u32;

/// `logger.LogWatcher`: what a reader of a container's logs is given.
struct LogWatcher {
    id: WatcherId,
    /// For sending log messages to a reader.
    msg: Chan<&'static str>,
    close_notifier: Chan<()>,
}

impl LogWatcher {
    /// `NewLogWatcher`.
    fn new(id: WatcherId) -> Arc<LogWatcher> {
        Arc::new(LogWatcher {
            id,
            msg: Chan::new(LOG_WATCHER_BUFFER_SIZE).named("logWatcher.Msg"),
            close_notifier: Chan::new(0).named("closeNotifier"),
        })
    }

    /// `Close`: notifies the log reader to stop (only once).
    fn close(&self) {
        select! {
            recv(self.close_notifier) => {},
            default => self.close_notifier.close(),
        }
    }

    /// `WatchClose`.
    fn watch_close(&self) -> &Chan<()> {
        &self.close_notifier
    }
}

/// The systemd journal behind the cgo handle `*C.sd_journal`: its entries for the container,
/// and its file descriptor, readable when entries were appended.
struct SdJournal {
    /// The entries not yet read, in order.
    entries: Chan<&'static str>,
    fd: Chan<()>,
}

impl SdJournal {
    /// The container's logging driver writes an entry (journald's `Log`).
    fn append(&self, line: &'static str) {
        self.entries.send(line);
        select! {
            send(self.fd, ()) => {},
            default => {},
        }
    }
}

/// The close-notification pipe, `pfd`: closing its write end wakes the poll with `POLLHUP`.
type Pipe = Chan<()>;

/// The C helper `wait_for_data_or_close`: 1 when entries were appended, 0 when the pipe was
/// closed (checked first).
fn wait_for_data_or_close(j: &SdJournal, pipefd: &Pipe) -> i32 {
    select! {
        recv(pipefd) => {},
        recv(j.fd) => {},
    }
    select! {
        recv(pipefd) => 0,
        default => 1,
    }
}

/// `readerList`.
struct ReaderList {
    mu: Mutex,
    readers: GoMap<WatcherId, Arc<LogWatcher>>,
}

/// The journald logging driver.
struct Journald {
    readers: ReaderList,
    variant: Variant,
}

impl Journald {
    /// `drainJournal`: sends every entry from the cursor on down `Msg`.
    fn drain_journal(&self, log_watcher: &LogWatcher, j: &SdJournal) {
        loop {
            select! {
                recv(j.entries) -> line => log_watcher.msg.send(line.expect("never closed")),
                default => break,
            }
        }
    }

    /// `followJournal`: a worker copies new entries until told to stop.
    fn follow_journal(self: &Arc<Self>, log_watcher: &Arc<LogWatcher>, j: &Arc<SdJournal>) {
        let pfd: Pipe = Chan::new(0).named("pfd");
        if self.variant.fixed() {
            self.readers.mu.lock();
            self.readers
                .readers
                .insert(log_watcher.id, log_watcher.clone());
            self.readers.mu.unlock();
        }
        {
            let (s, log_watcher, j, pfd) =
                (self.clone(), log_watcher.clone(), j.clone(), pfd.clone());
            go_named("followJournal worker", move || {
                // Keep copying journal data out until we're notified to stop.
                while wait_for_data_or_close(&j, &pfd) == 1 {
                    s.drain_journal(&log_watcher, &j);
                }
                // Clean up.
                s.readers.mu.lock();
                s.readers.readers.remove(&log_watcher.id);
                s.readers.mu.unlock();
                if s.variant.fixed() {
                    // C.sd_journal_close(j)
                    log_watcher.msg.close();
                }
            });
        }
        if !self.variant.fixed() {
            self.readers.mu.lock();
            self.readers
                .readers
                .insert(log_watcher.id, log_watcher.clone());
            self.readers.mu.unlock();
        }
        // Wait until we're told to stop.
        log_watcher.watch_close().recv();
        // Notify the other goroutine that its work is done: C.close(pfd[1]).
        pfd.close();
    }

    /// `readLogs` with `config.Follow`: sends what the journal holds, then follows it.
    fn read_logs(self: &Arc<Self>, log_watcher: &Arc<LogWatcher>, j: &Arc<SdJournal>) {
        let following = Cell::new(false);
        let _cleanup = defer(|| {
            if self.variant.fixed() {
                if !following.get() {
                    // C.sd_journal_close(j)
                    log_watcher.msg.close();
                }
            } else {
                // defer close(logWatcher.Msg); defer C.sd_journal_close(j)
                log_watcher.msg.close();
            }
        });
        self.drain_journal(log_watcher, j);
        // config.Follow, and the pipe was made.
        self.follow_journal(log_watcher, j);
        following.set(true);
    }

    /// `ReadLogs`.
    fn read_logs_start(self: &Arc<Self>, j: &Arc<SdJournal>) -> Arc<LogWatcher> {
        let log_watcher = LogWatcher::new(1);
        let (s, lw, j) = (self.clone(), log_watcher.clone(), j.clone());
        go_named("readLogs", move || s.read_logs(&lw, &j));
        log_watcher
    }
}

/// `docker logs -f` on a container that logs to journald: the reader follows the log while
/// the container writes a line, then goes away.
fn test_follow_journal_logs(variant: Variant) {
    let s = Arc::new(Journald {
        readers: ReaderList {
            mu: Mutex::new().named("readers.mu"),
            readers: GoMap::new().named("readers"),
        },
        variant,
    });
    let j = Arc::new(SdJournal {
        entries: Chan::new(LOG_WATCHER_BUFFER_SIZE).named("journal entries"),
        fd: Chan::new(1).named("journal fd"),
    });
    let log_watcher = s.read_logs_start(&j);
    // The container logs a line.
    j.append("hello");
    // The client disconnects: the daemon closes the watcher.
    log_watcher.close();
}
