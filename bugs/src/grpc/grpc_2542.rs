#![doc = include_str!("grpc_2542.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::sync::{AtomicU32, Mutex, Once, RwMutex};
use primitives::{go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_2542",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/issues/2542",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_goaway_then_close,
        walkthrough: include_str!("grpc_2542.md"),
        asplos: None,
        source: Source::Diff("97da9e08"),
        fix: Fix::Upstream("35c3afad"),
        review: "faithful after mends: Checked against issue #2542's race report, clientconn.go and internal/transport/http2_client.go at 97da9e08, `git diff 97da9e08 35c3afad`, b20cbb449, 1b41b79f and the PR #2544 review. The kernel has the same onGoAway-vs-onClose double reset and the same unordered writes under RLock; the 35c3afad `oneReset` fix is a sound, sourced choice, and the mends are made: the walkthrough now admits the maintainer's `ac.mu` fix and no longer says 35c3afad removed the race.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `keepalive.ClientParameters`: only its `Time`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ClientParameters {
    time: Duration,
}

/// `connectivity.State`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Idle,
    Connecting,
    Ready,
}

/// `transport.GoAwayReason`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum GoAwayReason {
    TooManyPings,
}

/// `ClientConn`: the fields `resetTransport` and `adjustParams` share.
struct ClientConn {
    mu: RwMutex,
    /// `mkp`: the keepalive parameters, raised on a too-many-pings GOAWAY.
    mkp: Shared<ClientParameters>,
}

/// `addrConn`.
struct AddrConn {
    cc: ClientConn,
    mu: Mutex,
    /// `ac.dopts.copts.KeepaliveParams`.
    keepalive_params: Shared<ClientParameters>,
    state: Shared<State>,
    /// `ac.transport`: the id of the current transport, if any.
    transport: Shared<Option<u32>>,
    /// How many transports have been made (the fake dialer's count).
    dials: AtomicU32,
    variant: Variant,
}

impl AddrConn {
    /// `connect`: starts the first `resetTransport` on a goroutine of its own.
    fn connect(self: &Arc<Self>) {
        self.mu.lock();
        if self.state.get() != State::Idle {
            self.mu.unlock();
            return;
        }
        self.state.set(State::Connecting);
        self.mu.unlock();
        let ac = self.clone();
        go_named("resetTransport", move || ac.reset_transport());
    }

    /// `adjustParams`: doubles the keepalive time after a too-many-pings GOAWAY.
    fn adjust_params(&self, r: GoAwayReason) {
        match r {
            GoAwayReason::TooManyPings => {
                let v = 2 * self.keepalive_params.get().time;
                self.cc.mu.lock();
                if v > self.cc.mkp.get().time {
                    self.cc.mkp.write(|p| p.time = v);
                }
                self.cc.mu.unlock();
            }
        }
    }

    /// `resetTransport`: one pass of its loop, which succeeds.
    fn reset_transport(self: &Arc<Self>) {
        self.mu.lock();
        self.transport.set(None);
        self.mu.unlock();

        self.cc.mu.rlock();
        self.keepalive_params.set(self.cc.mkp.get());
        self.cc.mu.runlock();

        self.mu.lock();
        if self.state.get() != State::Connecting {
            self.state.set(State::Connecting);
        }
        let copts = self.keepalive_params.get();
        self.mu.unlock();

        self.create_transport(copts);
    }

    /// `createTransport`: makes a transport with its callbacks, and lets them reset the
    /// connection once the transport is ready.
    fn create_transport(self: &Arc<Self>, _copts: ClientParameters) {
        // The fix: at most one of the callbacks resets.
        let one_reset = Arc::new(Once::new());
        let skip_reset: Chan<()> = Chan::new(0).named("skipReset");
        let allowed_to_reset: Chan<()> = Chan::new(0).named("allowedToReset");
        let on_close_called: Chan<()> = Chan::new(0).named("onCloseCalled");

        let on_go_away = {
            let (ac, one_reset) = (self.clone(), one_reset.clone());
            let (skip_reset, allowed_to_reset) = (skip_reset.clone(), allowed_to_reset.clone());
            move |r: GoAwayReason| {
                ac.mu.lock();
                ac.adjust_params(r);
                ac.mu.unlock();
                if ac.variant.fixed() {
                    select! {
                        recv(skip_reset) => {},
                        recv(allowed_to_reset) => {
                            go_named("resetTransport", move || {
                                one_reset.do_(|| ac.reset_transport())
                            });
                        },
                    }
                } else {
                    go_named("resetTransport", move || ac.reset_transport());
                }
            }
        };

        let on_close = {
            let ac = self.clone();
            let (on_close_called, allowed_to_reset) =
                (on_close_called.clone(), allowed_to_reset.clone());
            move || {
                on_close_called.close();
                select! {
                    recv(skip_reset) => {},
                    recv(allowed_to_reset) => {
                        ac.mu.lock();
                        ac.transport.set(None);
                        ac.mu.unlock();
                        if ac.variant.fixed() {
                            one_reset.do_(|| ac.reset_transport());
                        } else {
                            ac.reset_transport();
                        }
                    },
                }
            }
        };

        let id = new_client_transport(self, on_go_away, on_close);

        self.mu.lock();
        self.state.set(State::Ready);
        self.transport.set(Some(id));
        self.mu.unlock();

        // Only now may the transport's callbacks reset it.
        allowed_to_reset.close();
    }
}

/// `transport.NewClientTransport`: the first transport's server sends a too-many-pings GOAWAY
/// and then closes the connection; the transports made after it stay up.
fn new_client_transport(
    ac: &AddrConn,
    on_go_away: impl FnOnce(GoAwayReason) + Send + 'static,
    on_close: impl FnOnce() + Send + 'static,
) -> u32 {
    let id = ac.dials.add(1);
    if id == 1 {
        // `go t.reader()`.
        go_named("reader", move || {
            // handleGoAway: t.onGoAway(t.goAwayReason).
            on_go_away(GoAwayReason::TooManyPings);
            // The next read fails: the reader closes the transport, and Close calls onClose.
            on_close();
        });
    }
    id
}

/// A client connects; its first transport gets a too-many-pings GOAWAY, and then its
/// connection closes.
fn test_goaway_then_close(variant: Variant) {
    let keepalive = ClientParameters {
        time: Duration::from_secs(10),
    };
    let ac = Arc::new(AddrConn {
        cc: ClientConn {
            mu: RwMutex::new().named("cc.mu"),
            mkp: Shared::new(keepalive).named("cc.mkp"),
        },
        mu: Mutex::new().named("ac.mu"),
        keepalive_params: Shared::new(keepalive).named("ac.dopts.copts.KeepaliveParams"),
        state: Shared::new(State::Idle).named("ac.state"),
        transport: Shared::new(None).named("ac.transport"),
        dials: AtomicU32::new(0),
        variant,
    });
    ac.connect();
}
