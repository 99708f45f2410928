#![doc = include_str!("kubernetes_59574.md")]

use primitives::sync::WaitGroup;
use primitives::{defer, go_named, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_59574",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/59574",
        category: "Misuse WaitGroup",
        expected: primitives::Verdict::Race,
        kernel: test_kubernetes59574,
        walkthrough: include_str!("kubernetes_59574.md"),
        goker: None,
        asplos: None,
        source: Source::Description("https://github.com/kubernetes/kubernetes/pull/59574"),
        fix: Fix::Ours("TODO"),
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The reconstructed pattern: a goroutine does a piece of work and stores its result; the
/// caller waits for it on a `WaitGroup`, then reads the result.
fn test_kubernetes59574(variant: Variant) {
    let wg = WaitGroup::new().named("wg");
    let result = Shared::new(None::<i32>).named("result");

    if variant.fixed() {
        // The fix: count the goroutine before starting it, so Wait cannot miss it.
        wg.add(1);
    }
    let (wg2, result2) = (wg.clone(), result.clone());
    go_named("worker", move || {
        if !variant.fixed() {
            wg2.add(1); // too late if Wait has already seen a zero counter
        }
        let _done = defer(|| wg2.done());
        result2.set(Some(42));
    });

    wg.wait(); // returns at once while the counter is still zero
    let _ = result.get();
}
