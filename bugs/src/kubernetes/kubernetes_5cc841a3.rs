#![doc = include_str!("kubernetes_5cc841a3.md")]

use std::sync::Arc;

use primitives::sync::{Mutex, RwMutex, WaitGroup};
use primitives::{defer, go_named, Chan, GoMap};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_5cc841a3",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/commit/5cc841a337fe2a8bcfe29450a6bc4650d9e348c2",
        category: "Missing unlock",
        expected: primitives::Verdict::Deadlock,
        kernel: test_kubernetes5cc841a3,
        walkthrough: include_str!("kubernetes_5cc841a3.md"),
        asplos: Some("blocking-bugs/kubernetes/5cc841a337fe2a8bcfe29450a6bc4650d9e348c2.txt"),
        source: Source::Diff("5cc841a3"),
        fix: Fix::Upstream("5cc841a3"),
        loom: Loom::Applies,
        review: "faithful after mends: Checked against the 5cc841a3 diff (ASPLOS file) and unpinned lookups of client-go's `Parallelize` and older `equivalence_cache.go`. The bug, the fix and the deadlock verdict are upstream's. The `Parallelize` body is right apart from the missing `HandleCrash`. The walkthrough should mend four unadmitted small items: `HandleCrash` dropped, the methods' `false` (no internal locking) not mentioned, fix hunk 3 (log line only) unmapped, and the `predicateFuncs` check and `alwaysCheckAllPredicates` not mentioned.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A predicate's error (`error`); its text does not matter here.
#[derive(Debug)]
struct Error;

/// `algorithm.PredicateFailureReason`, reduced to a name.
type PredicateFailureReason = &'static str;

/// `HostPredicate`: a cached predicate result.
#[derive(Clone, Default)]
struct HostPredicate {
    fit: bool,
    fail_reasons: Vec<PredicateFailureReason>,
}

/// `EquivalenceCache`: the embedded `sync.RWMutex` and `algorithmCache`, keyed here by
/// node name and predicate key.
struct EquivalenceCache {
    rw_mutex: RwMutex,
    algorithm_cache: GoMap<(String, String), HostPredicate>,
}

impl EquivalenceCache {
    /// `PredicateWithECache`: the cached result, or `invalid` when there is none.
    fn predicate_with_ecache(
        &self,
        node_name: &str,
        predicate_key: &str,
    ) -> (bool, Vec<PredicateFailureReason>, bool) {
        let key = (node_name.to_string(), predicate_key.to_string());
        match self.algorithm_cache.with(|m| m.get(&key).cloned()) {
            Some(r) => (r.fit, r.fail_reasons, false),
            None => (false, Vec::new(), true),
        }
    }

    /// `UpdateCachedPredicateItem`.
    fn update_cached_predicate_item(
        &self,
        node_name: &str,
        predicate_key: &str,
        fit: bool,
        reasons: Vec<PredicateFailureReason>,
    ) {
        let key = (node_name.to_string(), predicate_key.to_string());
        self.algorithm_cache.insert(
            key,
            HostPredicate {
                fit,
                fail_reasons: reasons,
            },
        );
    }
}

/// A node (`schedulercache.NodeInfo`), reduced to its name.
struct NodeInfo {
    name: String,
}

/// `algorithm.FitPredicate`: the one predicate here fails with an error on `node-2`
/// (as a predicate does when it cannot read what it needs, e.g. a volume or node lookup).
fn predicate(node: &NodeInfo) -> Result<(bool, Vec<PredicateFailureReason>), Error> {
    if node.name == "node-2" {
        Err(Error)
    } else {
        Ok((true, Vec::new()))
    }
}

/// `predicates.Ordering()`, reduced to one key.
const ORDERING: [&str; 1] = ["CheckNodeCondition"];

/// `podFitsOnNode`, with the equivalence cache available (`eCacheAvailable`).
fn pod_fits_on_node(
    info: &NodeInfo,
    ecache: &EquivalenceCache,
    variant: Variant,
) -> Result<(bool, Vec<PredicateFailureReason>), Error> {
    let e_cache_available = true;
    let mut failed_predicates: Vec<PredicateFailureReason> = Vec::new();
    let mut predicate_results: std::collections::BTreeMap<&str, HostPredicate> =
        std::collections::BTreeMap::new();
    for predicate_key in ORDERING {
        let mut fit = false;
        let mut reasons: Vec<PredicateFailureReason> = Vec::new();
        let mut err: Option<Error> = None;
        let mut store = |fit: bool, reasons: &[PredicateFailureReason]| {
            // Store data to update eCache.
            let res = predicate_results
                .entry(predicate_key)
                .or_insert(HostPredicate {
                    fit: true,
                    fail_reasons: Vec::new(),
                });
            res.fit = res.fit && fit;
            res.fail_reasons.extend_from_slice(reasons);
            let result = res.clone();
            ecache.update_cached_predicate_item(
                &info.name,
                predicate_key,
                result.fit,
                result.fail_reasons,
            );
        };
        if variant.fixed() {
            // The in-line function: `defer ecache.Unlock()` releases the lock on every return.
            (|| {
                let mut invalid = false;
                let mut _unlock = None;
                if e_cache_available {
                    ecache.rw_mutex.lock();
                    _unlock = Some(defer(|| ecache.rw_mutex.unlock()));
                    (fit, reasons, invalid) =
                        ecache.predicate_with_ecache(&info.name, predicate_key);
                }
                if !e_cache_available || invalid {
                    match predicate(info) {
                        Ok((f, r)) => (fit, reasons) = (f, r),
                        Err(e) => {
                            err = Some(e);
                            return;
                        }
                    }
                    if e_cache_available {
                        store(fit, &reasons);
                    }
                }
            })();
            if let Some(e) = err {
                return Err(e);
            }
        } else {
            let mut invalid = false;
            if e_cache_available {
                ecache.rw_mutex.lock();
                (fit, reasons, invalid) = ecache.predicate_with_ecache(&info.name, predicate_key);
            }
            if !e_cache_available || invalid {
                match predicate(info) {
                    Ok((f, r)) => (fit, reasons) = (f, r),
                    // Returns with ecache still locked.
                    Err(e) => return Err(e),
                }
                if e_cache_available {
                    store(fit, &reasons);
                }
            }
            if e_cache_available {
                ecache.rw_mutex.unlock();
            }
        }
        if !fit {
            failed_predicates.extend_from_slice(&reasons);
            break;
        }
    }
    Ok((failed_predicates.is_empty(), failed_predicates))
}

/// `workqueue.Parallelize`: `workers` goroutines take the pieces from a closed channel.
fn parallelize(workers: usize, pieces: usize, do_work_piece: Arc<dyn Fn(usize) + Send + Sync>) {
    let to_process: Chan<usize> = Chan::new(pieces).named("toProcess");
    for i in 0..pieces {
        to_process.send(i);
    }
    to_process.close();
    let workers = workers.min(pieces);
    let wg = WaitGroup::new().named("wg");
    wg.add(workers as i64);
    for _ in 0..workers {
        let (to_process, wg, do_work_piece) =
            (to_process.clone(), wg.clone(), do_work_piece.clone());
        go_named("Parallelize.func1", move || {
            let _done = defer(|| wg.done());
            while let Some(piece) = to_process.recv() {
                do_work_piece(piece);
            }
        });
    }
    wg.wait();
}

/// `findNodesThatFit`'s parallel part: `checkNode` over every node, 16 workers at most.
fn test_kubernetes5cc841a3(variant: Variant) {
    let nodes = Arc::new(vec![
        NodeInfo {
            name: "node-1".to_string(),
        },
        NodeInfo {
            name: "node-2".to_string(),
        },
    ]);
    let ecache = Arc::new(EquivalenceCache {
        rw_mutex: RwMutex::new().named("ecache"),
        algorithm_cache: GoMap::new().named("algorithmCache"),
    });
    let errs: GoMap<String, i32> = GoMap::new().named("errs");
    let predicate_result_lock = Arc::new(Mutex::new().named("predicateResultLock"));
    let n = nodes.len();
    let check_node = {
        let errs = errs.clone();
        Arc::new(move |i: usize| {
            if pod_fits_on_node(&nodes[i], &ecache, variant).is_err() {
                predicate_result_lock.lock();
                let c = errs
                    .with(|m| m.get("predicate error").copied())
                    .unwrap_or(0);
                errs.insert("predicate error".to_string(), c + 1);
                predicate_result_lock.unlock();
            }
        })
    };
    parallelize(16, n, check_node);
}
