#![doc = include_str!("etcd_7664.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::{AtomicU64, Mutex, RwMutex};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_7664",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/7664",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_auth_info_from_ctx_race,
        walkthrough: include_str!("etcd_7664.md"),
        asplos: Some("non-blocking-bugs/etcd/3edd36315d1f57c76deed13b5aacfa6403ff4dc0.txt"),
        source: Source::Test("etcd-io/etcd auth/store_test.go @ 3edd3631"),
        fix: Fix::Upstream("3edd3631"),
        review: "faithful: Checked against 3edd3631 (PR #7664, issue #7660) and auth/store.go, auth/simple_token.go at d9069120 plus the fix's TestAuthInfoFromCtxRace: commitRevision's unlocked-for-readers bump of authStore.revision against authInfoFromToken's plain read; every fix hunk mapped or justly not modelled.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `ErrInvalidAuthToken`.
const ERR_INVALID_AUTH_TOKEN: &str = "auth: invalid auth token";

/// The backend's batch transaction: its lock and the two buckets the test touches.
struct Backend {
    /// `tx.Lock()` / `tx.Unlock()`.
    batch_tx: Mutex,
    /// `authUsersBucketName`: user name → password hash.
    auth_users: GoMap<String, String>,
    /// `authBucketName`'s `revisionKey`, as `binary.BigEndian` bytes.
    auth_revision: Shared<Option<[u8; 8]>>,
}

/// `AuthInfo`.
#[allow(dead_code)]
struct AuthInfo {
    username: String,
    revision: u64,
}

/// A request's context with its gRPC metadata (`metadata.NewContext`).
struct IncomingContext {
    ctx: Context,
    /// `md["token"]`.
    token: Option<String>,
}

/// `tokenSimple`, the "simple" token provider.
struct TokenSimple {
    index_waiter: fn(u64) -> Chan<()>,
}

impl TokenSimple {
    /// `disable`: stops the token keeper and drops every token (none exist in the test).
    fn disable(&self) {}

    fn info(&self, ctx: &Context, token: &str, revision: u64) -> Option<AuthInfo> {
        if !self.is_valid_simple_token(ctx, token) {
            return None;
        }
        // (the token would be looked up in simpleTokens here)
        Some(AuthInfo {
            username: String::new(),
            revision,
        })
    }

    fn is_valid_simple_token(&self, ctx: &Context, token: &str) -> bool {
        let splitted: Vec<&str> = token.split('.').collect();
        if splitted.len() != 2 {
            return false;
        }
        let Ok(index) = splitted[1].parse::<u64>() else {
            return false;
        };
        select! {
            recv((self.index_waiter)(index)) => return true,
            recv(ctx.done()) => {},
        }
        false
    }
}

/// `authStore`.
struct AuthStore {
    be: Arc<Backend>,
    enabled: bool,
    enabled_mu: RwMutex,
    /// `revision uint64`, read and written plainly (before the fix).
    revision: Shared<u64>,
    /// The same field, read and written with `sync/atomic` (the fix).
    revision_atomic: AtomicU64,
    token_provider: TokenSimple,
    variant: Variant,
}

/// `NewAuthStore` (authentication is not enabled in the test's fresh backend).
fn new_auth_store(be: Arc<Backend>, tp: TokenSimple, variant: Variant) -> Arc<AuthStore> {
    be.batch_tx.lock();
    let rev = get_revision(&be);
    let as_ = Arc::new(AuthStore {
        be: be.clone(),
        enabled: false,
        enabled_mu: RwMutex::new().named("as.enabledMu"),
        revision: Shared::new(rev).named("as.revision"),
        revision_atomic: AtomicU64::new(rev),
        token_provider: tp,
        variant,
    });
    let rev_now = if variant.fixed() {
        as_.revision()
    } else {
        as_.revision.get()
    };
    if rev_now == 0 {
        as_.commit_revision();
    }
    be.batch_tx.unlock();
    as_
}

/// `getRevision`.
fn get_revision(be: &Backend) -> u64 {
    match be.auth_revision.get() {
        // this can happen in the initialization phase
        None => 0,
        Some(bytes) => u64::from_be_bytes(bytes),
    }
}

impl AuthStore {
    /// `Close`: stops the token provider if authentication is enabled.
    fn close(&self) {
        self.enabled_mu.lock();
        let _unlock = defer(|| self.enabled_mu.unlock());
        if !self.enabled {
            return;
        }
        self.token_provider.disable();
    }

    /// `UserAdd`.
    fn user_add(&self, name: &str) -> Result<(), &'static str> {
        if name.is_empty() {
            return Err("auth: user name is empty");
        }
        // bcrypt.GenerateFromPassword
        let hashed = format!("bcrypt({name})");
        self.be.batch_tx.lock();
        let _unlock = defer(|| self.be.batch_tx.unlock());
        if self.be.auth_users.contains_key(&name.to_string()) {
            return Err("auth: user already exists");
        }
        self.be.auth_users.insert(name.to_string(), hashed);
        self.commit_revision();
        Ok(())
    }

    /// `commitRevision`: bumps the revision and stores it, under the caller's `tx` lock.
    fn commit_revision(&self) {
        let rev_bytes = if self.variant.fixed() {
            self.revision_atomic.add(1);
            self.revision().to_be_bytes()
        } else {
            self.revision.set(self.revision.get() + 1);
            self.revision.get().to_be_bytes()
        };
        self.be.auth_revision.set(Some(rev_bytes));
    }

    /// `Revision`.
    fn revision(&self) -> u64 {
        if self.variant.fixed() {
            self.revision_atomic.load()
        } else {
            self.revision.get()
        }
    }

    fn auth_info_from_token(&self, ctx: &Context, token: &str) -> Option<AuthInfo> {
        let revision = if self.variant.fixed() {
            self.revision()
        } else {
            self.revision.get()
        };
        self.token_provider.info(ctx, token, revision)
    }

    /// `AuthInfoFromCtx`.
    fn auth_info_from_ctx(&self, ctx: &IncomingContext) -> Result<Option<AuthInfo>, &'static str> {
        let Some(token) = &ctx.token else {
            return Ok(None);
        };
        match self.auth_info_from_token(&ctx.ctx, token) {
            Some(auth_info) => Ok(Some(auth_info)),
            None => Err(ERR_INVALID_AUTH_TOKEN),
        }
    }
}

/// The test's `dummyIndexWaiter`: every index is reached at once.
fn dummy_index_waiter(_index: u64) -> Chan<()> {
    let ch = Chan::new(0).named("indexWaiter");
    let c = ch.clone();
    go_named("dummyIndexWaiter", move || c.send(()));
    ch
}

/// `TestAuthInfoFromCtxRace`: one goroutine reads the auth info of a request while the test
/// adds a user.
fn test_auth_info_from_ctx_race(variant: Variant) {
    let b = Arc::new(Backend {
        batch_tx: Mutex::new().named("batchTx"),
        auth_users: GoMap::new().named("authUsers"),
        auth_revision: Shared::new(None).named("auth/revision"),
    });
    let tp = TokenSimple {
        index_waiter: dummy_index_waiter,
    };
    let as_ = new_auth_store(b, tp, variant);
    let _close = defer(|| as_.close());

    let donec: Chan<()> = Chan::new(0).named("donec");
    let (a, d) = (as_.clone(), donec.clone());
    go_named("AuthInfoFromCtx", move || {
        let _close = defer(|| d.close());
        let ctx = IncomingContext {
            ctx: context::background(),
            token: Some("test".to_string()),
        };
        let _ = a.auth_info_from_ctx(&ctx);
    });
    let _ = as_.user_add("test");
    donec.recv();
}
