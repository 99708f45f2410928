#![doc = include_str!("kubernetes_45192.md")]

use std::sync::Arc;

use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, rand, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "kubernetes_45192",
        project: "kubernetes",
        upstream: "https://github.com/kubernetes/kubernetes/pull/45192",
        category: "Missing unlock",
        expected: primitives::Verdict::Deadlock,
        kernel: test_kubernetes45192,
        walkthrough: include_str!("kubernetes_45192.md"),
        goker: None,
        asplos: Some("blocking-bugs/kubernetes/04e2deeb287f7d60372ed853a75acfff3668cedc.txt"),
        source: Source::Diff("04e2deeb"),
        fix: Fix::Upstream("04e2deeb"),
        review: "faithful: Checked against the 04e2deeb diff (ASPLOS), the buggy azure_zones.go and PR #45192: upstream's function with the corpus's own two-caller test (admitted), both fix hunks as switches, deadlock verdict right.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `cloudprovider.Zone`.
#[derive(Clone, Debug)]
#[allow(dead_code)]
struct Zone {
    failure_domain: String,
    region: &'static str,
}

/// The error of a failed metadata query.
#[derive(Debug)]
struct Error;

/// `azure_zones.go`'s package-level state: the fault domain, fetched once from the instance
/// metadata service and cached, guarded by `faultMutex`.
struct FaultState {
    fault_mutex: Mutex,
    fault_domain: Shared<Option<String>>,
}

/// `fetchFaultDomain`: asks the instance metadata service, which may fail.
fn fetch_fault_domain() -> Result<String, Error> {
    if rand::intn(2) == 0 {
        return Err(Error); // the metadata endpoint did not answer
    }
    Ok("0".to_string())
}

/// The Azure cloud provider (`Cloud`).
struct Cloud {
    location: &'static str,
    fault: Arc<FaultState>,
    variant: Variant,
}

impl Cloud {
    fn get_zone(&self) -> Result<Zone, Error> {
        let f = &*self.fault;
        f.fault_mutex.lock();
        // The fix: `defer faultMutex.Unlock()`, so every return unlocks.
        let _unlock = self
            .variant
            .fixed()
            .then(|| defer(|| f.fault_mutex.unlock()));
        if f.fault_domain.get().is_none() {
            let fault_domain = fetch_fault_domain()?; // returns still holding faultMutex
            f.fault_domain.set(Some(fault_domain));
        }
        let zone = Zone {
            failure_domain: f.fault_domain.get().expect("fetched above"),
            region: self.location,
        };
        if !self.variant.fixed() {
            f.fault_mutex.unlock();
        }
        Ok(zone)
    }
}

/// The corpus's test (upstream has none): two callers ask for the node's zone at the same
/// time, and the test waits for both.
fn test_kubernetes45192(variant: Variant) {
    let az = Arc::new(Cloud {
        location: "westus",
        fault: Arc::new(FaultState {
            fault_mutex: Mutex::new().named("faultMutex"),
            fault_domain: Shared::new(None).named("faultDomain"),
        }),
        variant,
    });
    let wg = WaitGroup::new().named("wg");
    for _ in 0..2 {
        wg.add(1);
        let (az, wg) = (az.clone(), wg.clone());
        go_named("GetZone", move || {
            let _done = defer(|| wg.done());
            let _ = az.get_zone();
        });
    }
    wg.wait();
}
