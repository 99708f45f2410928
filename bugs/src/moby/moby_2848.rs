#![doc = include_str!("moby_2848.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, select, time, Chan, GoMap, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_2848",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/2848",
        category: "Traditional (data race: slice appended without the lock)",
        expected: primitives::Verdict::Race,
        kernel: test_log_event,
        walkthrough: include_str!("moby_2848.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/docker/abfdaca3f86d7951693697fbd849078d6b406478.txt"),
        source: Source::Test("moby/moby server_unit_test.go TestLogEvent @ abfdaca3^"),
        fix: Fix::Upstream("abfdaca3"),
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        review: "faithful: Checked against abfdaca3 (the only commit of #2848, merged as d9e54e28), `TestLogEvent` and `server.go`/`api.go` at abfdaca3^, and the ASPLOS diff: the right race (read of `srv.events` after one receive vs the next unlocked append), the full upstream fix, every deviation admitted; the dropped checks indeed cannot fail under lazy timers.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `utils.JSONMessage`, the fields `LogEvent` sets.
#[derive(Clone, Debug, PartialEq)]
struct JsonMessage {
    status: &'static str,
    id: &'static str,
    from: &'static str,
    time: u64,
}

/// `docker.Server`, the parts the events use.
struct Server {
    rw: RwMutex,
    events: Shared<Vec<JsonMessage>>,
    listeners: GoMap<&'static str, Chan<JsonMessage>>,
    variant: Variant,
}

impl Deref for Server {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw
    }
}

impl Server {
    /// `LogEvent`: records the event and hands it to every listener that is ready for it.
    fn log_event(&self, action: &'static str, id: &'static str, from: &'static str) -> JsonMessage {
        let now = time::now().since_start().as_secs();
        let jm = JsonMessage {
            status: action,
            id,
            from,
            time: now,
        };
        if self.variant.fixed() {
            self.add_event(jm.clone());
        } else {
            self.events.write(|e| e.push(jm.clone()));
        }
        let listeners: Vec<Chan<JsonMessage>> =
            self.listeners.with(|m| m.values().cloned().collect());
        for c in listeners {
            // non blocking channel
            select! {
                send(c, jm.clone()) => {},
                default => {},
            }
        }
        jm
    }

    /// `AddEvent` (added by the fix).
    fn add_event(&self, jm: JsonMessage) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.events.write(|e| e.push(jm));
    }

    /// `GetEvents` (added by the fix). Go returns the slice, sharing its backing array; the
    /// kernel returns a copy taken under the lock (see the walkthrough).
    fn get_events(&self) -> Vec<JsonMessage> {
        self.rlock();
        let _runlock = defer(|| self.runlock());
        self.events.get()
    }

    /// `srv.events[i]` in the test (before the fix), `srv.GetEvents()[i]` (after).
    fn event_at(&self, i: usize) -> JsonMessage {
        if self.variant.fixed() {
            self.get_events()[i].clone()
        } else {
            self.events.read(|e| e[i].clone())
        }
    }
}

/// `setTimeout`: runs `f` on a goroutine and fails the test if it takes longer than `d`.
fn set_timeout(msg: &str, d: Duration, f: impl FnOnce() + Send + 'static) {
    let c: Chan<bool> = Chan::new(1).named("c");

    // Make sure we are not too long
    let c1 = c.clone();
    go_named("setTimeout.func1", move || {
        time::sleep(d);
        c1.send(true);
    });
    let c2 = c.clone();
    go_named("setTimeout.func2", move || {
        f();
        c2.send(false);
    });
    if c.recv() == Some(true) && !msg.is_empty() {
        panic!("{msg}"); // t.Fatal(msg)
    }
}

/// `TestLogEvent` (`server_unit_test.go`).
fn test_log_event(variant: Variant) {
    let srv = Arc::new(Server {
        rw: RwMutex::new().named("srv"),
        events: Shared::new(Vec::with_capacity(64)).named("srv.events"),
        listeners: GoMap::new().named("srv.listeners"),
        variant,
    });

    srv.log_event("fakeaction", "fakeid", "fakeimage");

    let listener: Chan<JsonMessage> = Chan::new(0).named("listener");
    srv.lock();
    srv.listeners.insert("test", listener.clone());
    srv.unlock();

    srv.log_event("fakeaction2", "fakeid", "fakeimage");

    let _num_events = if variant.fixed() {
        srv.get_events().len()
    } else {
        srv.events.read(|e| e.len())
    };

    let s = srv.clone();
    go_named("TestLogEvent.func1", move || {
        time::sleep(Duration::from_millis(200));
        s.log_event("fakeaction3", "fakeid", "fakeimage");
        time::sleep(Duration::from_millis(200));
        s.log_event("fakeaction4", "fakeid", "fakeimage");
    });

    set_timeout(
        "Listening for events timed out",
        Duration::from_secs(2),
        move || {
            for i in 2..4 {
                let event = listener.recv();
                let _expected = srv.event_at(i);
                let _ = event;
            }
        },
    );
}
