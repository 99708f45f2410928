//! Channels: Go's `chan T`, unbuffered, buffered and nil.
//!
//! Go's table of channel operations, which this file implements cell by cell:
//!
//! | operation | nil channel | open, empty | open, full | open, neither | closed |
//! |---|---|---|---|---|---|
//! | send    | blocks forever | blocks (unbuffered: until received) | blocks | proceeds | panics `send on closed channel` |
//! | receive | blocks forever | blocks | proceeds | proceeds | proceeds: buffered values, then `None` |
//! | close   | panics `close of nil channel` | proceeds | proceeds | proceeds | panics `close of closed channel` |
//!
//! A sender that finds a receiver parked hands its value over directly, as Go does, and a
//! receiver that finds a sender parked on a full buffer takes the head of the buffer and moves
//! the sender's value to its tail. Closing a channel wakes every parked receiver (they get
//! `None`) and every parked sender (they panic).
//!
//! Happens-before (the Go memory model): a send happens before the receive that gets its value
//! completes; the k-th receive on a channel of capacity C happens before the (k+C)-th send
//! completes (for C = 0: a receive happens before its send completes); a close happens before
//! a receive that returns because the channel is closed.

use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::mutant::{self, Mutant};
use crate::rt::cell::RtCell;
use crate::rt::clock::VClock;
use crate::rt::trace::Op;
use crate::rt::{current_exec, Books, Ctx, Execution, Fired, Gid, ObjMeta, WaitReason, Waiter};

/// A Go channel. Cloning gives another handle to the same channel; [`Chan::nil`] (also the
/// `Default`) is the nil channel.
///
/// # Examples
///
/// ```
/// use primitives::{go, Chan};
/// # primitives::run(|| {
/// let ch = Chan::new(0);
/// let tx = ch.clone();
/// go(move || tx.send(42));
/// assert_eq!(ch.recv(), Some(42));
/// # });
/// ```
pub struct Chan<T> {
    inner: Option<Arc<ChanInner<T>>>,
}

pub(crate) struct ChanInner<T> {
    pub(crate) exec: Arc<Execution>,
    pub(crate) meta: ObjMeta,
    cap: usize,
    pub(crate) state: RtCell<ChanState<T>>,
}

/// A value in flight, with the sender's clock at the send.
pub(crate) struct Msg<T> {
    value: T,
    clock: VClock,
}

pub(crate) struct ChanState<T> {
    /// Buffered values, oldest first.
    buf: VecDeque<Msg<T>>,
    /// `true` once closed.
    closed: bool,
    /// The closer's clock.
    close_clock: VClock,
    /// Parked receivers (and receive cases of selects), oldest first.
    recvq: VecDeque<Waiter>,
    /// Parked senders with the values they offer.
    sendq: VecDeque<(Waiter, Msg<T>)>,
    /// Values handed to parked receivers, until they wake and take them.
    handoff: Vec<(Waiter, T)>,
    /// Completed sends and receives, for the buffered happens-before rule.
    sends: u64,
    recvs: u64,
    /// Per buffer slot, the clock of the receive that last freed it.
    slots: Vec<VClock>,
    /// A ticker feeds this channel: a receive may let its next tick become due.
    pub(crate) ticker: bool,
}

impl<T> ChanState<T> {
    /// A receive would not block: a value is buffered or offered, or the channel is closed.
    pub(crate) fn ready_to_recv(&self, b: &Books) -> bool {
        !self.buf.is_empty()
            || (self.closed && !mutant::on(Mutant::ChanClosedRecvBlocks))
            || self.sendq.iter().any(|(w, _)| b.is_waiting(*w))
    }

    /// A send would not block (or would panic: the channel is closed).
    pub(crate) fn ready_to_send(&self, b: &Books, cap: usize) -> bool {
        self.closed || self.buf.len() < cap || self.recvq.iter().any(|w| b.is_waiting(*w))
    }

    pub(crate) fn recvq_push(&mut self, w: Waiter) {
        self.recvq.push_back(w);
    }

    pub(crate) fn sendq_push(&mut self, w: Waiter, msg: Msg<T>) {
        self.sendq.push_back((w, msg));
    }
}

/// What a receive got.
pub(crate) enum Received<T> {
    Value(T),
    Closed,
}

impl<T> Clone for Chan<T> {
    fn clone(&self) -> Self {
        Chan {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Chan<T> {
    /// The nil channel, like a Go channel variable that was never `make`d.
    fn default() -> Self {
        Chan { inner: None }
    }
}

impl<T> fmt::Debug for Chan<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Chan(nil)"),
            Some(i) => write!(f, "Chan({}, cap {})", i.meta.label(), i.cap),
        }
    }
}

impl<T: Send + 'static> Chan<T> {
    /// `make(chan T, cap)`: an unbuffered channel for `cap == 0`, else a buffered one.
    ///
    /// # Panics
    ///
    /// Outside an execution.
    #[track_caller]
    pub fn new(cap: usize) -> Self {
        let exec = current_exec();
        let meta = exec.new_obj("chan", Location::caller());
        let state = RtCell::new(
            exec.id,
            ChanState {
                buf: VecDeque::with_capacity(cap.min(64)),
                closed: false,
                close_clock: VClock::default(),
                recvq: VecDeque::new(),
                sendq: VecDeque::new(),
                handoff: Vec::new(),
                sends: 0,
                recvs: 0,
                slots: Vec::new(),
                ticker: false,
            },
        );
        Chan {
            inner: Some(Arc::new(ChanInner {
                exec,
                meta,
                cap,
                state,
            })),
        }
    }

    /// The nil channel: sends and receives block forever, close panics.
    pub fn nil() -> Self {
        Chan { inner: None }
    }

    /// Names the channel in traces and dumps (the Go variable's name, say `stopc`).
    ///
    /// # Panics
    ///
    /// If the channel has been cloned already (name it where it is made).
    pub fn named(mut self, name: &str) -> Self {
        if let Some(inner) = &mut self.inner {
            Arc::get_mut(inner)
                .expect("name a channel where it is made, before cloning it")
                .meta
                .name = Some(name.to_string());
        }
        self
    }

    pub fn is_nil(&self) -> bool {
        self.inner.is_none()
    }

    /// `cap(ch)`.
    pub fn cap(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.cap)
    }

    /// `len(ch)`: values waiting in the buffer.
    #[track_caller]
    pub fn len(&self) -> usize {
        let Some(inner) = &self.inner else { return 0 };
        let cx = inner.exec.enter(Location::caller());
        let st = inner.state.borrow(&cx);
        st.buf.len()
    }

    /// `len(ch) == 0`.
    #[track_caller]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `ch <- v`.
    ///
    /// # Panics
    ///
    /// `send on closed channel` if the channel is closed, or gets closed while the send waits.
    #[track_caller]
    pub fn send(&self, v: T) {
        let at = Location::caller();
        let Some(inner) = &self.inner else {
            block_forever(at, WaitReason::ChanSendNil, Op::Send)
        };
        let mut cx = inner.exec.enter(at);
        {
            let mut b = cx.books();
            let mut st = inner.state.borrow(&cx);
            if st.closed {
                drop(st);
                if mutant::on(Mutant::ChanSendClosedNoPanic) {
                    cx.event(&mut b, Op::Send, Some(&inner.meta), 0);
                    return;
                }
                drop(b);
                cx.go_panic("send on closed channel");
            }
            let msg = inner.message(&cx, &mut b, v);
            match inner.try_send(&cx, &mut b, &mut st, msg) {
                Ok(()) => {
                    cx.event(&mut b, Op::Send, Some(&inner.meta), 0);
                    return;
                }
                Err(msg) => {
                    let w = cx.waiter(&mut b, 0);
                    st.sendq.push_back((w, msg));
                }
            }
        }
        let fired = cx.park(WaitReason::ChanSend, Some(&inner.meta), Op::Send);
        inner.finish_send(&mut cx, fired);
    }

    /// `v, ok := <-ch`: `Some(v)`, or `None` once the channel is closed and drained.
    #[track_caller]
    pub fn recv(&self) -> Option<T> {
        let at = Location::caller();
        let Some(inner) = &self.inner else {
            block_forever(at, WaitReason::ChanRecvNil, Op::Recv)
        };
        let mut cx = inner.exec.enter(at);
        {
            let mut b = cx.books();
            let mut st = inner.state.borrow(&cx);
            if let Some(r) = inner.try_recv(&cx, &mut b, &mut st) {
                let ticker = st.ticker;
                drop(st);
                return inner.received(&cx, &mut b, r, ticker);
            }
            let w = cx.waiter(&mut b, 0);
            st.recvq.push_back(w);
        }
        let fired = cx.park(WaitReason::ChanRecv, Some(&inner.meta), Op::Recv);
        inner.finish_recv(&mut cx, fired)
    }

    /// `close(ch)`.
    ///
    /// # Panics
    ///
    /// `close of nil channel`, `close of closed channel`.
    #[track_caller]
    pub fn close(&self) {
        let at = Location::caller();
        let Some(inner) = &self.inner else {
            let exec = current_exec();
            let mut cx = exec.enter(at);
            if mutant::on(Mutant::ChanCloseNilNoPanic) {
                return;
            }
            cx.go_panic("close of nil channel");
        };
        let mut cx = inner.exec.enter(at);
        let mut b = cx.books();
        if inner.state.borrow(&cx).closed {
            if mutant::on(Mutant::ChanCloseClosedNoPanic) {
                return;
            }
            drop(b);
            cx.go_panic("close of closed channel");
        }
        let clock = cx.release_clock(&mut b);
        inner.close_locked(&cx, &mut b, clock);
        cx.event(&mut b, Op::Close, Some(&inner.meta), 0);
    }

    pub(crate) fn inner(&self) -> Option<&Arc<ChanInner<T>>> {
        self.inner.as_ref()
    }

    /// Whether a send now would not block (used by tickers, whose ticks are dropped otherwise).
    pub(crate) fn has_room(&self, cx: &Ctx<'_>) -> bool {
        match &self.inner {
            None => false,
            Some(i) => {
                let st = i.state.borrow(cx);
                st.buf.len() < i.room() || !st.recvq.is_empty()
            }
        }
    }

    /// A send by the runtime itself (a timer firing): never blocks; dropped if there is no
    /// room. `clock` is the release the value carries.
    pub(crate) fn send_from_runtime(
        &self,
        cx: &Ctx<'_>,
        b: &mut Books,
        v: T,
        clock: &VClock,
    ) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let mut st = inner.state.borrow(cx);
        if st.closed {
            return false;
        }
        let msg = Msg {
            value: v,
            clock: clock.clone(),
        };
        inner.try_send(cx, b, &mut st, msg).is_ok()
    }
}

/// Parks the calling goroutine for good: an operation on a nil channel, or an empty select.
#[track_caller]
pub(crate) fn block_forever(at: &'static Location<'static>, reason: WaitReason, op: Op) -> ! {
    let exec = current_exec();
    let mut cx = exec.enter(at);
    cx.park(reason, None, op);
    unreachable!("nothing wakes a goroutine blocked forever, except the end of its execution")
}

impl<T: Send + 'static> ChanInner<T> {
    /// Wraps a value to send with the sender's clock (a release).
    pub(crate) fn message(&self, cx: &Ctx<'_>, b: &mut Books, value: T) -> Msg<T> {
        Msg {
            value,
            clock: cx.release_clock(b),
        }
    }

    /// Sends without blocking: to a parked receiver, or into the buffer. Gives the message
    /// back when the send would block. The caller has checked that the channel is open.
    pub(crate) fn try_send(
        &self,
        cx: &Ctx<'_>,
        b: &mut Books,
        st: &mut ChanState<T>,
        msg: Msg<T>,
    ) -> Result<(), Msg<T>> {
        if let Some(w) = b.pop_waiter(&mut st.recvq) {
            // Hand over directly, as Go does, whether the channel is buffered or not.
            if b.trace.on {
                let receiver = b.goroutines[w.g].clock.clone();
                if self.cap == 0 {
                    // The receive happens before the unbuffered send completes.
                    if !mutant::on(Mutant::HbChanUnbufferedRecvSend) {
                        join_into(b, cx.gid, &receiver);
                    }
                } else {
                    let n = st.sends;
                    self.acquire_slot(b, cx.gid, st, n);
                    let mut freed = receiver;
                    freed.join(&msg.clock);
                    self.release_slot(st, n, freed);
                }
            }
            st.sends += 1;
            st.recvs += 1;
            st.handoff.push((w, msg.value));
            let sent = (!mutant::on(Mutant::HbChanSendRecv)).then_some(&msg.clock);
            b.fire(
                w,
                Fired {
                    case: w.case,
                    closed: false,
                },
                sent,
            );
            return Ok(());
        }
        if st.buf.len() < self.room() {
            let n = st.sends;
            if b.trace.on {
                self.acquire_slot(b, cx.gid, st, n);
            }
            st.sends += 1;
            st.buf.push_back(msg);
            return Ok(());
        }
        Err(msg)
    }

    /// Receives without blocking; `None` when the receive would block.
    pub(crate) fn try_recv(
        &self,
        cx: &Ctx<'_>,
        b: &mut Books,
        st: &mut ChanState<T>,
    ) -> Option<Received<T>> {
        // A parked sender (unbuffered, or the buffer is full).
        while let Some((w, msg)) = st.sendq.pop_front() {
            if !b.is_waiting(w) {
                continue;
            }
            let fired = Fired {
                case: w.case,
                closed: false,
            };
            if self.cap == 0 && st.buf.is_empty() {
                if !mutant::on(Mutant::HbChanSendRecv) {
                    join_into(b, cx.gid, &msg.clock);
                }
                st.sends += 1;
                st.recvs += 1;
                // The receive happens before the unbuffered send completes: a release.
                let mine = cx.release_clock(b);
                let mine = (!mutant::on(Mutant::HbChanUnbufferedRecvSend)).then_some(&mine);
                b.fire(w, fired, mine);
                return Some(Received::Value(msg.value));
            }
            let head = st
                .buf
                .pop_front()
                .expect("a sender parks on a buffered channel only when the buffer is full");
            let value = self.take_buffered(cx, b, st, head);
            // The sender's value takes the freed slot: its send completes now.
            let n = st.sends;
            let slot = self
                .slot_clock(st, n)
                .filter(|_| !mutant::on(Mutant::HbChanSlot));
            st.sends += 1;
            st.buf.push_back(msg);
            b.fire(w, fired, slot.as_ref());
            return Some(Received::Value(value));
        }
        if let Some(head) = st.buf.pop_front() {
            return Some(Received::Value(self.take_buffered(cx, b, st, head)));
        }
        if st.closed && !mutant::on(Mutant::ChanClosedRecvBlocks) {
            if !mutant::on(Mutant::HbChanCloseRecv) {
                join_into(b, cx.gid, &st.close_clock);
            }
            return Some(Received::Closed);
        }
        None
    }

    /// Takes a buffered value: joins its clock and publishes this receive for the slot rule.
    fn take_buffered(&self, cx: &Ctx<'_>, b: &mut Books, st: &mut ChanState<T>, head: Msg<T>) -> T {
        let k = st.recvs;
        st.recvs += 1;
        if b.trace.on {
            if !mutant::on(Mutant::HbChanSendRecv) {
                join_into(b, cx.gid, &head.clock);
            }
            let mine = b.goroutines[cx.gid].clock.clone();
            self.release_slot(st, k, mine);
            b.goroutines[cx.gid].clock.tick(cx.gid);
        }
        head.value
    }

    /// The n-th send joins the clock of receive n - cap, which freed its slot.
    fn acquire_slot(&self, b: &mut Books, g: Gid, st: &ChanState<T>, n: u64) {
        if mutant::on(Mutant::HbChanSlot) {
            return;
        }
        if let Some(c) = self.slot_clock(st, n) {
            join_into(b, g, &c);
        }
    }

    fn slot_clock(&self, st: &ChanState<T>, n: u64) -> Option<VClock> {
        if self.cap == 0 || n < self.cap as u64 {
            return None;
        }
        st.slots.get((n % self.cap as u64) as usize).cloned()
    }

    fn release_slot(&self, st: &mut ChanState<T>, k: u64, clock: VClock) {
        if self.cap == 0 {
            return;
        }
        let i = (k % self.cap as u64) as usize;
        if st.slots.len() <= i {
            st.slots.resize(i + 1, VClock::default());
        }
        st.slots[i] = clock;
    }

    /// Closes the channel: every parked receiver gets `None`, every parked sender panics.
    pub(crate) fn close_locked(&self, _cx: &Ctx<'_>, b: &mut Books, clock: VClock) {
        let mut st = self.state.borrow(_cx);
        st.closed = true;
        st.close_clock = clock;
        let closed = |w: Waiter| Fired {
            case: w.case,
            closed: true,
        };
        while let Some(w) = b.pop_waiter(&mut st.recvq) {
            let c = st.close_clock.clone();
            let c = (!mutant::on(Mutant::HbChanCloseRecv)).then_some(&c);
            b.fire(w, closed(w), c);
            if mutant::on(Mutant::ChanCloseWakesOneReceiver) {
                break;
            }
        }
        while let Some((w, _msg)) = st.sendq.pop_front() {
            if b.is_waiting(w) {
                b.fire(w, closed(w), None);
            }
        }
    }

    /// Books a completed receive and turns it into what `recv` returns.
    pub(crate) fn received(
        &self,
        cx: &Ctx<'_>,
        b: &mut Books,
        r: Received<T>,
        ticker: bool,
    ) -> Option<T> {
        match r {
            Received::Value(v) => {
                cx.event(b, Op::Recv, Some(&self.meta), 0);
                if ticker {
                    // The tick was taken: the ticker's next tick can become due.
                    b.wake_helper();
                }
                Some(v)
            }
            Received::Closed => {
                cx.event(b, Op::Recv, Some(&self.meta), -2);
                None
            }
        }
    }

    /// After a parked send was fired: done, or panic if the channel was closed meanwhile.
    pub(crate) fn finish_send(&self, cx: &mut Ctx<'_>, fired: Fired) {
        if fired.closed && !mutant::on(Mutant::ChanSendClosedNoPanic) {
            cx.go_panic("send on closed channel");
        }
        let mut b = cx.books();
        cx.event(&mut b, Op::Send, Some(&self.meta), 0);
    }

    /// After a parked receive was fired: the handed-over value, or `None` if closed.
    pub(crate) fn finish_recv(&self, cx: &mut Ctx<'_>, fired: Fired) -> Option<T> {
        let v = self.take_fired_recv(cx, fired);
        let mut b = cx.books();
        cx.event(
            &mut b,
            Op::Recv,
            Some(&self.meta),
            if v.is_none() { -2 } else { 0 },
        );
        v
    }

    /// What a fired receive (or receive case) got. Its clock was deposited by the waker.
    pub(crate) fn take_fired_recv(&self, cx: &Ctx<'_>, fired: Fired) -> Option<T> {
        if fired.closed {
            return None;
        }
        let v = self.take_handoff(cx, cx.gid);
        if self.state.borrow(cx).ticker {
            cx.books().wake_helper();
        }
        Some(v)
    }

    /// How many values the buffer holds before a send blocks: the capacity.
    pub(crate) fn room(&self) -> usize {
        if self.cap == 0 && mutant::on(Mutant::ChanUnbufferedSendWithoutReceiver) {
            return 1;
        }
        if self.cap > 0 && mutant::on(Mutant::ChanBufferOneTooMany) {
            return self.cap + 1;
        }
        self.cap
    }

    /// The value a sender handed to goroutine `g`'s parked receive.
    fn take_handoff(&self, cx: &Ctx<'_>, g: Gid) -> T {
        let mut st = self.state.borrow(cx);
        let i = st
            .handoff
            .iter()
            .position(|(w, _)| w.g == g)
            .expect("a fired receive finds its value handed over");
        st.handoff.swap_remove(i).1
    }

    /// Removes `g`'s entries for a park that ended elsewhere (another select case won).
    pub(crate) fn forget(&self, cx: &Ctx<'_>, w: Waiter) {
        let mut st = self.state.borrow(cx);
        st.recvq.retain(|q| q.g != w.g || q.token != w.token);
        st.sendq.retain(|(q, _)| q.g != w.g || q.token != w.token);
    }

    pub(crate) fn is_closed(&self, cx: &Ctx<'_>) -> bool {
        self.state.borrow(cx).closed
    }
}

/// Joins `clock` into goroutine `g`'s clock (when the books are on).
fn join_into(b: &mut Books, g: Gid, clock: &VClock) {
    if b.trace.on {
        b.goroutines[g].clock.join(clock);
    }
}
