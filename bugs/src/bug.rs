//! What the corpus knows about each bug: the metadata a kernel registers.

use std::fmt;

use primitives::{TimerMode, Verdict};

/// Which side of the upstream fix a kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// The code as it was when the bug was found.
    Buggy,
    /// The code with the upstream fix (or, where the metadata says so, ours).
    Fixed,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Buggy, Variant::Fixed];

    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Buggy => "buggy",
            Variant::Fixed => "fixed",
        }
    }

    pub fn parse(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.as_str() == name)
    }

    /// `true` for the fixed variant: `if v.fixed() { ... }` reads as the upstream diff.
    pub fn fixed(self) -> bool {
        self == Variant::Fixed
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether loom can run a kernel, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loom {
    /// The kernel fits loom (main and at most four other threads) and loom reaches its failure.
    Applies,
    /// loom cannot hold or cannot reach the kernel's failure; the reason, for reports.
    DoesNotApply(&'static str),
}

/// How hard to look, per engine. The defaults suit kernels of a few goroutines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// shuttle iterations, per scheduler.
    pub shuttle: u64,
    /// The most loom executions (loom's search usually ends sooner).
    pub loom: u64,
    /// Real-thread runs of the native baseline.
    pub std: u64,
    /// PCT's bug depth.
    pub pct_depth: usize,
    /// loom's preemption bound.
    pub preemption_bound: Option<usize>,
    /// The hard cap on Go operations per execution; one that reaches it is undecided ("bound
    /// reached"), which fails the bug's tests. Raise it for a kernel whose correct run is long.
    pub max_steps: u64,
    /// Steps of polling only (no progress) before running goroutines count as a livelock, and
    /// steps after main returned before goroutines still running count as a leak.
    pub livelock_window: u64,
    /// How timers fire under loom and shuttle; `None` is eager (a timer may fire at any
    /// scheduling point after it is armed). `Some(TimerMode::Lazy)` lets time pass only when
    /// every goroutine is blocked: right for a test's watchdog (`case <-time.After(10 *
    /// time.Second): t.Fatal(...)`), which in Go fires only when the work is stuck. `std`
    /// always runs lazy timers.
    pub timers: Option<TimerMode>,
    /// Whether the race detector runs (`go test -race`). Off only where upstream's failure is
    /// what a binary built without it shows, and the detector would report the same root cause
    /// first under another name (a `WaitGroup`'s Add from zero against its Wait, before the
    /// reuse panic); the walkthrough says so.
    pub race_detector: bool,
}

impl Budget {
    pub const DEFAULT: Budget = Budget {
        shuttle: 1_000,
        loom: 20_000,
        std: 200,
        pct_depth: 3,
        preemption_bound: Some(3),
        max_steps: 100_000,
        livelock_window: 5_000,
        timers: None,
        race_detector: true,
    };
}

/// Where a kernel comes from (`../shared/FIDELITY.md`), the most direct source first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// GoBench's GoKer kernel (the bug's `goker` folder), checked against the upstream change.
    Goker,
    /// The upstream test that exposed the bug: `"<repo> <file> @ <commit>"`.
    Test(&'static str),
    /// The upstream change itself (its buggy side and the code around it): the commit.
    Diff(&'static str),
    /// Only a description (an issue thread, a course's text): its link. The weakest source;
    /// the walkthrough says so in its first lines.
    Description(&'static str),
}

impl Source {
    /// The name reports use: `goker`, `test`, `diff`, `description`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Goker => "goker",
            Source::Test(_) => "test",
            Source::Diff(_) => "diff",
            Source::Description(_) => "description",
        }
    }
}

/// Where a fixed variant comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    /// The upstream fix: its commit (short hash), or its pull request where the commit is one
    /// of several. GoKer carries no fixed kernels: a GoKer port's fix is upstream's too.
    Upstream(&'static str),
    /// The corpus's own, where upstream has none: why.
    Ours(&'static str),
}

/// One bug of the corpus.
#[derive(Debug)]
pub struct Bug {
    /// `<project>_<number>` (or `<project>_<commit prefix>`), as in the catalogue.
    pub id: &'static str,
    /// `kubernetes`, `etcd`, `grpc`, `moby`, or a documented pattern's project.
    pub project: &'static str,
    /// The upstream pull request (or commit) that fixed it.
    pub upstream: &'static str,
    /// The kind of bug, in GoBench's and the ASPLOS'19 study's terms ("RWR deadlock").
    pub category: &'static str,
    /// What the buggy variant ends in.
    pub expected: Verdict,
    /// Other verdicts the buggy variant can end in, depending on the schedule, where Go itself
    /// allows both (a read that races a write, or dereferences the nil it read first). Rare;
    /// the walkthrough explains each.
    pub also: &'static [Verdict],
    /// The kernel: the body of the upstream Go test, buggy or fixed.
    pub kernel: fn(Variant),
    pub loom: Loom,
    /// Searching engines that run the buggy variant but are known, by measurement, not to
    /// find its failure within the budget, and why. They still run and reports show what they
    /// found; only the expectation that they detect it is lifted. Rare.
    pub not_found_by: &'static [(primitives::explore::Engine, &'static str)],
    pub budget: Budget,
    /// The walkthrough, in Markdown (also the module's documentation).
    pub walkthrough: &'static str,
    /// The GoKer kernel's folder in timmyyuan/gobench, if GoBench has one for this bug: a
    /// reference for the reader. What the port is built from is `source`.
    pub goker: Option<&'static str>,
    /// The change's file in system-pclub/go-concurrency-bugs, if there is one.
    pub asplos: Option<&'static str>,
    /// Where the kernel comes from, the most direct source first.
    pub source: Source,
    /// Where the fixed variant comes from.
    pub fix: Fix,
    /// The second reader's one-line conclusion (`../shared/FIDELITY.md`): someone who did not
    /// write the port held it next to the upstream sources. Empty until that has happened.
    pub review: &'static str,
    /// The kernel's source file.
    pub file: &'static str,
}

impl Bug {
    /// The fields most bugs leave as they are; a registration ends with `..Bug::DEFAULT`.
    pub const DEFAULT: Bug = Bug {
        id: "",
        project: "",
        upstream: "",
        category: "",
        expected: Verdict::Deadlock,
        also: &[],
        kernel: |_| {},
        loom: Loom::Applies,
        not_found_by: &[],
        budget: Budget::DEFAULT,
        walkthrough: "",
        goker: None,
        asplos: None,
        source: Source::Goker,
        fix: Fix::Upstream(""),
        review: "",
        file: "",
    };

    /// Whether `v` is a verdict the buggy variant is expected to end in.
    pub fn accepts(&self, v: Verdict) -> bool {
        v == self.expected || self.also.contains(&v)
    }

    /// The walkthrough's first heading, without the `#`.
    pub fn title(&self) -> &'static str {
        self.walkthrough
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .unwrap_or(self.id)
    }
}
