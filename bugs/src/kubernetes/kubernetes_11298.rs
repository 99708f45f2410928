#![doc = include_str!("kubernetes_11298.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::explore::Engine;
use primitives::sync::{Cond, Mutex};
use primitives::{defer, go_named, select, time, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_11298",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/11298",
        category: "Communication deadlock (channel & condition variable)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_kubernetes11298,
        walkthrough: include_str!("kubernetes_11298.md"),
        goker: Some("gobench/goker/blocking/kubernetes/11298"),
        asplos: Some("blocking-bugs/kubernetes/e98c8e7685f4475e091f9186606098039c2fc250.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("e98c8e76"),
        review: "faithful after mends: Checked against GoKer blocking/kubernetes/11298 and the ASPLOS copy of e98c8e76 (commit message and hunks): GoKer's lost-Signal kernel with upstream's channel fix, deviations admitted; the trace and the PCT budget note are stale against the current primitives (PCT now needs 7742 at seed 1 and misses at seeds 3 and 5).",
        file: file!(),
        loom: Loom::DoesNotApply(
            "more goroutines than loom's threads: the test, two `After` goroutines, the \
             master changer, one `After(cond.Wait)` goroutine per service round, and the timer \
             goroutine",
        ),
        // PCT drops a goroutine below the others when it blocks; the lost Signal needs the
        // new `After` goroutine to wait until the service loop, which has blocked before and
        // so sits below it, has signalled: more than PCT's two change points can arrange.
        not_found_by: &[(
            Engine::ShuttlePct,
            "PCT drops a goroutine that blocks below the others, and the new After goroutine \
             outranks the service loop, which blocked before: lock-order reversals find it at \
             seeds 2-4 and 9 (<= 12); six of seeds 1-10 miss in 20,000. Random walks, DFS find it",
        )],
        ..Bug::DEFAULT
    }
}

/// How many master changes the test makes before it closes `done` (500 upstream).
const MASTER_CHANGES: usize = 2;

/// `runtime.After`: runs `f` in a goroutine; the returned channel is closed when it returns.
fn after(f: impl FnOnce() + Send + 'static) -> Chan<()> {
    let ch = Chan::new(0).named("Signal");
    let ch2 = ch.clone();
    go_named("After.func1", move || {
        let _close = defer(|| ch2.close());
        f();
    });
    ch
}

/// `runtime.Until`: runs `f` every `period` until `stop_ch` is closed.
fn until(f: impl Fn(), period: Duration, stop_ch: &Chan<()>) {
    loop {
        select! {
            recv(stop_ch) => return,
            default => {},
        }
        f();
        select! {
            recv(stop_ch) => {},
            recv(time::after(period)) => {},
        }
    }
}

/// The master-election notifier (`notifier`).
struct Notifier {
    lock: Mutex,
    /// Removed by the fix.
    cond: Cond,
    /// Added by the fix: tells the service loop that the desired master may have changed.
    changed: Chan<()>,
    variant: Variant,
}

impl Notifier {
    /// Waits for changes of the elected master (and, upstream, starts or stops the service).
    fn service_loop(&self, abort: &Chan<()>) {
        if self.variant.fixed() {
            loop {
                select! {
                    recv(abort) => return,
                    recv(self.changed) => {
                        self.lock.lock();
                        self.lock.unlock();
                    },
                }
            }
        }
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        loop {
            select! {
                recv(abort) => return,
                default => {
                    // cond.Wait runs in a goroutine of its own, so that the loop can also
                    // watch `abort`.
                    let cond = self.cond.clone();
                    let ch = after(move || cond.wait());
                    select! {
                        recv(abort) => {
                            self.cond.signal(); // lost if that goroutine does not wait yet
                            ch.recv();
                            return;
                        },
                        recv(ch) => {},
                    }
                },
            }
        }
    }

    /// One event of the election watch: the elected master changed.
    fn master_changed(&self) {
        if self.variant.fixed() {
            self.lock.lock();
            self.lock.unlock();
            select! {
                send(self.changed, ()) => {},
            }
        } else {
            self.lock.lock();
            let _unlock = defer(|| self.lock.unlock());
            self.cond.signal();
        }
    }
}

/// `election.Notify`: watches `events` (the elections) until `abort` is closed.
fn notify(events: Chan<()>, abort: Chan<()>, variant: Variant) {
    let lock = Mutex::new().named("notifier.lock");
    let n = Arc::new(Notifier {
        cond: Cond::new(&lock),
        lock,
        changed: Chan::new(0).named("changed"),
        variant,
    });
    let (n2, abort2) = (n.clone(), abort.clone());
    let finished = after(move || {
        until(
            || loop {
                select! {
                    recv(abort2) => return,
                    recv(events) => n2.master_changed(),
                }
            },
            Duration::ZERO,
            &abort2,
        )
    });
    until(|| n.service_loop(&finished), Duration::ZERO, &abort);
}

/// `TestKubernetes11298`.
fn test_kubernetes11298(variant: Variant) {
    let done = Chan::new(0).named("done");
    let events = Chan::new(0).named("events");
    let (done2, events2) = (done.clone(), events.clone());
    let notify_done = after(move || notify(events2, done2, variant));
    go_named("TestKubernetes11298.func2", move || {
        let _close = defer(|| done.close());
        for _ in 0..MASTER_CHANGES {
            events.send(());
        }
    });
    notify_done.recv();
}
