#![doc = include_str!("grpc_1850.md")]

use std::sync::Arc;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{Mutex, WaitGroup};
use primitives::{defer, go_named, select, Chan, Shared};

use crate::{Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "grpc_1850",
        project: "grpc",
        upstream: "https://github.com/grpc/grpc-go/pull/1859",
        category: "Communication deadlock (channel)",
        expected: primitives::Verdict::Deadlock,
        kernel: test_client_doesnt_deadlock_while_writing_errornous_large_messages,
        walkthrough: include_str!("grpc_1850.md"),
        asplos: Some("blocking-bugs/grpc-go/484b3ebb4ab56d3decc8240d599718bdbefcf7eb.txt"),
        source: Source::Diff("484b3ebb"),
        fix: Fix::Upstream("484b3ebb"),
        review: "faithful after mends: Checked against 484b3ebb (ASPLOS blocking/grpc-go/484b3ebb…), transport/{http2_client,control,http2_server,bdp_estimator}.go and call.go/stream.go at 484b3ebb^, test/end2end_test.go at 484b3ebb, and issue #1850. The kernel has the same quota leak and the fix is switched at the right line; both prose mends are made (dim13's report named, the CI dump placed on a tree carrying the new test, and the reversed local-quota/window ratio admitted with its BDP precondition).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// The connection's flow-control window (`defaultWindowSize`), in frames.
const DEFAULT_WINDOW_SIZE: i32 = 2;
/// The server sends a connection window update once this much received data is unacknowledged
/// (`limit/4` in `inFlow.onRead`), in frames.
const WINDOW_UPDATE_THRESHOLD: i32 = 2;
/// `defaultLocalSendQuota`, in frames.
const DEFAULT_LOCAL_SEND_QUOTA: i32 = 1;
/// The request: its first frame (the 5-byte message header and the start of the payload) and
/// one more frame of payload, already more than the server's 1024-byte limit.
const MESSAGE_FRAMES: usize = 2;
/// The calls the test's goroutine makes (`for j := 0; j < 100; j++`).
const CALLS: usize = 2;

/// The errors `quotaPool.get` and `Write` return.
#[derive(Debug, PartialEq)]
enum Error {
    /// `ContextErr(s.ctx.Err())`.
    Context,
    /// `io.EOF`: the stream is done.
    Eof,
    /// `ErrConnClosing`.
    ConnClosing,
}

/// `waiters`: what a `quotaPool.get` waits on besides quota.
#[derive(Clone)]
struct Waiters {
    ctx: Context,
    tctx: Context,
    done: Chan<()>,
}

/// `quotaPool`: quota, and a one-slot channel that wakes a waiting `get`.
struct QuotaPool {
    mu: Mutex,
    c: Chan<()>,
    quota: Shared<i32>,
}

impl QuotaPool {
    /// `newQuotaPool`.
    fn new(q: i32, name: &str) -> Self {
        QuotaPool {
            mu: Mutex::new().named(&format!("{name}.mu")),
            c: Chan::new(1).named(&format!("{name}.c")),
            quota: Shared::new(q).named(&format!("{name}.quota")),
        }
    }

    /// `add`.
    fn add(&self, v: i32) {
        self.mu.lock();
        let _unlock = defer(|| self.mu.unlock());
        self.locked_add(v);
    }

    /// `lockedAdd`: wakes a waiter if the pool was empty.
    fn locked_add(&self, v: i32) {
        let wake_up = self.quota.get() <= 0;
        self.quota.set(self.quota.get() + v);
        if wake_up && self.quota.get() > 0 {
            select! {
                send(self.c, ()) => {},
                default => {},
            }
        }
    }

    /// `get`: up to `v` of the quota, waiting for some if there is none, unless `wc` ends
    /// first.
    fn get(&self, mut v: i32, wc: &Waiters) -> Result<i32, Error> {
        self.mu.lock();
        if self.quota.get() > 0 {
            v = v.min(self.quota.get());
            self.quota.set(self.quota.get() - v);
            self.mu.unlock();
            return Ok(v);
        }
        self.mu.unlock();
        loop {
            select! {
                recv(wc.ctx.done()) => return Err(Error::Context),
                recv(wc.tctx.done()) => return Err(Error::ConnClosing),
                recv(wc.done) => return Err(Error::Eof),
                recv(self.c) => {
                    self.mu.lock();
                    if self.quota.get() > 0 {
                        v = v.min(self.quota.get());
                        self.quota.set(self.quota.get() - v);
                        if self.quota.get() > 0 {
                            select! {
                                send(self.c, ()) => {},
                                default => {},
                            }
                        }
                        self.mu.unlock();
                        return Ok(v);
                    }
                    self.mu.unlock();
                }
            }
        }
    }
}

/// A client stream (`Stream`): its `done` channel, closed when the stream ends.
struct Stream {
    done: Chan<()>,
    waiters: Waiters,
}

impl Stream {
    /// `finish`: ends the stream.
    fn finish(&self) {
        self.done.close();
    }
}

/// `dataFrame`: a frame of a stream's data, and what to run once it is written.
struct DataFrame {
    s: Arc<Stream>,
    /// Whether the frame carries the message's header (`idx == 0` in `Write`).
    first: bool,
    f: Box<dyn FnOnce() + Send>,
}

/// A frame on the wire, as the server sees it.
struct WireFrame {
    s: Arc<Stream>,
    first: bool,
}

/// `http2Client`: the fields `Write` and the transport's goroutines share.
struct Http2Client {
    ctx: Context,
    cancel: CancelFunc,
    /// `controlBuf`.
    control_buf: Chan<DataFrame>,
    /// The connection to the server.
    conn: Chan<WireFrame>,
    send_quota_pool: QuotaPool,
    local_send_quota: QuotaPool,
    next_id: Shared<u32>,
    variant: Variant,
}

impl Http2Client {
    /// `NewStream`: a stream with its waiters.
    fn new_stream(&self, ctx: &Context) -> Arc<Stream> {
        let id = self.next_id.get();
        self.next_id.set(id + 2);
        let done = Chan::new(0).named(&format!("s{id}.done"));
        Arc::new(Stream {
            done: done.clone(),
            waiters: Waiters {
                ctx: ctx.clone(),
                tctx: self.ctx.clone(),
                done,
            },
        })
    }

    /// `Write`: takes transport quota, then local send quota, for each frame, and queues it.
    fn write(self: &Arc<Self>, s: &Arc<Stream>) -> Result<(), Error> {
        select! {
            recv(s.waiters.ctx.done()) => return Err(Error::Context),
            recv(s.done) => return Err(Error::Eof),
            recv(self.ctx.done()) => return Err(Error::ConnClosing),
            default => {},
        }
        for idx in 0..MESSAGE_FRAMES {
            let size = 1;
            // Get size worth quota from transport.
            let tq = self.send_quota_pool.get(size, &s.waiters)?;
            let ltq = match self.local_send_quota.get(tq, &s.waiters) {
                Ok(ltq) => ltq,
                Err(err) => {
                    if self.variant.fixed() {
                        self.send_quota_pool.add(tq);
                    }
                    return Err(err);
                }
            };
            let t = self.clone();
            self.control_buf.send(DataFrame {
                s: s.clone(),
                first: idx == 0,
                f: Box::new(move || t.local_send_quota.add(ltq)),
            });
        }
        Ok(())
    }

    /// `itemHandler` for a `dataFrame`: writes it, then gives its local quota back.
    fn item_handler(&self, i: DataFrame) -> Result<(), Error> {
        select! {
            send(self.conn, WireFrame { s: i.s, first: i.first }) => {},
            recv(self.ctx.done()) => return Err(Error::ConnClosing),
        }
        (i.f)();
        Ok(())
    }

    /// The server's side of the connection, and the client's `reader` handling its answers.
    fn reader(&self) {
        // The server's connection-level `inFlow`: received data not yet acknowledged.
        let mut pending_update = 0;
        loop {
            let frame = select! {
                recv(self.conn) -> f => f.expect("never closed"),
                recv(self.ctx.done()) => return,
            };
            // The server's handleData: onData, then onRead, which gives the connection window
            // back in batches ...
            pending_update += 1;
            if pending_update >= WINDOW_UPDATE_THRESHOLD {
                let wu = pending_update;
                pending_update = 0;
                self.handle_window_update(wu);
            }
            // ... and, having read the header of a message over its limit, the server's handler
            // fails (ResourceExhausted) and WriteStatus sends the trailers, which end the
            // client's stream.
            if frame.first {
                self.operate_headers(&frame.s);
            }
        }
    }

    /// `handleWindowUpdate` for the connection (stream 0).
    fn handle_window_update(&self, incr: i32) {
        self.send_quota_pool.add(incr);
    }

    /// `operateHeaders` for the trailers (`endStream`): the stream ends with its status.
    fn operate_headers(&self, s: &Stream) {
        s.finish();
    }

    /// `Close`.
    fn close(&self) {
        self.cancel.call();
    }
}

/// `loopyWriter`: hands each queued item to `itemHandler`.
fn loopy_writer(ctx: &Context, cbuf: &Chan<DataFrame>, t: &Http2Client) {
    loop {
        select! {
            recv(cbuf) -> i => {
                if t.item_handler(i.expect("never closed")).is_err() {
                    return;
                }
            },
            recv(ctx.done()) => return,
        }
    }
}

/// `UnaryCall`: a new stream, `SendMsg` (its `Write`), then `RecvMsg`, which waits for the
/// stream's status.
fn unary_call(t: &Arc<Http2Client>, ctx: &Context) {
    let s = t.new_stream(ctx);
    // SendMsg turns a failed Write into io.EOF, and a unary call then reads the status.
    let _ = t.write(&s);
    // RecvMsg: the status arrives with the stream's end.
    s.done.recv();
}

/// `testClientDoesntDeadlockWhileWritingErrornousLargeMessages`: a goroutine makes calls
/// whose requests are too large for the server, over one connection.
fn test_client_doesnt_deadlock_while_writing_errornous_large_messages(variant: Variant) {
    let (ctx, cancel) = context::with_cancel(&context::background());
    let t = Arc::new(Http2Client {
        ctx: ctx.clone(),
        cancel,
        control_buf: Chan::new(MESSAGE_FRAMES).named("controlBuf"),
        conn: Chan::new(0).named("conn"),
        send_quota_pool: QuotaPool::new(DEFAULT_WINDOW_SIZE, "sendQuotaPool"),
        local_send_quota: QuotaPool::new(DEFAULT_LOCAL_SEND_QUOTA, "localSendQuota"),
        next_id: Shared::new(1).named("nextID"),
        variant,
    });
    // newHTTP2Client: the reader and the loopy writer.
    let rt = t.clone();
    go_named("reader", move || rt.reader());
    let lt = t.clone();
    go_named("loopyWriter", move || {
        loopy_writer(&lt.ctx, &lt.control_buf, &lt);
    });

    let wg = WaitGroup::new();
    wg.add(1);
    let (ct, cwg) = (t.clone(), wg.clone());
    go_named(
        "testClientDoesntDeadlockWhileWritingErrornousLargeMessages.func1",
        move || {
            let _done = defer(|| cwg.done());
            for _ in 0..CALLS {
                unary_call(&ct, &context::background());
            }
        },
    );
    wg.wait();
    // te.tearDown: the connection closes.
    t.close();
}
