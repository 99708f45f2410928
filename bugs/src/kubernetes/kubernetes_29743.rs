#![doc = include_str!("kubernetes_29743.md")]

use std::time::Duration;

use primitives::time::Timer;
use primitives::{select, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_29743",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/29743",
        category: "Order violation (select without priority)",
        expected: primitives::Verdict::Panic,
        kernel: test_kubernetes29743,
        loom: Loom::DoesNotApply(
            "the failure needs the final select to take the timer's case while stopCh, its \
             first case, is also ready; loom's select always takes the first ready case",
        ),
        walkthrough: include_str!("kubernetes_29743.md"),
        goker: None,
        asplos: Some("non-blocking-bugs/kubernetes/842f15c3c62a510f3b1718bf1f086b8951533999.txt"),
        source: Source::Diff("842f15c3"),
        fix: Fix::Upstream("842f15c3"),
        review: "faithful after mends: Checked against the ASPLOS diff of 842f15c3, PR #29743's thread (and timothysc's note on PR #26301), client-go a6d206121 and apimachinery a1e35b73: the sliding JitterUntil's final select can take the fired timer over the closed stop channel and run f again; every behavioural hunk mapped; one wrong \"first commit\".",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `wait.JitterUntil`: runs `f` every `period` until `stop_ch` is closed. With `sliding`, the
/// period is counted from the end of `f`; without, from its start. (`jitterFactor` is left
/// out: `Until` passes 0, which skips the jitter.)
fn jitter_until(f: &dyn Fn(), period: Duration, sliding: bool, stop_ch: &Chan<()>, v: Variant) {
    if !v.fixed() {
        // Before the fix: one check of stopCh, before the loop.
        select! {
            recv(stop_ch) => return,
            default => {},
        }
    }

    loop {
        if v.fixed() {
            // The fix: the check moves to the top of every round.
            select! {
                recv(stop_ch) => return,
                default => {},
            }
        }

        let jittered_period = period;

        let mut t: Option<Timer> = None;
        if !sliding {
            t = Some(Timer::new(jittered_period));
        }

        // func() { defer runtime.HandleCrash(); f() }()
        f();

        if sliding {
            t = Some(Timer::new(jittered_period));
        } else if !v.fixed() {
            // The timer we created could already have fired: check stopCh first (removed by
            // the fix, which checks at the top of the loop instead).
            select! {
                recv(stop_ch) => return,
                default => {},
            }
        }

        let t = t.expect("a timer is armed on both paths");
        // Go's select has no priority: with stopCh closed and t.C ready, either case can run.
        select! {
            recv(stop_ch) => return,
            recv(t.c()) => {},
        }
    }
}

/// `wait.Until`: `JitterUntil` with no jitter and a sliding period.
fn until(f: &dyn Fn(), period: Duration, stop_ch: &Chan<()>, v: Variant) {
    jitter_until(f, period, true, stop_ch, v);
}

/// Modelled on `TestUntilReturnsImmediately` (`pkg/util/wait/wait_test.go`): `f` closes the
/// stop channel, so `Until` must not call it again. The period is 0 here (see Deviations).
fn test_kubernetes29743(variant: Variant) {
    let ch: Chan<()> = Chan::new(0).named("ch");
    let ch2 = ch.clone();
    until(&move || ch2.close(), Duration::ZERO, &ch, variant);
}
