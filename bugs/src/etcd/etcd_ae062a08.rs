#![doc = include_str!("etcd_ae062a08.md")]

use std::ops::Deref;

use primitives::defer;
use primitives::sync::RwMutex;
use primitives::Shared;

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_ae062a08",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/commit/ae062a0825a4100d0cf9ac7c8bb0fa1ca69c6814",
        category: "Double locking",
        expected: primitives::Verdict::Deadlock,
        kernel: must_new_members_api,
        walkthrough: include_str!("etcd_ae062a08.md"),
        asplos: Some("blocking-bugs/etcd/ae062a0825a4100d0cf9ac7c8bb0fa1ca69c6814.txt"),
        source: Source::Diff("ae062a08"),
        fix: Fix::Upstream("ae062a08"),
        review: "faithful: Checked against ae062a08, client/client.go, client/members.go and etcdctl/command/member_commands.go at ae062a08^ and the ASPLOS entry: right self-deadlock, shape and fix; nothing unadmitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// A `url.URL`: the endpoint's address.
type Url = &'static str;

/// The v2 client's `httpClusterClient`, which embeds a `sync.RWMutex`.
struct HttpClusterClient {
    rw_mutex: RwMutex,
    endpoints: Shared<Vec<Url>>,
    variant: Variant,
}

impl Deref for HttpClusterClient {
    type Target = RwMutex;
    fn deref(&self) -> &RwMutex {
        &self.rw_mutex
    }
}

/// `Member`: only its client URLs are read.
struct Member {
    client_urls: Vec<Url>,
}

impl HttpClusterClient {
    /// `reset`: replaces the endpoints (the caller holds the write lock).
    fn reset(&self, eps: Vec<Url>) -> Result<(), &'static str> {
        if eps.is_empty() {
            return Err("client: no endpoints available");
        }
        self.endpoints.set(eps);
        Ok(())
    }

    /// `Do`: copies the endpoints under the read lock, then sends the request to them.
    fn do_(&self, act: &MembersApiActionList) -> Result<Vec<Member>, &'static str> {
        self.rlock();
        let eps = self.endpoints.get();
        self.runlock();

        if eps.is_empty() {
            return Err("client: no endpoints available");
        }
        // The first endpoint answers (the HTTP round trip is left out).
        Ok(act.response(eps[0]))
    }

    /// `Sync`: asks the cluster for its members and keeps their client URLs as endpoints.
    fn sync(&self) -> Result<(), &'static str> {
        // Go's `defer c.Unlock()`, run when `Sync` returns
        let defer_unlock = || defer(|| self.unlock());
        let mut _unlock = None;
        if !self.variant.fixed() {
            self.lock();
            _unlock = Some(defer_unlock());
        }

        let m_api = new_members_api(self);
        let ms = m_api.list()?;

        if self.variant.fixed() {
            self.lock();
            _unlock = Some(defer_unlock());
        }

        let mut eps = Vec::new();
        for m in ms {
            eps.extend(m.client_urls);
        }

        self.reset(eps)
    }
}

/// `membersAPIActionList`: the `GET /v2/members` request. The cluster's answer is fixed: one
/// member serving clients on the endpoint asked.
struct MembersApiActionList;

impl MembersApiActionList {
    fn response(&self, ep: Url) -> Vec<Member> {
        vec![Member {
            client_urls: vec![ep],
        }]
    }
}

/// `httpMembersAPI`: the members API, which sends its requests through a client.
struct HttpMembersApi<'a> {
    client: &'a HttpClusterClient,
}

impl HttpMembersApi<'_> {
    /// `List`: the member list, through the client's `Do`.
    fn list(&self) -> Result<Vec<Member>, &'static str> {
        let req = MembersApiActionList;
        self.client.do_(&req)
    }
}

fn new_members_api(c: &HttpClusterClient) -> HttpMembersApi<'_> {
    HttpMembersApi { client: c }
}

/// etcdctl's `mustNewMembersAPI` (`etcdctl/command/member_commands.go`): makes a client on
/// the configured endpoints and, unless `--no-sync`, syncs it with the cluster.
fn must_new_members_api(variant: Variant) {
    let hc = HttpClusterClient {
        rw_mutex: RwMutex::new().named("httpClusterClient"),
        endpoints: Shared::new(vec!["http://127.0.0.1:4001"]).named("c.endpoints"),
        variant,
    };
    // upstream prints the error and exits; the cluster here always answers
    let _ = hc.sync();
}
