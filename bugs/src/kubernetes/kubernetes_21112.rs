#![doc = include_str!("kubernetes_21112.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::{defer, go_named, time, Chan, GoMap, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_21112",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/21112",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_kubernetes21112,
        walkthrough: include_str!("kubernetes_21112.md"),
        asplos: Some("blocking-bugs/kubernetes/214d0189113347a5475c227feff23330196613f5.txt"),
        source: Source::Diff("214d0189"),
        fix: Fix::Upstream("214d0189"),
        loom: Loom::DoesNotApply(
            "main, contactOthers, one serveStatus goroutine per poll, the fixed variant's Logf \
             goroutine and the timer helper of the polls' sleeps: more than loom's five threads",
        ),
        review: "faithful after mends: Checked against the ASPLOS diff of 214d0189, PR #21112, issue #20778 and index copies of test/images/network-tester/webserver.go (064976be and a pre-fix copy): serveStatus calls Logf, which relocks the mutex the handler holds; the fix hunk mapped; the walkthrough should not present #20778's hangs as this deadlock's when the PR only calls it \"potential\".",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `*peerCount`: the webserver's `-peers` flag (default 8).
const PEER_COUNT: usize = 8;

/// The e2e test's polls of `/status` (upstream: every 2 s until its timeout).
const MAX_ATTEMPTS: usize = 3;

/// `State`: the webserver's state; every field but `Hostname` is guarded by `lock`.
struct State {
    sent: GoMap<String, i32>,
    received: GoMap<String, i32>,
    log: Shared<Vec<String>>,
    still_contacting_peers: Shared<bool>,
    lock: Mutex,
    variant: Variant,
}

impl State {
    /// `doneContactingPeers`.
    fn done_contacting_peers(&self) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.still_contacting_peers.set(false);
    }

    /// `serveStatus`: the `/status` handler; writes "pass", "running" or "fail" to `w`.
    fn serve_status(self: &Arc<Self>, w: &mut String) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        if self.sent.len() >= PEER_COUNT && self.received.len() >= PEER_COUNT {
            w.push_str("pass");
            return;
        }
        if self.still_contacting_peers.get() {
            w.push_str("running");
            return;
        }
        // The message's arguments are read here, under the lock, in both variants (Go
        // evaluates the arguments of a `go` statement in the calling goroutine).
        let msg = format!(
            "Declaring failure for default/nettest with {} sent and {} received and {} peers",
            self.sent.len(),
            self.received.len(),
            PEER_COUNT
        );
        if self.variant.fixed() {
            // The fix: `go s.Logf(...)`, which waits for the lock this handler holds.
            let s = self.clone();
            go_named("Logf", move || s.logf(msg));
        } else {
            self.logf(msg);
        }
        w.push_str("fail");
    }

    /// `Logf`: appends to the log; `s` must not be locked.
    fn logf(&self, msg: String) {
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        self.log.write(|log| {
            log.push(msg);
            if log.len() > 500 {
                log.remove(0);
            }
        });
    }
}

/// `contactOthers`: looks for the service's endpoints; here it finds none and gives up.
fn contact_others(state: Arc<State>) {
    let _done = defer(|| state.done_contacting_peers());
    // getWebserverEndpoints finds 0 endpoints, fewer than *peerCount.
    let eps = 0;
    state.logf(format!(
        "default/nettest has {eps} endpoints ([]), which is less than {PEER_COUNT} as expected. \
         Waiting for all endpoints to come up."
    ));
}

/// One `GET /status` through the API server's proxy: the webserver serves it on a goroutine
/// of its own (net/http's per-connection goroutine) and answers when the handler returns.
fn get_status(state: &Arc<State>) -> String {
    let response: Chan<String> = Chan::new(1).named("response");
    let (s, r) = (state.clone(), response.clone());
    go_named("serveStatus", move || {
        let mut w = String::new();
        s.serve_status(&mut w);
        r.send(w);
    });
    response.recv().unwrap_or_default()
}

/// The e2e networking test's wait for connectivity, polling the nettest webserver's
/// `/status` while the webserver's `contactOthers` runs.
fn test_kubernetes21112(variant: Variant) {
    let state = Arc::new(State {
        sent: GoMap::new().named("Sent"),
        received: GoMap::new().named("Received"),
        log: Shared::new(Vec::new()).named("Log"),
        still_contacting_peers: Shared::new(true).named("StillContactingPeers"),
        lock: Mutex::new().named("lock"),
        variant,
    });
    // The webserver's main: `go contactOthers(&state)`.
    let s = state.clone();
    go_named("contactOthers", move || contact_others(s));

    let mut passed = false;
    for _ in 0..MAX_ATTEMPTS {
        if passed {
            break;
        }
        time::sleep(Duration::from_secs(2));
        // framework: "About to make a proxy status call"
        let body = get_status(&state);
        match body.as_str() {
            "pass" => passed = true,
            "running" => {}
            // "fail": the test reads /read for the details and fails; it is over.
            _ => return,
        }
    }
}
