#![doc = include_str!("moby_33293.md")]

use primitives::{go_named, rand, Chan};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_33293",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/33293",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_moby33293,
        walkthrough: include_str!("moby_33293.md"),
        goker: Some("gobench/goker/blocking/moby/33293"),
        asplos: Some("blocking-bugs/docker/4d2d2ea39336aade783c5c415b83d129bdd339bb.txt"),
        loom: Loom::DoesNotApply(
            "the request fails only on a rand draw of 1, and loom's rand::intn always draws 0"
        ),
        source: Source::Goker,
        fix: Fix::Upstream("4d2d2ea3"),
        review: "faithful: Checked against GoKer blocking/moby/33293, upstream client/container_wait.go at ab83b924 (= 49211715) and fix 4d2d2ea3 (#33293, merge d98d4fae): same self-blocking send on an unbuffered errC, upstream's one-line buffer fix; shrinks admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// Go's `error`, reduced to its message.
type Error = &'static str;

/// The HTTP request to the daemon (`cli.post`), which may fail.
fn may_return_error() -> Option<Error> {
    if rand::intn(2) >= 1 {
        return Some("Error");
    }
    None
}

/// `client.ContainerWait`: returns a channel on which the wait's error will be delivered.
fn container_wait(variant: Variant) -> Chan<Error> {
    let err_c = if variant.fixed() {
        Chan::new(1).named("errC")
    } else {
        Chan::new(0).named("errC")
    };
    let err = may_return_error();
    if let Some(err) = err {
        err_c.send(err);
        return err_c;
    }
    err_c
}

/// `TestMoby33293`.
fn test_moby33293(variant: Variant) {
    go_named("TestMoby33293.func1", move || {
        // The caller would now select on the channel; it never gets it back.
        let _err_c = container_wait(variant);
    });
}
