//! Vector clocks: the happens-before order of the Go memory model.

use super::Gid;

/// Entries kept inline: kernels rarely have more goroutines, and a clock is cloned on every
/// release (a send, an unlock), so cloning must not allocate.
const INLINE: usize = 8;

/// One logical clock per goroutine of the execution; a missing entry is zero.
///
/// A goroutine's own entry counts its synchronising operations; an object that synchronises
/// (a channel slot, a mutex, a WaitGroup) keeps the join of the clocks that released it, and
/// the goroutine that acquires it joins that clock into its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum VClock {
    /// The first `INLINE` entries, zeros beyond the goroutines seen.
    Inline([u32; INLINE]),
    /// More goroutines than fit inline.
    Heap(Vec<u32>),
}

impl Default for VClock {
    fn default() -> Self {
        VClock::Inline([0; INLINE])
    }
}

impl VClock {
    fn entries(&self) -> &[u32] {
        match self {
            VClock::Inline(v) => v,
            VClock::Heap(v) => v,
        }
    }

    /// The entries, grown to hold index `g`.
    fn entries_mut(&mut self, len: usize) -> &mut [u32] {
        if let VClock::Inline(v) = self {
            if len > INLINE {
                let mut heap = v.to_vec();
                heap.resize(len, 0);
                *self = VClock::Heap(heap);
            }
        }
        match self {
            VClock::Inline(v) => v,
            VClock::Heap(v) => {
                if v.len() < len {
                    v.resize(len, 0);
                }
                v
            }
        }
    }

    pub(crate) fn get(&self, g: Gid) -> u32 {
        self.entries().get(g).copied().unwrap_or(0)
    }

    /// Advances `g`'s own entry: what `g` does next is not covered by what it published so far.
    pub(crate) fn tick(&mut self, g: Gid) {
        self.entries_mut(g + 1)[g] += 1;
    }

    /// Takes the pointwise maximum with `other`.
    pub(crate) fn join(&mut self, other: &VClock) {
        let theirs = other.entries();
        let mine = self.entries_mut(theirs.len());
        for (m, t) in mine.iter_mut().zip(theirs) {
            if *t > *m {
                *m = *t;
            }
        }
    }
}

/// A point in one goroutine's history: its own clock entry when it acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Epoch {
    pub(crate) g: Gid,
    pub(crate) clock: u32,
}

impl Epoch {
    /// Whether the event at this epoch happens before whatever the holder of `now` does next.
    pub(crate) fn happens_before(self, now: &VClock) -> bool {
        self.clock <= now.get(self.g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_takes_the_pointwise_maximum() {
        let mut a = VClock::default();
        a.tick(0);
        a.tick(0);
        let mut b = VClock::default();
        b.tick(2);
        a.join(&b);
        assert_eq!((a.get(0), a.get(1), a.get(2)), (2, 0, 1));
    }

    #[test]
    fn clocks_grow_past_the_inline_entries() {
        let mut a = VClock::default();
        a.tick(20);
        let mut b = VClock::default();
        b.tick(3);
        b.join(&a);
        assert_eq!((b.get(3), b.get(20), b.get(21)), (1, 1, 0));
        a.join(&b);
        assert_eq!((a.get(3), a.get(20)), (1, 1));
    }

    #[test]
    fn an_epoch_happens_before_a_clock_that_joined_it() {
        let mut a = VClock::default();
        a.tick(0);
        let e = Epoch {
            g: 0,
            clock: a.get(0),
        };
        let mut b = VClock::default();
        b.tick(1);
        assert!(!e.happens_before(&b));
        b.join(&a);
        assert!(e.happens_before(&b));
    }
}
