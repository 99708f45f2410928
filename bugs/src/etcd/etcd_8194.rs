#![doc = include_str!("etcd_8194.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::WaitGroup;
use primitives::{defer, go_named, select, time, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_8194",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/8194",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_etcd8194,
        walkthrough: include_str!("etcd_8194.md"),
        goker: Some("gobench/goker/nonblocking/etcd/8194"),
        asplos: None,
        // At bound 3 loom's search of the fixed variant does not finish; at 2 it does.
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        source: Source::Goker,
        fix: Fix::Upstream("8d418207"),
        review: "faithful: Checked against 8d418207 (PR #8194 and its thread), lease/lessor.go and lessor_test.go at its parent, GoKer's kernel and GoReal's race report: a lessor's runLoop leaked by TestLessorGrant reads leaseRevokeRate while the next test writes it; fix mapped; GoKer's concurrent tests replaced by go test's sequential order, admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `Lease` (its fields do not matter here).
struct Lease;

/// The lessor's `runLoop` rounds, bounded as in GoKer (upstream loops until stopped).
const LOOPS: usize = 10;

/// The lease manager (`lessor`).
struct Lessor {
    stop_c: Chan<()>,
    done_c: Chan<()>,
    /// The package variable `leaseRevokeRate`, which tests overwrite.
    lease_revoke_rate: Shared<usize>,
}

impl Lessor {
    fn run_loop(&self) {
        let _close = defer(|| self.done_c.close());
        for _ in 0..LOOPS {
            // Every lease has expired.
            let mut ls = vec![Lease];
            if !ls.is_empty() {
                // rate limit
                if ls.len() > self.lease_revoke_rate.get() / 2 {
                    ls.truncate(self.lease_revoke_rate.get() / 2);
                }
                select! {
                    recv(self.stop_c) => return,
                    default => {},
                }
            }
            drop(ls);
            select! {
                recv(time::after(Duration::from_millis(5))) => {},
                recv(self.stop_c) => return,
            }
        }
    }

    fn stop(&self) {
        self.stop_c.close();
        self.done_c.recv();
    }
}

fn new_lessor(lease_revoke_rate: &Shared<usize>) -> Arc<Lessor> {
    let l = Arc::new(Lessor {
        stop_c: Chan::new(0).named("stopC"),
        done_c: Chan::new(0).named("doneC"),
        lease_revoke_rate: lease_revoke_rate.clone(),
    });
    let le = l.clone();
    go_named("runLoop", move || le.run_loop());
    l
}

/// `TestLessorGrant`: makes a lessor, which starts its `runLoop`.
fn test_lessor_grant(lease_revoke_rate: &Shared<usize>, variant: Variant) {
    let le = new_lessor(lease_revoke_rate);
    // The fix: stop the lessor (and its runLoop) before the test returns.
    let _stop = defer(|| {
        if variant.fixed() {
            le.stop();
        }
    });
}

/// `TestLessorRenewExtendPileup`: lowers the revoke rate for its own lessors.
fn test_lessor_renew_extend_pileup(lease_revoke_rate: &Shared<usize>) {
    let old_revoke_rate = lease_revoke_rate.get();
    let _restore = defer(|| lease_revoke_rate.set(old_revoke_rate));
    lease_revoke_rate.set(10);
}

/// `TestEtcd8194`: the two tests, run one after the other as `go test` runs them (each in
/// its own goroutine).
fn test_etcd8194(variant: Variant) {
    let lease_revoke_rate = Shared::new(1000).named("leaseRevokeRate");
    let wg = WaitGroup::new();

    wg.add(1);
    let (rate, wg1) = (lease_revoke_rate.clone(), wg.clone());
    go_named("TestLessorGrant", move || {
        let _done = defer(|| wg1.done());
        test_lessor_grant(&rate, variant);
    });
    wg.wait();

    wg.add(1);
    let (rate, wg2) = (lease_revoke_rate.clone(), wg.clone());
    go_named("TestLessorRenewExtendPileup", move || {
        let _done = defer(|| wg2.done());
        test_lessor_renew_extend_pileup(&rate);
    });
    wg.wait();
}
