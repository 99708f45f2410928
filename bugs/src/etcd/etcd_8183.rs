#![doc = include_str!("etcd_8183.md")]

use std::sync::Arc;
use std::time::Duration;

use primitives::context::{self, CancelFunc, Context};
use primitives::sync::{AtomicI64, Mutex, RwMutex};
use primitives::{defer, go_named, select, time, Chan, Shared, TimerMode};

use crate::{Budget, Bug, Fix, Source, Variant};

inventory::submit! {
    Bug {
        id: "etcd_8183",
        project: "etcd",
        upstream: "https://github.com/etcd-io/etcd/pull/8183",
        category: "Data race (test's fake)",
        expected: primitives::Verdict::Race,
        kernel: test_revision,
        walkthrough: include_str!("etcd_8183.md"),
        asplos: Some("non-blocking-bugs/etcd/c678dcbd91721b17d52ef39afb3104444f14deac.txt"),
        budget: Budget { timers: Some(TimerMode::Lazy), ..Budget::DEFAULT },
        source: Source::Test("etcd-io/etcd compactor/revision_test.go @ c678dcbd^"),
        fix: Fix::Upstream("c678dcbd"),
        review: "faithful after mends: Checked against c678dcbd (PR #8183, merge 7ab442f8; = ASPLOS entry), compactor/{revision,compactor,compactor_test,revision_test}.go, pkg/testutil/recorder.go and vendored clockwork at c678dcbd^: right race, shape and fix; prose wrongly says the later `rg.rev` assignments race too (they are ordered), and one line cite is off (revision.go:56 → :59).",
        file: file!(),
        ..Bug::DEFAULT
    }
}

/// `checkCompactionInterval` (`compactor/compactor.go:32`).
const CHECK_COMPACTION_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// `testutil.Action`: a recorded call, its name and its one parameter (the revision asked to
/// compact, for `Compact`).
#[derive(Clone, Debug, PartialEq)]
struct Action {
    name: &'static str,
    params: Option<i64>,
}

/// `testutil.recorderStream`: `Record` sends on an unbuffered channel that `Wait` reads.
struct RecorderStream {
    ch: Chan<Action>,
}

fn new_recorder_stream(name: &'static str) -> RecorderStream {
    RecorderStream {
        ch: Chan::new(0).named(name),
    }
}

impl RecorderStream {
    fn record(&self, a: Action) {
        self.ch.send(a);
    }

    /// `Wait(n)`: up to 5 s for n actions, then 10 ms more for any extra one.
    fn wait(&self, n: usize) -> Result<Vec<Action>, String> {
        let mut acts = Vec::with_capacity(n);
        let timeout_c = time::after(Duration::from_secs(5));
        for i in 0..n {
            select! {
                recv(self.ch) -> act => acts.push(act.expect("the stream is never closed")),
                recv(timeout_c) => {
                    return Err(format!("len(actions) = {i}, expected >= {n}"));
                },
            }
        }
        // extra wait to catch any Action spew
        select! {
            recv(self.ch) -> act => acts.push(act.expect("the stream is never closed")),
            recv(time::after(Duration::from_millis(10))) => {},
        }
        Ok(acts)
    }
}

/// `fakeCompactable`: records each `Compact`.
struct FakeCompactable {
    recorder: RecorderStream,
}

impl FakeCompactable {
    fn compact(&self, _ctx: &Context, revision: i64) -> Result<(), &'static str> {
        self.recorder.record(Action {
            name: "c",
            params: Some(revision),
        });
        Ok(())
    }
}

/// `fakeRevGetter`: records each `Rev` and returns one more than the last.
struct FakeRevGetter {
    recorder: RecorderStream,
    /// `rev`, a plain `int64` at c678dcbd^ ...
    rev: Shared<i64>,
    /// ... and the same field under the fix, read and written with `sync/atomic`.
    rev_atomic: AtomicI64,
    variant: Variant,
}

impl FakeRevGetter {
    fn rev(&self) -> i64 {
        self.recorder.record(Action {
            name: "g",
            params: None,
        });
        if self.variant.fixed() {
            self.rev_atomic.add(1)
        } else {
            self.rev.set(self.rev.get() + 1);
            self.rev.get()
        }
    }

    /// The test's `rg.rev = rev`, which the fix makes `rg.SetRev(rev)`.
    fn set_rev(&self, rev: i64) {
        if self.variant.fixed() {
            self.rev_atomic.store(rev);
        } else {
            self.rev.set(rev);
        }
    }
}

/// clockwork's `fakeClock`: a time that moves only by `Advance`, and the `After` channels
/// waiting on it.
struct FakeClock {
    l: RwMutex,
    /// Time since the clock was made.
    time: Shared<Duration>,
    /// The sleepers: when each is due, and its channel (capacity 1).
    sleepers: Shared<Vec<(Duration, Chan<Duration>)>>,
}

fn new_fake_clock() -> FakeClock {
    FakeClock {
        l: RwMutex::new().named("fakeClock.l"),
        time: Shared::new(Duration::ZERO).named("fakeClock.time"),
        sleepers: Shared::new(Vec::new()).named("fakeClock.sleepers"),
    }
}

impl FakeClock {
    fn after(&self, d: Duration) -> Chan<Duration> {
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        let now = self.time.get();
        let done = Chan::new(1).named("sleeper.done");
        if d.is_zero() {
            done.send(now);
        } else {
            let s = (now + d, done.clone());
            self.sleepers.write(|sleepers| sleepers.push(s));
        }
        done
    }

    fn advance(&self, d: Duration) {
        self.l.lock();
        let _unlock = defer(|| self.l.unlock());
        let end = self.time.get() + d;
        let sleepers = self.sleepers.write(std::mem::take);
        let mut new_sleepers = Vec::new();
        for (until, done) in sleepers {
            if end >= until {
                done.send(end);
            } else {
                new_sleepers.push((until, done));
            }
        }
        self.sleepers.set(new_sleepers);
        self.time.set(end);
    }
}

/// `compactor.Revision`: compacts to `retention` revisions behind the current one.
struct Revision {
    clock: Arc<FakeClock>,
    retention: i64,
    rg: Arc<FakeRevGetter>,
    c: Arc<FakeCompactable>,
    ctx: Shared<Option<(Context, CancelFunc)>>,
    mu: Mutex,
    paused: Shared<bool>,
}

impl Revision {
    fn run(self: &Arc<Self>) {
        let (ctx, cancel) = context::with_cancel(&context::background());
        self.ctx.set(Some((ctx.clone(), cancel)));
        let clock = self.clock.clone();
        let mut previous = 0i64;

        let t = self.clone();
        go_named("Revision.Run", move || loop {
            select! {
                recv(ctx.done()) => return,
                recv(clock.after(CHECK_COMPACTION_INTERVAL)) => {
                    t.mu.lock();
                    let p = t.paused.get();
                    t.mu.unlock();
                    if p {
                        continue;
                    }
                },
            }

            let rev = t.rg.rev() - t.retention;

            if rev <= 0 || rev == previous {
                continue;
            }

            if t.c.compact(&ctx, rev).is_ok() {
                previous = rev;
            }
        });
    }

    fn stop(&self) {
        let cancel = self
            .ctx
            .read(|c| c.as_ref().expect("Run was called").1.clone());
        cancel.call();
    }
}

/// `TestRevision` (`compactor/revision_test.go` at c678dcbd^).
fn test_revision(variant: Variant) {
    let fc = Arc::new(new_fake_clock());
    let rg = Arc::new(FakeRevGetter {
        recorder: new_recorder_stream("rg.ch"),
        rev: Shared::new(0).named("fakeRevGetter.rev"),
        rev_atomic: AtomicI64::new(0),
        variant,
    });
    let compactable = Arc::new(FakeCompactable {
        recorder: new_recorder_stream("compactable.ch"),
    });
    let tb = Arc::new(Revision {
        clock: fc.clone(),
        retention: 10,
        rg: rg.clone(),
        c: compactable.clone(),
        ctx: Shared::new(None).named("Revision.ctx"),
        mu: Mutex::new().named("Revision.mu"),
        paused: Shared::new(false).named("Revision.paused"),
    });

    tb.run();
    let _stop = defer(|| tb.stop());

    fc.advance(CHECK_COMPACTION_INTERVAL);
    let _ = rg.recorder.wait(1);
    // nothing happens

    rg.set_rev(99); // will be 100
    let expected_revision = 90;
    fc.advance(CHECK_COMPACTION_INTERVAL);
    let _ = rg.recorder.wait(1);
    let a = compactable
        .recorder
        .wait(1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        a[0].params,
        Some(expected_revision),
        "compact request = {:?}, want {expected_revision}",
        a[0].params
    );

    // skip the same revision
    rg.set_rev(99); // will be 100
    let _ = rg.recorder.wait(1);
    // nothing happens

    rg.set_rev(199); // will be 200
    let expected_revision = 190;
    fc.advance(CHECK_COMPACTION_INTERVAL);
    let _ = rg.recorder.wait(1);
    let a = compactable
        .recorder
        .wait(1)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        a[0].params,
        Some(expected_revision),
        "compact request = {:?}, want {expected_revision}",
        a[0].params
    );
}
