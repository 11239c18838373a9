//! `insert_after_invalidate` (DESIGN.md §2): fault F's lookup returned blocks
//! for page p at `t_lookup`, p was truncated or punched at `t_inv`, and F
//! inserted a mapping for p at `t_ins`, with `t_lookup < t_inv < t_ins`: stale
//! blocks mapped after they were freed. Severity `stale_mapping`.
//!
//! Judged when the insert is processed, before it is recorded.
//!
//! Choices where §2 leaves room:
//! * F's lookup for p is its **latest** lookup covering p; "returned blocks"
//!   means result `mapped` or `unwritten`, or blocks F allocated itself
//!   (`new: true`: the legacy write fault inserts what it just allocated).
//! * Invalidations that free or move blocks count: `truncate`, `punch_hole`,
//!   `collapse_range`, `zero_range`. A `write` invalidation (page-cache / hole
//!   pages torn down after an allocating `write(2)`) frees no blocks, so it
//!   does not make F's blocks stale.
//! * Strict order only: an invalidation at exactly `t_lookup` or `t_ins` does
//!   not count. With several, the earliest after the lookup is reported.

use super::{Finding, Role, Rule, Severity, Step};
use crate::event::{Event, InvalidateReason};
use crate::timeline::{FaultState, InodeRef, RangeKind, RangeRec, Timelines};

/// Whether an invalidation of this kind frees (or moves) the page's blocks.
pub fn frees_blocks(reason: InvalidateReason) -> bool {
    !matches!(reason, InvalidateReason::Write)
}

pub fn check(
    tl: &Timelines,
    f: &FaultState,
    fault: u64,
    ev: &Event,
    ino: InodeRef,
    p: u64,
) -> Option<Finding> {
    let lookup = f.lookup_for(ino, p)?;
    let (t_lookup, t_ins) = (lookup.ts, ev.ts);
    if !lookup.returned_blocks() || t_lookup >= t_ins {
        return None;
    }
    let mut inv: Option<&RangeRec> = None;
    for r in tl.inode(ino).ranges.iter().rev() {
        if r.rec.ts <= t_lookup {
            break;
        }
        if r.covers(p)
            && r.rec.ts < t_ins
            && matches!(r.kind, RangeKind::Invalidate(why) if frees_blocks(why))
        {
            inv = Some(r); // walking back: keeps the earliest
        }
    }
    let inv = inv?;
    let steps = vec![
        Step::of_lookup(f, lookup, fault),
        super::step_of(tl, Role::Invalidate, &inv.rec),
        Step::of_event(Role::Insert, ev, Some(fault)),
    ];
    Some(Finding::on_page(
        Rule::InsertAfterInvalidate,
        Severity::StaleMapping,
        ev,
        p,
        steps,
    ))
}
