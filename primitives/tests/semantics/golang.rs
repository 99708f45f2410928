//! Go's own test programs, ported: the channel tests of `test/chan/`, `test/ken/chan1.go` and
//! `test/closedchan.go` (the sync package's tests are in `golang_sync.rs`, those of
//! `src/runtime/chan_test.go` in `golang_runtime.rs`). Each test is
//! named after the Go test or program it comes from and says what was scaled down: loom explores
//! every interleaving, so the programs keep to a main goroutine and at most four others, with
//! loop counts of two or three where Go has hundreds. Where Go lets goroutines block forever at
//! exit, the port closes a channel or unblocks them instead, since a goroutine left blocked
//! after main returns is a leak here.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use primitives::explore::Engine;
use primitives::sync::WaitGroup;
use primitives::{go, gosched, select, time, Chan, Shared, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean, expect_clean_lazy};

/// From `test/closedchan.go`: a closed channel first yields what was buffered, then the zero
/// value with ok false, to plain receives and to selects alike; sends on it panic; `len` and `cap`
/// stay meaningful. Scaled: Go's ten iterations of each check and its many channel shapes (sync,
/// async, through selects of every kind) are one pass over one unbuffered and one buffered
/// channel.
#[rstest]
fn closedchan(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        // Synchronous: a sender goroutine delivers 7, then main closes.
        let c = Chan::<i32>::new(0);
        let tx = c.clone();
        go(move || tx.send(7));
        assert_eq!(c.recv(), Some(7));
        c.close();
        for _ in 0..2 {
            assert_eq!(c.recv(), None);
            select! {
                recv(c) -> v => assert_eq!(v, None),
                default => panic!("a closed channel is always ready"),
            }
        }
        assert_eq!((c.len(), c.cap()), (0, 0));

        // Asynchronous: buffered values survive the close.
        let c = Chan::<i32>::new(2);
        c.send(1);
        c.send(2);
        c.close();
        assert_eq!((c.len(), c.cap()), (2, 2));
        assert_eq!(c.recv(), Some(1));
        select! {
            recv(c) -> v => assert_eq!(v, Some(2)),
        }
        assert_eq!(c.recv(), None);
        assert_eq!((c.len(), c.cap()), (0, 2));
    });
}

/// From `test/closedchan.go`: closing a closed channel panics.
#[rstest]
fn closedchan_close_twice(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect(engine, Verdict::Panic, "close of closed channel", || {
        let c = Chan::<i32>::new(1);
        c.close();
        c.close();
    });
}

/// From `test/closedchan.go`: a send on a closed channel panics, in a select as well.
#[rstest]
fn closedchan_send_panics(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect(engine, Verdict::Panic, "send on closed channel", || {
        let c = Chan::<i32>::new(1);
        c.close();
        select! {
            send(c, 1) => {},
            default => {},
        }
    });
}

/// From `test/chan/nonblock.go`: a select with a default never blocks. With no partner an
/// unbuffered send or receive takes the default; a buffered channel takes one send and then
/// defaults, gives back that value and then defaults; a blocked partner makes the non-blocking
/// operation succeed. Scaled: Go's loop over every element type and buffer size 0..8 is one
/// `i32` channel of each kind; its spin-until-the-partner-arrives loops (with `Gosched`) are kept,
/// bounded by the partner's arrival.
#[rstest]
fn nonblock(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let c = Chan::<i32>::new(0);
        select! {
            recv(c) -> _ => panic!("recv on an unbuffered channel with no sender"),
            default => {},
        }
        select! {
            send(c, 1) => panic!("send on an unbuffered channel with no receiver"),
            default => {},
        }

        let b = Chan::<i32>::new(1);
        select! {
            send(b, 123) => {},
            default => panic!("send into an empty buffer"),
        }
        select! {
            send(b, 124) => panic!("send into a full buffer"),
            default => {},
        }
        select! {
            recv(b) -> v => assert_eq!(v, Some(123)),
            default => panic!("recv from a full buffer"),
        }
        select! {
            recv(b) -> _ => panic!("recv from an empty buffer"),
            default => {},
        }

        // A receiver parked on c: a non-blocking send eventually finds it.
        let (rx, done) = (c.clone(), Chan::<()>::new(0));
        let d = done.clone();
        go(move || {
            assert_eq!(rx.recv(), Some(9));
            d.send(());
        });
        loop {
            let sent = select! {
                send(c, 9) => true,
                default => false,
            };
            if sent {
                break;
            }
            gosched();
        }
        done.recv();
    });
}

/// Runs `op` in a goroutine and reports whether it blocked: a lazy `time.After` in main fires
/// only when `op` cannot proceed. `release` then unblocks it, so nothing leaks. (Go's
/// `testBlock` in `test/chan/select3.go`, which waits a real tenth of a second.)
fn blocks(op: impl FnOnce() + Send + 'static, release: impl FnOnce()) -> bool {
    let done = Chan::<()>::new(1);
    let d = done.clone();
    go(move || {
        op();
        d.send(());
    });
    let blocked = select! {
        recv(done) => false,
        recv(time::after(Duration::from_secs(1))) => true,
    };
    if blocked {
        release();
        done.recv();
    }
    blocked
}

/// From `test/chan/select3.go`: an unbuffered send with no receiver blocks, and a send into a
/// full buffer blocks, alone or in a select without default. Go's program leaves the blocked
/// goroutines behind; here main unblocks each after the watchdog fires. Scaled: the checks
/// involving nil channels and empty selects (which can never be released) are left out.
#[rstest]
fn select3_blocking_sends(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean_lazy(engine, || {
        let c = Chan::<i32>::new(0);
        let tx = c.clone();
        assert!(blocks(move || tx.send(7), || assert_eq!(c.recv(), Some(7))));

        let b = Chan::<i32>::new(1);
        b.send(1);
        let tx = b.clone();
        assert!(blocks(
            move || select! { send(tx, 2) => {} },
            || {
                assert_eq!(b.recv(), Some(1));
                assert_eq!(b.recv(), Some(2));
            }
        ));
    });
}

/// From `test/chan/select3.go`: receives from a closed channel never block, nor does a select
/// with a closed channel among its cases, nor a buffered send with room. Scaled: one channel
/// per check.
#[rstest]
fn select3_never_blocks(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean_lazy(engine, || {
        let closed = Chan::<i32>::new(0);
        closed.close();
        let c = closed.clone();
        assert!(!blocks(move || assert_eq!(c.recv(), None), || {}));
        let (c, idle) = (closed.clone(), Chan::<i32>::new(0));
        assert!(!blocks(
            move || select! {
                recv(idle) -> _ => panic!("nobody sends on idle"),
                recv(c) -> v => assert_eq!(v, None),
            },
            || {}
        ));
        let b = Chan::<i32>::new(1);
        let tx = b.clone();
        assert!(!blocks(move || tx.send(1), || {}));
        assert_eq!(b.recv(), Some(1));
    });
}

/// From `test/chan/doubleselect.go`: a sender selects among several channels for each value,
/// several multiplexers forward from each channel to one, and the receiver sees every value
/// exactly once. Scaled: Go's 100000 values over four channels and four muxes are three values
/// over two channels and two muxes; a WaitGroup-driven close ends the receiver's loop where Go
/// counts. Loom is left out: the selects and forwarding give more interleavings than its budget
/// covers in a test run.
#[rstest]
fn doubleselect(
    #[values(
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        const N: i32 = 3;
        let (c1, c2, out) = (
            Chan::<i32>::new(0),
            Chan::<i32>::new(0),
            Chan::<i32>::new(0),
        );
        let (s1, s2) = (c1.clone(), c2.clone());
        go(move || {
            for i in 0..N {
                select! {
                    send(s1, i) => {},
                    send(s2, i) => {},
                }
            }
            s1.close();
            s2.close();
        });
        let wg = WaitGroup::new();
        for c in [c1, c2] {
            let (out, wg) = (out.clone(), wg.clone());
            wg.add(1);
            go(move || {
                while let Some(v) = c.recv() {
                    out.send(v);
                }
                wg.done();
            });
        }
        let closer = out.clone();
        go(move || {
            wg.wait();
            closer.close();
        });
        let mut seen = [false; N as usize];
        while let Some(v) = out.recv() {
            assert!(!seen[v as usize], "{v} received twice");
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "values lost: {seen:?}");
    });
}

/// From `test/chan/fifo.go`: a buffered channel delivers in order (`AsynchFifo`), and so does a
/// chain of goroutines each sending on one unbuffered channel after its predecessor
/// (`SynchFifo`). Scaled: Go's N = 10 is 3.
#[rstest]
fn fifo(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        const N: i32 = 3;
        let ch = Chan::<i32>::new(N as usize);
        for i in 0..N {
            ch.send(i);
        }
        for i in 0..N {
            assert_eq!(ch.recv(), Some(i), "AsynchFifo");
        }

        let ch = Chan::<i32>::new(0);
        let first = Chan::<i32>::new(0);
        let mut input = first.clone();
        for i in 0..N {
            let out = Chan::<i32>::new(0);
            let (ch, inp, o) = (ch.clone(), input.clone(), out.clone());
            go(move || {
                inp.recv();
                ch.send(i);
                o.send(1);
            });
            input = out;
        }
        first.send(1);
        for i in 0..N {
            assert_eq!(ch.recv(), Some(i), "SynchFifo");
        }
        input.recv();
    });
}

/// From `test/chan/sieve1.go`: the concurrent prime sieve, a generator and a chain of filter
/// goroutines. Scaled: Go prints the first hundred primes from an endless generator; here the
/// generator stops at 7 and closes, each filter closes its output when its input closes, and
/// main checks 2, 3, 5, 7. Loom is left out: five goroutines passing values down a chain exceed
/// what it explores in a test run.
#[rstest]
fn sieve1(
    #[values(
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let gen = Chan::<i32>::new(0);
        let tx = gen.clone();
        go(move || {
            for i in 2..=7 {
                tx.send(i);
            }
            tx.close();
        });
        let mut ch = gen;
        let mut primes = Vec::new();
        while let Some(prime) = ch.recv() {
            primes.push(prime);
            let (inp, out) = (ch, Chan::<i32>::new(0));
            let o = out.clone();
            go(move || {
                while let Some(i) = inp.recv() {
                    if i % prime != 0 {
                        o.send(i);
                    }
                }
                o.close();
            });
            ch = out;
        }
        assert_eq!(primes, [2, 3, 5, 7]);
    });
}

/// From `test/chan/zerosize.go`: channels of zero-size elements, unbuffered and buffered, can be
/// made and used. Go's program only makes them; the port also sends and receives.
#[rstest]
fn zerosize(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let (a, b) = (Chan::<[u8; 0]>::new(0), Chan::<[u8; 0]>::new(1));
        let (c, d) = (Chan::<()>::new(0), Chan::<()>::new(1));
        b.send([]);
        d.send(());
        assert_eq!((b.len(), d.len()), (1, 1));
        assert_eq!(b.recv(), Some([]));
        assert_eq!(d.recv(), Some(()));
        let (ta, tc) = (a.clone(), c.clone());
        go(move || {
            ta.send([]);
            tc.send(());
        });
        assert_eq!(a.recv(), Some([]));
        assert_eq!(c.recv(), Some(()));
    });
}

/// From `test/ken/chan1.go`: a writer marks each value in a shared table before sending it; `M`
/// receivers select on the channel and check each value arrives once, marked, so that the table
/// write happens before the receive. Scaled: Go's N = 1000 values and M = 10 receivers are
/// three values and two receivers; Go's writer polls the table with sleeps until every entry is
/// done and its receivers loop forever, here the writer closes the channel and waits on a
/// WaitGroup. The table is a [`Shared`], so the race detector checks the happens-before edge.
#[rstest]
fn chan1(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        const N: usize = 3;
        let h: Vec<Shared<u8>> = (0..N).map(|_| Shared::new(0)).collect();
        let h = Arc::new(h);
        let (c, wg) = (Chan::<usize>::new(0), WaitGroup::new());
        for _ in 0..2 {
            let (c, h, wg) = (c.clone(), h.clone(), wg.clone());
            wg.add(1);
            go(move || {
                loop {
                    let r = select! { recv(c) -> r => r };
                    let Some(r) = r else { break };
                    assert_eq!(h[r].get(), 1, "value {r} not marked before its send");
                    h[r].set(2);
                }
                wg.done();
            });
        }
        for (i, cell) in h.iter().enumerate() {
            cell.set(1);
            c.send(i);
        }
        c.close();
        wg.wait();
        assert!(h.iter().all(|cell| cell.get() == 2));
    });
}

/// From `test/chan/select.go`: a select evaluates each send case's value once on entry, in
/// source order, whichever case it then takes (Go's `GetValue` counts the evaluations: ten in
/// all), and the case of a nil channel is never taken. Kept whole: it is one goroutine.
#[rstest]
fn select_(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let (counter, shift) = (Cell::new(0u32), Cell::new(0u32));
        let get_value = || {
            counter.set(counter.get() + 1);
            1u32 << shift.get()
        };
        let send = |mut a: Chan<u32>, mut b: Chan<u32>| {
            let mut i = 0;
            loop {
                select! {
                    send(a, get_value()) => {
                        i += 1;
                        a = Chan::nil();
                    },
                    send(b, get_value()) => {
                        i += 1;
                        b = Chan::nil();
                    },
                    default => break,
                }
                shift.set(shift.get() + 1);
            }
            i
        };
        let (a, b) = (Chan::<u32>::new(1), Chan::<u32>::new(1));
        assert_eq!(send(a.clone(), b.clone()), 2, "Send(a, b)");
        let (av, bv) = (a.recv().unwrap(), b.recv().unwrap());
        assert_eq!(av | bv, 3, "bad values {av} {bv}");
        assert_eq!(send(a.clone(), Chan::nil()), 1, "Send(a, nil)");
        assert_eq!(counter.get(), 10, "counter");
    });
}

/// From `test/chan/select2.go`: a receiver selecting between a channel with a sender and one
/// without takes every value from the first. Scaled: Go's two rounds of 100,000 values are two
/// rounds of three; Go measures the memory the second round allocates, which has no counterpart
/// here and is left out.
#[rstest]
fn select2(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        const N: usize = 3;
        let (c, dummy) = (Chan::<i32>::new(0), Chan::<i32>::new(0));
        for _ in 0..2 {
            let tx = c.clone();
            go(move || {
                for _ in 0..N {
                    tx.send(1);
                }
            });
            for _ in 0..N {
                select! {
                    recv(c) => {},
                    recv(dummy) => panic!("dummy"),
                }
            }
        }
    });
}

/// From `test/chan/select4.go`: only the case a select takes does its work; Go checks that the
/// assignment target of a receive case that is not taken (`*f() = <-c1`) is never evaluated.
/// In Rust that target lives in the case's body, which runs only for the case taken, so the port
/// checks the other half: the ready case is taken and delivers its value.
#[rstest]
fn select4(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let (c, c1) = (Chan::<i32>::new(1), Chan::<i32>::new(0));
        c.send(42);
        let x;
        select! {
            recv(c1) => panic!("BUG: called f"),
            recv(c) -> v => x = v.unwrap(),
        }
        assert_eq!(x, 42, "BUG: {x}");
    });
}

/// From `test/chan/select6.go` (Go issue 2075): when a parked select is woken by one case, it
/// must leave the queues of its other channels intact. Here a select waits on `c1` behind a
/// plain receiver and is woken by `c2`; two later sends on `c1` must reach the first receiver
/// and the select's goroutine's own second receive, or both sit in a corrupted queue. Kept
/// whole.
#[rstest]
fn select6(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let (c1, c2, c3) = (
            Chan::<bool>::new(0),
            Chan::<bool>::new(0),
            Chan::<bool>::new(0),
        );
        let r1 = c1.clone();
        go(move || {
            r1.recv();
        });
        let (r1, r2, s3) = (c1.clone(), c2.clone(), c3.clone());
        go(move || {
            select! {
                recv(r1) => panic!("dummy"),
                recv(r2) => s3.send(true),
            }
            r1.recv();
        });
        let s2 = c2.clone();
        go(move || s2.send(true));
        c3.recv();
        c1.send(true);
        c1.send(true);
    });
}

/// `test/chan/select7.go`'s receivers: a plain receive, a one-case select, a two-case select.
fn recv_with(kind: usize, c: Chan<i32>) {
    match kind {
        0 => {
            c.recv();
        }
        1 => select! { recv(c) => {} },
        _ => {
            let c2 = Chan::<i32>::new(0);
            select! {
                recv(c) => {},
                recv(c2) => {},
            }
        }
    }
}

/// From `test/chan/select7.go`: a value sent by a plain send, a one-case select or a two-case
/// select reaches a receiver that discards it, whichever of the three forms the receiver uses.
/// Go runs the nine pairs in one program; here each pair is its own case, since loom holds only
/// a few goroutines per execution.
#[rstest]
fn select7(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(0, 1, 2)] send_kind: usize,
    #[values(0, 1, 2)] recv_kind: usize,
) {
    expect_clean(engine, move || {
        let c = Chan::<i32>::new(0);
        let rc = c.clone();
        go(move || recv_with(recv_kind, rc));
        gosched();
        match send_kind {
            0 => c.send(1),
            1 => select! { send(c, 1) => {} },
            _ => {
                let c2 = Chan::<i32>::new(0);
                select! {
                    send(c, 1) => {},
                    send(c2, 1) => {},
                }
            }
        }
    });
}

/// From `test/chan/select8.go`: one-, two- and three-case selects, with and without `default`,
/// each end their case and go on (Go checks that `break` leaves the select; a Rust body simply
/// ends). A goroutine keeps sending on `ch`, so the receive cases may be taken; the send case
/// on `ch` never is, since nobody receives. Go's sender loops forever and is left behind at
/// exit; here it also selects on a `quit` channel that main closes at the end.
#[rstest]
fn select8(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let (ch, quit) = (Chan::<i32>::new(0), Chan::<()>::new(0));
        let (tx, q) = (ch.clone(), quit.clone());
        go(move || loop {
            select! {
                send(tx, 5) => {},
                recv(q) => return,
            }
        });
        select! {
            recv(ch) -> v => assert_eq!(v, Some(5)),
        }
        select! {
            default => {},
        }
        select! {
            recv(ch) -> v => assert_eq!(v, Some(5)),
            default => {},
        }
        select! {
            recv(ch) -> v => assert_eq!(v, Some(5)),
            send(ch, 10) => panic!("unreachable"),
            default => {},
        }
        quit.close();
    });
}

/// From `test/chan/sendstmt.go`, `chanchan`: a send case's channel may itself come from a
/// receive (`case <-cc <- 2`), evaluated on entry to the select. Go's `sendprec` checks how Go
/// parses `c <- false || true` and has no counterpart in Rust.
#[rstest]
fn sendstmt(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        let cc = Chan::<Chan<i32>>::new(1);
        let c = Chan::<i32>::new(1);
        cc.send(c.clone());
        let target = cc.recv().unwrap();
        select! {
            send(target, 2) => {},
            default => panic!("nonblock"),
        }
        assert_eq!(c.recv(), Some(2), "bad receive");
    });
}

/// From `test/chan/goroutines.go`: a chain of goroutines, each passing one value from its right
/// channel to its left, is threaded together and torn down by one send at the right end.
/// Scaled: Go's 10,000 goroutines are three (and the sender), so loom can hold them.
#[rstest]
fn goroutines(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
) {
    expect_clean(engine, || {
        const N: usize = 3;
        let leftmost = Chan::<i32>::new(0);
        let (mut left, mut right) = (leftmost.clone(), leftmost.clone());
        for _ in 0..N {
            right = Chan::new(0);
            let (l, r) = (left.clone(), right.clone());
            go(move || l.send(r.recv().unwrap()));
            left = right.clone();
        }
        go(move || right.send(1));
        assert_eq!(leftmost.recv(), Some(1));
    });
}
