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

/// Go's use of a nil pointer or a nil interface value: a field read, or a method called through
/// it (`x.M()` with `x` nil). `Some(v)` goes on with `v`; `None` panics as Go's runtime does,
/// at the caller's line.
#[track_caller]
pub fn deref<T>(p: Option<T>) -> T {
    match p {
        Some(v) => v,
        None => panic!("runtime error: invalid memory address or nil pointer dereference"),
    }
}

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

/// Stock Go's own figures for a GoKer kernel (`bugs/stock-go.tsv`): how often `go test` with an
/// unmodified Go toolchain showed the bug. Measured outside this repository by running GoKer's
/// kernels with Go 1.19, 20 runs each (the workspace's shared `native-go.tsv`, copied here),
/// plus the rate GoBench's repository records where it has one. The kernel is GoKer's Go program, not our port: the figures say how hidden the bug is
/// natively, beside how soon the engines here find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockGo {
    pub id: &'static str,
    /// The Go version measured.
    pub go: &'static str,
    /// Runs of the kernel's test.
    pub runs: u32,
    /// Runs in which `go test` failed (timeout, panic, or `-race` for nonblocking kernels).
    pub manifested: u32,
    /// How those runs failed, with counts (`test-timeout(20)`), or `-`.
    pub how: &'static str,
    /// Blocking kernels: runs that failed or left a goroutine blocked after the test returned.
    pub with_leak_check: Option<u32>,
    /// GoBench's recorded rate ("N/100"), if any.
    pub gobench_recorded: Option<&'static str>,
}

/// The file behind [`stock_go`]: tab-separated, a header first (columns as [`StockGo`]).
pub const STOCK_GO_TSV: &str = include_str!("../stock-go.tsv");

/// Stock Go's figures for the bug `id`, if it has a GoKer kernel that was measured.
pub fn stock_go(id: &str) -> Option<StockGo> {
    STOCK_GO_TSV.lines().skip(1).find_map(|line| {
        let f: Vec<&'static str> = line.split('\t').map(str::trim).collect();
        if f.first() != Some(&id) || f.len() < 6 {
            return None;
        }
        let opt = |i: usize| f.get(i).copied().filter(|s| !s.is_empty());
        Some(StockGo {
            id: f[0],
            go: f[2],
            runs: f[3].parse().ok()?,
            manifested: f[4].parse().ok()?,
            how: f[5],
            with_leak_check: opt(6).and_then(|s| s.parse().ok()),
            gobench_recorded: opt(7),
        })
    })
}

// The module tree, generated from the files under src/<project>/ (see build.rs).
include!(concat!(env!("OUT_DIR"), "/corpus.rs"));
