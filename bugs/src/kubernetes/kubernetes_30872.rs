#![doc = include_str!("kubernetes_30872.md")]

use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::time::Duration;

use primitives::sync::{Mutex, RwMutex};
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_30872",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/30872",
        category: "AB-BA deadlock",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes30872,
        walkthrough: include_str!("kubernetes_30872.md"),
        goker: Some("gobench/goker/blocking/kubernetes/30872"),
        asplos: Some("blocking-bugs/kubernetes/681d153050930f67945fc308ad10566ec299edd5.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("681d1530"),
        review: "faithful: Checked against GoKer blocking/kubernetes/30872 (kernel and backtrace), the 681d1530 diff and PR #30872's thread: GoKer's kernel with an admitted period wait, upstream's first hunk as the switch, leak verdict right.",
        file: file!(),
        loom: Loom::DoesNotApply(
            "the controller loop runs until stopChan is closed; loom's unfair schedules (the \
             loop and the timer goroutine taking turns) starve the stopper and end the fixed \
             variant at the step bound",
        ),
        ..Bug::DEFAULT
    }
}

/// `wait.Until` (GoKer's `Util`): calls `f` every `period` until `stop_ch` is closed.
fn util(f: impl Fn(), period: Duration, stop_ch: &Chan<()>) {
    jitter_until(f, period, stop_ch);
}

/// `wait.JitterUntil`, without the jitter.
fn jitter_until(f: impl Fn(), period: Duration, stop_ch: &Chan<()>) {
    loop {
        select! {
            recv(stop_ch) => return,
            default => {},
        }
        f();
        // Upstream waits a period between two calls (GoKer spins instead).
        select! {
            recv(stop_ch) => return,
            recv(time::after(period)) => {},
        }
    }
}

/// The informer's queue (`DeltaFIFO`), guarded by its own lock.
struct DeltaFifo {
    lock: RwMutex,
}

impl DeltaFifo {
    /// `HasSynced`.
    fn has_synced(&self) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
    }

    /// `Pop`: runs `process` while holding the queue's lock.
    fn pop(&self, process: &dyn Fn()) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        process();
    }
}

/// The controller's `Config`: its queue and what to do with each item.
struct Config {
    queue: Arc<DeltaFifo>,
    process: Box<dyn Fn() + Send + Sync>,
}

/// The informer's `Controller`.
struct Controller {
    config: Config,
}

impl Controller {
    /// `Run`: processes the queue until `stop_ch` is closed.
    fn run(&self, stop_ch: Chan<()>) {
        util(|| self.process_loop(), Duration::from_secs(1), &stop_ch);
    }

    /// `HasSynced`.
    fn has_synced(&self) {
        self.config.queue.has_synced();
    }

    /// `processLoop`.
    fn process_loop(&self) {
        self.config.queue.pop(&*self.config.process);
    }
}

/// `ResourceEventHandlerFuncs`.
struct ResourceEventHandlerFuncs {
    add_func: Option<Box<dyn Fn() + Send + Sync>>,
}

impl ResourceEventHandlerFuncs {
    /// `OnAdd`.
    fn on_add(&self) {
        if let Some(add_func) = &self.add_func {
            add_func();
        }
    }
}

/// `informer`: a controller and the channel that stops it.
struct Informer {
    controller: Arc<Controller>,
    stop_chan: Shared<Chan<()>>,
}

/// `federatedInformerImpl`, which embeds a `sync.Mutex`.
struct FederatedInformerImpl {
    mutex: Mutex,
    cluster_informer: Informer,
    variant: Variant,
}

impl Deref for FederatedInformerImpl {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

impl FederatedInformerImpl {
    /// `ClustersSynced`.
    fn clusters_synced(&self) {
        // The fix drops this lock: `HasSynced` takes the queue's lock, which must never be
        // taken while holding the informer's.
        let locked = !self.variant.fixed();
        if locked {
            self.lock();
        }
        let _unlock = defer(|| {
            if locked {
                self.unlock()
            }
        });
        self.cluster_informer.controller.has_synced();
    }

    /// `addCluster` (the cluster informer's add handler).
    fn add_cluster(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
    }

    /// `Start`: starts the cluster informer's controller.
    fn start(self: &Arc<Self>) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.cluster_informer
            .stop_chan
            .set(Chan::new(0).named("stopChan"));
        let controller = self.cluster_informer.controller.clone();
        let stop_chan = self.cluster_informer.stop_chan.get();
        // Go's garbage collector keeps the informer alive while its controller can call back.
        let informer = self.clone();
        go_named("Controller.Run", move || {
            controller.run(stop_chan);
            drop(informer);
        });
    }

    /// `Stop`: stops the cluster informer's controller.
    fn stop(&self) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.cluster_informer.stop_chan.get().close();
    }
}

/// `DelayingDeliverer`.
struct DelayingDeliverer;

impl DelayingDeliverer {
    /// `StartWithHandler`: runs `handler` in a goroutine of its own.
    fn start_with_handler(&self, handler: impl FnOnce() + Send + 'static) {
        go_named("StartWithHandler.func1", handler);
    }
}

/// The federated `NamespaceController`.
struct NamespaceController {
    namespace_deliverer: DelayingDeliverer,
    namespace_federated_informer: Arc<FederatedInformerImpl>,
}

impl NamespaceController {
    /// `isSynced`.
    fn is_synced(&self) {
        self.namespace_federated_informer.clusters_synced();
    }

    /// `reconcileNamespace`.
    fn reconcile_namespace(&self) {
        self.is_synced();
    }

    /// `Run`.
    fn run(self: &Arc<Self>, stop_chan: Chan<()>) {
        self.namespace_federated_informer.start();
        let nc = self.clone();
        go_named("NamespaceController.Run.func1", move || {
            stop_chan.recv();
            nc.namespace_federated_informer.stop();
        });
        let nc = self.clone();
        self.namespace_deliverer
            .start_with_handler(move || nc.reconcile_namespace());
    }
}

/// `NewFederatedInformer`: the add handler calls back into the federated informer.
fn new_federated_informer(variant: Variant) -> Arc<FederatedInformerImpl> {
    Arc::new_cyclic(|federated_informer: &Weak<FederatedInformerImpl>| {
        let fi = federated_informer.clone();
        FederatedInformerImpl {
            mutex: Mutex::new().named("federatedInformerImpl"),
            cluster_informer: Informer {
                controller: new_informer(ResourceEventHandlerFuncs {
                    add_func: Some(Box::new(move || {
                        fi.upgrade().expect("the informer is alive").add_cluster()
                    })),
                }),
                stop_chan: Shared::new(Chan::nil()).named("stopChan"),
            },
            variant,
        }
    })
}

/// `NewInformer`: a controller whose queue hands every item to the handler's `OnAdd`.
fn new_informer(h: ResourceEventHandlerFuncs) -> Arc<Controller> {
    let fifo = Arc::new(DeltaFifo {
        lock: RwMutex::new().named("DeltaFIFO.lock"),
    });
    Arc::new(Controller {
        config: Config {
            queue: fifo,
            process: Box::new(move || h.on_add()),
        },
    })
}

/// `NewNamespaceController`.
fn new_namespace_controller(variant: Variant) -> Arc<NamespaceController> {
    Arc::new(NamespaceController {
        namespace_deliverer: DelayingDeliverer,
        namespace_federated_informer: new_federated_informer(variant),
    })
}

/// `TestKubernetes30872_bad_test`.
fn test_kubernetes30872(variant: Variant) {
    let namespace_controller = new_namespace_controller(variant);
    let stop = Chan::new(0).named("stop");
    namespace_controller.run(stop.clone());
    stop.close();
}
