#![doc = include_str!("kubernetes_13058.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::WaitGroup;
use primitives::{defer, go_named, select, time, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_13058",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/13058",
        category: "Misuse WaitGroup (Done before Add)",
        expected: primitives::Verdict::Panic,
        kernel: test_kubernetes13058,
        loom: Loom::DoesNotApply(
            "main, the controller, three test goroutines and the timer goroutine: more \
             threads than loom's five",
        ),
        walkthrough: include_str!("kubernetes_13058.md"),
        goker: Some("gobench/goker/nonblocking/kubernetes/13058"),
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream("#13058"),
        review: "faithful to GoKer and to PR #13058's change, after mends; not upstream's observed failure: the walkthrough now says first that Done before Add is GoKer's reading of a latent ordering hazard TestUpdate cannot reach, and that upstream's panic fits duplicate deletions (#17018, fixed by #14881), which is not modelled.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// An object the informer hands to its handlers (its contents do not matter here).
struct Obj;

type ProcessFunc = Arc<dyn Fn(Obj) + Send + Sync>;

/// The informer's `ResourceEventHandlerFuncs`, with only its delete handler.
struct ResourceEventHandlerFuncs {
    delete_func: Option<Box<dyn Fn(Obj) + Send + Sync>>,
}

impl ResourceEventHandlerFuncs {
    fn on_delete(&self, obj: Obj) {
        if let Some(f) = &self.delete_func {
            f(obj);
        }
    }
}

/// The controller framework's `Config`: the queue of deltas to process, and what to do
/// with each.
struct Config {
    queue: Chan<Obj>,
    process: ProcessFunc,
}

/// The controller framework's `Controller`.
struct Controller {
    config: Config,
}

impl Controller {
    /// Processes the deltas waiting in the queue (the real loop blocks in `Pop`; see the
    /// walkthrough).
    fn process_loop(&self) {
        loop {
            select! {
                recv(self.config.queue) -> obj => (self.config.process)(obj.expect("never closed")),
                default => break,
            }
        }
    }

    fn run(&self, stop_ch: &Chan<()>) {
        until(&|| self.process_loop(), Duration::from_millis(10), stop_ch);
    }
}

fn new(c: Config) -> Arc<Controller> {
    Arc::new(Controller { config: c })
}

/// `NewInformer`, here over a queue that already holds the deletions the informer will
/// report.
fn new_informer(queue: Chan<Obj>, h: ResourceEventHandlerFuncs) -> Arc<Controller> {
    let cfg = Config {
        queue,
        process: Arc::new(move |obj| h.on_delete(obj)),
    };
    new(cfg)
}

/// `util.Until`: run `f` every `period` until `stop_ch` is closed.
fn until(f: &dyn Fn(), period: Duration, stop_ch: &Chan<()>) {
    loop {
        select! {
            recv(stop_ch) => return,
            default => {},
        }
        f();
        time::sleep(period);
    }
}

/// `TestKubernetes13058` (the controller framework's `TestUpdate`).
fn test_kubernetes13058(variant: Variant) {
    let test_done_wg = WaitGroup::new().named("testDoneWG");

    const THREADS: usize = 3;
    let tests: Vec<fn(String)> = vec![|_name| {}];

    // The deletions the informer will deliver, one per test run.
    let queue = Chan::new(THREADS * tests.len()).named("queue");
    for _ in 0..THREADS * tests.len() {
        queue.send(Obj);
    }

    let wg_for_delete = test_done_wg.clone();
    let controller = new_informer(
        queue,
        ResourceEventHandlerFuncs {
            delete_func: Some(Box::new(move |_obj| wg_for_delete.done())),
        },
    );

    if variant.fixed() {
        // The fix: once Run is called, Done may be called, so every Add comes first.
        test_done_wg.add((THREADS * tests.len()) as i64);
    }

    let stop = Chan::new(0).named("stop");
    let (c, s) = (controller.clone(), stop.clone());
    go_named("Controller.Run", move || c.run(&s));

    let wg = WaitGroup::new().named("wg");
    wg.add((THREADS * tests.len()) as i64);
    if !variant.fixed() {
        test_done_wg.add((THREADS * tests.len()) as i64);
    }
    for i in 0..THREADS {
        for (j, &f) in tests.iter().enumerate() {
            let (wg, name) = (wg.clone(), format!("{i}-{j}"));
            go_named("TestKubernetes13058.func2", move || {
                let _done = defer(|| wg.done());
                f(name);
            });
        }
    }
    wg.wait();
    test_done_wg.wait();
    stop.close();
}
