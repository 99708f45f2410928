//! The search benchmark's three kernels (ours), shared with `examples/profile_shuttle.rs`.

use std::sync::Arc;

use primitives::explore::Kernel;
use primitives::sync::{Mutex, RwMutex, WaitGroup};
use primitives::{go, Chan};

/// Small: two goroutines increment a counter under a mutex; main waits for both.
pub fn small() -> Kernel {
    Arc::new(|| {
        let (mu, wg) = (Mutex::new(), WaitGroup::new());
        for _ in 0..2 {
            wg.add(1);
            let (mu, wg) = (mu.clone(), wg.clone());
            go(move || {
                mu.lock();
                mu.unlock();
                wg.done();
            });
        }
        wg.wait();
    })
}

/// Medium: two producers send two values each through a one-slot channel to main.
pub fn medium() -> Kernel {
    Arc::new(|| {
        let ch = Chan::new(1);
        for p in 0..2 {
            let tx = ch.clone();
            go(move || {
                tx.send(p);
                tx.send(p);
            });
        }
        for _ in 0..4 {
            ch.recv();
        }
    })
}

/// Large: three readers and a writer of a read-write lock; main waits for all four.
pub fn large() -> Kernel {
    Arc::new(|| {
        let (rw, wg) = (RwMutex::new(), WaitGroup::new());
        for i in 0..4 {
            wg.add(1);
            let (rw, wg) = (rw.clone(), wg.clone());
            go(move || {
                if i == 0 {
                    rw.lock();
                    rw.unlock();
                } else {
                    rw.rlock();
                    rw.runlock();
                }
                wg.done();
            });
        }
        wg.wait();
    })
}
