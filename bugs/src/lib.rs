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
pub mod run;

#[cfg(test)]
mod check;

pub use bug::{Budget, Bug, Loom, Variant};
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

// The module tree, generated from the files under src/<project>/ (see build.rs).
include!(concat!(env!("OUT_DIR"), "/corpus.rs"));
