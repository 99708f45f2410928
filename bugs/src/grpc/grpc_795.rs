#![doc = include_str!("grpc_795.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{go_named, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_795",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/795",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_grpc795,
        walkthrough: include_str!("grpc_795.md"),
        goker: Some("gobench/goker/blocking/grpc/795"),
        asplos: Some("blocking-bugs/grpc-go/5a547ed72c09faf4050739d54caea1d51f4d276d.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("069ed421"),
        review: "faithful: Checked against 069ed421 (PR #795, issue #793), server.go at f5118cfa, the test it added, f1e4d3b1/#774 and 0f3fc435/#797, and GoKer's kernel: GracefulStop's early return locks s.mu again instead of unlocking; one-word fix mapped; GoKer's missing final Unlock corrected and admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The gRPC server (`Server`).
struct Server {
    mu: Mutex,
    /// `drain`: set by the first `GracefulStop`.
    drain: Shared<bool>,
    /// `conns`: the live transports; `nil` once the server has stopped (the test opens none).
    conns: Shared<Option<Vec<()>>>,
    variant: Variant,
}

impl Server {
    fn graceful_stop(&self) {
        self.mu.lock();
        if self.drain.get() || self.conns.read(|c| c.is_none()) {
            // Already stopping or stopped: nothing to do but release the lock.
            if self.variant.fixed() {
                self.mu.unlock();
            } else {
                self.mu.lock(); // meant to be Unlock: the goroutine blocks on its own lock
            }
            return;
        }
        self.drain.set(true);
        // Closing the listeners, draining the transports, waiting on `s.cv` until they are
        // gone and finishing `s.events` are left out: the test opens no connection.
        self.conns.set(None);
        self.mu.unlock();
    }

    /// `Serve`, as GoKer keeps it: one locked section (upstream registers its listener
    /// under `s.mu`, then loops on `Accept`).
    fn serve(&self) {
        self.mu.lock();
        self.mu.unlock();
    }
}

fn new_server(variant: Variant) -> Arc<Server> {
    Arc::new(Server {
        mu: Mutex::new().named("Server.mu"),
        drain: Shared::new(false).named("Server.drain"),
        conns: Shared::new(Some(Vec::new())).named("Server.conns"),
        variant,
    })
}

/// The end-to-end test's fixture (`test`).
struct Test {
    srv: Option<Arc<Server>>,
}

impl Test {
    fn start_server(&mut self, variant: Variant) {
        let s = new_server(variant);
        self.srv = Some(s.clone());
        go_named("Serve", move || s.serve());
    }
}

/// `TestGrpc795`: upstream's `testServerGracefulStopIdempotent`, added by the fix.
fn test_grpc795(variant: Variant) {
    let mut te = Test { srv: None };
    te.start_server(variant);
    let srv = te.srv.as_ref().expect("started");
    for _ in 0..3 {
        srv.graceful_stop();
    }
}
