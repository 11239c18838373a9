//! JSON Lines output: events, findings, late events and a summary, one
//! object per line (DESIGN.md §3).
//!
//! A finding line names the page and the ids, tids and timestamps of every
//! event of its ordering, flattened so `jq` can select on them, plus the
//! full `steps`:
//!
//! ```text
//! {"kind":"finding","rule":"hole_load_after_allocate","severity":"corruption",
//!  "dev":"259:0","ino":12,"pgoff":0,"ts":300,"fault":1,"tid":100,
//!  "t_lookup":100,"t_alloc":200,"alloc_fault":2,"alloc_tid":200,
//!  "t_insert":250,"insert_fault":2,"insert_tid":200,"t_hole":300,"steps":[...]}
//! ```
//!
//! `insert_after_invalidate` carries `t_lookup`, `t_inv`, `inv_tid`, `t_ins`.
//! A `write(2)` allocation has `"alloc_fault":null` and `"alloc_actor":"write"`.

use std::io::{self, Write};

use serde::Serialize;

use crate::detect::{Finding, Role, Rule, Severity, Step};
use crate::event::{Dev, Event, KIND_NAMES};
use crate::pipeline::{Sink, Stats};

/// The JSON form of a finding (a report type, separate from the core struct).
#[derive(Serialize)]
pub struct FindingLine<'a> {
    pub kind: &'static str,
    pub rule: &'static str,
    pub severity: &'static str,
    pub dev: Dev,
    pub ino: u64,
    pub pgoff: u64,
    /// When the ordering completed.
    pub ts: u64,
    pub fault: Option<u64>,
    pub tid: Option<u32>,
    pub t_lookup: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_alloc: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alloc_fault: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alloc_tid: Option<u32>,
    /// "fault" or "write" (a `write(2)` outside any fault).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alloc_actor: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_insert: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insert_fault: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insert_tid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_hole: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_inv: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inv_tid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_ins: Option<u64>,
    pub steps: &'a [Step],
}

impl<'a> FindingLine<'a> {
    pub fn new(f: &'a Finding) -> Self {
        let lookup = f.step(Role::Lookup);
        let alloc = f.step(Role::Alloc);
        let hole_rule = f.rule == Rule::HoleLoadAfterAllocate;
        // In hole_load_after_allocate the insert is another actor's; in
        // insert_after_invalidate it is F's own (t_ins).
        let other_insert = if hole_rule {
            f.step(Role::Insert)
        } else {
            None
        };
        let own_insert = if hole_rule {
            None
        } else {
            f.step(Role::Insert)
        };
        let inv = f.step(Role::Invalidate);
        Self {
            kind: "finding",
            rule: f.rule.name(),
            severity: f.severity.name(),
            dev: f.page.dev,
            ino: f.page.ino,
            pgoff: f.page.pgoff,
            ts: f.ts,
            fault: lookup.and_then(|s| s.fault),
            tid: lookup.map(|s| s.tid),
            t_lookup: lookup.map(|s| s.ts),
            t_alloc: alloc.map(|s| s.ts),
            alloc_fault: alloc.map(|s| s.fault),
            alloc_tid: alloc.map(|s| s.tid),
            alloc_actor: alloc.map(|s| if s.fault.is_some() { "fault" } else { "write" }),
            t_insert: other_insert.map(|s| s.ts),
            insert_fault: other_insert.map(|s| s.fault),
            insert_tid: other_insert.map(|s| s.tid),
            t_hole: f.step(Role::Hole).map(|s| s.ts),
            t_inv: inv.map(|s| s.ts),
            inv_tid: inv.map(|s| s.tid),
            t_ins: own_insert.map(|s| s.ts),
            steps: &f.steps,
        }
    }
}

/// Findings by severity, for summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SeverityCounts {
    pub corruption: u64,
    pub stale_hole: u64,
    pub stale_mapping: u64,
}

impl SeverityCounts {
    pub fn add(&mut self, s: Severity) {
        match s {
            Severity::Corruption => self.corruption += 1,
            Severity::StaleHole => self.stale_hole += 1,
            Severity::StaleMapping => self.stale_mapping += 1,
        }
    }
}

#[derive(Serialize)]
struct SummaryLine<'a> {
    kind: &'static str,
    events: u64,
    pages: u64,
    faults: u64,
    late: u64,
    lost: u64,
    evicted: u64,
    findings: u64,
    /// write(2) stale holes the write tore down itself (`detect::heal`): not findings.
    healed: u64,
    bad_input: u64,
    severity: SeverityCounts,
    by_kind: serde_json::Map<String, serde_json::Value>,
    first_ts: u64,
    last_ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct LateLine<'a> {
    kind: &'static str,
    event: &'a Event,
}

/// Writes JSON Lines. Sink methods cannot fail, so the first write error is
/// kept and returned by [`JsonlSink::finish`] (a closed pipe ends output).
pub struct JsonlSink<W: Write> {
    out: W,
    /// Also write every released event (off: findings, late and summary only).
    pub events: bool,
    /// Also write each late event as `{"kind":"late","event":{...}}`.
    pub late: bool,
    pub severity: SeverityCounts,
    err: Option<io::Error>,
}

impl<W: Write> JsonlSink<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            events: false,
            late: true,
            severity: SeverityCounts::default(),
            err: None,
        }
    }

    fn line<T: Serialize>(&mut self, v: &T) {
        if self.err.is_some() {
            return;
        }
        let r = serde_json::to_writer(&mut self.out, v)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = r {
            self.err = Some(e);
        }
    }

    /// The summary line; `error` names why the input ended early, if it did.
    pub fn summary(&mut self, stats: &Stats, error: Option<&str>) {
        let line = SummaryLine {
            kind: "summary",
            events: stats.events,
            pages: stats.pages,
            faults: stats.faults,
            late: stats.late,
            lost: stats.lost,
            evicted: stats.evicted,
            findings: stats.findings,
            healed: stats.healed,
            bad_input: stats.bad_input,
            severity: self.severity,
            by_kind: KIND_NAMES
                .iter()
                .zip(stats.by_kind)
                .map(|(k, n)| ((*k).to_owned(), n.into()))
                .collect(),
            first_ts: stats.first_ts,
            last_ts: stats.last_ts,
            error,
        };
        self.line(&line);
    }

    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Sink for JsonlSink<W> {
    fn on_event(&mut self, ev: &Event) {
        if self.events {
            self.line(ev);
        }
    }

    fn on_finding(&mut self, f: &Finding) {
        self.severity.add(f.severity);
        self.line(&FindingLine::new(f));
    }

    fn on_late(&mut self, ev: &Event) {
        if self.late {
            self.line(&LateLine {
                kind: "late",
                event: ev,
            });
        }
    }
}
