//! Property: events that arrive out of order, but by less than the reorder
//! window, give exactly the findings of the sorted trace, and none is late.

use proptest::prelude::*;
use tracer::detect::Finding;
use tracer::event::{Body, Comm, Dev, Event, InvalidateReason, MapResult, Size};
use tracer::pipeline::{Pipeline, PipelineConfig, Sink};
use tracer::sink::jsonl::FindingLine;

const WINDOW: u64 = 1_000;

/// (kind, fault, page, ts slot, jitter) -> an event. Few faults, pages and
/// time slots, so orderings (and equal timestamps) are common.
fn event((kind, fault, page, slot, _): (u8, u8, u8, u16, u16)) -> Event {
    let fault = u64::from(fault % 5);
    let pgoff = u64::from(page % 3);
    let tid = 100 + fault as u32;
    let body = match kind % 8 {
        0 => Body::MapBlocks {
            fault: Some(fault),
            pgoff,
            npages: 1,
            result: MapResult::Hole,
            new: false,
            write: false,
        },
        1 => Body::MapBlocks {
            fault: Some(fault),
            pgoff,
            npages: 1,
            result: MapResult::Mapped,
            new: false,
            write: false,
        },
        2 => Body::MapBlocks {
            fault: Some(fault),
            pgoff,
            npages: 1,
            result: MapResult::Mapped,
            new: true,
            write: true,
        },
        3 => Body::MapBlocks {
            fault: None,
            pgoff: 0,
            npages: 2,
            result: MapResult::Mapped,
            new: true,
            write: true,
        },
        4 => Body::LoadHole {
            fault,
            pgoff,
            size: Size::Pte,
        },
        5 => Body::InsertMapping {
            fault,
            pgoff,
            size: Size::Pte,
            inferred: false,
        },
        6 => Body::Invalidate {
            pgoff,
            npages: 1,
            reason: InvalidateReason::PunchHole,
        },
        _ => Body::FaultEnd {
            fault,
            result: tracer::event::FaultResult::Nopage,
        },
    };
    Event {
        ts: u64::from(slot % 64) * 100,
        cpu: fault as u32,
        tid: if matches!(kind % 8, 3 | 6) { 900 } else { tid },
        pid: tid,
        comm: Comm::new("t"),
        dev: Dev::new(259, 0),
        ino: 7,
        probe: 0,
        body,
    }
}

struct Collect(Vec<Finding>);
impl Sink for Collect {
    fn on_finding(&mut self, f: &Finding) {
        self.0.push(f.clone());
    }
}

fn findings(events: impl IntoIterator<Item = Event>) -> (Vec<String>, u64) {
    let mut p = Pipeline::new(PipelineConfig {
        window_ns: WINDOW,
        window_events: 1 << 16,
        max_pages: 1 << 16,
    });
    let mut c = Collect(vec![]);
    for e in events {
        p.push(e, &mut c);
    }
    p.finish(&mut c);
    let mut v: Vec<String> =
        c.0.iter()
            .map(|f| serde_json::to_string(&FindingLine::new(f)).unwrap())
            .collect();
    v.sort();
    (v, p.stats().late)
}

fn arrival(raw: &[(u8, u8, u8, u16, u16)]) -> Vec<Event> {
    // Arrival order: timestamp plus a jitter below half the window.
    let mut v: Vec<(u64, Event)> = raw
        .iter()
        .map(|&r| (event(r).ts + u64::from(r.4) % (WINDOW / 2), event(r)))
        .collect();
    v.sort_by_key(|x| x.0);
    v.into_iter().map(|x| x.1).collect()
}

fn sorted(raw: &[(u8, u8, u8, u16, u16)]) -> Vec<Event> {
    let mut v: Vec<Event> = raw.iter().map(|&r| event(r)).collect();
    v.sort_by_key(|e| e.ts);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn jitter_within_window_changes_nothing(raw in prop::collection::vec(any::<(u8, u8, u8, u16, u16)>(), 1..80)) {
        let (a, late_a) = findings(sorted(&raw));
        let (b, late_b) = findings(arrival(&raw));
        prop_assert_eq!(late_a, 0);
        prop_assert_eq!(late_b, 0);
        prop_assert_eq!(a, b);
    }
}

/// The generator above does produce findings of both rules (the property is
/// not vacuous).
#[test]
fn generator_produces_findings() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut hole, mut inval) = (0, 0);
    for _ in 0..300 {
        let raw: Vec<_> = (0..60)
            .map(|_| rng.gen::<(u8, u8, u8, u16, u16)>())
            .collect();
        let (f, _) = findings(sorted(&raw));
        hole += f
            .iter()
            .filter(|s| s.contains("hole_load_after_allocate"))
            .count();
        inval += f
            .iter()
            .filter(|s| s.contains("insert_after_invalidate"))
            .count();
    }
    assert!(hole > 10 && inval > 10, "{hole} {inval}");
}
