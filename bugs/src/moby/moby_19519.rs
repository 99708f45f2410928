#![doc = include_str!("moby_19519.md")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use primitives::{defer, go_named, select, time, Chan, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_19519",
        project: "moby",
        upstream: "https://github.com/moby/moby/commit/27b060492c483d61b76f18a529c94a71fdfc5312",
        category: "Misuse of channel (closed twice)",
        expected: primitives::Verdict::Panic,
        kernel: test_events_streaming,
        walkthrough: include_str!("moby_19519.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/docker/27b060492c483d61b76f18a529c94a71fdfc5312.txt"),
        source: Source::Diff("27b06049"),
        fix: Fix::Upstream("27b06049"),
        review: "",
        file: file!(),
        // The test's `time.After(5 * time.Second)` fires only once the stream has gone quiet.
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// The container whose events the test watches.
const CONTAINER_ID: &str = "c1";

/// The actions the test waits for, in order (upstream has four: create, start, die, destroy).
const ACTIONS: [&str; 2] = ["create", "start"];

/// The daemon's record of the container's events, as `docker events --since --until` prints
/// them: `<id> <type> <action>`, a stand-in for the event line `parseEventText` reads.
const EVENT_LOG: [&str; 2] = ["c1 container create", "c1 container start"];

/// `testActions`: one channel per action, closed when the action is seen. Only read.
type Actions = Arc<BTreeMap<&'static str, Chan<bool>>>;

/// `parseEventText`: the fields of an event line (none if it is no event line).
fn parse_event_text(text: &str) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    let f: Vec<&str> = text.split(' ').collect();
    if f.len() == 3 {
        m.insert("id", f[0].to_string());
        m.insert("eventType", f[1].to_string());
        m.insert("action", f[2].to_string());
    }
    m
}

/// `matchIDAndEventType`.
fn match_id_and_event_type(m: &BTreeMap<&str, String>, id: &str, event_type: &str) -> bool {
    m["id"] == id && m["eventType"] == event_type
}

/// `eventMatcher`: buggy, `func(text string) bool`; fixed, `func(text string)
/// (map[string]string, bool)`. The kernel returns the matches in both and the buggy callers
/// ignore them.
type EventMatcher = Arc<dyn Fn(&str) -> (BTreeMap<&'static str, String>, bool) + Send + Sync>;

/// `eventMatchProcessor`, added by the fix.
type EventMatchProcessor = Arc<dyn Fn(&BTreeMap<&'static str, String>) + Send + Sync>;

/// `matchEventLine`: the matcher for one id and event type.
fn match_event_line(
    id: &'static str,
    event_type: &'static str,
    actions: Actions,
    variant: Variant,
) -> EventMatcher {
    Arc::new(move |text| {
        let matches = parse_event_text(text);
        if matches.is_empty() {
            return (matches, false);
        }
        if match_id_and_event_type(&matches, id, event_type) {
            if let Some(ch) = actions.get(matches["action"].as_str()) {
                if !variant.fixed() {
                    ch.close();
                }
                return (matches, true);
            }
        }
        (matches, false)
    })
}

/// `processEventMatch`, added by the fix: closes the action's channel.
fn process_event_match(actions: Actions) -> EventMatchProcessor {
    Arc::new(move |matches| {
        if let Some(ch) = actions.get(matches["action"].as_str()) {
            ch.close();
        }
    })
}

/// `eventObserver`: the running `docker events` command and what it has printed.
struct EventObserver {
    /// The command's stdout, line by line (`bufio.Scanner`): closed when the stream drops.
    scanner: Chan<&'static str>,
    /// `disconnectionError`: set by `Match` when the stream ends, read by `CheckEventError`
    /// with no synchronisation upstream; see Deviations.
    disconnection_error: std::sync::Mutex<Option<&'static str>>,
    variant: Variant,
}

impl EventObserver {
    /// `Match`: runs the matcher (and, with the fix, the processor) on every line.
    fn match_(&self, matcher: EventMatcher, process: Option<EventMatchProcessor>) {
        while let Some(text) = self.scanner.recv() {
            if self.variant.fixed() {
                let (matches, ok) = matcher(text);
                if ok {
                    (process.as_ref().expect("the fix passes a processor"))(&matches);
                }
            } else {
                matcher(text);
            }
        }
        // err := e.scanner.Err(); if err == nil { err = io.EOF }
        *self.disconnection_error.lock().unwrap() = Some("EOF");
    }

    /// `CheckEventError`: after a timeout, looks for the event in the daemon's record.
    fn check_event_error(&self, id: &str, event: &str, matcher: &EventMatcher) {
        let mut found_event = false;
        if self.disconnection_error.lock().unwrap().is_some() {
            // dockerCmd(c, "events", "--since", e.startTime, "--until", until)
            for e in EVENT_LOG {
                // buggy `if match(e)`, fixed `if _, ok := match(e); ok`: the same test
                let ok = matcher(e).1;
                if ok {
                    found_event = true;
                    break;
                }
            }
        }
        // c.Fatalf("failed to observe event `%s` for %s. ...")
        assert!(found_event, "failed to observe event `{event}` for {id}");
    }

    /// `Stop`: kills the events command.
    fn stop(&self) {}
}

/// `TestEventsStreaming` (integration-cli/docker_cli_events_unix_test.go), with two actions.
fn test_events_streaming(variant: Variant) {
    // The stream delivers the container's first event, then drops.
    let scanner = Chan::new(EVENT_LOG.len()).named("events stdout");
    scanner.send(EVENT_LOG[0]);
    scanner.close();
    let observer = Arc::new(EventObserver {
        scanner,
        disconnection_error: std::sync::Mutex::new(None),
        variant,
    });
    let _stop = {
        let o = observer.clone();
        defer(move || o.stop())
    };
    let test_actions: Actions = Arc::new(
        ACTIONS
            .iter()
            .map(|a| (*a, Chan::new(0).named(a)))
            .collect(),
    );
    let matcher = match_event_line(CONTAINER_ID, "container", test_actions.clone(), variant);
    {
        let (o, m) = (observer.clone(), matcher.clone());
        if variant.fixed() {
            let processor = process_event_match(test_actions.clone());
            go_named("observer.Match", move || o.match_(m, Some(processor)));
        } else {
            go_named("observer.Match", move || o.match_(m, None));
        }
    }
    for action in ACTIONS {
        select! {
            recv(time::after(Duration::from_secs(5))) => {
                observer.check_event_error(CONTAINER_ID, action, &matcher);
            },
            recv(test_actions[action]) => {
                // ignore, done
            },
        }
    }
}
