#![doc = include_str!("kubernetes_36377.md")]

use std::collections::HashMap;
use std::sync::Arc;

use primitives::sync::RwMutex;
use primitives::{defer, go_named, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_36377",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/36377",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_namespace_controller,
        walkthrough: include_str!("kubernetes_36377.md"),
        asplos: Some("non-blocking-bugs/kubernetes/647b826d697abdc50aa4808fa21604c9f6fe80a4.txt"),
        source: Source::Diff("647b826d"),
        fix: Fix::Upstream("647b826d"),
        review: "faithful after mends: Checked against the ASPLOS diff of 647b826d, issue #36364's race report (read side), the PR #36377 and #34648 threads and client-go's 2016 NewInformer: right bug, fix and verdict; the writer (addFinalizerFunc's append to ObjectMeta.Finalizers) is a sound, admitted inference; the mends (post-fix rows marked in the code table, the store's one-step update listed) are made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The finalizer `EnsureFinalizers` makes sure of: delete from underlying clusters.
const FINALIZER_DELETE_FROM_UNDERLYING_CLUSTERS: &str =
    "federation.kubernetes.io/delete-from-underlying-clusters";

/// `api_v1.Namespace`, reduced to its name, `ObjectMeta.Finalizers` and `Status.Phase`
/// (in Go's field order).
struct Namespace {
    name: String,
    finalizers: Shared<Vec<String>>,
    phase: String,
}

impl Namespace {
    fn new(name: &str, phase: &str) -> Arc<Namespace> {
        Arc::new(Namespace {
            name: name.to_string(),
            finalizers: Shared::new(Vec::new()).named("Namespace.Finalizers"),
            phase: phase.to_string(),
        })
    }
}

/// `conversion.NewCloner().DeepCopy`: a new object, sharing nothing with the old one.
fn deep_copy(ns: &Namespace) -> Arc<Namespace> {
    Arc::new(Namespace {
        name: ns.name.clone(),
        finalizers: Shared::new(ns.finalizers.get()).named("Namespace.Finalizers"),
        phase: ns.phase.clone(),
    })
}

/// `reflect.DeepEqual(old, cur)` on two namespaces: compares field by field in Go's order and
/// stops at the first difference.
fn deep_equal(old: &Namespace, cur: &Namespace) -> bool {
    old.name == cur.name && old.finalizers.get() == cur.finalizers.get() && old.phase == cur.phase
}

/// `cache.Store` (the thread-safe store behind `cache.NewInformer`): its lock guards the map,
/// not the objects the map points to.
struct Store {
    lock: RwMutex,
    items: Shared<HashMap<String, Arc<Namespace>>>,
}

impl Store {
    /// `Add` / `Update`: stores `obj`, returns what was there (the informer needs it as `old`).
    fn update(&self, obj: Arc<Namespace>) -> Option<Arc<Namespace>> {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.items.write(|m| m.insert(obj.name.clone(), obj))
    }

    /// `GetByKey`: the pointer held by the store, not a copy.
    fn get_by_key(&self, key: &str) -> Option<Arc<Namespace>> {
        self.lock.rlock();
        let _unlock = defer(|| self.lock.runlock());
        self.items.read(|m| m.get(key).cloned())
    }
}

/// A watch event from the (fake) federated API server.
enum Event {
    Added(Arc<Namespace>),
    Modified(Arc<Namespace>),
}

/// `federation-controller/namespace.NamespaceController`.
struct NamespaceController {
    namespace_informer_store: Store,
    /// `namespaceDeliverer`: carries namespace names to the reconcile worker.
    namespace_deliverer: Chan<String>,
    variant: Variant,
}

impl NamespaceController {
    /// `deliverNamespaceObj` / `deliverNamespace` (no delay, no backoff).
    fn deliver_namespace_obj(&self, obj: &Namespace) {
        self.namespace_deliverer.send(obj.name.clone());
    }

    /// `util.NewTriggerOnAllChanges(...)`'s `UpdateFunc`: delivers the object if it changed.
    fn trigger_on_update(&self, old: &Namespace, cur: &Namespace) {
        if !deep_equal(old, cur) {
            self.deliver_namespace_obj(cur);
        }
    }

    /// The informer's `processLoop`: each watch event goes into the store, then to the
    /// handler (`OnAdd`, `OnUpdate(old, cur)`).
    fn process_loop(&self, watch: &Chan<Event>) {
        while let Some(ev) = watch.recv() {
            match ev {
                Event::Added(obj) => {
                    self.namespace_informer_store.update(obj.clone());
                    self.deliver_namespace_obj(&obj);
                }
                Event::Modified(cur) => {
                    if let Some(old) = self.namespace_informer_store.update(cur.clone()) {
                        self.trigger_on_update(&old, &cur);
                    }
                }
            }
        }
    }

    /// `hasFinalizerFunc`.
    fn has_finalizer_func(&self, namespace: &Namespace, finalizer: &str) -> bool {
        namespace
            .finalizers
            .read(|f| f.iter().any(|x| x == finalizer))
    }

    /// `addFinalizerFunc`: appends to the given object's finalizers in place, then
    /// `Namespaces().Finalize(namespace)` on the (fake) client, which returns it.
    fn add_finalizer_func(&self, namespace: Arc<Namespace>, finalizer: &str) -> Arc<Namespace> {
        namespace
            .finalizers
            .write(|f| f.push(finalizer.to_string()));
        namespace
    }

    /// `deletionHelper.EnsureFinalizers`.
    fn ensure_finalizers(&self, obj: Arc<Namespace>) -> Arc<Namespace> {
        if !self.has_finalizer_func(&obj, FINALIZER_DELETE_FROM_UNDERLYING_CLUSTERS) {
            return self.add_finalizer_func(obj, FINALIZER_DELETE_FROM_UNDERLYING_CLUSTERS);
        }
        obj
    }

    /// `reconcileNamespace`.
    fn reconcile_namespace(&self, namespace: &str) {
        let Some(namespace_obj_from_store) = self.namespace_informer_store.get_by_key(namespace)
        else {
            // Not federated namespace, ignoring.
            return;
        };
        let base_namespace = if self.variant.fixed() {
            // Create a copy before modifying the namespace.
            deep_copy(&namespace_obj_from_store)
        } else {
            namespace_obj_from_store
        };
        let base_namespace = self.ensure_finalizers(base_namespace);
        // Creating/updating the namespace in the member clusters reads only the copy made
        // from base_namespace there; left out.
        let _ = base_namespace;
    }
}

/// `TestNamespaceController`: a namespace is added to the federated API server, then updated.
fn test_namespace_controller(variant: Variant) {
    let nc = Arc::new(NamespaceController {
        namespace_informer_store: Store {
            lock: RwMutex::new().named("threadSafeMap.lock"),
            items: Shared::new(HashMap::new()).named("threadSafeMap.items"),
        },
        namespace_deliverer: Chan::new(0).named("namespaceDeliverer"),
        variant,
    });
    // The fake federated API server's namespace watch.
    let watch: Chan<Event> = Chan::new(0).named("nsWatch");

    let nc1 = nc.clone();
    let watch1 = watch.clone();
    go_named("processLoop", move || {
        nc1.process_loop(&watch1);
        nc1.namespace_deliverer.close();
    });
    let nc2 = nc.clone();
    let done: Chan<()> = Chan::new(0).named("done");
    let done2 = done.clone();
    go_named("DelayingDeliverer.StartWithHandler.func1", move || {
        while let Some(namespace) = nc2.namespace_deliverer.recv() {
            nc2.reconcile_namespace(&namespace);
        }
        done2.close();
    });

    watch.send(Event::Added(Namespace::new("ns1", "")));
    watch.send(Event::Modified(Namespace::new("ns1", "Active")));
    watch.close();
    done.recv();
}
