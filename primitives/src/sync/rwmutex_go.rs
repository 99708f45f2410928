//! A second `sync.RWMutex`, built the way Go's own is (`src/sync/rwmutex.go`): a writer mutex,
//! a count of readers that goes negative while a writer is pending, a count of departing
//! readers, and two semaphores; here on top of this crate's `Mutex`, atomics and channels.
//!
//! It exists to show the regression workflow for a new primitive (README: "Trying a new
//! primitive"): enable the `rwmutex-go` feature and the whole corpus runs on it, and the
//! benches measure it. It keeps Go's semantics, writer preference included, but its operations
//! are several Go operations each (more scheduling points, a different trace).

use std::fmt;
use std::panic::Location;

use super::{AtomicI32, Mutex};
use crate::chan::Chan;

/// Readers the count can hold; a pending writer subtracts it.
const MAX_READERS: i32 = 1 << 30;

/// Go's `sync.RWMutex`, as Go implements it. Cloning gives another handle to the same lock.
#[derive(Clone)]
pub struct RwMutex {
    /// Held by a writer from `Lock` to `Unlock`: writers queue here.
    w: Mutex,
    /// A semaphore for writers to wait for departing readers.
    writer_sem: Chan<()>,
    /// A semaphore for readers to wait for the writer.
    reader_sem: Chan<()>,
    /// Readers holding or waiting; negative while a writer is pending.
    reader_count: AtomicI32,
    /// Readers the pending writer still waits for.
    reader_wait: AtomicI32,
}

impl fmt::Debug for RwMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RwMutex(go: {:?})", self.w)
    }
}

/// A semaphore's capacity: releases never block.
const SEM: usize = 1 << 20;

impl RwMutex {
    #[track_caller]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        RwMutex {
            w: Mutex::new(),
            writer_sem: Chan::new(SEM),
            reader_sem: Chan::new(SEM),
            reader_count: AtomicI32::new(0),
            reader_wait: AtomicI32::new(0),
        }
    }

    /// Names the lock in traces and dumps.
    pub fn named(self, name: &str) -> Self {
        RwMutex {
            w: self.w.named(name),
            writer_sem: self.writer_sem.named(&format!("{name}.writerSem")),
            reader_sem: self.reader_sem.named(&format!("{name}.readerSem")),
            ..self
        }
    }

    #[track_caller]
    pub fn rlock(&self) {
        if self.reader_count.add(1) < 0 {
            // A writer is pending: wait for it.
            self.reader_sem.recv();
        }
    }

    #[track_caller]
    pub fn try_rlock(&self) -> bool {
        loop {
            let c = self.reader_count.load();
            if c < 0 {
                return false;
            }
            if self.reader_count.compare_and_swap(c, c + 1) {
                return true;
            }
        }
    }

    #[track_caller]
    pub fn try_lock(&self) -> bool {
        if !self.w.try_lock() {
            return false;
        }
        if !self.reader_count.compare_and_swap(0, -MAX_READERS) {
            self.w.unlock();
            return false;
        }
        true
    }

    #[track_caller]
    pub fn runlock(&self) {
        let r = self.reader_count.add(-1);
        if r < 0 {
            if r + 1 == 0 || r + 1 == -MAX_READERS {
                fatal("fatal error: sync: RUnlock of unlocked RWMutex");
            }
            // A writer is pending; the last departing reader lets it in.
            if self.reader_wait.add(-1) == 0 {
                self.writer_sem.send(());
            }
        }
    }

    #[track_caller]
    pub fn lock(&self) {
        self.w.lock();
        // Announce the writer, then wait for the readers that hold the lock.
        let r = self.reader_count.add(-MAX_READERS) + MAX_READERS;
        if r != 0 && self.reader_wait.add(r) != 0 {
            self.writer_sem.recv();
        }
    }

    #[track_caller]
    pub fn unlock(&self) {
        let r = self.reader_count.add(MAX_READERS);
        if r >= MAX_READERS {
            fatal("fatal error: sync: Unlock of unlocked RWMutex");
        }
        // Let in the readers that queued behind the writer.
        for _ in 0..r {
            self.reader_sem.send(());
        }
        self.w.unlock();
    }
}

/// Go's `fatal`: a runtime panic with Go's words, at the caller's line.
#[track_caller]
fn fatal(message: &'static str) -> ! {
    let at = Location::caller();
    let exec = crate::rt::current_exec();
    let mut cx = exec.enter(at);
    cx.go_panic(message)
}
