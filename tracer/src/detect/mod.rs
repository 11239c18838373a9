//! Findings rules of DESIGN.md §2, one file per rule.
//!
//! CONTRACT (shared by the dashboard, metrics and trace-file sinks): the
//! `Finding` type is what every sink receives. The detector helper fills in
//! the rules; keep these types' fields (add, don't break).

use serde::{Deserialize, Serialize};

use crate::event::{Body, Comm, Event, PageKey};
use crate::timeline::{FaultState, InodeRef, Lookup, Rec, Timelines};

pub mod heal;
pub mod hole_load_after_allocate;
pub mod insert_after_invalidate;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    HoleLoadAfterAllocate,
    InsertAfterInvalidate,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::HoleLoadAfterAllocate => "hole_load_after_allocate",
            Rule::InsertAfterInvalidate => "insert_after_invalidate",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// hole_load_after_allocate with another actor's real mapping inside (t_alloc, t_hole).
    Corruption,
    /// hole_load_after_allocate without such a mapping.
    StaleHole,
    /// insert_after_invalidate: blocks mapped after they were freed.
    StaleMapping,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Corruption => "corruption",
            Severity::StaleHole => "stale_hole",
            Severity::StaleMapping => "stale_mapping",
        }
    }
}

/// The role an event plays in a finding's ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Lookup,
    Alloc,
    Insert,
    Hole,
    Invalidate,
}

/// One event of a finding's ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub role: Role,
    pub ts: u64,
    pub tid: u32,
    pub pid: u32,
    pub cpu: u32,
    pub comm: Comm,
    /// Fault id; `None` for an actor outside a fault (write(2), truncate).
    pub fault: Option<u64>,
}

/// A finding names one page; a race spanning many pages gives one per page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    pub page: PageKey,
    /// Time the ordering completed (its last step).
    pub ts: u64,
    /// Every event of the ordering, in time order.
    pub steps: Vec<Step>,
}

impl Step {
    /// The step an event plays (its task fields as recorded).
    pub fn of_event(role: Role, ev: &Event, fault: Option<u64>) -> Self {
        Self {
            role,
            ts: ev.ts,
            tid: ev.tid,
            pid: ev.pid,
            cpu: ev.cpu,
            comm: ev.comm,
            fault,
        }
    }

    /// Fault F's lookup, where every finding's ordering starts.
    pub(crate) fn of_lookup(f: &FaultState, l: &Lookup, fault: u64) -> Self {
        Self {
            role: Role::Lookup,
            ts: l.ts,
            tid: l.tid,
            pid: f.pid,
            cpu: l.cpu,
            comm: f.comm,
            fault: Some(fault),
        }
    }
}

/// A step from a compact per-page record; pid and comm come from the fault
/// if it is still running, else from the task table (best effort: 0 / "").
pub(crate) fn step_of(tl: &Timelines, role: Role, r: &Rec) -> Step {
    let (pid, comm) = match r.fault().and_then(|f| tl.faults.get(&f)) {
        Some(f) => (f.pid, f.comm),
        None => tl.task(r.tid),
    };
    Step {
        role,
        ts: r.ts,
        tid: r.tid,
        pid,
        cpu: u32::from(r.cpu),
        comm,
        fault: r.fault(),
    }
}

impl Finding {
    /// A finding on page `p` of the inode of `ev`, the event that completed
    /// the ordering (at its time).
    pub(crate) fn on_page(
        rule: Rule,
        severity: Severity,
        ev: &Event,
        p: u64,
        steps: Vec<Step>,
    ) -> Self {
        Self {
            rule,
            severity,
            page: PageKey {
                dev: ev.dev,
                ino: ev.ino,
                pgoff: p,
            },
            ts: ev.ts,
            steps,
        }
    }

    /// The first step playing `role`.
    pub fn step(&self, role: Role) -> Option<&Step> {
        self.steps.iter().find(|s| s.role == role)
    }

    /// The fault the finding is about (the one that looked up, then loaded
    /// a hole or inserted).
    pub fn fault(&self) -> Option<u64> {
        self.step(Role::Lookup).and_then(|s| s.fault)
    }
}

/// Judge one event against both rules, page by page, **before** it is
/// recorded in the timelines (so an event never pairs with itself). Only hole
/// loads and inserts complete an ordering; everything else returns at once.
#[inline]
pub fn judge(tl: &Timelines, ino: InodeRef, ev: &Event, out: &mut impl FnMut(Finding)) {
    let (fault, pgoff, size, hole) = match ev.body {
        Body::LoadHole { fault, pgoff, size } => (fault, pgoff, size, true),
        Body::InsertMapping {
            fault, pgoff, size, ..
        } => (fault, pgoff, size, false),
        _ => return,
    };
    // No lookup by this fault: nothing to judge (judged by the id on the
    // events, whether or not a fault_begin was seen).
    let Some(f) = tl.faults.get(&fault) else {
        return;
    };
    // Fast path: an ordering needs an allocation (or a freeing invalidation)
    // on this inode after one of F's lookups; most hole loads and inserts
    // have none, and then no page of the span needs looking at.
    let Some(first_lookup) = f
        .lookups
        .iter()
        .filter(|l| l.ino == ino)
        .map(|l| l.ts)
        .min()
    else {
        return;
    };
    let inode = tl.inode(ino);
    let last = if hole {
        inode.last_alloc
    } else {
        inode.last_free
    };
    if last.is_none_or(|t| t <= first_lookup) {
        return;
    }
    let (first, n) = size.span(pgoff);
    for p in first..first + n {
        let found = if hole {
            hole_load_after_allocate::check(tl, f, fault, ev, ino, p)
        } else {
            insert_after_invalidate::check(tl, f, fault, ev, ino, p)
        };
        if let Some(x) = found {
            out(x);
        }
    }
}
