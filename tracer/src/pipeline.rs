//! The one road every use walks: events (from any source) -> reorder window
//! -> per-page timelines + detector -> sinks.
//!
//! CONTRACT shared by every source and sink (dashboard, metrics, trace file,
//! JSON Lines). Keep these signatures; add, don't break.

use serde::Serialize;

use crate::detect::{self, Finding};
use crate::event::{Body, Event, PageKey};
use crate::reorder::{Push, Reorder};
use crate::timeline::{PageView, Timelines};

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

/// The pipeline: reorder window -> per-page timelines + detector -> sink.
/// Live (`watch`, `top`, `serve`) and postmortem (`analyze`, `timeline`) run
/// this same code.
pub struct Pipeline {
    cfg: PipelineConfig,
    window: Reorder,
    tl: Timelines,
    stats: Stats,
    released_any: bool,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Self {
        Self { window: Reorder::new(cfg.window_ns, cfg.window_events), tl: Timelines::new(cfg.max_pages), cfg, stats: Stats::default(), released_any: false }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// Take one event from any source, in any order; releases (and judges)
    /// whatever the window no longer needs to hold.
    #[inline]
    pub fn push<S: Sink + ?Sized>(&mut self, ev: Event, sink: &mut S) {
        self.stats.events += 1;
        self.stats.by_kind[ev.body.kind_index()] += 1;
        if let Body::Lost { count } = ev.body {
            self.stats.lost += count;
        }
        match self.window.push(ev) {
            Push::Held => {}
            Push::Late(ev) => {
                // Too late to be put in order: counted and handed on, not judged.
                self.stats.late += 1;
                sink.on_late(&ev);
            }
        }
        while let Some(ev) = self.window.pop_ready() {
            self.process(&ev, sink);
        }
    }

    /// Live sources: release events older than `now_ts - window` even when
    /// nothing newer arrives. `now_ts` is kernel monotonic time.
    pub fn advance<S: Sink + ?Sized>(&mut self, now_ts: u64, sink: &mut S) {
        while let Some(ev) = self.window.pop_older_than(now_ts) {
            self.process(&ev, sink);
        }
    }

    /// End of input: release and judge everything still held.
    pub fn finish<S: Sink + ?Sized>(&mut self, sink: &mut S) {
        while let Some(ev) = self.window.pop() {
            self.process(&ev, sink);
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A bad input record skipped (`--skip-bad`).
    pub fn note_bad_input(&mut self) {
        self.stats.bad_input += 1;
    }

    /// Events held in the reorder window right now.
    pub fn pending(&self) -> usize {
        self.window.len()
    }

    /// Keep the full history of one page from now on (see [`Pipeline::timeline`]).
    pub fn watch(&mut self, key: PageKey) {
        self.tl.watch(key);
    }

    /// The full history of a watched page: every released event covering it
    /// (ranges, PMD spans and invalidations to EOF included), in order.
    pub fn timeline(&self, key: &PageKey) -> Option<&[Event]> {
        self.tl.history(key)
    }

    /// The compact state kept for any page (no history).
    pub fn page(&self, key: &PageKey) -> Option<PageView> {
        self.tl.page_view(key)
    }

    /// The timelines store (read-only: dashboards, tests).
    pub fn timelines(&self) -> &Timelines {
        &self.tl
    }

    #[inline]
    fn process<S: Sink + ?Sized>(&mut self, ev: &Event, sink: &mut S) {
        if !self.released_any {
            self.released_any = true;
            self.stats.first_ts = ev.ts;
        }
        self.stats.last_ts = ev.ts;
        sink.on_event(ev);
        if matches!(ev.body, Body::LoadHole { .. } | Body::InsertMapping { .. }) {
            let ino = self.tl.inode_ref(ev.dev, ev.ino);
            let stats = &mut self.stats;
            detect::judge(&self.tl, ino, ev, &mut |f| {
                stats.findings += 1;
                sink.on_finding(&f);
            });
        }
        self.tl.apply(ev);
        self.stats.pages = self.tl.pages.pages_seen;
        self.stats.evicted = self.tl.pages.evicted;
        self.stats.faults = self.tl.faults_seen;
    }
}
