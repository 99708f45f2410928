#![doc = include_str!("moby_21692.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, Context};
use primitives::time::{Instant, Timer};
use primitives::{defer, go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_21692",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/21692",
        category: "Misuse of timer (fires before Stop)",
        expected: primitives::Verdict::Assert,
        kernel: test_events_stream,
        walkthrough: include_str!("moby_21692.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/docker/b38cee9f9c79d1f12001348303b78462d99664ed.txt"),
        source: Source::Diff("b38cee9f"),
        fix: Fix::Upstream("b38cee9f"),
        review: "faithful after mends: Checked against moby b38cee9f (PR #21692, merge 3e03fc91) and getEvents at b38cee9f^: same NewTimer(0)/Stop stale-value race, fix is upstream's nil-channel timeout; mend the prose to cite the PR's own evidence (#18672, Gosched repro, TestStatsAllNewContainersAdded) instead of an unsourced TestEventsStreaming example.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `events.Message`: one daemon event.
type Message = &'static str;

/// The daemon's events service, reduced to one subscriber's channel.
struct Backend {
    /// What `SubscribeToEvents` hands the subscriber (`l`).
    l: Chan<Message>,
}

impl Backend {
    /// `SubscribeToEvents`: the buffered past events (none here) and the live channel.
    fn subscribe_to_events(&self) -> (Vec<Message>, Chan<Message>) {
        (Vec::new(), self.l.clone())
    }

    /// `UnsubscribeFromEvents`.
    fn unsubscribe_from_events(&self, _l: &Chan<Message>) {}
}

struct SystemRouter {
    backend: Arc<Backend>,
    variant: Variant,
}

impl SystemRouter {
    /// `getEvents`: streams the daemon's events to the client until `until`, or until the
    /// client goes away. `until` is 0: the request had no `--until`.
    fn get_events(&self, ctx: &Context, output: &Chan<Message>, until: i64) -> Result<(), String> {
        let mut timeout: Chan<Instant>;
        if self.variant.fixed() {
            // var timeout <-chan time.Time
            timeout = Chan::nil();
            if until > 0 {
                timeout = Timer::new(Duration::from_secs(until as u64)).c().clone();
            }
        } else {
            let mut timer = Timer::new(Duration::ZERO);
            timer.stop();
            if until > 0 {
                timer = Timer::new(Duration::from_secs(until as u64));
            }
            timeout = timer.c().clone();
        }
        // defer output.Close(): the end of the response.
        let _close = defer(|| output.close());
        let (buffered, l) = self.backend.subscribe_to_events();
        let _unsubscribe = defer(|| self.backend.unsubscribe_from_events(&l));
        for ev in buffered {
            output.send(ev);
        }
        loop {
            select! {
                recv(l) -> ev => {
                    // enc.Encode(jev)
                    output.send(ev.expect("the events channel stays open"));
                },
                recv(timeout) => return Ok(()),
                recv(ctx.done()) => {
                    // logrus.Debug("Client context cancelled, stop sending events")
                    return Ok(());
                },
            }
        }
    }
}

/// `docker events` with no `--until` while the daemon logs an event: the client must see it.
fn test_events_stream(variant: Variant) {
    let backend = Arc::new(Backend {
        l: Chan::new(1).named("events l"),
    });
    let s = Arc::new(SystemRouter {
        backend: backend.clone(),
        variant,
    });
    let (ctx, cancel) = context::with_cancel(&context::background());
    // The response body, as the client reads it.
    let output: Chan<Message> = Chan::new(0).named("response");
    {
        let (s, output) = (s.clone(), output.clone());
        go_named("GET /events", move || {
            let _ = s.get_events(&ctx, &output, 0);
        });
    }
    // The daemon logs an event.
    backend.l.send("container create c1");
    // The client reads the stream until it sees the event.
    let got = output.recv();
    assert_eq!(
        got,
        Some("container create c1"),
        "the events stream ended before the event"
    );
    cancel.call();
}
