//! Reorder window: events reach userspace from several CPUs slightly out of
//! order; the detector must see them in kernel-timestamp order.
//!
//! Events are held in a deque sorted by [`order_key`] and released from the
//! front once they are older than the newest timestamp minus the window
//! (`window_ns`), or when more than `window_events` are held. Input is nearly
//! sorted, so an insert walks back only a few slots from the tail: O(1)
//! amortised, no allocation once the deque has grown.
//!
//! An event older than the last one released cannot be put in order any more:
//! it is *late*. The window reports it (the pipeline counts it in
//! `Stats::late` and hands it to `Sink::on_late`); it is never silently dropped.
//!
//! Equal timestamps: the order among events with the same `ts` is made
//! canonical (by kind, then cpu, tid) so that any arrival order of the same
//! events gives the same release order, hence the same findings. Within one
//! timestamp, kinds go in fault-path order (begin, lookup, insert,
//! invalidate, hole load, end): an invalidation at exactly `t_hole` is seen
//! before the hole load, so an ambiguous (equal-time) ordering never makes a
//! finding (DESIGN.md §2). Events equal in (ts, kind, cpu, tid) keep their
//! arrival order; they are one task's events at one instant, which the rules
//! judge the same either way.

use std::collections::VecDeque;

use crate::event::{Body, Event, MapResult};

/// Rank of a kind among events with equal timestamps (see module doc).
fn rank(body: &Body) -> u64 {
    match body {
        Body::FaultBegin { .. } => 0,
        Body::MapBlocks { .. } => 1,
        Body::InsertMapping { .. } => 2,
        Body::Invalidate { .. } => 3,
        Body::LoadHole { .. } => 4,
        Body::FaultEnd { .. } => 5,
        Body::Lost { .. } => 6,
    }
}

/// Among lookups with equal timestamps: holes first, then existing blocks,
/// then allocations. Two lookups of one fault at the same instant cannot be
/// ordered; taking the one that returned blocks as the later keeps an
/// ambiguous order from making a `hole_load_after_allocate` finding.
fn sub_rank(body: &Body) -> u64 {
    match body {
        Body::MapBlocks { new: true, .. } => 2,
        Body::MapBlocks {
            result: MapResult::Hole,
            ..
        } => 0,
        Body::MapBlocks { .. } => 1,
        _ => 0,
    }
}

/// Total order used by the window: timestamp, then a canonical tie-break
/// (kind rank, lookup sub-rank, cpu, tid).
#[inline]
pub fn order_key(ev: &Event) -> (u64, u64) {
    let tie = (rank(&ev.body) << 61)
        | (sub_rank(&ev.body) << 58)
        | ((u64::from(ev.cpu) & 0x3ff_ffff) << 32)
        | u64::from(ev.tid);
    (ev.ts, tie)
}

/// Give the deque room for `cap` events in a new buffer advised to be huge
/// pages: a full window (2^20 events, 96 MiB) is written and read once per
/// event, and with 4 KiB pages filling it costs a page fault per 42 events.
/// (A realloc would remap the old part, and split its huge pages.)
fn grow(q: &mut VecDeque<Event>, cap: usize) {
    let mut v = Vec::with_capacity(cap.max(q.len()));
    crate::huge::advise(v.spare_capacity_mut());
    let (a, b) = q.as_slices();
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    // O(1): the Vec's buffer becomes the deque's.
    *q = VecDeque::from(v);
}

/// What happened to a pushed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Held in the window; it will be released in order.
    Held,
    /// Older than an event already released: cannot be ordered any more.
    Late(Event),
}

pub struct Reorder {
    window_ns: u64,
    window_events: usize,
    /// Sorted by [`order_key`], which is computed again when needed rather
    /// than stored: at 2^20 held events the deque is far larger than the
    /// caches, and 16 bytes less per entry is that much less memory traffic.
    q: VecDeque<Event>,
    /// Newest timestamp pushed so far.
    newest: u64,
    /// Timestamp of the last event released (`None` before the first).
    released: Option<u64>,
}

impl Reorder {
    pub fn new(window_ns: u64, window_events: usize) -> Self {
        Self {
            window_ns,
            window_events: window_events.max(1),
            q: {
                let mut q = VecDeque::new();
                grow(&mut q, window_events.saturating_add(1).clamp(1, 1 << 16));
                q
            },
            newest: 0,
            released: None,
        }
    }

    /// Events held right now.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Timestamp of the last released event.
    pub fn released_ts(&self) -> Option<u64> {
        self.released
    }

    /// Add an event; then call [`Reorder::pop_ready`] until it returns `None`.
    /// Always inlined: the compiler would otherwise call it with the event
    /// copied to the stack (9% more instructions per event in `stage_cost`).
    #[inline(always)]
    pub fn push(&mut self, ev: Event) -> Push {
        if self.released.is_some_and(|r| ev.ts < r) {
            return Push::Late(ev);
        }
        self.newest = self.newest.max(ev.ts);
        let mut i = self.q.len();
        // A strictly newer timestamp goes at the tail without a tie-break key
        // (the usual case); otherwise walk back from the tail: nearly
        // sorted input stops at once.
        if self.q.back().is_some_and(|b| b.ts >= ev.ts) {
            let key = order_key(&ev);
            while i > 0 {
                if order_key(&self.q[i - 1]) <= key {
                    break;
                }
                i -= 1;
            }
        }
        let (cap, bound) = (self.q.capacity(), self.window_events.saturating_add(1));
        if self.q.len() == cap && cap < bound {
            // Grow by doubling, but never past the most the window holds
            // (`window_events` + the one pushed before `pop_ready`): VecDeque's
            // own doubling would reserve, and as a ring touch, twice that.
            grow(&mut self.q, (cap * 2).max(16).min(bound));
        }
        if i == self.q.len() {
            self.q.push_back(ev);
        } else {
            self.q.insert(i, ev);
        }
        Push::Held
    }

    /// Release the oldest event if the window no longer needs to hold it:
    /// it is more than `window_ns` older than the newest event, or the window
    /// holds more than `window_events`.
    #[inline]
    pub fn pop_ready(&mut self) -> Option<Event> {
        if self.ready() {
            return self.pop();
        }
        None
    }

    /// The oldest event no longer needs to be held (see [`Reorder::pop_ready`]):
    /// judge it in place ([`Reorder::front`]), then [`Reorder::release_front`].
    #[inline]
    pub fn ready(&self) -> bool {
        self.q.front().is_some_and(|f| {
            self.q.len() > self.window_events || f.ts < self.newest.saturating_sub(self.window_ns)
        })
    }

    /// Live sources: release what is older than `now - window_ns` even when
    /// no newer event arrives (a quiet system must still report).
    #[inline]
    pub fn pop_older_than(&mut self, now: u64) -> Option<Event> {
        if self.older_than(now) {
            return self.pop();
        }
        None
    }

    /// The oldest event is older than `now - window_ns` (see [`Reorder::pop_older_than`]).
    #[inline]
    pub fn older_than(&self, now: u64) -> bool {
        self.q
            .front()
            .is_some_and(|f| f.ts < now.saturating_sub(self.window_ns))
    }

    /// The next event to be released, left in place: a pipeline judges it
    /// where it lies instead of copying it out (96 bytes, per event).
    #[inline]
    pub fn front(&self) -> Option<&Event> {
        self.q.front()
    }

    /// Release the front event (after judging it through [`Reorder::front`]).
    #[inline]
    pub fn release_front(&mut self) {
        if let Some(f) = self.q.front() {
            self.released = Some(f.ts);
            // The value is not used: no copy is made.
            let _ = self.q.pop_front();
        }
    }

    /// The event `k` places behind the next one to be released (0: the
    /// next), in release order as the window stands now.
    #[inline]
    pub fn peek(&self, k: usize) -> Option<&Event> {
        self.q.get(k)
    }

    /// End of input: release everything, in order.
    #[inline]
    pub fn pop(&mut self) -> Option<Event> {
        let ev = self.q.pop_front()?;
        self.released = Some(ev.ts);
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Comm, Dev, Size};

    fn ev(ts: u64, cpu: u32) -> Event {
        Event {
            ts,
            cpu,
            tid: cpu,
            pid: 1,
            comm: Comm::new("t"),
            dev: Dev::new(1, 0),
            ino: 1,
            probe: 0,
            body: Body::LoadHole {
                fault: ts,
                pgoff: 0,
                size: Size::Pte,
            },
        }
    }

    fn drain(r: &mut Reorder) -> Vec<u64> {
        std::iter::from_fn(|| r.pop()).map(|e| e.ts).collect()
    }

    #[test]
    fn sorts_within_window() {
        let mut r = Reorder::new(100, 1000);
        let mut out = vec![];
        for ts in [5, 3, 9, 1, 7] {
            assert_eq!(r.push(ev(ts, 0)), Push::Held);
            while let Some(e) = r.pop_ready() {
                out.push(e.ts);
            }
        }
        assert!(
            out.is_empty(),
            "nothing is older than the window yet: {out:?}"
        );
        out.extend(drain(&mut r));
        assert_eq!(out, [1, 3, 5, 7, 9]);
    }

    #[test]
    fn releases_by_time_and_flags_late() {
        let mut r = Reorder::new(10, 1000);
        let mut out = vec![];
        for ts in [100, 105, 120] {
            r.push(ev(ts, 0));
            while let Some(e) = r.pop_ready() {
                out.push(e.ts);
            }
        }
        // 120 - 10 = 110: 100 and 105 are out.
        assert_eq!(out, [100, 105]);
        assert_eq!(r.push(ev(104, 1)), Push::Late(ev(104, 1)));
        // Equal to the last released is not late (ordering is still possible).
        assert_eq!(r.push(ev(105, 1)), Push::Held);
    }

    #[test]
    fn releases_by_count() {
        let mut r = Reorder::new(u64::MAX, 2);
        let mut out = vec![];
        for ts in [3, 2, 1] {
            r.push(ev(ts, 0));
            while let Some(e) = r.pop_ready() {
                out.push(e.ts);
            }
        }
        assert_eq!(out, [1]);
        assert!(matches!(r.push(ev(0, 0)), Push::Late(_)));
    }

    #[test]
    fn advance_releases_quiet_window() {
        let mut r = Reorder::new(10, 1000);
        r.push(ev(100, 0));
        assert!(r.pop_ready().is_none());
        assert!(r.pop_older_than(105).is_none());
        assert_eq!(r.pop_older_than(111).map(|e| e.ts), Some(100));
    }

    #[test]
    fn equal_timestamps_are_canonical() {
        let a = Event {
            body: Body::Invalidate {
                pgoff: 0,
                npages: 1,
                reason: crate::event::InvalidateReason::Truncate,
            },
            ..ev(5, 3)
        };
        let b = ev(5, 1); // load_hole
        let c = Event {
            body: Body::FaultBegin {
                fault: 1,
                pgoff: 0,
                size: Size::Pte,
                write: false,
            },
            ..ev(5, 2)
        };
        for order in [[a, b, c], [c, b, a], [b, a, c]] {
            let mut r = Reorder::new(10, 100);
            for e in order {
                r.push(e);
            }
            let kinds: Vec<_> = std::iter::from_fn(|| r.pop())
                .map(|e| e.body.kind_name())
                .collect();
            assert_eq!(kinds, ["fault_begin", "invalidate", "load_hole"]);
        }
    }
}
