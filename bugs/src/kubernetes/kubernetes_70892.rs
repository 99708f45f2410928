#![doc = include_str!("kubernetes_70892.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::WaitGroup;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_70892",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/70892",
        category: "Anonymous function",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes70892,
        walkthrough: include_str!("kubernetes_70892.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/70892"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#70892"),
        review: "faithful after mends: Checked against GoKer nonblocking/kubernetes/70892, GoReal's revert diff and race report (fixed tree b8fece50), the PR #70892 description and client-go b5eba4c2: the buggy kernel is the upstream race; the fixed variant keeps the fix's effect but runs the function configs sequentially (upstream: a parallel loop over configs) and the walkthrough says the diff was not seen — faithful after mends to the Mapping/Deviations.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `HostPriorityList`: one score per node. A Go slice: the header (`results[i]`) is a
/// variable of its own, and so is each element (`results[i][j]`).
type HostPriorityList = Arc<Vec<Shared<i64>>>;

fn host_priority_list(scores: &[i64]) -> HostPriorityList {
    Arc::new(scores.iter().map(|&s| Shared::new(s)).collect())
}

/// client-go's `workqueue.ParallelizeUntil`.
fn parallelize_until(
    ctx: Option<&Context>,
    mut workers: usize,
    pieces: usize,
    do_work_piece: Arc<dyn Fn(usize) + Send + Sync>,
) {
    let stop: Chan<()> = match ctx {
        Some(ctx) => ctx.done(),
        None => Chan::nil(),
    };

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

/// `TestKubernetes70892`: the body of the scheduler's `PrioritizeNodes`, with three
/// whole-list priority functions and two nodes.
fn test_kubernetes70892(variant: Variant) {
    let priority_configs: Vec<i64> = vec![1, 2, 3];
    let results: Arc<Vec<Shared<HostPriorityList>>> = Arc::new(
        (0..priority_configs.len())
            .map(|i| Shared::new(host_priority_list(&[0, 0])).named(&format!("results[{i}]")))
            .collect(),
    );

    // A whole-list priority function (GoKer's abstraction of an old-style `Function`):
    // computes the scores of every node at once and replaces `results[i]` with them, unless
    // they are there already.
    let run_priority_function = {
        let results = results.clone();
        move |i: usize| {
            if results[i].get()[0].get() != 4 {
                results[i].set(host_priority_list(&[7, 8, 9]));
            }
        }
    };

    if variant.fixed() {
        // The fix: whole-list priority functions run once per config, outside the node loop.
        for i in 0..priority_configs.len() {
            run_priority_function(i);
        }
    }

    let process_node = {
        let priority_configs = priority_configs.clone();
        move |_index: usize| {
            for i in 0..priority_configs.len() {
                if variant.fixed() {
                    // Only per-node (map) priorities belong here, each writing its own
                    // `results[i][index]`; this kernel has none.
                    continue;
                }
                run_priority_function(i);
            }
        }
    };
    parallelize_until(Some(&context::background()), 2, 2, Arc::new(process_node));
}
