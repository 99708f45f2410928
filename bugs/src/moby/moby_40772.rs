#![doc = include_str!("moby_40772.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::Mutex;
use primitives::{defer, go_named, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_40772",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/40772",
        category: "Data race (map written without its lock)",
        expected: primitives::Verdict::Race,
        kernel: test_moby40772,
        walkthrough: include_str!("moby_40772.md"),
        source: Source::Diff("5ad98164"),
        fix: Fix::Upstream("5ad98164"),
        review: "faithful after mends: Checked against 5ad98164 and builder.go/backend.go at ff99a93b: the unlocked deferred delete and its two-line fix are modelled exactly; only the trace is stale.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `buildJob`: what `Cancel` (`POST /build/cancel`, under `mu`) needs to stop a build by ID.
struct BuildJob {
    cancel: Shared<Option<CancelFunc>>,
}

fn new_build_job() -> Arc<BuildJob> {
    Arc::new(BuildJob {
        cancel: Shared::new(None).named("buildJob.cancel"),
    })
}

/// The BuildKit-based `Builder`: `mu` guards `jobs`, the builds in flight by build ID.
struct Builder {
    mu: Mutex,
    jobs: GoMap<&'static str, Arc<BuildJob>>,
    variant: Variant,
}

impl Builder {
    /// `Build`, for a request that carries a build ID (`POST /build?buildid=...`) and no upload.
    fn build(&self, ctx: &Context, build_id: &'static str) {
        self.mu.lock();
        if !self.jobs.contains_key(&build_id) {
            self.jobs.insert(build_id, new_build_job());
        }
        let j = self.jobs.get(&build_id).expect("inserted above");
        let (ctx, cancel) = context::with_cancel(ctx);
        j.cancel.set(Some(cancel));
        self.mu.unlock();

        let _delete = defer(|| {
            if self.variant.fixed() {
                self.mu.lock();
                self.jobs.remove(&build_id);
                self.mu.unlock();
            } else {
                self.jobs.remove(&build_id);
            }
        });

        // The solve runs under ctx; it completes here.
        let _ = ctx.err();
    }
}

/// Two `docker build`s (with BuildKit) served by the daemon at the same time.
fn test_moby40772(variant: Variant) {
    let b = Arc::new(Builder {
        mu: Mutex::new().named("Builder.mu"),
        jobs: GoMap::new().named("jobs"),
        variant,
    });
    for build_id in ["build-1", "build-2"] {
        let b = b.clone();
        go_named("Build", move || b.build(&context::background(), build_id));
    }
}
