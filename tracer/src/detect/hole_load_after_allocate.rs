//! `hole_load_after_allocate` (DESIGN.md §2): fault F's lookup saw a hole for
//! page p at `t_lookup`; another actor (fault or `write(2)`) allocated blocks
//! covering p at `t_alloc`; F loaded a hole covering p at `t_hole`;
//! `t_lookup < t_alloc < t_hole`; nothing invalidated p between `t_alloc` and
//! `t_hole`. Severity `corruption` when another actor also inserted a real
//! mapping for p inside `(t_alloc, t_hole)`, else `stale_hole`.
//!
//! Judged when the hole load is processed (in timestamp order), i.e. the
//! moment the ordering completes, before the hole load itself is recorded.
//!
//! Choices where §2 leaves room:
//! * F's lookup for p is its **latest** lookup covering p
//!   ([`FaultState::lookup_for`]); it must have returned a hole and allocated
//!   nothing. A lookup of F after the allocation therefore clears it.
//! * Equal timestamps are never a strict order: `t_lookup = t_alloc`,
//!   `t_alloc = t_hole`, or an insert at either end do not count. An
//!   invalidation at exactly `t_alloc` or `t_hole` *does* clear the page (we
//!   cannot tell it came after the allocation, and an ambiguous order must not
//!   make a finding).
//! * With several qualifying allocations, the **earliest** is reported: its
//!   interval contains every later one's, so the severity is the strongest any
//!   of them supports. Per page the two latest allocations are kept
//!   (and two per PMD slot, [`crate::timeline::Slot`]); a third allocation of the same page inside
//!   one fault's lookup-to-hole window (impossible without an invalidation in
//!   between on a real kernel) would report the second.
//! * The inserting actor need not be the allocating one: any actor other
//!   than F mapping real blocks for p in the interval is what makes the zero
//!   page hide written data.

use super::{Finding, Role, Rule, Severity, Step};
use crate::event::Event;
use crate::timeline::{pmd_key, FaultState, InodeRef, RangeKind, Rec, Timelines};

pub fn check(
    tl: &Timelines,
    f: &FaultState,
    fault: u64,
    ev: &Event,
    ino: InodeRef,
    p: u64,
) -> Option<Finding> {
    let lookup = f.lookup_for(ino, p)?;
    let (t_lookup, t_hole) = (lookup.ts, ev.ts);
    if !lookup.saw_hole() || t_lookup >= t_hole {
        return None;
    }
    // Range records newer than the lookup, newest first: the first covering
    // invalidation clears every allocation at or before it.
    let mut inv_last = None;
    let mut alloc: Option<Rec> = None;
    for r in tl.inode(ino).ranges.iter().rev() {
        if r.rec.ts <= t_lookup {
            break;
        }
        if !r.covers(p) {
            continue;
        }
        match r.kind {
            RangeKind::Invalidate(_) => {
                inv_last = Some(r.rec.ts);
                break;
            }
            RangeKind::Alloc => {
                if r.rec.is_other_than(fault) && r.rec.ts < t_hole {
                    alloc = Some(r.rec); // walking back: keeps the earliest
                }
            }
        }
    }
    let lower = inv_last.map_or(t_lookup, |t| t.max(t_lookup));
    // The page's own slot and its PMD's slot.
    let slots = [tl.pages.get(ino, p), tl.pages.get(ino, pmd_key(p))];
    for a in slots.iter().flatten().flat_map(|s| s.allocs) {
        if a.is_valid()
            && a.is_other_than(fault)
            && a.ts > lower
            && a.ts < t_hole
            && alloc.is_none_or(|b| a.ts < b.ts)
        {
            alloc = Some(a);
        }
    }
    let alloc = alloc?;
    let insert = slots
        .iter()
        .flatten()
        .flat_map(|s| s.inserts)
        .filter(|i| i.is_valid() && i.is_other_than(fault) && alloc.ts < i.ts && i.ts < t_hole)
        .min_by_key(|i| i.ts);

    let mut steps = Vec::with_capacity(4);
    steps.push(Step::of_lookup(f, lookup, fault));
    steps.push(super::step_of(tl, Role::Alloc, &alloc));
    if let Some(i) = &insert {
        steps.push(super::step_of(tl, Role::Insert, i));
    }
    steps.push(Step::of_event(Role::Hole, ev, Some(fault)));
    let severity = if insert.is_some() {
        Severity::Corruption
    } else {
        Severity::StaleHole
    };
    Some(Finding::on_page(
        Rule::HoleLoadAfterAllocate,
        severity,
        ev,
        p,
        steps,
    ))
}
