//! Go's `select`: the [`select!`](crate::select!) macro and the runtime behind it.
//!
//! Semantics, as in Go: the channel and value expressions of every case are evaluated once, in
//! source order, on entry. If one or more cases can proceed, one of them is chosen **uniformly
//! at random**; if none can and there is a `default`, it runs; otherwise the goroutine parks on
//! every channel at once and the first case to complete wins, and when several of its cases
//! wait on one channel, which of them a partner completes is chosen at random too (Go shuffles
//! them in its lock order). A nil channel's case never proceeds. A send case on a closed
//! channel can proceed, and panics if chosen.
//!
//! Who makes those choices (`Ctx::choose`): on shuttle, the scheduler (the choice is part of the
//! schedule, so replays make it again); on `std`, the runtime's seeded generator. loom has no
//! way to branch on a value (loom#84), so **under loom a goroutine's choices go in rotation**
//! (its n-th choice among k alternatives, counting from 0, takes the (n mod k)-th):
//! deterministic, as loom needs, and fair, so a case that is always ready (a closed channel, a
//! due timer) cannot shut out the others; interleavings still decide which cases are ready.
//! Which case a single select takes is therefore not explored under loom; each execution
//! counts the choices loom took by rotation (`ExecutionReport::unexplored_choices`), and the
//! reports name the bugs whose loom answer rests on them.

// The sealed `CaseImpl` trait's methods take runtime types: nameable only inside the crate,
// which is the point of sealing it.
#![allow(private_interfaces)]

use std::panic::Location;
use std::sync::Arc;

use crate::chan::{Chan, ChanInner, Received};
use crate::mutant::{self, Mutant};
use crate::rt::trace::Op;
use crate::rt::{current_exec, Books, Ctx, Execution, Fired, ObjMeta, WaitReason, Waiter};

/// One case of a `select`: [`RecvCase`] or [`SendCase`]. Sealed: the runtime's side of it is
/// private.
#[doc(hidden)]
pub trait Case: sealed::CaseImpl {}

impl<T: Send + 'static> Case for RecvCase<T> {}
impl<T: Send + 'static> Case for SendCase<T> {}

mod sealed {
    use super::*;

    /// One case of a `select`, as the runtime sees it.
    pub trait CaseImpl {
        /// The execution of the case's channel; `None` for a nil channel.
        fn exec(&self) -> Option<&Arc<Execution>>;
        /// Whether the case can proceed now.
        fn ready(&self, cx: &Ctx<'_>, b: &mut Books) -> bool;
        /// Proceeds now (the case is ready). A send on a closed channel panics here.
        fn complete(&mut self, cx: &mut Ctx<'_>);
        /// Queues the parked select on the case's channel.
        fn enqueue(&mut self, cx: &Ctx<'_>, b: &mut Books, w: Waiter);
        /// The case won while the select was parked: finish it.
        fn finish(&mut self, cx: &mut Ctx<'_>, fired: Fired);
        /// Another case won: drop this case's queue entries.
        fn forget(&self, cx: &Ctx<'_>, w: Waiter);
        fn meta(&self) -> Option<&ObjMeta>;
        /// The trace's name for the case once it completed: a send, or a receive (of a value, or
        /// of the channel's close: `-2`, as for `recv`).
        fn done_op(&self) -> (Op, i64);
    }
}

use sealed::CaseImpl;

/// A receive case: `case v, ok := <-ch`.
#[doc(hidden)]
pub struct RecvCase<T> {
    chan: Chan<T>,
    value: Option<Option<T>>,
}

impl<T: Send + 'static> RecvCase<T> {
    pub fn new(chan: &Chan<T>) -> Self {
        RecvCase {
            chan: chan.clone(),
            value: None,
        }
    }

    /// What the case received: `Some(v)`, or `None` when the channel was closed.
    pub fn into_value(self) -> Option<T> {
        self.value.expect("the chosen receive case has completed")
    }

    fn inner(&self) -> &Arc<ChanInner<T>> {
        self.chan.inner().expect("nil channels are never ready")
    }
}

impl<T: Send + 'static> CaseImpl for RecvCase<T> {
    fn done_op(&self) -> (Op, i64) {
        let closed = matches!(self.value, Some(None));
        (Op::SelectRecv, if closed { -2 } else { 0 })
    }

    fn exec(&self) -> Option<&Arc<Execution>> {
        self.chan.inner().map(|i| &i.exec)
    }

    fn ready(&self, cx: &Ctx<'_>, b: &mut Books) -> bool {
        let Some(i) = self.chan.inner() else {
            return false;
        };
        let st = i.state.borrow(cx);
        st.ready_to_recv(b)
    }

    fn complete(&mut self, cx: &mut Ctx<'_>) {
        let inner = self.inner().clone();
        let mut b = cx.books();
        let mut st = inner.state.borrow(cx);
        let r = inner
            .try_recv(cx, &mut b, &mut st)
            .expect("a ready receive case completes");
        let ticker = st.ticker;
        drop(st);
        if let Received::Value(_) = r {
            if ticker {
                b.wake_helper();
            }
        }
        self.value = Some(match r {
            Received::Value(v) => Some(v),
            Received::Closed => None,
        });
    }

    fn enqueue(&mut self, cx: &Ctx<'_>, _b: &mut Books, w: Waiter) {
        self.inner().state.borrow(cx).recvq_push(w);
    }

    fn finish(&mut self, cx: &mut Ctx<'_>, fired: Fired) {
        let inner = self.inner().clone();
        self.value = Some(inner.take_fired_recv(cx, fired));
    }

    fn forget(&self, cx: &Ctx<'_>, w: Waiter) {
        if let Some(i) = self.chan.inner() {
            i.forget(cx, w);
        }
    }

    fn meta(&self) -> Option<&ObjMeta> {
        self.chan.inner().map(|i| &i.meta)
    }
}

/// A send case: `case ch <- v`.
#[doc(hidden)]
pub struct SendCase<T> {
    chan: Chan<T>,
    value: Option<T>,
}

impl<T: Send + 'static> SendCase<T> {
    pub fn new(chan: &Chan<T>, value: T) -> Self {
        SendCase {
            chan: chan.clone(),
            value: Some(value),
        }
    }

    fn inner(&self) -> &Arc<ChanInner<T>> {
        self.chan.inner().expect("nil channels are never ready")
    }
}

impl<T: Send + 'static> CaseImpl for SendCase<T> {
    fn done_op(&self) -> (Op, i64) {
        (Op::SelectSend, 0)
    }

    fn exec(&self) -> Option<&Arc<Execution>> {
        self.chan.inner().map(|i| &i.exec)
    }

    fn ready(&self, cx: &Ctx<'_>, b: &mut Books) -> bool {
        let Some(i) = self.chan.inner() else {
            return false;
        };
        let st = i.state.borrow(cx);
        st.ready_to_send(b, i.room())
    }

    fn complete(&mut self, cx: &mut Ctx<'_>) {
        let inner = self.inner().clone();
        if inner.is_closed(cx) {
            if mutant::on(Mutant::ChanSendClosedNoPanic) {
                return;
            }
            cx.go_panic("send on closed channel");
        }
        let value = self.value.take().expect("a send case sends once");
        let mut b = cx.books();
        let msg = inner.message(cx, &mut b, value);
        let mut st = inner.state.borrow(cx);
        if inner.try_send(cx, &mut b, &mut st, msg).is_err() {
            unreachable!("a ready send case completes");
        }
    }

    fn enqueue(&mut self, cx: &Ctx<'_>, b: &mut Books, w: Waiter) {
        let inner = self.inner().clone();
        let value = self.value.take().expect("a send case is queued once");
        let msg = inner.message(cx, b, value);
        inner.state.borrow(cx).sendq_push(w, msg);
    }

    fn finish(&mut self, cx: &mut Ctx<'_>, fired: Fired) {
        if fired.closed && !mutant::on(Mutant::ChanSendClosedNoPanic) {
            cx.go_panic("send on closed channel");
        }
    }

    fn forget(&self, cx: &Ctx<'_>, w: Waiter) {
        if let Some(i) = self.chan.inner() {
            i.forget(cx, w);
        }
    }

    fn meta(&self) -> Option<&ObjMeta> {
        self.chan.inner().map(|i| &i.meta)
    }
}

/// Runs a select over `cases`; returns the index of the case taken, or `cases.len()` for
/// `default`. Called by [`select!`](crate::select!).
#[doc(hidden)]
#[track_caller]
pub fn select(cases: &mut [&mut dyn Case], has_default: bool) -> usize {
    let at = Location::caller();
    let exec = match cases.iter().find_map(|c| c.exec()) {
        Some(e) => e.clone(),
        None => current_exec(),
    };
    let mut cx = exec.enter(at);
    let ready: Vec<usize> = {
        let mut b = cx.books();
        cases
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                if let Some(e) = c.exec() {
                    if !Arc::ptr_eq(e, &exec) {
                        panic!(
                            "primitives: a channel of the select at {} was made in another \
                             execution; objects belong to the execution that made them",
                            crate::rt::Site(at)
                        );
                    }
                }
                c.ready(&cx, &mut b)
            })
            .map(|(i, _)| i)
            .collect()
    };
    if has_default && mutant::on(Mutant::SelectDefaultFirst) {
        let mut b = cx.books();
        cx.event(&mut b, Op::Select, None, -1);
        return cases.len();
    }
    if !ready.is_empty() {
        let i = if mutant::on(Mutant::SelectFirstReady) {
            ready[0]
        } else {
            ready[cx.choose(ready.len(), |b| rotation(b, cx.gid))]
        };
        cases[i].complete(&mut cx);
        let mut b = cx.books();
        let (op, arg) = cases[i].done_op();
        cx.event(&mut b, op, cases[i].meta(), arg);
        return i;
    }
    if has_default && !mutant::on(Mutant::SelectNeverDefault) {
        {
            let mut b = cx.books();
            cx.event(&mut b, Op::Select, None, -1);
        }
        return cases.len();
    }
    let live = cases.iter().filter(|c| c.exec().is_some()).count();
    if live == 0 {
        let reason = if cases.is_empty() {
            WaitReason::SelectNoCases
        } else {
            WaitReason::Select
        };
        cx.park(reason, None, Op::Select);
        unreachable!("nothing wakes a select without channels, except the end of the execution");
    }
    let order = queue_order(&cx, cases);
    let base = {
        let mut b = cx.books();
        let base = cx.waiter(&mut b, 0);
        for i in order {
            cases[i].enqueue(&cx, &mut b, Waiter { case: i, ..base });
        }
        let mut objs = std::mem::take(&mut b.goroutines[cx.gid].select_objs);
        objs.clear();
        for m in cases.iter().filter_map(|c| c.meta()) {
            b.note(m);
            objs.push(m.id);
        }
        b.goroutines[cx.gid].select_objs = objs;
        base
    };
    let fired = cx.park(WaitReason::Select, None, Op::Select);
    for (i, c) in cases.iter().enumerate() {
        if i != fired.case {
            c.forget(&cx, Waiter { case: i, ..base });
        }
    }
    cases[fired.case].finish(&mut cx, fired);
    let mut b = cx.books();
    let (op, arg) = cases[fired.case].done_op();
    cx.event(&mut b, op, cases[fired.case].meta(), arg);
    fired.case
}

/// loom's rule for a choice among a goroutine's select cases: its n-th such choice, counting
/// from 0, takes the n-th alternative (modulo their number).
fn rotation(b: &mut Books, gid: usize) -> usize {
    let g = &mut b.goroutines[gid];
    let turn = g.selects;
    g.selects += 1;
    turn as usize
}

/// The order a parked select queues its cases in (nil channels left out).
///
/// Go queues them in its lock order: sorted by channel, and shuffled among the cases on one
/// channel ("to permute cases on the same channel", `runtime/select.go`), so which of two
/// cases on one channel a partner completes is left to chance. Here that is a choice of the
/// engine's, like the choice among ready cases. Cases on different channels wait in different
/// queues, so their relative order changes nothing and stays the source order.
fn queue_order(cx: &Ctx<'_>, cases: &[&mut dyn Case]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cases.len())
        .filter(|&i| cases[i].exec().is_some())
        .collect();
    let same = |a: usize, b: usize| {
        let (ma, mb) = (cases[a].meta(), cases[b].meta());
        ma.map(|m| m.id) == mb.map(|m| m.id) && cases[a].done_op().0 == cases[b].done_op().0
    };
    for k in 0..order.len() {
        // The cases from k on that share k's channel and direction: draw which goes first.
        let group: Vec<usize> = (k..order.len())
            .filter(|&j| same(order[k], order[j]))
            .collect();
        if group.len() > 1 && !mutant::on(Mutant::SelectSameChannelInOrder) {
            let pick = group[cx.choose(group.len(), |b| rotation(b, cx.gid))];
            order[k..=pick].rotate_right(1);
        }
    }
    order
}

/// Go's `select` statement.
///
/// ```
/// use primitives::{go, select, Chan};
/// # primitives::run(|| {
/// let (a, b) = (Chan::new(1), Chan::<i32>::new(0));
/// a.send(1);
/// select! {
///     recv(a) -> v => assert_eq!(v, Some(1)),
///     recv(b) -> _ => unreachable!("b has no sender"),
///     default => unreachable!("a is ready"),
/// }
/// # });
/// ```
///
/// Cases: `recv(ch) -> v => body` (`v` is `Some(value)`, or `None` if `ch` is closed),
/// `recv(ch) => body`, `send(ch, value) => body`, and `default => body`. Bodies are blocks or
/// expressions, separated by commas. At most 16 channel cases.
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__select!(
            @parse ($($tokens)*) () ()
            ((__c0 0) (__c1 1) (__c2 2) (__c3 3) (__c4 4) (__c5 5) (__c6 6) (__c7 7)
             (__c8 8) (__c9 9) (__c10 10) (__c11 11) (__c12 12) (__c13 13) (__c14 14) (__c15 15))
        )
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __select {
    // Case heads.
    (@parse (recv($ch:expr) -> $pat:pat => $($rest:tt)*) $arms:tt $def:tt $names:tt) => {
        $crate::__select!(@body (recv ($ch) ($pat)) ($($rest)*) $arms $def $names)
    };
    (@parse (recv($ch:expr) => $($rest:tt)*) $arms:tt $def:tt $names:tt) => {
        $crate::__select!(@body (recv ($ch) (_)) ($($rest)*) $arms $def $names)
    };
    (@parse (send($ch:expr, $v:expr) => $($rest:tt)*) $arms:tt $def:tt $names:tt) => {
        $crate::__select!(@body (send ($ch) ($v)) ($($rest)*) $arms $def $names)
    };
    (@parse (default => $($rest:tt)*) $arms:tt $def:tt $names:tt) => {
        $crate::__select!(@body (default () ()) ($($rest)*) $arms $def $names)
    };
    (@parse () $arms:tt $def:tt $names:tt) => {
        $crate::__select!(@gen $arms $def)
    };
    (@parse ($($bad:tt)*) $arms:tt $def:tt $names:tt) => {
        compile_error!("select!: expected `recv(ch) -> v => ...`, `recv(ch) => ...`, `send(ch, v) => ...` or `default => ...`")
    };

    // Case bodies: a block (comma optional) or an expression (comma unless last).
    (@body $head:tt ($body:block, $($rest:tt)*) $arms:tt $def:tt $names:tt) => {
        $crate::__select!(@add $head $body ($($rest)*) $arms $def $names)
    };
    (@body $head:tt ($body:block $($rest:tt)*) $arms:tt $def:tt $names:tt) => {
        $crate::__select!(@add $head $body ($($rest)*) $arms $def $names)
    };
    (@body $head:tt ($body:expr, $($rest:tt)*) $arms:tt $def:tt $names:tt) => {
        $crate::__select!(@add $head $body ($($rest)*) $arms $def $names)
    };
    (@body $head:tt ($body:expr) $arms:tt $def:tt $names:tt) => {
        $crate::__select!(@add $head $body () $arms $def $names)
    };

    // Adding a parsed case.
    (@add (default () ()) $body:tt $rest:tt $arms:tt () $names:tt) => {
        $crate::__select!(@parse $rest $arms ($body) $names)
    };
    (@add (default () ()) $body:tt $rest:tt $arms:tt ($($def:tt)+) $names:tt) => {
        compile_error!("select!: more than one `default` case")
    };
    (@add ($kind:ident $a:tt $b:tt) $body:tt $rest:tt ($($arms:tt)*) $def:tt (($name:ident $idx:tt) $($names:tt)*)) => {
        $crate::__select!(@parse $rest ($($arms)* ($kind $name $idx $a $b $body)) $def ($($names)*))
    };
    (@add $head:tt $body:tt $rest:tt $arms:tt $def:tt ()) => {
        compile_error!("select!: at most 16 channel cases")
    };

    // Code generation.
    (@gen ($(($kind:ident $name:ident $idx:tt $a:tt $b:tt $body:tt))*) ($($def:tt)?)) => {{
        $( #[allow(unused_mut)] let mut $name = $crate::__select!(@case $kind $a $b); )*
        let __taken = $crate::select::select(
            &mut [$(&mut $name as &mut dyn $crate::select::Case),*],
            $crate::__select!(@has_default $($def)?),
        );
        match __taken {
            $( $idx => $crate::__select!(@run $kind $name $b $body), )*
            _ => $crate::__select!(@default $($def)?),
        }
    }};
    (@case recv ($ch:expr) $b:tt) => { $crate::select::RecvCase::new(&$ch) };
    (@case send ($ch:expr) ($v:expr)) => { $crate::select::SendCase::new(&$ch, $v) };
    (@run recv $name:ident ($pat:pat) $body:tt) => {{ let $pat = $name.into_value(); $body }};
    (@run send $name:ident $b:tt $body:tt) => {{ drop($name); $body }};
    (@has_default) => { false };
    (@has_default $def:tt) => { true };
    (@default) => { unreachable!("select returned no case") };
    (@default $def:tt) => { $def };
}
