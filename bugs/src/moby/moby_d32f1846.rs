#![doc = include_str!("moby_d32f1846.md")]

use std::sync::Arc;

use primitives::sync::Mutex;
use primitives::{defer, go_named, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "moby_d32f1846",
        project: "moby",
        upstream: "https://github.com/moby/moby/commit/d32f184696519f909d1db56a060b39f0a08b41c5",
        category: "Data race (channel made by the goroutine that sends on it)",
        expected: primitives::Verdict::Race,
        kernel: test_moby_d32f1846,
        walkthrough: include_str!("moby_d32f1846.md"),
        asplos: Some("non-blocking-bugs/docker/d32f184696519f909d1db56a060b39f0a08b41c5.txt"),
        source: Source::Diff("d32f1846"),
        fix: Fix::Upstream("d32f1846"),
        review: "faithful after mends: Checked against d32f1846 (April 2013), network.go at d32f1846^ (with runtime.go, container.go and rcli/tcp.go for the callers) and the ASPLOS diff: the channel field written by the goroutine that feeds it, and upstream's make-it-in-the-constructor fix, are exact; the one-port, one-pass fountain is admitted and needed; the goroutine merge (construction and allocation are two goroutines upstream) is now admitted and the two wording slips are fixed. Mends made.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `portRangeStart`.
const PORT_RANGE_START: i32 = 49153;
/// `portRangeEnd` (upstream 65535; one port here, see the walkthrough).
const PORT_RANGE_END: i32 = PORT_RANGE_START + 1;

/// An error (`error`): its text.
#[allow(dead_code)]
#[derive(Debug)]
struct Error(&'static str);

/// `PortAllocator`.
struct PortAllocator {
    in_use: GoMap<i32, ()>,
    fountain: Shared<Chan<i32>>,
    lock: Mutex,
    variant: Variant,
}

impl PortAllocator {
    /// `runFountain`: hands out the ports of the range, in order, to whoever asks.
    fn run_fountain(&self) {
        if !self.variant.fixed() {
            if !self.fountain.get().is_nil() {
                return;
            }
            self.fountain.set(Chan::new(0).named("fountain"));
        }
        for port in PORT_RANGE_START..PORT_RANGE_END {
            self.fountain.get().send(port);
        }
    }

    /// `Acquire`: a given port, or with 0 the next free one from the fountain.
    fn acquire(&self, port: i32) -> Result<i32, Error> {
        if port == 0 {
            // Allocate a port from the fountain.
            let fountain = self.fountain.get();
            while let Some(port) = fountain.recv() {
                if self.acquire(port).is_ok() {
                    return Ok(port);
                }
            }
            return Err(Error("Port generator ended unexpectedly"));
        }
        self.lock.lock();
        let _unlock = defer(|| self.lock.unlock());
        if self.in_use.contains_key(&port) {
            return Err(Error("Port already in use"));
        }
        self.in_use.insert(port, ());
        Ok(port)
    }
}

/// `newPortAllocator`.
fn new_port_allocator(variant: Variant) -> Arc<PortAllocator> {
    let allocator = Arc::new(PortAllocator {
        in_use: GoMap::new().named("inUse"),
        fountain: Shared::new(if variant.fixed() {
            Chan::new(0).named("fountain")
        } else {
            Chan::nil()
        })
        .named("fountain"),
        lock: Mutex::new().named("lock"),
        variant,
    });
    let a = allocator.clone();
    go_named("runFountain", move || a.run_fountain());
    allocator
}

/// The network manager is made (`newNetworkManager` calls `newPortAllocator`), then a
/// container asks for a dynamic port (`NetworkInterface.AllocatePort`, frontend port 0).
fn test_moby_d32f1846(variant: Variant) {
    let port_allocator = new_port_allocator(variant);
    let ext_port = port_allocator.acquire(0).expect("a free port");
    assert_eq!(ext_port, PORT_RANGE_START);
}
