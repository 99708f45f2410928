//! Go's table of channel operations, cell by cell (nil / open-empty / open-full / closed ×
//! send / receive / close), on every engine.

use primitives::explore::Engine;
use primitives::{go, Chan, Verdict};
use rstest::rstest;

use crate::harness::{expect, expect_clean};

#[rstest]
fn send_on_nil_channel_blocks_forever(
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
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        Chan::<i32>::nil().send(1)
    });
    assert!(r.dump.contains("[chan send (nil chan)]"), "{}", r.dump);
}

#[rstest]
fn receive_on_nil_channel_blocks_forever(
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
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        Chan::<i32>::nil().recv();
    });
    assert!(r.dump.contains("[chan receive (nil chan)]"), "{}", r.dump);
}

#[rstest]
fn close_of_nil_channel_panics(
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
    expect(engine, Verdict::Panic, "close of nil channel", || {
        Chan::<i32>::nil().close()
    });
}

#[rstest]
fn send_on_open_unbuffered_channel_blocks_until_received(
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
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        Chan::new(0).send(1)
    });
    assert!(r.dump.contains("[chan send]"), "{}", r.dump);
    expect_clean(engine, || {
        let ch = Chan::new(0);
        let tx = ch.clone();
        go(move || tx.send(7));
        assert_eq!(ch.recv(), Some(7));
    });
}

#[rstest]
fn receive_on_open_empty_channel_blocks(
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
    let r = expect(engine, Verdict::Deadlock, "deadlock", || {
        Chan::<i32>::new(3).recv();
    });
    assert!(r.dump.contains("[chan receive]"), "{}", r.dump);
}

#[rstest]
fn send_on_buffered_channel_with_room_proceeds(
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
        let ch = Chan::new(2);
        ch.send(1);
        ch.send(2);
        assert_eq!(ch.len(), 2);
        assert_eq!(ch.recv(), Some(1));
        assert_eq!(ch.recv(), Some(2));
    });
}

#[rstest]
fn send_on_full_channel_blocks(
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
    expect(engine, Verdict::Deadlock, "deadlock", || {
        let ch = Chan::new(1);
        ch.send(1);
        ch.send(2);
    });
}

#[rstest]
fn a_full_channel_takes_the_parked_senders_value_after_a_receive(
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
        let ch = Chan::new(1);
        ch.send(1);
        let tx = ch.clone();
        go(move || tx.send(2));
        assert_eq!(ch.recv(), Some(1));
        assert_eq!(ch.recv(), Some(2));
    });
}

#[rstest]
fn send_on_closed_channel_panics(
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
        let ch = Chan::new(1);
        ch.close();
        ch.send(1);
    });
}

#[rstest]
fn receive_on_closed_channel_drains_then_gives_none(
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
        let ch = Chan::new(2);
        ch.send(1);
        ch.close();
        assert_eq!(ch.recv(), Some(1));
        assert_eq!(ch.recv(), None);
        assert_eq!(ch.recv(), None);
    });
}

#[rstest]
fn close_of_closed_channel_panics(
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
        let ch = Chan::<()>::new(0);
        ch.close();
        ch.close();
    });
}

#[rstest]
fn close_wakes_every_parked_receiver(
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
        let ch = Chan::<i32>::new(0);
        let done = Chan::new(2);
        for _ in 0..2 {
            let (ch, done) = (ch.clone(), done.clone());
            go(move || done.send(ch.recv()));
        }
        ch.close();
        assert_eq!(done.recv(), Some(None));
        assert_eq!(done.recv(), Some(None));
    });
}

#[rstest]
fn close_makes_a_parked_sender_panic(
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
    // Whether the sender parks before the close or finds the channel closed: the same panic.
    let r = expect(engine, Verdict::Panic, "send on closed channel", || {
        let ch = Chan::new(0);
        let tx = ch.clone();
        go(move || tx.send(1));
        ch.close();
    });
    assert!(r.message.contains("goroutine 1"), "{}", r.message);
}
