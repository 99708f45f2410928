#![doc = include_str!("moby_22941.md")]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use primitives::sync::Mutex;
use primitives::{defer, go_named, time, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_22941",
        project: "moby",
        upstream: "https://github.com/moby/moby/pull/22941",
        category: "Anonymous function (loop variable captured by a goroutine)",
        expected: primitives::Verdict::Race,
        kernel: test_moby22941,
        walkthrough: include_str!("moby_22941.md"),
        goker: Some("gobench/goker/nonblocking/moby/22941"),
        asplos: Some("non-blocking-bugs/docker/1670914b8a56ab8e6ead38739fddb416b61e444f.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("1670914b"),
        review: "faithful after mends: Checked against GoKer nonblocking/moby/22941 (and its race report), the fix 1670914b, the test at f18224de and GoReal's report: the loop variable captured by the writer goroutine, fixed as upstream; the stub's race pair (writer 1) differs from the real test's (writer 3) without saying so.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// GoKer's stub of the server's end of the in-memory connection (`net.Pipe`): its writers
/// are serialised by `wrMu`.
struct Pipe {
    wr_mu: Mutex,
}

impl Deref for Pipe {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.wr_mu
    }
}

impl Pipe {
    fn write(&self, b: &[u8]) {
        self.lock();
        let _unlock = defer(|| self.unlock());
        let _ = &b[1..]; // the bytes go to the reader
    }
}

/// One test case: the request an old client sends, and the request the hack should make of it.
type Pair = [&'static [u8]; 2];

const TESTS: [Pair; 2] = [
    [
        b"GET /foo\nHost: /var/run/docker.sock\nUser-Agent: Docker\r\n\r\n",
        b"GET /foo\nHost: \r\nConnection: close\r\nUser-Agent: Docker\r\n\r\n",
    ],
    [
        b"GET /foo\nHost: /var/run/docker.sock\nUser-Agent: Docker\nFoo: Bar\r\n",
        b"GET /foo\nHost: \r\nConnection: close\r\nUser-Agent: Docker\nFoo: Bar\r\n",
    ],
];

/// `TestMoby22941`.
fn test_moby22941(variant: Variant) {
    let srv = Arc::new(Pipe {
        wr_mu: Mutex::new().named("wrMu"),
    });
    // `for _, pair := range tests`: before Go 1.22, one variable for the whole loop.
    let pair: Shared<Pair> = Shared::new(TESTS[0]).named("pair");
    for (i, test) in TESTS.into_iter().enumerate() {
        if i > 0 {
            pair.set(test);
        }
        let srv = srv.clone();
        if variant.fixed() {
            // go func(x []byte) { srv.Write(x) }(pair[0]): the argument is read here.
            let x = pair.read(|p| p[0]);
            go_named("Write", move || srv.write(x));
        } else {
            // go func() { srv.Write(pair[0]) }(): read when the goroutine runs.
            let pair = pair.clone();
            go_named("Write", move || srv.write(pair.read(|p| p[0])));
        }
    }
    time::sleep(Duration::from_millis(10));
}
