#![doc = include_str!("kubernetes_1321.md")]

use std::sync::{Arc, Weak};

use primitives::sync::{Mutex, Once};
use primitives::{defer, go_named, select, Chan, GoMap};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_1321",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/1321",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes1321,
        walkthrough: include_str!("kubernetes_1321.md"),
        goker: Some("gobench/goker/blocking/kubernetes/1321"),
        asplos: Some("blocking-bugs/kubernetes/435e0b73bb99862f9dedf56a50260ff3dfef14ff.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("435e0b73"),
        review: "faithful: Checked against GoKer blocking/kubernetes/1321, the ASPLOS copy of 435e0b73 and GoReal's report: GoKer's kernel with upstream's three-hunk fix; nothing unadmitted.",
        file: file!(),
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        ..Bug::DEFAULT
    }
}

/// One watcher of a `Mux` (`muxWatcher`).
struct MuxWatcher {
    result: Chan<()>,
    /// Added by the fix: closed by `Stop` before it takes the mux's lock.
    stopped: Chan<()>,
    /// Added by the fix: `Stop` closes `stopped` once.
    stop: Once,
    /// The watcher's mux (weak only to keep Rust from leaking the cycle mux → watcher → mux).
    m: Weak<Mux>,
    id: i64,
}

impl MuxWatcher {
    fn stop(&self) {
        let m = self.m.upgrade().expect("the mux outlives its watchers");
        if m.variant.fixed() {
            self.stop.do_(|| {
                self.stopped.close();
                m.stop_watching(self.id);
            });
        } else {
            m.stop_watching(self.id);
        }
    }
}

/// The event multiplexer of `pkg/watch` (`Mux`).
struct Mux {
    lock: Mutex,
    watchers: GoMap<i64, Arc<MuxWatcher>>,
    /// GoKer's package-level `globalMtx`, which guards the map's writes in `Watch`.
    global_mtx: Arc<Mutex>,
    variant: Variant,
}

impl Mux {
    fn new(global_mtx: Arc<Mutex>, variant: Variant) -> Arc<Mux> {
        let m = Arc::new(Mux {
            lock: Mutex::new().named("Mux.lock"),
            watchers: GoMap::new().named("watchers"),
            global_mtx,
            variant,
        });
        let m2 = m.clone();
        go_named("loop", move || m2.r#loop()); // G2
        m
    }

    fn watch(self: &Arc<Self>) -> Arc<MuxWatcher> {
        let mw = Arc::new(MuxWatcher {
            result: Chan::new(0).named("result"),
            stopped: Chan::new(0).named("stopped"),
            stop: Once::new(),
            m: Arc::downgrade(self),
            id: self.watchers.len() as i64,
        });
        self.global_mtx.lock();
        self.watchers.insert(mw.id, mw.clone());
        self.global_mtx.unlock();
        mw
    }

    fn r#loop(&self) {
        for _ in 0..100 {
            self.distribute();
        }
    }

    fn distribute(&self) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.global_mtx.lock();
        let watchers: Vec<Arc<MuxWatcher>> = self.watchers.with(|m| m.values().cloned().collect());
        for w in watchers {
            if self.variant.fixed() {
                select! {
                    send(w.result, ()) => {},
                    recv(w.stopped) => {},
                }
            } else {
                w.result.send(()); // nobody receives: blocks holding m.lock
            }
        }
        self.global_mtx.unlock();
    }

    fn stop_watching(&self, id: i64) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        let Some(w) = self.watchers.get(&id) else {
            return;
        };
        self.watchers.remove(&id);
        w.result.close();
    }
}

fn test_mux_watcher_close(global_mtx: Arc<Mutex>, variant: Variant) {
    let m = Mux::new(global_mtx, variant);
    let w = m.watch();
    w.stop();
}

/// `TestKubernetes1321`.
fn test_kubernetes1321(variant: Variant) {
    let global_mtx = Arc::new(Mutex::new().named("globalMtx"));
    go_named("testMuxWatcherClose", move || {
        test_mux_watcher_close(global_mtx, variant)
    }); // G1
}
