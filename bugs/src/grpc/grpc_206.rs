#![doc = include_str!("grpc_206.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::Mutex;
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_206",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/commit/9df0e935c037988e64e30498b6ecf3c7a99411a2",
        category: "Data race",
        expected: primitives::Verdict::Race,
        kernel: test_new_stream_while_settings_arrive,
        walkthrough: include_str!("grpc_206.md"),
        asplos: Some("non-blocking-bugs/grpc-go/9df0e935c037988e64e30498b6ecf3c7a99411a2.txt"),
        source: Source::Diff("9df0e935"),
        fix: Fix::Upstream("9df0e935"),
        review: "faithful: Checked against 9df0e935 and 9df0e935^ (http2_client.go, control.go): faithful reduction of the handleSettings write-after-unlock race and its fix.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `SETTINGS_MAX_CONCURRENT_STREAMS` in the server's first SETTINGS frame.
const MAX_CONCURRENT_STREAMS: i32 = 100;

/// `ErrConnClosing`.
#[derive(Debug)]
struct ErrConnClosing;

/// `quotaPool`: quota handed out on a channel of capacity one.
struct QuotaPool {
    c: Chan<i32>,
    mu: Mutex,
    quota: Shared<i32>,
}

fn new_quota_pool(q: i32) -> Arc<QuotaPool> {
    let qb = Arc::new(QuotaPool {
        c: Chan::new(1).named("quotaPool.c"),
        mu: Mutex::new().named("quotaPool.mu"),
        quota: Shared::new(0).named("quotaPool.quota"),
    });
    qb.c.send(q);
    qb
}

impl QuotaPool {
    /// `add`: adds `n` to the quota and offers it on `c`.
    fn add(&self, n: i32) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.quota.write(|q| *q += n);
        if self.quota.get() <= 0 {
            return;
        }
        select! {
            send(self.c, self.quota.get()) => self.quota.set(0),
            default => {},
        }
    }

    /// `reset`: takes back the quota on offer, adds `v` and offers it again.
    fn reset(&self, v: i32) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        select! {
            recv(self.c) -> n => self.quota.write(|q| *q += n.expect("never closed")),
            default => {},
        }
        self.quota.write(|q| *q += v);
        if self.quota.get() <= 0 {
            return;
        }
        select! {
            send(self.c, self.quota.get()) => self.quota.set(0),
            default => {},
        }
    }

    /// `acquire`.
    fn acquire(&self) -> Chan<i32> {
        self.c.clone()
    }
}

/// `wait`: the quota, unless the RPC or the transport ends first.
fn wait(ctx: &Context, closing: &Chan<()>, proceed: Chan<i32>) -> Result<i32, ErrConnClosing> {
    select! {
        recv(ctx.done()) => Err(ErrConnClosing),
        recv(closing) => Err(ErrConnClosing),
        recv(proceed) -> i => Ok(i.expect("never closed")),
    }
}

/// `http2Client`: the fields the SETTINGS frame and `NewStream` share.
struct Http2Client {
    mu: Mutex,
    /// Limits the number of concurrent streams; nil until the server's SETTINGS say.
    streams_quota: Shared<Option<Arc<QuotaPool>>>,
    max_streams: Shared<i32>,
    shutdown_chan: Chan<()>,
    variant: Variant,
}

/// A stream (`Stream`): whether it took quota from `streamsQuota`.
struct Stream {
    update_streams: bool,
}

impl Http2Client {
    /// `handleSettings`, for a `SETTINGS_MAX_CONCURRENT_STREAMS` of `v`.
    fn handle_settings(&self, v: i32) {
        self.mu.lock();
        let reset = self.streams_quota.read(|q| q.is_some());
        if self.variant.fixed() && !reset {
            self.streams_quota.set(Some(new_quota_pool(v)));
        }
        let ms = self.max_streams.get();
        self.max_streams.set(v);
        self.mu.unlock();
        if self.variant.fixed() {
            if reset {
                let q = self.streams_quota.get().expect("reset");
                q.reset(v - ms);
            }
        } else if !reset {
            self.streams_quota.set(Some(new_quota_pool(v)));
        } else {
            let q = self.streams_quota.get().expect("reset");
            q.reset(v - ms);
        }
    }

    /// `reader`: the first frame is the server's SETTINGS.
    fn reader(&self) {
        self.handle_settings(MAX_CONCURRENT_STREAMS);
    }

    /// `NewStream`: takes a stream's quota if the server set a limit.
    fn new_stream(&self, ctx: &Context) -> Result<Stream, ErrConnClosing> {
        self.mu.lock();
        let check_streams_quota = self.streams_quota.read(|q| q.is_some());
        self.mu.unlock();
        if check_streams_quota {
            let q = self.streams_quota.get().expect("checked");
            let sq = wait(ctx, &self.shutdown_chan, q.acquire())?;
            // Returns the quota balance back.
            if sq > 1 {
                q.add(sq - 1);
            }
        }
        Ok(Stream {
            update_streams: check_streams_quota,
        })
    }

    /// `CloseStream`: gives the stream's quota back.
    fn close_stream(&self, s: Stream) {
        if s.update_streams {
            let q = self.streams_quota.get().expect("took quota");
            q.add(1);
        }
    }
}

/// A client that starts an RPC as soon as the transport is up, while the reader handles the
/// server's first SETTINGS frame.
fn test_new_stream_while_settings_arrive(variant: Variant) {
    // newHTTP2Client: the transport, then its reader goroutine.
    let t = Arc::new(Http2Client {
        mu: Mutex::new().named("t.mu"),
        streams_quota: Shared::new(None).named("t.streamsQuota"),
        max_streams: Shared::new(i32::MAX).named("t.maxStreams"),
        shutdown_chan: Chan::new(0).named("t.shutdownChan"),
        variant,
    });
    let rt = t.clone();
    go_named("reader", move || rt.reader());
    // An RPC on the new transport.
    let ctx = context::background();
    if let Ok(s) = t.new_stream(&ctx) {
        t.close_stream(s);
    }
}
