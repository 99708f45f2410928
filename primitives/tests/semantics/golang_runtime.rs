//! Go's own channel tests from `src/runtime/chan_test.go` (as stored at golang/go 0767461e),
//! ported. Each test is named after its Go test and says what was scaled down. Go's
//! `TestShrinkStackDuringBlockedSend` (stack shrinking under GC) and the benchmarks have no
//! counterpart here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use primitives::explore::{explore, Engine};
use primitives::sync::{AtomicU32, WaitGroup};
use primitives::{defer, go, go_named, gosched, select, time, Chan, Shared};
use rstest::rstest;

use crate::harness::{expect_clean, expect_clean_lazy, settings};

/// From `src/runtime/chan_test.go`, `TestPseudoRandomSend`: a select with two ready send cases
/// on one channel sends each value a fair share of the time, on an unbuffered and on a
/// buffered channel. Scaled: Go's hundred sends per run are ten, and Go's bound (each value
/// more than a tenth of the sends) is checked over the whole exploration rather than per run,
/// since an exploring engine's choices are not independent coin flips in one run.
#[rstest]
fn test_pseudo_random_send(
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
    for cap in [0, 10] {
        let counts = Arc::new(StdMutex::new(BTreeMap::<i32, u64>::new()));
        let sink = counts.clone();
        let mut s = settings(engine);
        s.stop_at_first_failure = false;
        s.budget = s.budget.min(200);
        let found = explore(
            &s,
            Arc::new(move || {
                const N: usize = 10;
                let (c, done) = (Chan::<i32>::new(cap), Chan::<Vec<i32>>::new(0));
                let (rx, d) = (c.clone(), done.clone());
                go(move || {
                    let l: Vec<i32> = (0..N).map(|_| rx.recv().unwrap()).collect();
                    d.send(l);
                });
                for _ in 0..N {
                    select! {
                        send(c, 0) => {},
                        send(c, 1) => {},
                    }
                }
                let l = done.recv().unwrap();
                let mut counts = sink.lock().unwrap();
                for v in l {
                    *counts.entry(v).or_default() += 1;
                }
            }),
        );
        assert_eq!(found.error, None);
        assert!(found.first_failure.is_none(), "{engine}: a run failed");
        let counts = counts.lock().unwrap();
        let (n0, n1) = (
            counts.get(&0).copied().unwrap_or(0),
            counts.get(&1).copied().unwrap_or(0),
        );
        let total = n0 + n1;
        assert!(
            n0 > total / 10 && n1 > total / 10,
            "{engine}, cap {cap}: want pseudo-random, got {n0} zeros and {n1} ones"
        );
    }
}

/// From `src/runtime/chan_test.go`, `TestChan`, first block: a receive from an empty channel
/// blocks, plain or in either form, and a non-blocking receive takes the default. Scaled: Go's
/// capacities 0 to 199 are 0, 1 and 2; its one-millisecond sleep is a lazy timer, which fires
/// once both receivers are parked.
#[rstest]
fn test_chan_recv_blocks(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(0, 1, 2)] chan_cap: usize,
) {
    expect_clean_lazy(engine, move || {
        let c = Chan::<i32>::new(chan_cap);
        let (recv1, recv2) = (Shared::new(false), Shared::new(false));
        for flag in [recv1.clone(), recv2.clone()] {
            let c = c.clone();
            go(move || {
                c.recv();
                flag.set(true);
            });
        }
        time::sleep(Duration::from_millis(1));
        assert!(!recv1.get() && !recv2.get(), "receive from empty chan");
        for _ in 0..2 {
            select! {
                recv(c) => panic!("receive from empty chan"),
                default => {},
            }
        }
        c.send(0);
        c.send(0);
    });
}

/// From `src/runtime/chan_test.go`, `TestChan`, second block: a send to a full channel blocks,
/// and a non-blocking send takes the default. Scaled as [`test_chan_recv_blocks`].
#[rstest]
fn test_chan_send_blocks(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(0, 1, 2)] chan_cap: usize,
) {
    expect_clean_lazy(engine, move || {
        let c = Chan::<i32>::new(chan_cap);
        for i in 0..chan_cap as i32 {
            c.send(i);
        }
        let sent = AtomicU32::new(0);
        let (tx, s) = (c.clone(), sent.clone());
        go(move || {
            tx.send(0);
            s.store(1);
        });
        time::sleep(Duration::from_millis(1));
        assert_eq!(sent.load(), 0, "send to full chan");
        select! {
            send(c, 0) => panic!("send to full chan"),
            default => {},
        }
        c.recv();
    });
}

/// From `src/runtime/chan_test.go`, `TestChan`, third and fourth blocks: a closed channel gives
/// its buffered values in order, then zero values with `ok` false; and a close wakes a parked
/// receiver with the zero value. Scaled as [`test_chan_recv_blocks`].
#[rstest]
fn test_chan_closed(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(0, 1, 2)] chan_cap: usize,
) {
    expect_clean_lazy(engine, move || {
        let c = Chan::<i32>::new(chan_cap);
        for i in 0..chan_cap as i32 {
            c.send(i);
        }
        c.close();
        for i in 0..chan_cap as i32 {
            assert_eq!(c.recv(), Some(i));
        }
        assert_eq!(c.recv(), None);
        assert_eq!(c.recv(), None);

        let (c, done) = (Chan::<i32>::new(chan_cap), Chan::<bool>::new(0));
        let (rx, d) = (c.clone(), done.clone());
        go(move || d.send(rx.recv().is_none()));
        time::sleep(Duration::from_millis(1));
        c.close();
        assert!(done.recv().unwrap(), "received non zero from closed chan");
    });
}

/// From `src/runtime/chan_test.go`, `TestChan`, fifth block: values sent by one goroutine
/// arrive in order and intact, and with several senders and receivers each value sent arrives
/// once. Scaled: Go's 100 values are three, its four senders and four receivers of a thousand
/// values two of two; loom is left out of this one (four goroutines passing values through one
/// channel are more interleavings than its test budget).
#[rstest]
fn test_chan_fifo_and_fan_in(
    #[values(
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(0, 1, 2)] chan_cap: usize,
) {
    expect_clean(engine, move || {
        let c = Chan::<i32>::new(chan_cap);
        let tx = c.clone();
        go(move || {
            for i in 0..3 {
                tx.send(i);
            }
        });
        for i in 0..3 {
            assert_eq!(c.recv(), Some(i));
        }

        const P: usize = 2;
        const L: i32 = 2;
        for _ in 0..P {
            let tx = c.clone();
            go(move || {
                for i in 0..L {
                    tx.send(i);
                }
            });
        }
        let done = Chan::<BTreeMap<i32, usize>>::new(0);
        for _ in 0..P {
            let (rx, done) = (c.clone(), done.clone());
            go(move || {
                let mut recv = BTreeMap::new();
                for _ in 0..L {
                    *recv.entry(rx.recv().unwrap()).or_insert(0) += 1;
                }
                done.send(recv);
            });
        }
        let mut recv = BTreeMap::<i32, usize>::new();
        for _ in 0..P {
            for (k, v) in done.recv().unwrap() {
                *recv.entry(k).or_insert(0) += v;
            }
        }
        assert_eq!(recv.len(), L as usize, "received the wrong values");
        assert!(recv.values().all(|&v| v == P), "received {recv:?}");
    });
}

/// From `src/runtime/chan_test.go`, `TestChan`, last block: `len` and `cap` of an empty and of
/// a full channel.
#[rstest]
fn test_chan_len_cap(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(0, 1, 2)] chan_cap: usize,
) {
    expect_clean(engine, move || {
        let c = Chan::<i32>::new(chan_cap);
        assert_eq!((c.len(), c.cap()), (0, chan_cap));
        for i in 0..chan_cap as i32 {
            c.send(i);
        }
        assert_eq!((c.len(), c.cap()), (chan_cap, chan_cap));
    });
}

/// From `src/runtime/chan_test.go`, `TestNonblockRecvRace`: a non-blocking receive from a
/// channel that holds a value, racing with its close, never takes the default. Scaled: Go's
/// ten thousand rounds are one; the engines explore the interleavings the rounds sample.
#[rstest]
fn test_nonblock_recv_race(
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
        let c = Chan::<i32>::new(1);
        c.send(1);
        let rx = c.clone();
        go(move || {
            select! {
                recv(rx) => {},
                default => panic!("chan is not ready"),
            }
        });
        c.close();
        c.recv();
    });
}

/// From `src/runtime/chan_test.go`, `TestNonblockSelectRace` and `TestNonblockSelectRace2`: a
/// select acts on the channels' state at one moment. From the goroutine's start one of `c1`
/// and `c2` is always ready (main readies `c2`, by a send or a close, before it may drain `c1`),
/// so the goroutine's non-blocking select never takes the default. Scaled: Go's hundred
/// thousand rounds are one.
#[rstest]
fn test_nonblock_select_race(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(false, true)] close_c2: bool,
) {
    expect_clean(engine, move || {
        let done = Chan::<bool>::new(1);
        let (c1, c2) = (
            Chan::<i32>::new(1),
            Chan::<i32>::new(usize::from(!close_c2)),
        );
        c1.send(1);
        let (r1, r2, d) = (c1.clone(), c2.clone(), done.clone());
        go(move || {
            let ready = select! {
                recv(r1) => true,
                recv(r2) => true,
                default => false,
            };
            d.send(ready);
        });
        if close_c2 {
            c2.close();
        } else {
            c2.send(1);
        }
        select! {
            recv(c1) => {},
            default => {},
        }
        assert!(done.recv().unwrap(), "no chan is ready");
    });
}

/// From `src/runtime/chan_test.go`, `TestSelfSelect`: two goroutines each select between
/// sending and receiving on the same channel; the runtime never pairs a select with itself
/// (on an unbuffered channel a goroutine never receives its own value), and nothing deadlocks.
/// Scaled: Go's thousand rounds are three.
#[rstest]
fn test_self_select(
    #[values(
        Engine::Loom,
        Engine::ShuttlePct,
        Engine::ShuttleRandom,
        Engine::ShuttleUrw,
        Engine::ShuttleDfs,
        Engine::Std
    )]
    engine: Engine,
    #[values(0, 10)] chan_cap: usize,
) {
    expect_clean(engine, move || {
        let wg = WaitGroup::new();
        wg.add(2);
        let c = Chan::<i32>::new(chan_cap);
        for p in 0..2 {
            let (wg, c) = (wg.clone(), c.clone());
            go(move || {
                let _done = defer(|| wg.done());
                for i in 0..3 {
                    if p == 0 || i % 2 == 0 {
                        select! {
                            send(c, p) => {},
                            recv(c) -> v => assert!(chan_cap != 0 || v != Some(p), "self receive"),
                        }
                    } else {
                        select! {
                            recv(c) -> v => assert!(chan_cap != 0 || v != Some(p), "self receive"),
                            send(c, p) => {},
                        }
                    }
                }
            });
        }
        wg.wait();
    });
}

/// From `src/runtime/chan_test.go`, `TestSelectStress`: a plain sender and a plain receiver on
/// each of four channels (two unbuffered, two buffered), plus one goroutine that sends on all
/// four in one select and one that receives from all four, each dropping a channel (nil) once
/// it has done its share; nothing deadlocks. Scaled: Go's hundred thousand values per channel
/// are one; loom is left out (ten goroutines).
#[rstest]
fn test_select_stress(
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
        const N: usize = 1;
        let c = [
            Chan::<i32>::new(0),
            Chan::<i32>::new(0),
            Chan::<i32>::new(2),
            Chan::<i32>::new(3),
        ];
        let wg = WaitGroup::new();
        wg.add(10);
        for chan in &c {
            let (ck, wg1) = (chan.clone(), wg.clone());
            go(move || {
                for _ in 0..N {
                    ck.send(0);
                }
                wg1.done();
            });
            let (ck, wg2) = (chan.clone(), wg.clone());
            go(move || {
                for _ in 0..N {
                    ck.recv();
                }
                wg2.done();
            });
        }
        {
            let (mut c1, wg) = (c.clone(), wg.clone());
            go(move || {
                let mut n = [0; 4];
                for _ in 0..4 * N {
                    let k = select! {
                        send(c1[3], 0) => 3,
                        send(c1[2], 0) => 2,
                        send(c1[0], 0) => 0,
                        send(c1[1], 0) => 1,
                    };
                    n[k] += 1;
                    if n[k] == N {
                        c1[k] = Chan::nil();
                    }
                }
                wg.done();
            });
        }
        {
            let (mut c1, wg) = (c.clone(), wg.clone());
            go(move || {
                let mut n = [0; 4];
                for _ in 0..4 * N {
                    let k = select! {
                        recv(c1[0]) => 0,
                        recv(c1[1]) => 1,
                        recv(c1[2]) => 2,
                        recv(c1[3]) => 3,
                    };
                    n[k] += 1;
                    if n[k] == N {
                        c1[k] = Chan::nil();
                    }
                }
                wg.done();
            });
        }
        wg.wait();
    });
}

/// From `src/runtime/chan_test.go`, `TestMultiConsumer`: workers range over a work channel and
/// forward each value to a result channel; a feeder sends the work, closes it, waits for the
/// workers and closes the results; every value arrives once. Scaled: Go's 23 workers and
/// 271,828 values are two workers and four values (the first of Go's `pn` list, with its
/// `Gosched` on a match kept). `expect` is a [`Shared`] the feeder writes and main reads after
/// the results close, as in Go.
#[rstest]
fn test_multi_consumer(
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
        const NWORK: usize = 2;
        const NITER: usize = 4;
        const PN: [i32; 4] = [2, 3, 7, 11];
        let (q, r) = (Chan::<i32>::new(NWORK * 3), Chan::<i32>::new(NWORK * 3));
        let wg = WaitGroup::new();
        for w in 0..NWORK {
            wg.add(1);
            let (q, r, wg) = (q.clone(), r.clone(), wg.clone());
            go(move || {
                while let Some(v) = q.recv() {
                    if PN[w % PN.len()] == v {
                        gosched();
                    }
                    r.send(v);
                }
                wg.done();
            });
        }
        let expect = Shared::new(0);
        {
            let (q, r, expect) = (q.clone(), r.clone(), expect.clone());
            go(move || {
                for i in 0..NITER {
                    let v = PN[i % PN.len()];
                    expect.set(expect.get() + v);
                    q.send(v);
                }
                q.close();
                wg.wait();
                r.close();
            });
        }
        let (mut n, mut s) = (0, 0);
        while let Some(v) = r.recv() {
            n += 1;
            s += v;
        }
        assert_eq!((n, s), (NITER, expect.get()), "sum and count");
    });
}

/// From `src/runtime/chan_test.go`, `TestChanSendInterface`: sends of a pointer-like value
/// (an interface in Go) in selects with and without a second case do not crash. Kept whole.
#[rstest]
fn test_chan_send_interface(
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
        let m = Arc::new(());
        let c = Chan::<Arc<()>>::new(1);
        c.send(m.clone());
        select! {
            send(c, m.clone()) => panic!("the buffer is full"),
            default => {},
        }
        select! {
            send(c, m.clone()) => panic!("the buffer is full"),
            send(c, Arc::new(())) => panic!("the buffer is full"),
            default => {},
        }
    });
}

/// From `src/runtime/chan_test.go`, `TestSelectDuplicateChannel`: a select may queue one
/// goroutine on the same channel twice; when another case wakes it, it must leave the channel's
/// queue intact, so a later send reaches the goroutine queued behind it. Go orders the steps
/// with one-millisecond sleeps; here they are lazy timers, which fire once everything else is
/// parked, so the order is the one Go's sleeps aim for. Kept whole.
#[rstest]
fn test_select_duplicate_channel(
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
        let (c, d, e) = (
            Chan::<i32>::new(0),
            Chan::<i32>::new(0),
            Chan::<i32>::new(0),
        );
        {
            let (c, d, e) = (c.clone(), d.clone(), e.clone());
            go_named("A", move || {
                select! {
                    recv(c) => {},
                    recv(c) => {},
                    recv(d) => {},
                }
                e.send(9);
            });
        }
        time::sleep(Duration::from_millis(1));
        let cb = c.clone();
        go_named("B", move || {
            cb.recv();
        });
        time::sleep(Duration::from_millis(1));
        d.send(7);
        e.recv();
        c.send(8);
    });
}
