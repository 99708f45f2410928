#![doc = include_str!("kubernetes_5316.md")]

use std::time::Duration;

use primitives::{go_named, rand, select, time, Chan};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_5316",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/5316",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Leak,
        kernel: test_kubernetes5316,
        walkthrough: include_str!("kubernetes_5316.md"),
        goker: Some("gobench/goker/blocking/kubernetes/5316"),
        asplos: Some("blocking-bugs/kubernetes/0aee25e06527993c59f3159e0cf3ff4342e169cd.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("cc3a433a"),
        review: "faithful: Checked against GoKer blocking/kubernetes/5316, the ASPLOS merge 0aee25e0, PR #5316 and PR #83925: GoKer's kernel, the buffer-of-one fix as a switch, leak verdict right; the fix diff itself was not seen (admitted).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The error the request handler may return.
#[derive(Debug)]
struct Error;

/// The apiserver's `finishRequest`: runs `f` in a goroutine and waits for its result, or for
/// `timeout`, whichever comes first.
fn finish_request(
    timeout: Duration,
    f: impl FnOnce() -> Result<(), Error> + Send + 'static,
    variant: Variant,
) {
    // The fix gives both channels a buffer of one, so the late send never blocks.
    let cap = if variant.fixed() { 1 } else { 0 };
    let ch = Chan::new(cap).named("ch");
    let err_ch = Chan::new(cap).named("errCh");
    let (ch2, err_ch2) = (ch.clone(), err_ch.clone());
    go_named("finishRequest.func1", move || {
        // G2
        if let Err(err) = f() {
            err_ch2.send(err);
        } else {
            ch2.send(true);
        }
    });

    select! {
        recv(ch) => {},
        recv(err_ch) => {},
        recv(time::after(timeout)) => {},
    }
}

/// `TestKubernetes5316`.
fn test_kubernetes5316(variant: Variant) {
    let f = || {
        time::sleep(Duration::from_millis(2));
        if rand::intn(10) > 5 {
            return Err(Error);
        }
        Ok(())
    };
    go_named("finishRequest", move || {
        finish_request(Duration::from_millis(1), f, variant)
    }); // G1
}
