#![doc = include_str!("etcd_6708.md")]

use std::ops::Deref;

use primitives::context::{self, Context};
use primitives::defer;
use primitives::sync::RwMutex;

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_6708",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/6708",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: test_etcd6708,
        walkthrough: include_str!("etcd_6708.md"),
        goker: Some("gobench/goker/blocking/etcd/6708"),
        asplos: Some("blocking-bugs/etcd/de008c8a4ac327eee481fcc0245f55de7b393351.txt"),
        source: Source::Goker,
        fix: Fix::Upstream("de008c8a"),
        review: "faithful after mends: Checked against GoKer etcd/6708, the fix de008c8a (the one commit of #6708) and client/client.go, client/members.go at de008c8a^: the Sync→SetEndpoints→Leader→Do self-deadlock and the lock-narrowing fix are upstream's; two minor mends (an unlisted simplification of the unused random-mode branch, a hunk label in the fix table).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EndpointSelectionMode {
    EndpointSelectionRandom,
    EndpointSelectionPrioritizeLeader,
}

use EndpointSelectionMode::*;

/// The v2 client's `httpClusterClient`, which embeds a `sync.RWMutex`.
struct HttpClusterClient {
    rw_mutex: RwMutex,
    selection_mode: EndpointSelectionMode,
    variant: Variant,
}

impl Deref for HttpClusterClient {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

impl HttpClusterClient {
    fn get_leader_endpoint(&self, ctx: &Context) {
        if self.variant.fixed() {
            // The fix: ask for the leader through a copy of the client, which has a lock of
            // its own (and, as upstream's copy, the zero selection mode).
            let client_copy = HttpClusterClient {
                rw_mutex: RwMutex::new().named("clientCopy"),
                selection_mode: EndpointSelectionRandom,
                variant: self.variant,
            };
            let m_api = new_members_api(&client_copy);
            m_api.leader(ctx);
            return;
        }
        let m_api = new_members_api(self);
        m_api.leader(&context::background());
    }

    fn set_endpoints(&self) {
        match self.selection_mode {
            EndpointSelectionRandom => {}
            EndpointSelectionPrioritizeLeader => self.get_leader_endpoint(&context::background()),
        }
    }

    /// `Do`: sends a request to the pinned endpoint, reading the endpoints under the read lock.
    fn do_(&self, _ctx: &Context) {
        self.rlock();
        self.runlock();
    }

    fn sync(&self, ctx: &Context) {
        if self.variant.fixed() {
            // The fix: find the leader first, with no lock held; lock only to store the result.
            match self.selection_mode {
                EndpointSelectionRandom => {
                    self.rlock();
                    self.runlock();
                }
                EndpointSelectionPrioritizeLeader => self.get_leader_endpoint(ctx),
            }
            self.lock();
            let _unlock = defer(|| self.unlock());
            return;
        }
        self.lock();
        let _unlock = defer(|| self.unlock());
        self.set_endpoints();
    }
}

/// `httpMembersAPI`: the members API, which sends its requests through a client.
struct HttpMembersApi<'a> {
    client: &'a HttpClusterClient,
}

impl HttpMembersApi<'_> {
    fn leader(&self, ctx: &Context) {
        self.client.do_(ctx);
    }
}

fn new_members_api(c: &HttpClusterClient) -> HttpMembersApi<'_> {
    HttpMembersApi { client: c }
}

/// `TestEtcd6708`.
fn test_etcd6708(variant: Variant) {
    let hc = HttpClusterClient {
        rw_mutex: RwMutex::new().named("httpClusterClient"),
        selection_mode: EndpointSelectionPrioritizeLeader,
        variant,
    };
    hc.sync(&context::background());
}
