#![doc = include_str!("kubernetes_81091.md")]

use std::sync::Arc;

use primitives::sync::{AtomicI32, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_81091",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/81091",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes81091,
        walkthrough: include_str!("kubernetes_81091.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/81091"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#81091"),
        review: "faithful after mends: Checked against GoKer nonblocking/kubernetes/81091, PR #81091's description and report, GoReal's revert diff and report (fixed tree 314aa4f9) and client-go f12b22a8: same unguarded counter, fixed variant equals the fix; the walkthrough should cite the now-available diff and name the test.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The type of `FakeFilterPlugin.numFilterCalled`: a plain `int` before the fix, an `int32`
/// updated with `sync/atomic` after it.
enum NumFilterCalled {
    Int(Shared<i32>),
    Int32(AtomicI32),
}

/// The scheduler test's fake filter plugin: it counts its calls.
struct FakeFilterPlugin {
    num_filter_called: NumFilterCalled,
}

impl FakeFilterPlugin {
    fn filter(&self) {
        match &self.num_filter_called {
            // `fp.numFilterCalled++`: a read and a write.
            NumFilterCalled::Int(n) => n.set(n.get() + 1),
            // The fix: `atomic.AddInt32(&fp.numFilterCalled, 1)`.
            NumFilterCalled::Int32(n) => {
                n.add(1);
            }
        }
    }
}

/// The scheduling framework (`framework`) with its filter plugins.
struct Framework {
    filter_plugins: Vec<FakeFilterPlugin>,
}

fn new_framework(variant: Variant) -> Arc<Framework> {
    let num_filter_called = if variant.fixed() {
        NumFilterCalled::Int32(AtomicI32::new(0))
    } else {
        NumFilterCalled::Int(Shared::new(0).named("fp.numFilterCalled"))
    };
    Arc::new(Framework {
        filter_plugins: vec![FakeFilterPlugin { num_filter_called }],
    })
}

impl Framework {
    fn run_filter_plugins(&self) {
        for pl in &self.filter_plugins {
            pl.filter();
        }
    }
}

/// The scheduler (`genericScheduler`).
struct GenericScheduler {
    framework: Arc<Framework>,
}

impl GenericScheduler {
    /// Runs the filter plugins for every node, in parallel (two workers, two nodes).
    fn find_nodes_that_fit(&self) {
        let framework = self.framework.clone();
        let check_node = move |_i: usize| framework.run_filter_plugins();
        parallelize_until(2, 2, Arc::new(check_node));
    }

    fn schedule(&self) {
        self.find_nodes_that_fit();
    }
}

/// client-go's `workqueue.ParallelizeUntil`, with no context (its stop channel is nil).
fn parallelize_until(
    mut workers: usize,
    pieces: usize,
    do_work_piece: Arc<dyn Fn(usize) + Send + Sync>,
) {
    let stop: Chan<()> = Chan::nil();

    let to_process = Chan::new(pieces).named("toProcess");
    for i in 0..pieces {
        to_process.send(i);
    }
    to_process.close();

    if pieces < workers {
        workers = pieces;
    }

    let wg = WaitGroup::new().named("wg");
    wg.add(workers as i64);
    for _ in 0..workers {
        let (wg, to_process, stop, do_work_piece) = (
            wg.clone(),
            to_process.clone(),
            stop.clone(),
            do_work_piece.clone(),
        );
        go_named("ParallelizeUntil.func1", move || {
            let _done = defer(|| wg.done());
            while let Some(piece) = to_process.recv() {
                select! {
                    recv(stop) => return,
                    default => do_work_piece(piece),
                }
            }
        });
    }
    wg.wait();
}

/// `TestKubernetes81091`.
fn test_kubernetes81091(variant: Variant) {
    let wg = WaitGroup::new().named("wg");
    wg.add(1);
    let wg2 = wg.clone();
    go_named("TestKubernetes81091.func1", move || {
        let _done = defer(|| wg2.done());
        let filter_framework = new_framework(variant);
        let scheduler = GenericScheduler {
            framework: filter_framework,
        };
        scheduler.schedule();
    });
    wg.wait();
}
