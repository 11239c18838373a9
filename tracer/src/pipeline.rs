//! The one road every use walks: events (from any source) -> reorder window
//! -> per-page timelines + detector -> sinks.
//!
//! CONTRACT shared by every source and sink (dashboard, metrics, trace file,
//! JSON Lines). Keep these signatures; add, don't break.

use serde::Serialize;

use crate::detect::Finding;
use crate::event::Event;

/// Something that receives the pipeline's output. Every method has a default
/// so a sink implements only what it needs.
pub trait Sink {
    /// An event released by the reorder window, in timestamp order.
    fn on_event(&mut self, _ev: &Event) {}
    /// A finding, the moment its ordering completes.
    fn on_finding(&mut self, _f: &Finding) {}
    /// An event that arrived later than the window (counted in `Stats::late`;
    /// still offered here so a trace writer keeps it).
    fn on_late(&mut self, _ev: &Event) {}
}

impl Sink for () {}

/// Counters every output reports (summary lines, dashboard, metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Events received (including late ones and `lost` records).
    pub events: u64,
    /// Events by kind, indexed by `Body::kind_index` (names in `event::KIND_NAMES`).
    pub by_kind: [u64; 7],
    /// Distinct pages ever seen.
    pub pages: u64,
    /// Distinct faults (fault_begin ids).
    pub faults: u64,
    /// Events that arrived later than the reorder window.
    pub late: u64,
    /// Events the kernel side could not deliver (sum of `lost` counts).
    pub lost: u64,
    /// Pages evicted from the timeline store by the page cap.
    pub evicted: u64,
    pub findings: u64,
    /// Input lines skipped with `--skip-bad`.
    pub bad_input: u64,
    /// Timestamp of the first and last event released.
    pub first_ts: u64,
    pub last_ts: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Reorder window in nanoseconds of kernel time.
    pub window_ns: u64,
    /// Most events held in the window at once.
    pub window_events: usize,
    /// Most pages with a timeline; least recently used pages are evicted beyond it.
    pub max_pages: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self { window_ns: 100_000_000, window_events: 1 << 20, max_pages: 10_000_000 }
    }
}
