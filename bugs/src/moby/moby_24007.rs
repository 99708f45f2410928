#![doc = include_str!("moby_24007.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::{Mutex, Once};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_24007",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/24007",
        category: "Misuse of channel (close guarded by select default)",
        expected: primitives::Verdict::Panic,
        kernel: test_moby24007,
        walkthrough: include_str!("moby_24007.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/docker/378f0657f963fa6c854643571e4fe83628466c01.txt"),
        source: Source::Diff("378f0657"),
        fix: Fix::Upstream("378f0657"),
        review: "faithful after mends: Checked against 378f0657 (#24007) and its parent (logger.go, jsonfilelog, daemon/logs.go, cancellableHandler, container Reset): the select-default double close between ContainerLogs' ctx.Done path and the logger's Close is the only concurrent pair at the parent; fix is upstream's Once, Copier hunk rightly not modelled; the prose mend (a handler-goroutine panic does not take the daemon down: net/http recovers it) and the optional journald note are made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `logger.Message`; its content does not matter here.
struct Message;

/// `logger.LogWatcher`: what a log reader hands to the code that follows the logs.
struct LogWatcher {
    msg: Chan<Message>,
    err: Chan<&'static str>,
    close_once: Once,
    close_notifier: Chan<()>,
    /// Stands for the `*LogWatcher` pointer the logger keys its readers by.
    ptr: Shared<()>,
    variant: Variant,
}

impl LogWatcher {
    /// `NewLogWatcher`.
    fn new(variant: Variant) -> Arc<LogWatcher> {
        Arc::new(LogWatcher {
            msg: Chan::new(4).named("Msg"),
            err: Chan::new(1).named("Err"),
            close_once: Once::new(),
            close_notifier: Chan::new(0).named("closeNotifier"),
            ptr: Shared::new(()).named("LogWatcher"),
            variant,
        })
    }

    /// `Close`: tells the reader to stop.
    fn close(&self) {
        if self.variant.fixed() {
            self.close_once.do_(|| self.close_notifier.close());
        } else {
            // only close if not already closed
            select! {
                recv(self.close_notifier) => {},
                default => self.close_notifier.close(),
            }
        }
    }

    /// `WatchClose`.
    fn watch_close(&self) -> Chan<()> {
        self.close_notifier.clone()
    }
}

/// `jsonfilelog.JSONFileLogger`: the container's log driver.
struct JsonFileLogger {
    mu: Mutex,
    readers: GoMap<u64, Arc<LogWatcher>>,
    variant: Variant,
}

impl JsonFileLogger {
    /// `ReadLogs`: starts the reader and returns its watcher.
    fn read_logs(self: &Arc<Self>) -> Arc<LogWatcher> {
        let log_watcher = LogWatcher::new(self.variant);
        let (l, w) = (self.clone(), log_watcher.clone());
        go_named("readLogs", move || l.read_logs_inner(&w));
        log_watcher
    }

    /// `readLogs` with `Follow` set and no tail: registers the follower and follows the file.
    fn read_logs_inner(&self, log_watcher: &Arc<LogWatcher>) {
        let msg = log_watcher.msg.clone();
        let _close_msg = defer(move || msg.close());

        self.mu.lock();
        self.readers
            .insert(log_watcher.ptr.identity(), log_watcher.clone());
        self.mu.unlock();

        follow_logs(log_watcher);

        self.mu.lock();
        self.readers.remove(&log_watcher.ptr.identity());
        self.mu.unlock();
    }

    /// `Close`: closes the file and tells every follower to stop.
    fn close(&self) {
        self.mu.lock();
        let readers: Vec<(u64, Arc<LogWatcher>)> = self
            .readers
            .with(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect());
        for (k, r) in readers {
            r.close();
            self.readers.remove(&k);
        }
        self.mu.unlock();
    }
}

/// `followLogs`: the file has no new line, so it waits for a file event or the close.
fn follow_logs(log_watcher: &LogWatcher) {
    // The file watcher's channels and the rotation notice: nothing happens on them here.
    let (events, errors, notify_rotate): (Chan<()>, Chan<()>, Chan<()>) =
        (Chan::nil(), Chan::nil(), Chan::nil());
    loop {
        // decodeLogLine returns io.EOF: no new line yet.
        select! {
            recv(events) => continue,
            recv(errors) => {
                log_watcher.err.send("file watcher error");
                return;
            },
            recv(log_watcher.watch_close()) => return,
            recv(notify_rotate) => continue,
        }
    }
}

/// `daemon.ContainerLogs` with `follow` on a running container: streams until the client
/// goes away or the reader ends.
fn container_logs(ctx: &Context, c_log: &Arc<JsonFileLogger>) {
    let logs = c_log.read_logs();
    loop {
        select! {
            recv(logs.err) => return,
            recv(ctx.done()) => {
                logs.close();
                return;
            },
            recv(logs.msg) -> msg => {
                if msg.is_none() {
                    // logs: end stream
                    logs.close();
                    return;
                }
            },
        }
    }
}

/// `docker logs -f` on a running container: the client hangs up as the container exits.
fn test_moby24007(variant: Variant) {
    let log_driver = Arc::new(JsonFileLogger {
        mu: Mutex::new().named("JSONFileLogger.mu"),
        readers: GoMap::new().named("readers"),
        variant,
    });

    // The HTTP server's CloseNotify channel: it fires when the client's connection closes.
    let notify: Chan<bool> = Chan::new(1).named("CloseNotify");
    let n = notify.clone();
    go_named("conn.backgroundRead", move || n.send(true));

    // The container exits: StateChanged → Reset → LogDriver.Close().
    let l = log_driver.clone();
    go_named("queue.append.func1", move || l.close());

    // cancellableHandler
    let (notify_ctx, cancel) = context::with_cancel(&context::background());
    let finished: Chan<()> = Chan::new(0).named("finished");
    let _close_finished = defer({
        let finished = finished.clone();
        move || finished.close()
    });
    let f = finished.clone();
    go_named("cancellableHandler.func1", move || {
        select! {
            recv(notify) => cancel.call(),
            recv(f) => {},
        }
    });

    // getContainersLogs → ContainerLogs
    container_logs(&notify_ctx, &log_driver);
}
