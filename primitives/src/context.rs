//! `context`: cancellation that flows from a context to everything derived from it.
//!
//! Go semantics kept: `background()` is never cancelled and its `done()` is the nil channel;
//! cancelling a context closes its `done()` channel and cancels its descendants with the same
//! error; a context made from an already cancelled parent is cancelled at once; a deadline
//! earlier than the parent's makes a timer, which cancels the context with
//! [`ContextError::DeadlineExceeded`] when it fires in virtual time.
//!
//! Happens-before: a cancellation happens before a receive from `done()` that it ends, and
//! before an `err()` that reports it.

use std::fmt;
use std::panic::Location;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::chan::Chan;
use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::timer::{TimerId, TimerKind, TimerTarget};
use crate::rt::trace::Op;
use crate::rt::{current_exec, Books, Ctx, Execution, ObjMeta};
use crate::time::Instant;

/// Why a context was cancelled: `ctx.Err()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextError {
    /// `context.Canceled`.
    Canceled,
    /// `context.DeadlineExceeded`.
    DeadlineExceeded,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextError::Canceled => "context canceled",
            ContextError::DeadlineExceeded => "context deadline exceeded",
        })
    }
}

impl std::error::Error for ContextError {}

/// Go's `context.Context`. Cloning gives another handle to the same context.
///
/// # Examples
///
/// ```
/// use primitives::context::{self, ContextError};
/// # primitives::run(|| {
/// let (parent, cancel) = context::with_cancel(&context::background());
/// let (child, _cancel_child) = context::with_cancel(&parent);
/// cancel.call();
/// assert_eq!(child.done().recv(), None); // closed
/// assert_eq!(child.err(), Some(ContextError::Canceled));
/// # });
/// ```
#[derive(Clone, Default)]
pub struct Context {
    node: Option<Arc<Node>>,
}

pub(crate) struct Node {
    exec: Arc<Execution>,
    meta: ObjMeta,
    parent: Option<Arc<Node>>,
    done: Chan<()>,
    deadline: Option<Duration>,
    state: RtCell<NodeState>,
}

struct NodeState {
    err: Option<ContextError>,
    children: Vec<Weak<Node>>,
    timer: Option<TimerId>,
    /// The canceller's clock.
    clock: VClock,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            None => f.write_str("Context(background)"),
            Some(n) => write!(f, "Context({})", n.meta.label()),
        }
    }
}

/// `context.Background()`: never cancelled, no deadline.
pub fn background() -> Context {
    Context { node: None }
}

/// `context.TODO()`: the same as [`background`].
pub fn todo() -> Context {
    Context { node: None }
}

/// The function `WithCancel` and friends return: calling it cancels the context. Calling it
/// again does nothing. Cloning gives another handle to the same function.
#[derive(Clone)]
pub struct CancelFunc {
    node: Arc<Node>,
}

impl fmt::Debug for CancelFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CancelFunc({})", self.node.meta.label())
    }
}

impl CancelFunc {
    /// `cancel()`.
    #[track_caller]
    pub fn call(&self) {
        let cx = self.node.exec.enter(Location::caller());
        let mut b = cx.books();
        let clock = cx.release_clock(&mut b);
        self.node
            .cancel_locked(&cx, &mut b, ContextError::Canceled, &clock);
        cx.event(&mut b, Op::Cancel, Some(&self.node.meta), 0);
    }
}

/// `context.WithCancel(parent)`.
#[track_caller]
pub fn with_cancel(parent: &Context) -> (Context, CancelFunc) {
    derive(parent, Until::Never, Location::caller())
}

/// `context.WithTimeout(parent, d)`: cancelled with `DeadlineExceeded` after `d` of virtual
/// time, unless cancelled earlier.
#[track_caller]
pub fn with_timeout(parent: &Context, d: Duration) -> (Context, CancelFunc) {
    derive(parent, Until::After(d), Location::caller())
}

/// `context.WithDeadline(parent, t)`.
#[track_caller]
pub fn with_deadline(parent: &Context, deadline: Instant) -> (Context, CancelFunc) {
    derive(
        parent,
        Until::At(deadline.since_start()),
        Location::caller(),
    )
}

/// When a derived context's own timer should fire.
enum Until {
    Never,
    After(Duration),
    At(Duration),
}

fn derive(parent: &Context, until: Until, at: &'static Location<'static>) -> (Context, CancelFunc) {
    let exec = match &parent.node {
        Some(p) => p.exec.clone(),
        None => current_exec(),
    };
    let cx = exec.enter(at);
    let mut b = cx.books();
    // A deadline later than the parent's changes nothing: the parent's comes first.
    let parent_deadline = parent.node.as_ref().and_then(|p| p.deadline);
    let deadline = match until {
        Until::Never => None,
        Until::After(d) => Some(b.now.saturating_add(d)),
        Until::At(t) => Some(t),
    };
    let deadline = match (deadline, parent_deadline) {
        (Some(d), Some(p)) if p <= d => None,
        (d, _) => d,
    };
    let meta = exec.new_obj("context", at);
    let done = Chan::new(0).named(&format!("context#{}.Done()", meta.id));
    let node = Arc::new(Node {
        meta,
        parent: parent.node.clone(),
        done,
        deadline: deadline.or(parent_deadline),
        state: RtCell::new(
            exec.id,
            NodeState {
                err: None,
                children: Vec::new(),
                timer: None,
                clock: VClock::default(),
            },
        ),
        exec: exec.clone(),
    });
    let inherited = node.parent.as_ref().and_then(|p| {
        let mut pst = p.state.borrow(&cx);
        match pst.err {
            Some(err) if !mutant::on(Mutant::ContextCancelledParentNotInherited) => {
                Some((err, pst.clock.clone()))
            }
            _ => {
                pst.children.push(Arc::downgrade(&node));
                None
            }
        }
    });
    if let Some((err, clock)) = inherited {
        node.cancel_locked(&cx, &mut b, err, &clock);
    } else if let Some(d) = deadline {
        if d <= b.now {
            let clock = cx.release_clock(&mut b);
            node.cancel_locked(&cx, &mut b, ContextError::DeadlineExceeded, &clock);
        } else {
            let after = d - b.now;
            let id = cx.arm_timer(&mut b, after, TimerKind::Once(node.clone()));
            node.state.borrow(&cx).timer = Some(id);
        }
    }
    drop(b);
    drop(cx);
    (
        Context {
            node: Some(node.clone()),
        },
        CancelFunc { node },
    )
}

impl Context {
    /// `ctx.Done()`: closed when the context is cancelled; the nil channel for `background()`.
    pub fn done(&self) -> Chan<()> {
        match &self.node {
            Some(n) => n.done.clone(),
            None => Chan::nil(),
        }
    }

    /// `ctx.Err()`: `None` until the context is cancelled.
    #[track_caller]
    pub fn err(&self) -> Option<ContextError> {
        let node = self.node.as_ref()?;
        let cx = node.exec.enter(Location::caller());
        let mut b = cx.books();
        let st = node.state.borrow(&cx);
        let err = st.err;
        if err.is_some() && b.trace.on {
            b.goroutines[cx.gid].clock.join(&st.clock);
        }
        drop(st);
        cx.event(&mut b, Op::Read, Some(&node.meta), 0);
        err
    }

    /// `ctx.Deadline()`.
    pub fn deadline(&self) -> Option<Instant> {
        self.node
            .as_ref()
            .and_then(|n| n.deadline)
            .map(Instant::from_virtual)
    }
}

/// A deadline's timer cancels the context.
impl TimerTarget for Node {
    fn fire(&self, cx: &Ctx<'_>, b: &mut Books, _now: Duration, clock: &VClock) {
        self.cancel_locked(cx, b, ContextError::DeadlineExceeded, clock);
    }
}

impl Node {
    /// Cancels this context and its descendants with `err`, released at `clock`.
    pub(crate) fn cancel_locked(
        &self,
        cx: &Ctx<'_>,
        b: &mut Books,
        err: ContextError,
        clock: &VClock,
    ) {
        let (children, timer) = {
            let mut st = self.state.borrow(cx);
            if st.err.is_some() {
                return;
            }
            st.err = Some(err);
            st.clock.join(clock);
            (std::mem::take(&mut st.children), st.timer.take())
        };
        if let Some(t) = timer {
            b.timers.stop(t);
        }
        if let Some(done) = self.done.inner() {
            done.close_locked(cx, b, clock.clone());
        }
        if mutant::on(Mutant::ContextCancelNotPropagated) {
            return;
        }
        for child in children.iter().filter_map(Weak::upgrade) {
            child.cancel_locked(cx, b, err, clock);
        }
    }
}
