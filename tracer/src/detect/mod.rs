//! Findings rules of DESIGN.md §2, one file per rule.
//!
//! CONTRACT (shared by the dashboard, metrics and trace-file sinks): the
//! `Finding` type is what every sink receives. The detector helper fills in
//! the rules; keep these types' fields (add, don't break).

use serde::{Deserialize, Serialize};

use crate::event::{Comm, PageKey};

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
