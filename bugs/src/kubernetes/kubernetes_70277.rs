#![doc = include_str!("kubernetes_70277.md")]

use std::time::Duration;

use primitives::sync::Once;
use primitives::time::{Ticker, Timer};
use primitives::{defer, go_named, select, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_70277",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/70277",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_kubernetes70277,
        walkthrough: include_str!("kubernetes_70277.md"),
        goker: Some("gobench/goker/blocking/kubernetes/70277"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("2306eb41"),
        review: "faithful: Checked against GoKer blocking/kubernetes/70277, apimachinery 83865555 / 9c4c3665 and wait.go at b814ad55, and PR #70277: GoKer's kernel, upstream's WaitFor rewrite as the switch, deadlock verdict right.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `wait.ForeverTestTimeout`: 30 s upstream (20 s in GoKer's kernel), shrunk to 20 ms so that
/// the 1 ms ticker below ticks 20 times rather than thousands before the poller's timeout
/// ends it.
const FOREVER_TEST_TIMEOUT: Duration = Duration::from_millis(20);

/// `wait.ErrWaitTimeout`.
#[derive(Debug)]
struct ErrWaitTimeout;

/// `wait.WaitFor`: calls `f` every time the channel made by `wait` delivers (or is closed),
/// until `f` says it is done.
fn wait_for(
    wait: impl FnOnce(Chan<()>) -> Chan<()>,
    f: impl Fn() -> bool,
    done: Chan<()>,
    variant: Variant,
) -> Result<(), ErrWaitTimeout> {
    if variant.fixed() {
        // The fix: the poller is given a channel of WaitFor's own, closed (once) when WaitFor
        // returns or when the caller's `done` is closed; `done` is watched here instead.
        let stop_ch = Chan::new(0).named("stopCh");
        let once = Once::new();
        let close_ch = || once.do_(|| stop_ch.close());
        let _close = defer(close_ch);
        let c = wait(stop_ch.clone());
        loop {
            select! {
                recv(c) -> v => {
                    if f() {
                        return Ok(());
                    }
                    if v.is_none() {
                        return Err(ErrWaitTimeout);
                    }
                },
                recv(done) => close_ch(),
            }
        }
    }
    let c = wait(done);
    loop {
        let open = c.recv().is_some();
        if f() {
            return Ok(());
        }
        if !open {
            break;
        }
    }
    Err(ErrWaitTimeout)
}

/// `wait.poller`: a `WaitFunc` whose goroutine ticks every `interval` until `timeout` has
/// passed or `done` is closed.
fn poller(interval: Duration, timeout: Duration) -> impl FnOnce(Chan<()>) -> Chan<()> {
    move |done: Chan<()>| {
        let ch = Chan::new(0).named("ch");
        let ch2 = ch.clone();
        go_named("poller", move || {
            let _close = defer(|| ch2.close());

            let tick = Ticker::new(interval);
            let _stop_tick = defer(|| tick.stop());

            let mut after = Chan::nil();
            let mut timer = None;
            if !timeout.is_zero() {
                let t = Timer::new(timeout);
                after = t.c().clone();
                timer = Some(t);
            }
            let _stop_timer = defer(|| {
                if let Some(t) = &timer {
                    t.stop();
                }
            });
            loop {
                select! {
                    recv(tick.c()) => {
                        select! {
                            send(ch2, ()) => {},
                            default => {},
                        }
                    },
                    recv(after) => return,
                    recv(done) => return,
                }
            }
        });
        ch
    }
}

/// `TestKubernetes70277`.
fn test_kubernetes70277(variant: Variant) {
    let stop_ch = Chan::new(0).named("stopCh");
    let _close = defer(|| stop_ch.close());
    let wait_func = poller(Duration::from_millis(1), FOREVER_TEST_TIMEOUT);
    let mut done_ch = None;

    let _ = wait_for(
        |done| {
            done_ch = Some(done.clone());
            wait_func(done)
        },
        || true,
        stop_ch.clone(),
        variant,
    );

    done_ch.expect("WaitFor called the WaitFunc").recv(); // blocks here
}
