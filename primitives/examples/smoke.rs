use primitives::explore::{explore, Engine, Settings};
use primitives::{go, Chan};
use std::sync::Arc;

fn main() {
    let kernels: Vec<(&str, primitives::explore::Kernel)> = vec![
        (
            "ping",
            Arc::new(|| {
                let ch = Chan::new(0);
                let tx = ch.clone();
                go(move || tx.send(1));
                assert_eq!(ch.recv(), Some(1));
            }),
        ),
        (
            "deadlock",
            Arc::new(|| {
                let ch: Chan<i32> = Chan::new(0);
                ch.recv();
            }),
        ),
        (
            "leak",
            Arc::new(|| {
                let ch = Chan::new(0);
                go(move || ch.send(1));
            }),
        ),
        (
            "panic",
            Arc::new(|| {
                let ch: Chan<i32> = Chan::new(0);
                ch.close();
                ch.close();
            }),
        ),
    ];
    for (name, k) in kernels {
        for e in Engine::ALL {
            let mut s = Settings::new(e);
            s.budget = 100;
            let f = explore(&s, k.clone());
            println!(
                "{name:10} {e:15} schedules={} failed={} exhaustive={} err={:?} first={:?}",
                f.schedules,
                f.failed(),
                f.exhaustive,
                f.error,
                f.first_failure.as_ref().map(|x| (
                    x.report.verdict,
                    x.report.message.clone(),
                    x.replay.clone()
                ))
            );
        }
    }
}
