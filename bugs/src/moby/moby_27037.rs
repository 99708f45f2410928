#![doc = include_str!("moby_27037.md")]

use primitives::sync::WaitGroup;
use primitives::{defer, go_named, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_27037",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/27037",
        category: "Anonymous function (loop variable captured by a goroutine)",
        expected: primitives::Verdict::Race,
        kernel: test_api_stats_network_stats_versioning,
        walkthrough: include_str!("moby_27037.md"),
        goker: Some("gobench/goker/nonblocking/moby/27037"),
        asplos: Some("non-blocking-bugs/docker/825e3a66a419038600024be7dfc5ca24426444f0.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("825e3a66"),
        review: "faithful: Checked against GoKer nonblocking/moby/27037, upstream test at ad398f13 and fix 825e3a66 (merge ba9fb732 = #27037): same loop-variable race, fix at the `go` statement, deviations (stand-in stats answer, integer version compare, no startAt) all admitted.",
        file: file!(),
        loom: Loom::DoesNotApply("five goroutines besides main (API versions 1.17 to 1.21): loom holds four"),
        ..Bug::DEFAULT
    }
}

/// The stats JSON the daemon answers with: API 1.21 replaced the single `network` object by
/// a `networks` map.
struct StatsJson {
    networks: bool,
}

/// `getVersionedStats`: `GET /v1.N/containers/{id}/stats?stream=false`, answered by a daemon
/// that formats the stats for the version asked.
fn get_versioned_stats(minor: i64) -> StatsJson {
    StatsJson {
        networks: minor >= 21,
    }
}

/// One request: ask the stats in API version `v1.<minor>` and check their shape.
fn check_version(minor: i64) {
    let stats_json_blob = get_versioned_stats(minor);
    if minor < 21 {
        assert!(
            !stats_json_blob.networks,
            "assertion failed: a v1.{minor} blob looks like a >=v1.21 one"
        );
    } else {
        assert!(
            stats_json_blob.networks,
            "assertion failed: a v1.{minor} blob does not look like a >=v1.21 one"
        );
    }
}

/// `TestApiStatsNetworkStatsVersioning` (integration-cli), after the container is running.
fn test_api_stats_network_stats_versioning(variant: Variant) {
    let wg = WaitGroup::new().named("wg");
    // `for i := 17; i <= 21; i++`: one variable for the whole loop (Go before 1.22).
    let i = Shared::new(17i64).named("i");
    while i.get() <= 21 {
        wg.add(1);
        let wg = wg.clone();
        if variant.fixed() {
            // go func(i int) { ... }(i): the value is read here, by the loop.
            let i = i.get();
            go_named("TestApiStatsNetworkStatsVersioning.func1", move || {
                let _done = defer(|| wg.done());
                check_version(i);
            });
        } else {
            // go func() { ... apiVersion := fmt.Sprintf("v1.%d", i) ... }()
            let i = i.clone();
            go_named("TestApiStatsNetworkStatsVersioning.func1", move || {
                let _done = defer(|| wg.done());
                check_version(i.get());
            });
        }
        i.set(i.get() + 1);
    }
    wg.wait();
}
