//! Vector clocks: the happens-before order of the Go memory model.

use super::Gid;

/// One logical clock per goroutine of the execution; a missing entry is zero.
///
/// A goroutine's own entry counts its synchronising operations; an object that synchronises
/// (a channel slot, a mutex, a WaitGroup) keeps the join of the clocks that released it, and
/// the goroutine that acquires it joins that clock into its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VClock(Vec<u32>);

impl VClock {
    pub(crate) fn get(&self, g: Gid) -> u32 {
        self.0.get(g).copied().unwrap_or(0)
    }

    /// Advances `g`'s own entry: what `g` does next is not covered by what it published so far.
    pub(crate) fn tick(&mut self, g: Gid) {
        if self.0.len() <= g {
            self.0.resize(g + 1, 0);
        }
        self.0[g] += 1;
    }

    /// Takes the pointwise maximum with `other`.
    pub(crate) fn join(&mut self, other: &VClock) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            if *theirs > *mine {
                *mine = *theirs;
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
