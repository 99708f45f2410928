#![doc = include_str!("etcd_7471.md")]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use primitives::sync::{Mutex, RwMutex, WaitGroup};
use primitives::time::{self, Instant, Ticker};
use primitives::{defer, go_named, select, Chan, GoMap};

use crate::{Budget, Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_7471",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/7492",
        category: "Mixed deadlock (channel & lock)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_hammer_simple_authenticate,
        walkthrough: include_str!("etcd_7471.md"),
        asplos: Some("blocking-bugs/etcd/1b1fabef8ffec606909f01c3983300fff539f214.txt"),
        loom: Loom::DoesNotApply(
            "six goroutines with the timer goroutine (main, the keeper, three users, timers), \
             more than loom's five threads",
        ),
        // The cycle needs two ticks and three users in a particular order: PCT can need more
        // schedules than the default budget gives.
        budget: Budget { shuttle: 5_000, ..Budget::DEFAULT },
        source: Source::Diff("1b1fabef"),
        fix: Fix::Upstream("1b1fabef"),
        review: "faithful: Checked against 1b1fabef (auth/simple_token.go, auth/store.go at its parent), the test 44099321, PR #7492 and issue #7471: Authenticate's assignSimpleTokenToUser sends on the full addSimpleTokenCh holding simpleTokensMu while the keeper's tick waits for that lock; fix mapped hunk by hunk; trace and reports predate the last kernel change.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `simpleTokenTTL` and `simpleTokenTTLResolution`, as `TestHammerSimpleAuthenticate` sets
/// them ("set TTL values low to try to trigger races").
const SIMPLE_TOKEN_TTL: Duration = Duration::from_millis(10);
const SIMPLE_TOKEN_TTL_RESOLUTION: Duration = SIMPLE_TOKEN_TTL;

/// Users that authenticate at once (upstream: 50 users, 10 rounds).
const USERS: usize = 3;

/// `simpleTokenTTLKeeper`: expires tokens that were not used for `simpleTokenTTL`.
struct SimpleTokenTtlKeeper {
    /// The fix: guards `tokens`, which callers now update directly.
    tokens_mu: Mutex,
    tokens: GoMap<String, Instant>,
    add_simple_token_ch: Chan<String>,
    reset_simple_token_ch: Chan<String>,
    delete_simple_token_ch: Chan<String>,
    stop_ch: Chan<Chan<()>>,
    delete_token_func: Box<dyn Fn(&str) + Send + Sync>,
    variant: Variant,
}

fn new_simple_token_ttl_keeper(
    deletefunc: Box<dyn Fn(&str) + Send + Sync>,
    variant: Variant,
) -> Arc<SimpleTokenTtlKeeper> {
    let stk = Arc::new(SimpleTokenTtlKeeper {
        tokens_mu: Mutex::new().named("tokensMu"),
        tokens: GoMap::new().named("keeper.tokens"),
        add_simple_token_ch: Chan::new(1).named("addSimpleTokenCh"),
        reset_simple_token_ch: Chan::new(1).named("resetSimpleTokenCh"),
        delete_simple_token_ch: Chan::new(1).named("deleteSimpleTokenCh"),
        stop_ch: Chan::new(0).named("stopCh"),
        delete_token_func: deletefunc,
        variant,
    });
    let k = stk.clone();
    go_named("simpleTokenTTLKeeper.run", move || k.run());
    stk
}

impl SimpleTokenTtlKeeper {
    fn stop(&self) {
        let wait_ch = Chan::new(0).named("waitCh");
        self.stop_ch.send(wait_ch.clone());
        wait_ch.recv();
        self.stop_ch.close();
    }

    fn add_simple_token(&self, token: String) {
        if self.variant.fixed() {
            self.tokens.insert(token, time::now() + SIMPLE_TOKEN_TTL);
        } else {
            self.add_simple_token_ch.send(token);
        }
    }

    fn run(&self) {
        let token_ticker = Ticker::new(SIMPLE_TOKEN_TTL_RESOLUTION);
        let _stop = defer(|| token_ticker.stop());
        // In the fixed version only the ticker and stop cases are left: nil channels.
        let (add_ch, reset_ch, delete_ch) = if self.variant.fixed() {
            (Chan::nil(), Chan::nil(), Chan::nil())
        } else {
            (
                self.add_simple_token_ch.clone(),
                self.reset_simple_token_ch.clone(),
                self.delete_simple_token_ch.clone(),
            )
        };
        loop {
            select! {
                recv(add_ch) -> t => {
                    self.tokens.insert(t.expect("never closed"), time::now() + SIMPLE_TOKEN_TTL);
                },
                recv(reset_ch) -> t => {
                    let t = t.expect("never closed");
                    if self.tokens.contains_key(&t) {
                        self.tokens.insert(t, time::now() + SIMPLE_TOKEN_TTL);
                    }
                },
                recv(delete_ch) -> t => {
                    self.tokens.remove(&t.expect("never closed"));
                },
                recv(token_ticker.c()) => {
                    let nowtime = time::now();
                    if self.variant.fixed() {
                        self.tokens_mu.lock();
                    }
                    let expired: Vec<String> = self.tokens.with(|m| {
                        m.iter()
                            .filter(|(_, end)| nowtime > **end)
                            .map(|(t, _)| t.clone())
                            .collect()
                    });
                    for t in expired {
                        (self.delete_token_func)(&t);
                        self.tokens.remove(&t);
                    }
                    if self.variant.fixed() {
                        self.tokens_mu.unlock();
                    }
                },
                recv(self.stop_ch) -> wait_ch => {
                    self.tokens.with_mut(|m| m.clear());
                    wait_ch.expect("stop sends a channel").send(());
                    return;
                },
            }
        }
    }
}

/// The token map shared by `tokenSimple` and the keeper's deleter.
struct SimpleTokens {
    /// A `sync.RWMutex` (the fix makes it a `sync.Mutex`); the kernel only takes `Lock`.
    simple_tokens_mu: RwMutex,
    /// token -> username
    simple_tokens: GoMap<String, String>,
}

/// `newDeleterFunc`: the keeper calls it, from its own goroutine, for each expired token.
fn new_deleter_func(t: Arc<SimpleTokens>) -> Box<dyn Fn(&str) + Send + Sync> {
    Box::new(move |tk| {
        t.simple_tokens_mu.lock();
        let _unlock = defer(|| t.simple_tokens_mu.unlock());
        t.simple_tokens.remove(&tk.to_string());
    })
}

/// auth's `tokenSimple`: the simple token provider.
struct TokenSimple {
    tokens: Arc<SimpleTokens>,
    simple_token_keeper: OnceLock<Arc<SimpleTokenTtlKeeper>>,
    variant: Variant,
}

impl TokenSimple {
    fn keeper(&self) -> &SimpleTokenTtlKeeper {
        self.simple_token_keeper.get().expect("enabled")
    }

    fn enable(&self) {
        let keeper =
            new_simple_token_ttl_keeper(new_deleter_func(self.tokens.clone()), self.variant);
        let _ = self.simple_token_keeper.set(keeper);
    }

    fn disable(&self) {
        self.keeper().stop();
        self.tokens.simple_tokens_mu.lock();
        self.tokens.simple_tokens.with_mut(|m| m.clear()); // invalidate all tokens
        self.tokens.simple_tokens_mu.unlock();
    }

    fn assign_simple_token_to_user(&self, username: &str, token: &str) {
        if self.variant.fixed() {
            self.keeper().tokens_mu.lock();
        }
        self.tokens.simple_tokens_mu.lock();
        assert!(
            !self.tokens.simple_tokens.contains_key(&token.to_string()),
            "token {token} is already used"
        );
        self.tokens
            .simple_tokens
            .insert(token.to_string(), username.to_string());
        self.keeper().add_simple_token(token.to_string());
        self.tokens.simple_tokens_mu.unlock();
        if self.variant.fixed() {
            self.keeper().tokens_mu.unlock();
        }
    }
}

/// auth's `authStore`, for `Authenticate`.
struct AuthStore {
    /// The backend's batch transaction lock (`as.be.BatchTx()`), a `sync.Mutex`.
    batch_tx: Mutex,
    token_provider: TokenSimple,
}

impl AuthStore {
    /// `Authenticate`: under the backend's transaction lock, `tokenProvider.assign`, which
    /// names the token `<simpleToken>.<index>` and calls `assignSimpleTokenToUser`.
    fn authenticate(&self, username: &str, simple_token: &str, index: u64) {
        self.batch_tx.lock();
        let _unlock = defer(|| self.batch_tx.unlock());
        let token = format!("{simple_token}.{index}");
        self.token_provider
            .assign_simple_token_to_user(username, &token);
    }
}

/// `TestHammerSimpleAuthenticate`, one round: several users authenticate at once while the
/// keeper expires tokens every 10 ms.
fn test_hammer_simple_authenticate(variant: Variant) {
    // setupAuthStore: enabling auth enables the token provider, which starts the keeper.
    let as_ = Arc::new(AuthStore {
        batch_tx: Mutex::new().named("batchTx"),
        token_provider: TokenSimple {
            tokens: Arc::new(SimpleTokens {
                simple_tokens_mu: RwMutex::new().named("simpleTokensMu"),
                simple_tokens: GoMap::new().named("simpleTokens"),
            }),
            simple_token_keeper: OnceLock::new(),
            variant,
        },
    });
    as_.token_provider.enable();

    let wg = WaitGroup::new().named("wg");
    wg.add(USERS as i64);
    for u in 0..USERS {
        let (as_, wg) = (as_.clone(), wg.clone());
        go_named("authenticate", move || {
            let _done = defer(|| wg.done());
            let user = format!("user-{u}");
            let token = format!("{user}(0)");
            as_.authenticate(&user, &token, 1);
            // AuthInfoFromCtx returns at once: the test's context carries no gRPC metadata.
        });
    }
    time::sleep(Duration::from_millis(1));
    wg.wait();

    as_.token_provider.disable(); // tearDown: as.Close()
}
