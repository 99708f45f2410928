#![doc = include_str!("etcd_7492.md")]

use std::sync::{Arc, Weak};
use std::time::Duration;

use primitives::sync::{Mutex, RwMutex, WaitGroup};
use primitives::time::{self, Instant, Ticker};
use primitives::{defer, go_named, select, Chan, GoMap, Shared};

use crate::{Bug, Fix, Loom, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_7492",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/7492",
        category: "Channel & Lock",
        expected: primitives::Verdict::Deadlock,
        kernel: test_etcd7492,
        walkthrough: include_str!("etcd_7492.md"),
        goker: Some("gobench/goker/blocking/etcd/7492"),
        asplos: None,
        loom: Loom::DoesNotApply(
            "main, the keeper's run loop, three Authenticate goroutines and the ticker's timer \
             goroutine: six threads, one more than loom holds"
        ),
        source: Source::Goker,
        fix: Fix::Upstream("1b1fabef"),
        review: "faithful: Checked against GoKer's etcd7492_test.go, the fix 1b1fabef and auth/simple_token.go at 1b1fabef^ (= 51939650): the send on addSimpleTokenCh under simpleTokensMu against the tick's deleteTokenFunc; fix mapped at GoKer's lines, every shrink admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `simpleTokenTTLKeeper`: expires simple tokens; its `run` loop owns `tokens`.
struct SimpleTokenTtlKeeper {
    /// Added by the fix: guards `tokens`, which callers now write directly.
    tokens_mu: Mutex,
    tokens: GoMap<&'static str, Instant>,
    add_simple_token_ch: Chan<()>,
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
        tokens: GoMap::new().named("tokens"),
        add_simple_token_ch: Chan::new(1).named("addSimpleTokenCh"),
        stop_ch: Chan::new(0).named("stopCh"),
        delete_token_func: deletefunc,
        variant,
    });
    let s = stk.clone();
    go_named("simpleTokenTTLKeeper.run", move || s.run());
    stk
}

impl SimpleTokenTtlKeeper {
    fn run(&self) {
        let token_ticker = Ticker::new(Duration::from_nanos(1));
        let _stop = defer(|| token_ticker.stop());
        // The fix deletes the case of addSimpleTokenCh: a nil channel is never ready.
        let add_simple_token_ch = if self.variant.fixed() {
            Chan::nil()
        } else {
            self.add_simple_token_ch.clone()
        };
        loop {
            select! {
                // Having one token in the map is enough.
                recv(add_simple_token_ch) => { self.tokens.insert("1", time::now()); },
                recv(token_ticker.c()) => {
                    if self.variant.fixed() {
                        self.tokens_mu.lock();
                    }
                    let tokens: Vec<&'static str> =
                        self.tokens.with(|m| m.keys().copied().collect());
                    for t in tokens {
                        (self.delete_token_func)(t);
                        self.tokens.remove(&t);
                    }
                    if self.variant.fixed() {
                        self.tokens_mu.unlock();
                    }
                },
                recv(self.stop_ch) -> wait_ch => {
                    wait_ch.expect("stopCh is open").send(());
                    return;
                },
            }
        }
    }

    fn add_simple_token(&self) {
        if self.variant.fixed() {
            self.tokens.insert("1", time::now()); // the caller holds tokensMu
        } else {
            self.add_simple_token_ch.send(());
        }
    }

    fn stop(&self) {
        let wait_ch = Chan::new(0).named("waitCh");
        self.stop_ch.send(wait_ch.clone());
        wait_ch.recv();
        self.stop_ch.close();
    }
}

/// `tokenSimple`: the simple-token provider.
struct TokenSimple {
    simple_token_keeper: Shared<Option<Arc<SimpleTokenTtlKeeper>>>,
    simple_tokens_mu: RwMutex,
    variant: Variant,
}

impl TokenSimple {
    fn assign(&self) {
        self.assign_simple_token_to_user();
    }

    fn assign_simple_token_to_user(&self) {
        let keeper = self.simple_token_keeper.get().expect("enabled");
        if self.variant.fixed() {
            keeper.tokens_mu.lock();
        }
        self.simple_tokens_mu.lock();
        keeper.add_simple_token();
        self.simple_tokens_mu.unlock();
        if self.variant.fixed() {
            keeper.tokens_mu.unlock();
        }
    }

    fn enable(self: &Arc<Self>) {
        let keeper = new_simple_token_ttl_keeper(new_deleter_func(self), self.variant);
        self.simple_token_keeper.set(Some(keeper));
    }

    fn disable(&self) {
        if let Some(keeper) = self.simple_token_keeper.get() {
            keeper.stop();
            self.simple_token_keeper.set(None);
        }
        self.simple_tokens_mu.lock();
        self.simple_tokens_mu.unlock();
    }
}

/// The keeper's `deleteTokenFunc`: drops the token from the provider, under its lock.
fn new_deleter_func(t: &Arc<TokenSimple>) -> Box<dyn Fn(&str) + Send + Sync> {
    let t: Weak<TokenSimple> = Arc::downgrade(t);
    Box::new(move |_tk: &str| {
        let t = t.upgrade().expect("the provider outlives its keeper");
        t.simple_tokens_mu.lock();
        let _unlock = defer(|| t.simple_tokens_mu.unlock());
    })
}

/// `authStore`.
struct AuthStore {
    token_provider: Arc<TokenSimple>,
}

impl AuthStore {
    fn authenticate(&self) {
        self.token_provider.assign();
    }
}

fn setup_auth_store(variant: Variant) -> Arc<AuthStore> {
    let as_ = Arc::new(AuthStore {
        token_provider: Arc::new(TokenSimple {
            simple_token_keeper: Shared::new(None).named("simpleTokenKeeper"),
            simple_tokens_mu: RwMutex::new().named("simpleTokensMu"),
            variant,
        }),
    });
    as_.token_provider.enable();
    as_
}

/// `TestEtcd7492`.
fn test_etcd7492(variant: Variant) {
    let as_ = setup_auth_store(variant);
    let provider = as_.token_provider.clone();
    let _tear_down = defer(|| provider.disable());
    let wg = WaitGroup::new();
    wg.add(3);
    for _ in 0..3 {
        let (as_, wg) = (as_.clone(), wg.clone());
        go_named("Authenticate", move || {
            let _done = defer(|| wg.done());
            as_.authenticate();
        });
    }
    wg.wait();
}
