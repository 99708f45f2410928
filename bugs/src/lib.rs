//! The corpus: documented Go concurrency bugs of Kubernetes, etcd, gRPC and Docker (moby),
//! each ported as one kernel with a buggy and a fixed variant.
//!
//! A bug lives in `src/<project>/<id>.rs` (the kernel and its metadata) and `<id>.md` (its
//! walkthrough, which is also the module's documentation). Every bug registers a [`Bug`] with
//! the registry; [`all`] lists them, sorted by id. The kernel is the body of the upstream Go
//! test, written against [`primitives`], with the upstream fix switched in by
//! [`Variant::Fixed`] at the lines it changed (`git grep Variant::Fixed` lists every fix).
//!
//! `cargo test -p bugs <id>` checks one bug: its buggy variant is detected with its expected
//! verdict on every engine that can reach it, its fixed variant stays clean on every engine.

mod bug;
pub mod fidelity;
pub mod run;

#[cfg(test)]
mod check;

pub use bug::{Budget, Bug, Fix, Loom, Source, Variant};
pub use primitives;

inventory::collect!(Bug);

/// Every registered bug, sorted by id.
pub fn all() -> Vec<&'static Bug> {
    let mut bugs: Vec<&'static Bug> = inventory::iter::<Bug>.into_iter().collect();
    bugs.sort_by_key(|b| b.id);
    bugs
}

/// The bug with this id.
pub fn find(id: &str) -> Option<&'static Bug> {
    inventory::iter::<Bug>.into_iter().find(|b| b.id == id)
}

/// A documented bug the corpus leaves out, and why (`bugs/excluded.tsv`): its upstream change
/// could not be found, or it is not a concurrency bug (`../shared/FIDELITY.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exclusion {
    pub id: &'static str,
    pub reason: &'static str,
    /// Where the reason can be checked: links, commits, what was searched.
    pub evidence: &'static str,
}

/// The file behind [`excluded`]: tab-separated `id`, `reason`, `evidence`, a header first.
pub const EXCLUDED_TSV: &str = include_str!("../excluded.tsv");

/// Every bug left out, in the file's order. A row without all three fields is not an
/// exclusion (a test names it).
pub fn excluded() -> Vec<Exclusion> {
    EXCLUDED_TSV
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split('\t').map(str::trim);
            let (id, reason, evidence) = (f.next()?, f.next()?, f.next()?);
            (!id.is_empty() && !reason.is_empty() && !evidence.is_empty()).then_some(Exclusion {
                id,
                reason,
                evidence,
            })
        })
        .collect()
}

// The module tree, generated from the files under src/<project>/ (see build.rs).
include!(concat!(env!("OUT_DIR"), "/corpus.rs"));
