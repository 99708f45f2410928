#![doc = include_str!("moby_4395.md")]

use primitives::{go_named, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_4395",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/4395",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_moby4395,
        walkthrough: include_str!("moby_4395.md"),
        goker: Some("gobench/goker/blocking/moby/4395"),
        asplos: Some("blocking-bugs/docker/d3a6ee1e55a53ee54b91ffb6c53ba674768cf9de.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("d3a6ee1e"),
        review: "faithful after mends: Checked against GoKer blocking/moby/4395, d3a6ee1e and utils.go/client.go at 5f5880ed: GoKer's kernel with upstream's one-line fix; only the trace is stale.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// Go's `error`, reduced to its message.
type Error = &'static str;

/// `utils.Go`: runs `f` in a goroutine and returns a channel that will carry its error.
fn go(f: impl FnOnce() -> Option<Error> + Send + 'static, variant: Variant) -> Chan<Option<Error>> {
    let ch = if variant.fixed() {
        Chan::new(1).named("ch")
    } else {
        Chan::new(0).named("ch")
    };
    let c = ch.clone();
    go_named("Go.func1", move || c.send(f()));
    ch
}

/// `TestMoby4395`: the caller drops the promise without reading it.
fn test_moby4395(variant: Variant) {
    go(|| Some(""), variant);
}
