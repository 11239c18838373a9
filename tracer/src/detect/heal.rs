//! A `write(2)` that allocates tears down the hole pages of its range itself
//! (`invalidate_inode_pages2_range` in `dax_iomap_iter` since the 2017 fix
//! "dax: Fix data corruption when fault races with write"; the post-write
//! invalidation of legacy direct I/O before it). On a fixed kernel that
//! teardown waits for the faulting entry's lock, so it always comes *after*
//! a racing fault's hole load: the ordering lookup < write allocates < hole
//! load happens, and the zero page it maps is removed before the write's
//! data can be read through it.
//!
//! So a `hole_load_after_allocate` finding whose allocation is a `write(2)`
//! (no fault) is held until that write's own teardown is seen: an
//! `invalidate` with reason `write` by the allocating task, covering the
//! page, after the hole load heals it (counted in `Stats::healed`, never
//! raised). If none comes within [`HEAL_NS`] of event time (or before the
//! input ends) the finding is raised as it stands. An invalidation *between*
//! allocation and hole load is §2's own exclusion and never reaches here.

use std::collections::VecDeque;

use super::{Finding, Role};
use crate::event::{Body, Event, InvalidateReason};

/// How long a write(2)'s teardown may follow the hole load. The kernel's
/// invalidation waits only for the racing fault to drop its entry lock
/// (microseconds natively, milliseconds under TCG); the tracer reports it
/// when the writer starts its next iomap iteration, after copying the
/// extent. A second of kernel time is far beyond both.
pub const HEAL_NS: u64 = 1_000_000_000;

struct Held {
    finding: Finding,
    writer_tid: u32,
    deadline: u64,
}

/// Findings waiting for their write(2)'s teardown; usually empty.
#[derive(Default)]
pub struct WriteHeal {
    held: VecDeque<Held>,
    healed: u64,
}

impl WriteHeal {
    /// Hold a finding whose allocation was a write(2); hand back any other.
    #[inline]
    pub fn hold(&mut self, f: Finding) -> Option<Finding> {
        let writer = f
            .step(Role::Alloc)
            .filter(|s| s.fault.is_none())
            .map(|s| s.tid);
        match writer {
            Some(writer_tid) => {
                let deadline = f.ts.saturating_add(HEAL_NS);
                self.held.push_back(Held {
                    finding: f,
                    writer_tid,
                    deadline,
                });
                None
            }
            None => Some(f),
        }
    }

    /// An event released in timestamp order (after [`WriteHeal::expire`]
    /// with its time): a write teardown heals what it covers.
    #[inline]
    pub fn on_event(&mut self, ev: &Event) {
        if let Body::Invalidate {
            pgoff,
            npages,
            reason: InvalidateReason::Write,
        } = ev.body
        {
            let end = if npages == u64::MAX {
                u64::MAX
            } else {
                pgoff.saturating_add(npages)
            };
            let before = self.held.len();
            self.held.retain(|h| {
                let p = h.finding.page;
                !(h.writer_tid == ev.tid
                    && p.dev == ev.dev
                    && p.ino == ev.ino
                    && pgoff <= p.pgoff
                    && p.pgoff < end
                    && ev.ts > h.finding.ts)
            });
            self.healed += (before - self.held.len()) as u64;
        }
    }

    /// Raise every held finding whose deadline is before `ts`.
    pub fn expire(&mut self, ts: u64, out: &mut impl FnMut(Finding)) {
        // Deadlines are not monotonic in queue order only when hole loads
        // tie; a scan keeps it simple and the queue is tiny.
        if self.held.iter().all(|h| h.deadline >= ts) {
            return;
        }
        let mut keep = VecDeque::with_capacity(self.held.len());
        for h in self.held.drain(..) {
            if h.deadline < ts {
                out(h.finding);
            } else {
                keep.push_back(h);
            }
        }
        self.held = keep;
    }

    /// End of input: raise everything still held.
    pub fn drain(&mut self, out: &mut impl FnMut(Finding)) {
        for h in self.held.drain(..) {
            out(h.finding);
        }
    }

    /// Findings withdrawn because the write tore the hole page down.
    pub fn healed(&self) -> u64 {
        self.healed
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::HEAL_NS;
    use crate::detect::Finding;
    use crate::event::{Body, Comm, Dev, Event, InvalidateReason, MapResult, Size};
    use crate::pipeline::{Pipeline, PipelineConfig, Sink};

    #[derive(Default)]
    struct Got(Vec<(u64, Finding)>, u64);
    impl Sink for Got {
        fn on_event(&mut self, ev: &Event) {
            self.1 = ev.ts;
        }
        fn on_finding(&mut self, f: &Finding) {
            self.0.push((self.1, f.clone()));
        }
    }

    fn ev(ts: u64, tid: u32, body: Body) -> Event {
        Event {
            ts,
            cpu: 0,
            tid,
            pid: tid,
            comm: Comm::new("t"),
            dev: Dev::new(259, 0),
            ino: 12,
            probe: 0,
            body,
        }
    }

    /// Lookup (hole) by fault 1, write(2) by task 300 allocates, hole load at 30.
    fn race() -> Vec<Event> {
        vec![
            ev(
                10,
                100,
                Body::MapBlocks {
                    fault: Some(1),
                    pgoff: 7,
                    npages: 1,
                    result: MapResult::Hole,
                    new: false,
                    write: false,
                },
            ),
            ev(
                20,
                300,
                Body::MapBlocks {
                    fault: None,
                    pgoff: 0,
                    npages: 16,
                    result: MapResult::Mapped,
                    new: true,
                    write: true,
                },
            ),
            ev(
                30,
                100,
                Body::LoadHole {
                    fault: 1,
                    pgoff: 7,
                    size: Size::Pte,
                },
            ),
        ]
    }

    fn teardown(ts: u64, tid: u32) -> Event {
        ev(
            ts,
            tid,
            Body::Invalidate {
                pgoff: 0,
                npages: 16,
                reason: InvalidateReason::Write,
            },
        )
    }

    fn run(evs: Vec<Event>, live_now: Option<u64>) -> (Got, Pipeline) {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut got = Got::default();
        for e in evs {
            p.push(e, &mut got);
        }
        if let Some(now) = live_now {
            p.advance(now, &mut got);
        } else {
            p.finish(&mut got);
        }
        (got, p)
    }

    #[test]
    fn own_teardown_after_the_load_heals() {
        let mut evs = race();
        evs.push(teardown(40, 300));
        let (got, p) = run(evs, None);
        assert!(got.0.is_empty(), "{:?}", got.0);
        assert_eq!((p.stats().findings, p.stats().healed), (0, 1));
    }

    #[test]
    fn teardown_later_than_the_deadline_does_not_heal() {
        let mut evs = race();
        evs.push(teardown(30 + HEAL_NS + 1, 300));
        let (got, p) = run(evs, None);
        assert_eq!(got.0.len(), 1);
        // Raised when the deadline passed, before the late teardown was judged.
        assert_eq!(got.0[0].0, 30);
        assert_eq!((p.stats().findings, p.stats().healed), (1, 0));
    }

    #[test]
    fn live_advance_raises_a_held_finding_after_the_deadline() {
        let window = PipelineConfig::default().window_ns;
        let (got, p) = run(race(), Some(30 + HEAL_NS + window));
        assert!(got.0.is_empty(), "raised before the deadline had passed");
        assert_eq!(p.held(), 1);
        let (got, p) = run(race(), Some(31 + HEAL_NS + window));
        assert_eq!(got.0.len(), 1);
        assert_eq!((p.held(), p.stats().findings), (0, 1));
    }

    #[test]
    fn fault_allocations_are_never_held() {
        let mut evs = race();
        evs[1] = ev(
            20,
            200,
            Body::MapBlocks {
                fault: Some(2),
                pgoff: 0,
                npages: 16,
                result: MapResult::Mapped,
                new: true,
                write: true,
            },
        );
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut got = Got::default();
        for e in evs {
            p.push(e, &mut got);
        }
        p.advance(31 + PipelineConfig::default().window_ns, &mut got);
        assert_eq!((got.0.len(), p.held()), (1, 0));
    }
}
