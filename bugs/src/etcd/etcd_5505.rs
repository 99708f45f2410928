#![doc = include_str!("etcd_5505.md")]

use std::sync::Arc;

use primitives::context::{self, Context};
use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_5505",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/5505",
        category: "Misuse channel",
        expected: primitives::Verdict::Panic,
        kernel: test_v3_watch_close,
        walkthrough: include_str!("etcd_5505.md"),
        budget: Budget { preemption_bound: Some(2), ..Budget::DEFAULT },
        source: Source::Diff("09e8f578"),
        fix: Fix::Upstream("09e8f578"),
        review: "faithful: Checked against 09e8f578 and 09e8f578^ (v3rpc/watch.go, mvcc/watcher.go) with the test 41d3cea9 of the same PR: the send-on-closed-channel race between recvLoop and close() is upstream's, the fix is upstream's three hunks as switches, and every reduction is admitted.",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `ctrlStreamBufLen`: control responses are buffered so that the receive loop does not wait
/// for the send loop.
const CTRL_STREAM_BUF_LEN: usize = 16;

/// A client's `WatchRequest`, reduced to the create request the test sends.
struct WatchCreateRequest;

/// A `WatchResponse`: a control message (created, or canceled) or a batch of events.
struct WatchResponse {
    watch_id: i64,
    canceled: bool,
}

/// The server side of one gRPC watch stream: requests from the client arrive on `reqc`;
/// the stream's context is cancelled when the client's connection closes.
struct GrpcStream {
    reqc: Chan<WatchCreateRequest>,
    ctx: Context,
}

impl GrpcStream {
    /// `Recv`: the next request, or the error of a closed connection.
    fn recv(&self) -> Option<WatchCreateRequest> {
        select! {
            recv(self.reqc) -> req => req,
            recv(self.ctx.done()) -> _ => None,
        }
    }

    /// `Send`: the response goes to the client (the transport never blocks here).
    fn send(&self, wr: WatchResponse) {
        let _to_the_client = (wr.watch_id, wr.canceled);
    }
}

/// mvcc's `watchStream`: the watchers of one stream, and the channel of their events.
struct WatchStream {
    mu: Mutex,
    closed: Shared<bool>,
    next_id: Shared<i64>,
    ch: Chan<WatchResponse>,
}

impl WatchStream {
    /// `Watch`: registers a watcher and returns its id, or -1 once the stream is closed.
    fn watch(&self) -> i64 {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        if self.closed.get() {
            return -1;
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    fn chan(&self) -> &Chan<WatchResponse> {
        &self.ch
    }

    /// `Close`: cancels the watchers and closes the event channel.
    fn close(&self) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.closed.set(true);
        self.ch.close();
    }
}

/// v3rpc's `serverWatchStream`.
struct ServerWatchStream {
    grpc_stream: GrpcStream,
    watch_stream: WatchStream,
    ctrl_stream: Chan<WatchResponse>,
    /// Closed when the stream is closed.
    closec: Chan<()>,
    /// Waits for the send loop.
    wg: WaitGroup,
    variant: Variant,
}

/// `watchServer.Watch`: serves one watch stream until the client goes away.
fn watch(stream: GrpcStream, variant: Variant) {
    let sws = Arc::new(ServerWatchStream {
        grpc_stream: stream,
        watch_stream: WatchStream {
            mu: Mutex::new().named("watchStream.mu"),
            closed: Shared::new(false).named("watchStream.closed"),
            next_id: Shared::new(0).named("watchStream.nextID"),
            ch: Chan::new(1).named("watchStream.ch"),
        },
        ctrl_stream: Chan::new(CTRL_STREAM_BUF_LEN).named("ctrlStream"),
        closec: Chan::new(0).named("closec"),
        wg: WaitGroup::new().named("sws.wg"),
        variant,
    });

    sws.wg.add(1);
    let s = sws.clone();
    go_named("sendLoop", move || {
        s.send_loop();
        s.wg.done();
    });

    let errc = Chan::new(1).named("errc");
    let (s, e) = (sws.clone(), errc.clone());
    go_named("recvLoop", move || e.send(s.recv_loop()));

    select! {
        recv(errc) -> _ => {},
        recv(sws.grpc_stream.ctx.done()) -> _ => {},
    }
    sws.close();
}

impl ServerWatchStream {
    fn recv_loop(&self) -> Result<(), &'static str> {
        let _close = defer(|| {
            if self.variant.fixed() {
                self.ctrl_stream.close();
            }
        });
        loop {
            let Some(_create) = self.grpc_stream.recv() else {
                return Err("rpc error: code = Canceled");
            };
            let id = self.watch_stream.watch();
            let wr = WatchResponse {
                watch_id: id,
                canceled: id == -1,
            };
            if self.variant.fixed() {
                select! {
                    send(self.ctrl_stream, wr) => {},
                    recv(self.closec) -> _ => return Ok(()),
                }
            } else {
                self.ctrl_stream.send(wr);
            }
        }
    }

    fn send_loop(&self) {
        loop {
            select! {
                recv(self.watch_stream.chan()) -> wresp => {
                    let Some(wresp) = wresp else { return };
                    self.grpc_stream.send(wresp);
                },
                recv(self.ctrl_stream) -> c => {
                    let Some(c) = c else { return };
                    self.grpc_stream.send(c);
                },
                recv(self.closec) -> _ => {
                    // drain the channel to clean up pending events
                    while self.watch_stream.chan().recv().is_some() {}
                },
            }
        }
    }

    fn close(&self) {
        self.watch_stream.close();
        self.closec.close();
        if !self.variant.fixed() {
            self.ctrl_stream.close();
        }
        self.wg.wait();
    }
}

/// `TestV3WatchClose` (added by 41d3cea9), for one of its client goroutines: open a watch
/// stream and send a create request; then the test closes the client's connection.
fn test_v3_watch_close(variant: Variant) {
    let (ctx, cancel) = context::with_cancel(&context::background());
    let reqc = Chan::new(0).named("stream.reqc");
    let stream = GrpcStream {
        reqc: reqc.clone(),
        ctx,
    };
    go_named("Watch", move || watch(stream, variant));
    reqc.send(WatchCreateRequest);
    cancel.call(); // c.ActiveConnection().Close()
}
