#![doc = include_str!("moby_33781.md")]

use std::time::Duration;

use primitives::{context, go_named, select, time, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_33781",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/33781",
        category: "Communication deadlock (channel & context)",
        expected: primitives::Verdict::Leak,
        kernel: test_moby33781,
        walkthrough: include_str!("moby_33781.md"),
        goker: Some("gobench/goker/blocking/moby/33781"),
        asplos: Some("blocking-bugs/docker/da28210a157a3bf5662f1a049bb10f9b69d2a5a2.txt"),
        loom: Loom::DoesNotApply(
            "the monitor starts a probe goroutine per interval: with main, the stopper and the \
             timer goroutine, a second probe goes past loom's five threads"
        ),
        source: Source::Goker,
        fix: Fix::Upstream("67297ba0"),
        review: "faithful: Checked against GoKer blocking/moby/33781, upstream daemon/health.go at 33fd3817 (and 795a2fdb) and fix 67297ba0 (#33781, merge da28210a): same abandoned probe send on an unbuffered results channel, both fix hunks switched, deviations admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The container's health monitor: runs a probe every `probe_interval` until told to stop.
fn monitor(stop: Chan<()>, variant: Variant) {
    let probe_interval = Duration::from_nanos(50);
    let probe_timeout = Duration::from_nanos(50);
    loop {
        select! {
            recv(stop) => return,
            recv(time::after(probe_interval)) => {
                let (ctx, cancel_probe) =
                    context::with_timeout(&context::background(), probe_timeout);
                let results = if variant.fixed() {
                    Chan::new(1).named("results")
                } else {
                    Chan::new(0).named("results")
                };
                let r = results.clone();
                go_named("monitor.func1", move || {
                    // probe.run(ctx, d, c) is done: report its result.
                    r.send(true);
                    r.close();
                });
                select! {
                    recv(stop) => {
                        cancel_probe.call();
                        if variant.fixed() {
                            // 67297ba0: wait for the probe to exit.
                            results.recv();
                        }
                        return;
                    },
                    recv(results) => cancel_probe.call(),
                    recv(ctx.done()) => {
                        cancel_probe.call();
                        results.recv();
                    },
                }
            },
        }
    }
}

/// `TestMoby33781`.
fn test_moby33781(variant: Variant) {
    let stop = Chan::new(0).named("stop");
    let s = stop.clone();
    go_named("monitor", move || monitor(s, variant));
    go_named("TestMoby33781.func1", move || {
        time::sleep(Duration::from_nanos(50));
        // Health.CloseMonitorChannel: close(s.stop) (GoKer sends `stop <- true`).
        stop.close();
    });
}
