#![doc = include_str!("kubernetes_6632.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_6632",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/6632",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes6632,
        walkthrough: include_str!("kubernetes_6632.md"),
        goker: Some("gobench/goker/blocking/kubernetes/6632"),
        asplos: Some("blocking-bugs/kubernetes/82afb7ab1fe12cf2efceede2322d082eaf5d5adc.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("82afb7ab"),
        review: "faithful: Checked against GoKer blocking/kubernetes/6632, Kubernetes 82afb7ab (ASPLOS) and spdystream e731c8f9 / d91d6d15 / 99515db3: GoKer's kernel, upstream's drain goroutine as a switch, leak verdict right.",
        file: file!(),
        // Bound 2 finds the bug sooner than bound 3 (535 executions against 3,156); neither
        // finishes the fixed variant's search within the budget.
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// spdystream's `Connection` (only its close notification matters here: `Serve` closes
/// `closeChan` once its read loop ends).
struct Connection {
    close_chan: Chan<bool>,
}

/// spdystream's `idleAwareFramer`: a frame writer that resets an idle timer on every write.
struct IdleAwareFramer {
    /// A channel, or nil once the framer is closed; guarded by `write_lock`.
    reset_chan: Shared<Chan<()>>,
    write_lock: Mutex,
    conn: Connection,
    variant: Variant,
}

impl IdleAwareFramer {
    // GoKer's `Loop: for { select { ... break Loop } }` never goes round: its one case breaks.
    #[allow(clippy::never_loop)]
    fn monitor(&self) {
        let reset_chan = self.reset_chan.get();
        loop {
            select! {
                recv(self.conn.close_chan) => {
                    if self.variant.fixed() {
                        // The fix: drain resetChan, so that a writer blocked on it, holding
                        // writeLock, can finish.
                        let r = reset_chan.clone();
                        go_named("monitor.func1", move || while r.recv().is_some() {});
                    }
                    self.write_lock.lock();
                    reset_chan.close();
                    self.reset_chan.set(Chan::nil());
                    self.write_lock.unlock();
                    break;
                },
            }
        }
    }

    fn write_frame(&self) {
        self.write_lock.lock();
        let _unlock = defer(|| self.write_lock.unlock());
        let reset_chan = self.reset_chan.get();
        if reset_chan.is_nil() {
            return;
        }
        reset_chan.send(()); // blocks holding writeLock
    }
}

fn new_idle_aware_framer(variant: Variant) -> Arc<IdleAwareFramer> {
    Arc::new(IdleAwareFramer {
        // Upstream's buffer holds 2; GoKer's channel (and this one) holds none, which stands
        // for a buffer already full.
        reset_chan: Shared::new(Chan::new(0).named("resetChan")).named("resetChan"),
        write_lock: Mutex::new().named("writeLock"),
        conn: Connection {
            close_chan: Chan::new(0).named("closeChan"),
        },
        variant,
    })
}

/// `TestKubernetes6632`.
fn test_kubernetes6632(variant: Variant) {
    let i = new_idle_aware_framer(variant);

    let (i1, i2, i3) = (i.clone(), i.clone(), i);
    // GoKer's helper goroutine; it sends on `closeChan` where upstream's `Serve` closes it.
    go_named("TestKubernetes6632.func1", move || {
        i1.conn.close_chan.send(true);
    });
    go_named("monitor", move || i2.monitor()); // G1
    go_named("WriteFrame", move || i3.write_frame()); // G2
}
