#![doc = include_str!("libnetwork_454.md")]

use std::ops::Deref;
use std::sync::Arc;

use primitives::sync::{Mutex, Once, WaitGroup};
use primitives::{defer, go_named, Shared};

use crate::{deref, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "libnetwork_454",
        project: "libnetwork",
        upstream: "https://github.com/docker/libnetwork/pull/454",
        category: "Order violation (a lazily built sandbox used before it is set)",
        expected: primitives::Verdict::Panic,
        kernel: test_libnetwork454,
        walkthrough: include_str!("libnetwork_454.md"),
        source: Source::Diff("docker/libnetwork af4e6765^ drivers/overlay/ov_network.go, joinleave.go"),
        fix: Fix::Upstream("docker/libnetwork af4e6765"),
        review: "faithful after mends: Checked against docker/libnetwork af4e6765 and af4e6765^ (drivers/overlay/ov_network.go, joinleave.go, ov_utils.go, peerdb.go; sandbox/namespace_linux.go, interface_linux.go; endpoint.go), merge 22dc04d0, 5d113d19 (PR #2146) and the PR #454 thread: right bug, shape, fix and panic verdict, honest failure; mend the unsourced 'the daemon dies', the reports of the swapped Once, one switch's form and a long line.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `sandbox.GenerateKey`: the namespace's path, from at most 12 characters of the id.
fn generate_key(id: &str) -> String {
    let max_len = id.len().min(12);
    format!("/var/run/docker/netns/{}", &id[..max_len])
}

/// `sandbox.Sandbox`: a network namespace. Its methods are netlink calls into the kernel's
/// namespace, not Go memory the joins share: nothing here is checked for races.
struct Sandbox {
    #[allow(dead_code)] // names the namespace, as upstream; the kernel reads no path
    key: String,
}

impl Sandbox {
    /// `sandbox.NewSandbox(key, true)`: creates the namespace.
    fn new_sandbox(key: String) -> Result<Arc<Sandbox>, String> {
        Ok(Arc::new(Sandbox { key }))
    }

    /// `AddInterface(srcName, dstPrefix, options...)`: moves a link into the namespace.
    fn add_interface(&self, _src_name: &str, _dst_prefix: &str) -> Result<(), String> {
        Ok(())
    }
}

/// `createVxlan(vni)`: the vxlan link, on the host (netlink).
fn create_vxlan(_vni: u32) -> Result<&'static str, String> {
    Ok("vxlan1")
}

/// `createVethPair()`: a veth pair on the host (netlink); one name per joining container.
fn create_veth_pair(eid: &'static str) -> Result<(String, String), String> {
    Ok((format!("veth{eid}a"), format!("veth{eid}b")))
}

/// The overlay driver's `network`: one per overlay network, shared by its containers' joins.
struct Network {
    id: &'static str,
    /// Set by `CreateNetwork`; read under the lock.
    vni: Shared<u32>,
    /// Nil until `initSandbox` has built it; read and written under the lock.
    sbox: Shared<Option<Arc<Sandbox>>>,
    /// Written by `initSandbox` without the lock.
    vxlan_name: Shared<&'static str>,
    /// How many containers have joined; under the lock.
    join_cnt: Shared<i32>,
    /// The fix's `once *sync.Once`. Upstream a pointer that `leaveSandbox` replaces; here
    /// made once and never replaced (no leave in the kernel).
    once: Once,
    /// The fix's `initEpoch`: bumped under the lock by each `initSandbox`.
    init_epoch: Shared<i32>,
    /// The fix's `initErr`: written inside `once.Do` without the lock, read under it after.
    init_err: Shared<Option<String>>,
    mutex: Mutex,
    variant: Variant,
}

/// `sync.Mutex` is embedded in `network`: `n.Lock()`.
impl Deref for Network {
    type Target = Mutex;
    fn deref(&self) -> &Mutex {
        &self.mutex
    }
}

/// `CreateNetwork`, with the vxlan id already obtained from the store.
fn create_network(id: &'static str, vni: u32, variant: Variant) -> Arc<Network> {
    Arc::new(Network {
        id,
        vni: Shared::new(vni).named("n.vni"),
        sbox: Shared::new(None).named("n.sbox"),
        vxlan_name: Shared::new("").named("n.vxlanName"),
        join_cnt: Shared::new(0).named("n.joinCnt"),
        once: Once::new().named("n.once"),
        init_epoch: Shared::new(0).named("n.initEpoch"),
        init_err: Shared::new(None).named("n.initErr"),
        mutex: Mutex::new().named("n.Mutex"),
        variant,
    })
}

impl Network {
    fn join_sandbox(&self) -> Result<(), String> {
        self.lock();
        if self.join_cnt.get() != 0 {
            self.join_cnt.set(self.join_cnt.get() + 1);
            self.unlock();
            return Ok(());
        }
        if !self.variant.fixed() {
            self.join_cnt.set(self.join_cnt.get() + 1);
            self.unlock();

            return self.init_sandbox();
        }
        self.unlock();

        // If there is a race between two go routines here only one will win
        // the other will wait.
        self.once.do_(|| {
            // save the error status of initSandbox in n.initErr so that
            // all the racing go routines are able to know the status.
            self.init_err.set(self.init_sandbox().err());
        });

        // Increment joinCnt in all the goroutines only when the one time initSandbox
        // was a success.
        self.lock();
        if self.init_err.read(Option::is_none) {
            self.join_cnt.set(self.join_cnt.get() + 1);
        }
        let err = self.init_err.get();
        self.unlock();

        match err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    fn init_sandbox(&self) -> Result<(), String> {
        let mut key = generate_key(self.id);
        if self.variant.fixed() {
            self.lock();
            self.init_epoch.set(self.init_epoch.get() + 1);
            self.unlock();

            key = generate_key(&format!("{}-{}", self.init_epoch.get(), self.id));
        }
        let sbox = Sandbox::new_sandbox(key)
            .map_err(|e| format!("could not create network sandbox: {e}"))?;

        // Add a bridge inside the namespace
        sbox.add_interface("bridge1", "br")
            .map_err(|e| format!("could not create bridge inside the network sandbox: {e}"))?;

        let vxlan_name = create_vxlan(self.vxlan_id())?;

        sbox.add_interface(vxlan_name, "vxlan").map_err(|e| {
            format!("could not add vxlan interface inside the network sandbox: {e}")
        })?;

        self.vxlan_name.set(vxlan_name);

        self.set_sandbox(sbox);

        // peerDbUpdateSandbox, the netlink subscription and `go n.watchMiss(nlSock)` are
        // left out (see the walkthrough).
        Ok(())
    }

    fn sandbox(&self) -> Option<Arc<Sandbox>> {
        self.lock();
        let _unlock = defer(|| self.unlock());

        self.sbox.get()
    }

    fn set_sandbox(&self, sbox: Arc<Sandbox>) {
        self.lock();
        self.sbox.set(Some(sbox));
        self.unlock();
    }

    fn vxlan_id(&self) -> u32 {
        self.lock();
        let _unlock = defer(|| self.unlock());

        self.vni.get()
    }
}

/// `Join` (`joinleave.go`): the overlay driver's side of a container joining the network.
fn join(n: &Network, eid: &'static str) -> Result<(), String> {
    n.join_sandbox()
        .map_err(|e| format!("network sandbox join failed: {e}"))?;

    let sbox = n.sandbox();

    let (name1, _name2) = create_veth_pair(eid)?;

    deref(sbox)
        .add_interface(&name1, "veth")
        .map_err(|e| format!("could not add veth pair inside the network sandbox: {e}"))?;

    // Setting the container side's MAC, names and gateway, the peer db and the serf
    // notification are left out (see the walkthrough).
    Ok(())
}

/// No upstream test: two containers join the same overlay network at once.
fn test_libnetwork454(variant: Variant) {
    let n = create_network("8b7e4c2a9f31", 256, variant);

    let wg = WaitGroup::new().named("wg");
    for eid in ["ep1", "ep2"] {
        wg.add(1);
        let (n, wg) = (n.clone(), wg.clone());
        go_named("Join", move || {
            let _done = defer(|| wg.done());
            // The container's start fails on an error; the kernel's joins cannot fail.
            let _ = join(&n, eid);
        });
    }
    wg.wait();
}
