#![doc = include_str!("etcd_7902.md")]

use std::sync::Arc;

use primitives::explore::Engine;
use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_7902",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/7902",
        category: "Channel & Lock",
        expected: primitives::Verdict::Leak,
        kernel: test_etcd7902,
        walkthrough: include_str!("etcd_7902.md"),
        goker: Some("gobench/goker/blocking/etcd/7902"),
        asplos: None,
        // loom's search of the fixed variant (three spinning clients) does not finish in a
        // test's time; a sample of it keeps the test short.
        budget: Budget { loom: 5_000, ..Budget::DEFAULT },
        source: Source::Goker,
        fix: Fix::Upstream("#7902"),
        review: "faithful: Checked against GoKer's etcd7902_test.go, 87d99fe0 and b44bd6d2 (PR #7902) and etcd-runner's election_command.go/global.go at 87d99fe0^: a follower waits on rcNextc under doRounds's mu that the leader needs to close nextc; GoKer's no-leader and no-handshake artifacts corrected and admitted; both fix commits mapped.",
        not_found_by: &[(
            Engine::Loom,
            "loom's search at preemption bound 3 finds the leak only at execution 11,736 (harness \
             run, budget 150,000), past its budget of 5,000: a woken goroutine's first steps are \
             loom steps of their own, which multiplies the orders to run",
        )],
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// Rounds per client (GoKer runs 100; the deadlock needs one).
const ROUNDS: usize = 2;

/// `release` found that not every client has validated yet ("waiting on followers").
struct WaitingOnFollowers;

/// The election runner's state shared by all round clients (captured variables in Go).
struct Election {
    /// Closed by the leader when the next round may start.
    nextc: Shared<Chan<bool>>,
    /// One token per client that validated this round.
    validatec: Chan<()>,
    clients: usize,
    variant: Variant,
}

/// One `roundClient` of the election runner, with the variables its closures capture.
struct RoundClient {
    election: Arc<Election>,
    /// Whether this client wins every election (upstream: `observedLeader == v`).
    leader: bool,
    validate_waiters: Shared<usize>,
    rc_nextc: Shared<Chan<bool>>,
}

impl RoundClient {
    /// Campaigns; the winner then waits for every client to validate.
    fn acquire(&self) {
        if self.leader {
            self.validate_waiters.set(self.election.clients);
        }
    }

    fn validate(&self) {
        self.rc_nextc.set(self.election.nextc.get()); // setRcNextc
        self.election.validatec.send(());
    }

    fn release(&self) -> Result<(), WaitingOnFollowers> {
        while self.validate_waiters.get() > 0 {
            select! {
                recv(self.election.validatec) => {
                    self.validate_waiters.set(self.validate_waiters.get() - 1);
                },
                default => return Err(WaitingOnFollowers),
            }
        }
        if self.leader {
            let nextc = &self.election.nextc;
            if self.election.variant.fixed() {
                let old_nextc = nextc.get();
                nextc.set(Chan::new(0).named("nextc"));
                old_nextc.close();
            } else {
                nextc.get().close();
                nextc.set(Chan::new(0).named("nextc"));
            }
        }
        self.rc_nextc.get().recv(); // followers wait here for the leader
        Ok(())
    }
}

fn run_election_func(variant: Variant) {
    let clients = 3;
    let election = Arc::new(Election {
        nextc: Shared::new(Chan::new(0).named("nextc")).named("nextc"),
        validatec: Chan::new(clients).named("validatec"),
        clients,
        variant,
    });
    let rcs: Vec<Arc<RoundClient>> = (0..clients)
        .map(|i| {
            Arc::new(RoundClient {
                election: election.clone(),
                leader: i == 0,
                validate_waiters: Shared::new(0).named("validateWaiters"),
                rc_nextc: Shared::new(Chan::nil()).named("rcNextc"),
            })
        })
        .collect();
    do_rounds(rcs, ROUNDS, variant);
}

fn do_rounds(rcs: Vec<Arc<RoundClient>>, rounds: usize, variant: Variant) {
    let mu = Mutex::new().named("mu");
    let wg = WaitGroup::new();
    wg.add(rcs.len() as i64);
    for rc in rcs {
        let (mu, wg) = (mu.clone(), wg.clone());
        go_named("doRounds", move || {
            let _done = defer(|| wg.done());
            let mut progress = 0;
            while progress < rounds {
                rc.acquire();
                // The fix deletes every use of mu here.
                if !variant.fixed() {
                    mu.lock();
                }
                rc.validate();
                if !variant.fixed() {
                    mu.unlock();
                }
                progress += 1;
                if !variant.fixed() {
                    mu.lock();
                }
                while rc.release().is_err() {
                    // spin
                    if !variant.fixed() {
                        mu.unlock();
                        mu.lock();
                    }
                }
                if !variant.fixed() {
                    mu.unlock();
                }
            }
        });
    }
    wg.wait();
}

/// `TestEtcd7902`.
fn test_etcd7902(variant: Variant) {
    go_named("runElectionFunc", move || run_election_func(variant));
}
