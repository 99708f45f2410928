#![doc = include_str!("moby_22969.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, select, time, Chan, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_22969",
        project: "moby",
        upstream: "https://github.com/moby/moby/commit/ab533f06510a14a023c056604f9520741073acd3",
        category: "Data race (test logger shared by two copiers)",
        expected: primitives::Verdict::Race,
        kernel: test_copier,
        walkthrough: include_str!("moby_22969.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/docker/ab533f06510a14a023c056604f9520741073acd3.txt"),
        source: Source::Test("moby/moby daemon/logger/copier_test.go @ ab533f06^"),
        fix: Fix::Upstream("ab533f06"),
        review: "faithful: Checked against moby ab533f06 (PR #22969, merge a41e823c) and copier.go/copier_test.go at ab533f06^: same unlocked TestLoggerJSON.Encode raced by two copySrc goroutines, fix is upstream's mutex; only the map->Vec source order is unadmitted (harmless).",
        file: file!(),
        // The test's `time.After(1 * time.Second)` is a watchdog: it fires only when stuck.
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

const CID: &str = "a7317399f3f857173c6179d44823594f8294678dea9999662e5c625b5a1c7657";
const STDOUT_LINE: &str = "Line that thinks that it is log line from docker stdout";
const STDERR_LINE: &str = "Line that thinks that it is log line from docker stderr";

/// `logger.Message`.
struct Message {
    container_id: &'static str,
    line: &'static str,
    source: &'static str,
}

/// `TestLoggerJSON`: a `*json.Encoder` over the test's buffer (and, with the fix, a mutex).
struct TestLoggerJson {
    /// The encoder's destination, `jsonBuf`: one JSON object per line.
    json_buf: Shared<String>,
    mu: Mutex,
    variant: Variant,
}

impl TestLoggerJson {
    /// `Log`: encodes the message onto the buffer.
    fn log(&self, m: &Message) -> Result<(), String> {
        let _unlock = if self.variant.fixed() {
            self.mu.lock();
            Some(defer(|| self.mu.unlock()))
        } else {
            None
        };
        self.encode(m)
    }

    /// `json.Encoder.Encode`: appends the encoded message to the buffer.
    fn encode(&self, m: &Message) -> Result<(), String> {
        let enc = format!("{} {} {}\n", m.container_id, m.source, m.line);
        self.json_buf.write(|b| b.push_str(&enc));
        Ok(())
    }
}

/// `Copier`: copies each source's lines to the logger, one goroutine per source.
struct Copier {
    cid: &'static str,
    srcs: Vec<(&'static str, Vec<&'static str>)>,
    dst: Arc<TestLoggerJson>,
    copy_jobs: WaitGroup,
    closed: Chan<()>,
}

impl Copier {
    /// `Run`.
    fn run(self: &Arc<Self>) {
        for (i, (src, _)) in self.srcs.iter().enumerate() {
            self.copy_jobs.add(1);
            let c = self.clone();
            go_named(&format!("copySrc {src}"), move || c.copy_src(i));
        }
    }

    /// `copySrc`: reads the source line by line and logs each line.
    fn copy_src(&self, i: usize) {
        let _done = defer(|| self.copy_jobs.done());
        let (name, lines) = &self.srcs[i];
        let mut reader = lines.iter();
        loop {
            select! {
                recv(self.closed) => return,
                default => {
                    let Some(line) = reader.next() else {
                        return; // io.EOF
                    };
                    let m = Message { container_id: self.cid, line, source: name };
                    if let Err(_log_err) = self.dst.log(&m) {
                        // logrus.Errorf("Failed to log msg ...")
                    }
                },
            }
        }
    }

    /// `Wait`.
    fn wait(&self) {
        self.copy_jobs.wait();
    }
}

/// `TestCopier` (daemon/logger/copier_test.go), with one line per source instead of 30.
fn test_copier(variant: Variant) {
    let json_log = Arc::new(TestLoggerJson {
        json_buf: Shared::new(String::new()).named("jsonBuf"),
        mu: Mutex::new().named("TestLoggerJSON.mu"),
        variant,
    });
    let c = Arc::new(Copier {
        cid: CID,
        srcs: vec![("stdout", vec![STDOUT_LINE]), ("stderr", vec![STDERR_LINE])],
        dst: json_log.clone(),
        copy_jobs: WaitGroup::new(),
        closed: Chan::new(0).named("closed"),
    });
    c.run();
    let wait: Chan<()> = Chan::new(0).named("wait");
    {
        let (c, wait) = (c.clone(), wait.clone());
        go_named("c.Wait", move || {
            c.wait();
            wait.close();
        });
    }
    select! {
        recv(time::after(Duration::from_secs(1))) => {
            panic!("Copier failed to do its work in 1 second");
        },
        recv(wait) => {},
    }
    // Decode the buffer and check every message.
    let buf = json_log.json_buf.get();
    for msg in buf.lines() {
        let mut f = msg.splitn(3, ' ');
        let (id, source, line) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        assert!(
            source == "stdout" || source == "stderr",
            "Wrong Source: {source:?}"
        );
        assert_eq!(id, CID, "Wrong ContainerID");
        if source == "stdout" {
            assert_eq!(line, STDOUT_LINE, "Wrong Line");
        }
        if source == "stderr" {
            assert_eq!(line, STDERR_LINE, "Wrong Line");
        }
    }
}
