#![doc = include_str!("kubernetes_26980.md")]

use std::sync::Arc;

use primitives::sync::{Cond, Mutex};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_26980",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/26980",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_kubernetes26980,
        walkthrough: include_str!("kubernetes_26980.md"),
        goker: Some("gobench/goker/blocking/kubernetes/26980"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#26980"),
        review: "faithful: Checked against GoKer blocking/kubernetes/26980, PR #26980's description and review-thread hunks, and post-fix shared_informer.go copies: GoKer's kernel, the PR's blockingGet fix as a switch, deadlock verdict right; fix commit not pinned (admitted).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A shared informer's listener (`processorListener`).
struct ProcessorListener {
    /// Upstream a `sync.RWMutex` whose write side is the `Cond`'s locker; nothing takes its
    /// read side, so it behaves as (and is ported as) a `sync.Mutex`.
    lock: Mutex,
    cond: Cond,
    pending_notifications: Shared<Vec<i32>>,
    variant: Variant,
}

impl ProcessorListener {
    fn add(&self, notification: i32) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());

        self.pending_notifications.write(|p| p.push(notification));
        self.cond.broadcast();
    }

    // GoKer's `for` loops never go round: the select's only case returns. Kept as in Go.
    #[allow(clippy::never_loop)]
    fn pop(&self, stop_ch: &Chan<()>) {
        if self.variant.fixed() {
            // The fix: the lock is held only to take a notification off the list; the
            // blocking select below runs without it.
            loop {
                let blocking_get = || -> (Option<i32>, bool) {
                    self.lock.lock();
                    let _unlock = defer(|| self.lock.unlock());
                    while self.pending_notifications.read(|p| p.is_empty()) {
                        select! {
                            recv(stop_ch) => return (None, true),
                            default => {},
                        }
                        self.cond.wait();
                    }
                    let nt = self.pending_notifications.write(|p| p.remove(0));
                    (Some(nt), false)
                };
                let (_notification, stopped) = blocking_get();
                if stopped {
                    return;
                }
                select! {
                    recv(stop_ch) => return,
                }
            }
        }
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        loop {
            while self.pending_notifications.read(|p| p.is_empty()) {
                select! {
                    recv(stop_ch) => return,
                    default => {},
                }
                self.cond.wait();
            }
            select! {
                recv(stop_ch) => return, // blocks here, holding the lock
            }
        }
    }
}

fn new_process_listener(variant: Variant) -> Arc<ProcessorListener> {
    let lock = Mutex::new().named("processorListener.lock");
    Arc::new(ProcessorListener {
        cond: Cond::new(&lock),
        lock,
        pending_notifications: Shared::new(Vec::new()).named("pendingNotifications"),
        variant,
    })
}

/// `TestKubernetes26980`.
fn test_kubernetes26980(variant: Variant) {
    let pl = new_process_listener(variant);
    let stop_ch = Chan::new(0).named("stopCh");
    let _close = defer(|| stop_ch.close());
    pl.add(1);
    let (pl2, stop_ch2) = (pl.clone(), stop_ch.clone());
    go_named("pop", move || pl2.pop(&stop_ch2));

    let result_ch = Chan::<()>::new(0).named("resultCh");
    let (pl3, result_ch2) = (pl.clone(), result_ch.clone());
    go_named("TestKubernetes26980.func1", move || {
        pl3.lock.lock(); // blocks here
        result_ch2.close();
    });
    result_ch.recv();
    pl.lock.unlock();
}
