//! Go's own test programs, ported: the channel tests of `test/chan/`, `test/ken/chan1.go`,
//! `test/closedchan.go`, the sync package's tests and `src/runtime/chan_test.go`. Each test is
//! named after the Go test or program it comes from and says what was scaled down: loom explores
//! every interleaving, so the programs keep to a main goroutine and at most four others, with
//! loop counts of two or three where Go has hundreds. Where Go lets goroutines block forever at
//! exit, the port closes a channel or unblocks them instead, since a goroutine left blocked
//! after main returns is a leak here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use primitives::explore::{explore, Engine};
use primitives::sync::{AtomicI32, Cond, Mutex, Once, RwMutex, WaitGroup};
use primitives::{go, gosched, select, time, Chan, Shared, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean, expect_clean_lazy, settings};

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

/// From `src/sync/mutex_test.go`, `TestMutex`: `TryLock` fails on a locked mutex and succeeds on
/// an unlocked one; then goroutines hammer the mutex (`HammerMutex`). Scaled: Go's ten
/// goroutines of a thousand iterations are two of two; a counter under the lock checks mutual
/// exclusion, as the race detector does in Go's run under `-race`.
#[rstest]
fn test_mutex(
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
        let m = Mutex::new();
        m.lock();
        assert!(!m.try_lock(), "TryLock succeeded with mutex locked");
        m.unlock();
        assert!(m.try_lock(), "TryLock failed with mutex unlocked");
        m.unlock();

        let (n, done) = (Shared::new(0), Chan::<bool>::new(0));
        for _ in 0..2 {
            let (m, n, done) = (m.clone(), n.clone(), done.clone());
            go(move || {
                for _ in 0..2 {
                    m.lock();
                    n.set(n.get() + 1);
                    m.unlock();
                }
                done.send(true);
            });
        }
        for _ in 0..2 {
            done.recv();
        }
        assert_eq!(n.get(), 4);
    });
}

/// From `src/sync/rwmutex_test.go`, `TestRWMutex` (`HammerRWMutex`): readers add 1 to an
/// activity counter and writers 10000 while holding the lock; a reader must never see a
/// writer's share, a writer must see only its own. Scaled: Go's ten readers and a writer of a
/// thousand iterations (and its GOMAXPROCS variations) are two readers and one writer of one
/// iteration each; Go's busy-wait inside the critical sections is left out.
#[rstest]
fn test_rwmutex(
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
        let (rw, activity, cdone) = (RwMutex::new(), AtomicI32::new(0), Chan::<bool>::new(0));
        {
            let (rw, activity, cdone) = (rw.clone(), activity.clone(), cdone.clone());
            go(move || {
                rw.lock();
                let n = activity.add(10000);
                assert_eq!(n, 10000, "wlock({n})");
                activity.add(-10000);
                rw.unlock();
                cdone.send(true);
            });
        }
        for _ in 0..2 {
            let (rw, activity, cdone) = (rw.clone(), activity.clone(), cdone.clone());
            go(move || {
                rw.rlock();
                let n = activity.add(1);
                assert!((1..10000).contains(&n), "rlock({n})");
                activity.add(-1);
                rw.runlock();
                cdone.send(true);
            });
        }
        for _ in 0..3 {
            cdone.recv();
        }
    });
}

/// From `src/sync/waitgroup_test.go`, `TestWaitGroup` (`testWaitGroup`): goroutines report in
/// on one WaitGroup and wait on a second; none may pass the second before main has called every
/// `Done` on it. Scaled: Go's sixteen goroutines are three.
#[rstest]
fn test_waitgroup(
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
        let (wg1, wg2) = (WaitGroup::new(), WaitGroup::new());
        wg1.add(N as i64);
        wg2.add(N as i64);
        let exited = Chan::<bool>::new(N);
        for _ in 0..N {
            let (wg1, wg2, exited) = (wg1.clone(), wg2.clone(), exited.clone());
            go(move || {
                wg1.done();
                wg2.wait();
                exited.send(true);
            });
        }
        wg1.wait();
        for _ in 0..N {
            select! {
                recv(exited) -> _ => panic!("WaitGroup released group too soon"),
                default => {},
            }
            wg2.done();
        }
        for _ in 0..N {
            exited.recv();
        }
    });
}

/// From `src/sync/cond_test.go`, `TestCondSignal`: each `Signal` wakes exactly one waiter, and a
/// `Signal` with no waiter is a no-op. Scaled: Go's two waiters are kept; they already fit.
#[rstest]
fn test_cond_signal(
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
        let m = Mutex::new();
        let c = Cond::new(&m);
        let mut n = 2;
        let (running, awake) = (Chan::<bool>::new(n), Chan::<bool>::new(n));
        for _ in 0..n {
            let (m, c, running, awake) = (m.clone(), c.clone(), running.clone(), awake.clone());
            go(move || {
                m.lock();
                running.send(true);
                c.wait();
                awake.send(true);
                m.unlock();
            });
        }
        for _ in 0..n {
            running.recv();
        }
        while n > 0 {
            select! {
                recv(awake) -> _ => panic!("goroutine not asleep"),
                default => {},
            }
            m.lock();
            c.signal();
            m.unlock();
            awake.recv();
            select! {
                recv(awake) -> _ => panic!("too many goroutines awake"),
                default => {},
            }
            n -= 1;
        }
        c.signal();
    });
}

/// From `src/sync/once_test.go`, `TestOnce`: goroutines race into `Do`; the function runs once,
/// and every `Do` returns only after it has run. Scaled: Go's ten goroutines are three.
#[rstest]
fn test_once(
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
        let (once, o, c) = (Once::new(), Shared::new(0), Chan::<bool>::new(0));
        for _ in 0..3 {
            let (once, o, c) = (once.clone(), o.clone(), c.clone());
            go(move || {
                once.do_(|| o.set(o.get() + 1));
                assert_eq!(o.get(), 1, "once failed inside run");
                c.send(true);
            });
        }
        for _ in 0..3 {
            c.recv();
        }
        assert_eq!(o.get(), 1, "once failed outside run");
    });
}

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
