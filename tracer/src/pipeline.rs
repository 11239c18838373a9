//! The one road every use walks: events (from any source) -> reorder window
//! -> per-page timelines + detector -> sinks.
//!
//! CONTRACT shared by every source and sink (dashboard, metrics, trace file,
//! JSON Lines). Keep these signatures; add, don't break.

use serde::Serialize;

use crate::detect::{self, heal::WriteHeal, Finding};
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
    /// `write(2)` findings withdrawn because the write tore the hole page
    /// down after the load (`detect::heal`).
    pub healed: u64,
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
        Self {
            window_ns: 100_000_000,
            window_events: 1 << 20,
            max_pages: 10_000_000,
        }
    }
}

/// The pipeline: reorder window -> per-page timelines + detector -> sink.
/// Live (`watch`, `top`, `serve`) and postmortem (`analyze`, `timeline`) run
/// this same code.
pub struct Pipeline {
    cfg: PipelineConfig,
    window: Reorder,
    judge: Judge,
    /// Page tags of the events about to be released, by release number
    /// modulo [`AHEAD_RING`] (see [`Pipeline::prefetch_ahead`]).
    ahead: [Option<u32>; AHEAD_RING],
    /// Events released by `push`, `advance` and `finish` so far.
    seq: usize,
}

/// The judging side: timelines, rules and the counters they keep. Apart
/// from the window, so an event is judged where the window holds it.
struct Judge {
    tl: Timelines,
    stats: Stats,
    heal: WriteHeal,
    released_any: bool,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Self {
        Self {
            window: Reorder::new(cfg.window_ns, cfg.window_events),
            judge: Judge {
                tl: Timelines::new(cfg.max_pages),
                stats: Stats::default(),
                heal: WriteHeal::default(),
                released_any: false,
            },
            cfg,
            ahead: [None; AHEAD_RING],
            seq: 0,
        }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// Take one event from any source, in any order; releases (and judges)
    /// whatever the window no longer needs to hold.
    #[inline]
    pub fn push<S: Sink + ?Sized>(&mut self, ev: Event, sink: &mut S) {
        let st = &mut self.judge.stats;
        st.events += 1;
        st.by_kind[ev.body.kind_index()] += 1;
        if let Body::Lost { count } = ev.body {
            st.lost += count;
        }
        match self.window.push(ev) {
            Push::Held => {}
            Push::Late(ev) => {
                // Too late to be put in order: counted and handed on, not judged.
                self.judge.stats.late += 1;
                sink.on_late(&ev);
            }
        }
        while self.window.ready() {
            self.release_front(sink);
        }
    }

    /// Judge the window's front event where it lies, then release it.
    #[inline]
    fn release_front<S: Sink + ?Sized>(&mut self, sink: &mut S) {
        self.prefetch_ahead();
        if let Some(ev) = self.window.front() {
            self.judge.process(ev, sink);
        }
        self.window.release_front();
    }

    /// Events released in order reach their pages at random: start loading
    /// the index entry of the event `AHEAD_INDEX` places behind, and the slot
    /// of the one `AHEAD_SLOT` behind (its entry was asked for earlier, and
    /// its tag kept from then), so cache misses overlap instead of stalling
    /// one after another. A window that changed in between (an insert near
    /// the front) leaves a stale tag: a wasted prefetch, never a wrong result.
    #[inline]
    fn prefetch_ahead(&mut self) {
        let s = self.seq;
        self.seq = s.wrapping_add(1);
        self.ahead[(s + AHEAD_INDEX) % AHEAD_RING] = self
            .window
            .peek(AHEAD_INDEX)
            .and_then(|e| self.judge.tl.prefetch_index(e));
        if let Some(tag) = self.ahead[(s + AHEAD_SLOT) % AHEAD_RING] {
            self.judge.tl.prefetch_slot(tag);
        }
    }

    /// Take the arrival side (reorder window and arrival counters) out, to run
    /// it on another thread ([`Arrivals`]); give it back with
    /// [`Pipeline::put_arrivals`] before `push`, `advance` or `finish`.
    pub fn take_arrivals(&mut self) -> Arrivals {
        let window = std::mem::replace(&mut self.window, Reorder::new(self.cfg.window_ns, 1));
        Arrivals {
            window,
            counts: ArrivalCounts::default(),
        }
    }

    /// Put the arrival side back, adding what it counted to [`Pipeline::stats`].
    pub fn put_arrivals(&mut self, a: Arrivals) {
        self.window = a.window;
        a.counts.add_to(&mut self.judge.stats);
    }

    /// Judge one item the arrival side released: exactly what
    /// [`Pipeline::push`] does with it (a late event goes to the sink, a
    /// released one through the timelines and rules).
    #[inline]
    pub fn apply_released<S: Sink + ?Sized>(&mut self, r: &Released, sink: &mut S) {
        self.judge.apply_released(r, sink);
    }

    /// [`Pipeline::apply_released`] of each item of a batch in order, with
    /// the pages of items a few places ahead prefetched (see `prefetch_ahead`).
    pub fn apply_batch<S: Sink + ?Sized>(&mut self, batch: &[Released], sink: &mut S) {
        self.apply_batch_then(batch, sink, |_, _| {});
    }

    /// [`Pipeline::apply_batch`], calling `after(k, sink)` once item `k` is
    /// judged (a live display copies a finding's context out of the batch
    /// there, before the next item changes anything).
    #[inline]
    pub fn apply_batch_then<S: Sink + ?Sized>(
        &mut self,
        batch: &[Released],
        sink: &mut S,
        mut after: impl FnMut(usize, &mut S),
    ) {
        // The first items' index entries are asked for before the loop starts.
        let mut ahead = [None; AHEAD_RING];
        for (k, a) in ahead.iter_mut().enumerate().take(AHEAD_INDEX) {
            *a = batch_tag(&self.judge.tl, batch, k);
        }
        for (k, r) in batch.iter().enumerate() {
            let tl = &self.judge.tl;
            ahead[(k + AHEAD_INDEX) % AHEAD_RING] = batch_tag(tl, batch, k + AHEAD_INDEX);
            if let Some(t) = ahead[(k + AHEAD_SLOT) % AHEAD_RING] {
                tl.prefetch_slot(t);
            }
            self.judge.apply_released(r, sink);
            after(k, sink);
        }
    }

    /// Live sources: release events older than `now_ts - window` even when
    /// nothing newer arrives. `now_ts` is kernel monotonic time.
    pub fn advance<S: Sink + ?Sized>(&mut self, now_ts: u64, sink: &mut S) {
        while self.window.older_than(now_ts) {
            self.release_front(sink);
        }
        let Judge { heal, stats, .. } = &mut self.judge;
        if !heal.is_empty() {
            // Everything older than this has been released: a teardown that
            // could still heal a held finding would be newer.
            heal.expire(now_ts.saturating_sub(self.cfg.window_ns), &mut |f| {
                stats.findings += 1;
                sink.on_finding(&f);
            });
        }
    }

    /// End of input: release and judge everything still held.
    pub fn finish<S: Sink + ?Sized>(&mut self, sink: &mut S) {
        while !self.window.is_empty() {
            self.release_front(sink);
        }
        let Judge { heal, stats, .. } = &mut self.judge;
        heal.drain(&mut |f| {
            stats.findings += 1;
            sink.on_finding(&f);
        });
    }

    /// Findings held for a write(2)'s own teardown right now (`detect::heal`).
    pub fn held(&self) -> usize {
        self.judge.heal.len()
    }

    pub fn stats(&self) -> &Stats {
        &self.judge.stats
    }

    /// A bad input record skipped (`--skip-bad`).
    pub fn note_bad_input(&mut self) {
        self.judge.stats.bad_input += 1;
    }

    /// Events held in the reorder window right now.
    pub fn pending(&self) -> usize {
        self.window.len()
    }

    /// Keep the full history of one page from now on (see [`Pipeline::timeline`]).
    pub fn watch(&mut self, key: PageKey) {
        self.judge.tl.watch(key);
    }

    /// Stop keeping a page's history ([`Pipeline::watch`]); what was kept is dropped.
    pub fn unwatch(&mut self, key: &PageKey) {
        self.judge.tl.unwatch(key);
    }

    /// The full history of a watched page: every released event covering it
    /// (ranges, PMD spans and invalidations to EOF included), in order.
    pub fn timeline(&self, key: &PageKey) -> Option<&[Event]> {
        self.judge.tl.history(key)
    }

    /// The compact state kept for any page (no history).
    pub fn page(&self, key: &PageKey) -> Option<PageView> {
        self.judge.tl.page_view(key)
    }

    /// The timelines store (read-only: dashboards, tests).
    pub fn timelines(&self) -> &Timelines {
        &self.judge.tl
    }
}

impl Judge {
    #[inline]
    fn apply_released<S: Sink + ?Sized>(&mut self, r: &Released, sink: &mut S) {
        match r {
            Released::Event(ev) => self.process(ev, sink),
            Released::Late(ev) => sink.on_late(ev),
        }
    }

    #[inline]
    fn process<S: Sink + ?Sized>(&mut self, ev: &Event, sink: &mut S) {
        if !self.released_any {
            self.released_any = true;
            self.stats.first_ts = ev.ts;
        }
        self.stats.last_ts = ev.ts;
        if !self.heal.is_empty() {
            // Raised before the event that shows their deadline passed.
            let stats = &mut self.stats;
            self.heal.expire(ev.ts, &mut |f| {
                stats.findings += 1;
                sink.on_finding(&f);
            });
            self.heal.on_event(ev);
            stats.healed = self.heal.healed();
        }
        sink.on_event(ev);
        let mut ino = None;
        if matches!(ev.body, Body::LoadHole { .. } | Body::InsertMapping { .. }) {
            let i = self.tl.inode_ref(ev.dev, ev.ino);
            ino = Some(i);
            let (stats, heal) = (&mut self.stats, &mut self.heal);
            detect::judge(&self.tl, i, ev, &mut |f| {
                if let Some(f) = heal.hold(f) {
                    stats.findings += 1;
                    sink.on_finding(&f);
                }
            });
        }
        self.tl.apply_with(ev, ino);
        self.stats.pages = self.tl.pages.pages_seen;
        self.stats.evicted = self.tl.pages.evicted;
        self.stats.faults = self.tl.faults_seen;
    }
}

/// How far ahead in release order the pipeline prefetches an event's index
/// entry, and then its slot (tuned on the synthetic workload: far enough for
/// a DRAM miss to land, near enough to stay in cache).
const AHEAD_INDEX: usize = 12;
const AHEAD_SLOT: usize = 6;
/// Tags kept between the two stages: a power of two above `AHEAD_INDEX`.
const AHEAD_RING: usize = 16;

/// First prefetch stage for batch item `k`, if it is an event in time.
#[inline]
fn batch_tag(tl: &Timelines, batch: &[Released], k: usize) -> Option<u32> {
    match batch.get(k) {
        Some(Released::Event(e)) => tl.prefetch_index(e),
        _ => None,
    }
}

/// What the arrival side hands to the judging side, in the order
/// [`Pipeline::push`] would have acted on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// Released by the window, in timestamp order: judge and record it.
    Event(Event),
    /// Arrived later than the window: counted, handed to `Sink::on_late`, not judged.
    Late(Event),
}

/// The arrival side of a [`Pipeline`]: the reorder window and the counters
/// kept as events arrive. [`Pipeline::push`] is `Arrivals::push` followed by
/// [`Pipeline::apply_released`] of each item; split like this, the window can
/// run on the thread that decodes a trace file, a step ahead of the rules
/// (`analyze` on two cores). Taken with [`Pipeline::take_arrivals`].
pub struct Arrivals {
    window: Reorder,
    counts: ArrivalCounts,
}

/// The counters the arrival side keeps, at one moment. While the arrival
/// side runs elsewhere, the judging side's [`Pipeline::stats`] lacks them: a
/// live display (`top`) adds the latest copy ([`ArrivalCounts::add_to`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArrivalCounts {
    pub events: u64,
    pub by_kind: [u64; 7],
    pub lost: u64,
    pub late: u64,
}

impl ArrivalCounts {
    /// Add these counts to `st` (whose arrival counters are then whole).
    pub fn add_to(&self, st: &mut Stats) {
        st.events += self.events;
        for (s, n) in st.by_kind.iter_mut().zip(self.by_kind) {
            *s += n;
        }
        st.lost += self.lost;
        st.late += self.late;
    }
}

impl Arrivals {
    /// What was counted so far.
    pub fn counts(&self) -> ArrivalCounts {
        self.counts
    }

    /// End of input: append everything the window still holds, in order
    /// (what [`Pipeline::finish`] would release from it).
    pub fn finish(&mut self, out: &mut Vec<Released>) {
        while let Some(ev) = self.window.pop() {
            out.push(Released::Event(ev));
        }
    }

    /// Take one event; append what it makes ready to `out`.
    #[inline]
    pub fn push(&mut self, ev: Event, out: &mut Vec<Released>) {
        let c = &mut self.counts;
        c.events += 1;
        c.by_kind[ev.body.kind_index()] += 1;
        if let Body::Lost { count } = ev.body {
            c.lost += count;
        }
        if let Push::Late(ev) = self.window.push(ev) {
            c.late += 1;
            out.push(Released::Late(ev));
        }
        while let Some(ev) = self.window.pop_ready() {
            out.push(Released::Event(ev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Rng, Workload};

    /// Everything a sink is told, in order.
    #[derive(Default, PartialEq, Debug)]
    struct Record(Vec<(u8, u64, u64)>);

    impl Sink for Record {
        fn on_event(&mut self, ev: &Event) {
            self.0.push((0, ev.ts, ev.tid.into()));
        }
        fn on_finding(&mut self, f: &Finding) {
            self.0.push((1, f.ts, f.page.pgoff));
        }
        fn on_late(&mut self, ev: &Event) {
            self.0.push((2, ev.ts, ev.tid.into()));
        }
    }

    /// Run `events` through `push`, and through the split pipeline
    /// (`analyze` on trace files: arrivals on one thread, rules on another,
    /// items in uneven batches); the sink must be told exactly the same, late
    /// events and findings included, and the counters must agree.
    fn both_ways(events: &[Event], cfg: PipelineConfig) -> Stats {
        let mut a = Pipeline::new(cfg);
        let mut ra = Record::default();
        for e in events {
            a.push(*e, &mut ra);
        }
        a.finish(&mut ra);

        let mut b = Pipeline::new(cfg);
        let mut rb = Record::default();
        let mut arr = b.take_arrivals();
        let mut out = Vec::new();
        for (k, e) in events.iter().enumerate() {
            arr.push(*e, &mut out);
            if k % 97 == 0 {
                for r in out.drain(..) {
                    b.apply_released(&r, &mut rb);
                }
            }
        }
        for r in out.drain(..) {
            b.apply_released(&r, &mut rb);
        }
        // The window drained on the arrival side (`top`) or by `finish` (`analyze`): the same.
        let mut c = Pipeline::new(cfg);
        let mut rc = Record::default();
        let mut arr_c = c.take_arrivals();
        for e in events {
            arr_c.push(*e, &mut out);
        }
        arr_c.finish(&mut out);
        for r in out.drain(..) {
            c.apply_released(&r, &mut rc);
        }
        c.put_arrivals(arr_c);
        assert_eq!(c.pending(), 0);
        c.finish(&mut rc);
        b.put_arrivals(arr);
        b.finish(&mut rb);
        assert_eq!(a.stats(), b.stats());
        assert_eq!(ra, rb);
        assert_eq!(a.stats(), c.stats());
        assert_eq!(ra, rc);
        a.stats().clone()
    }

    #[test]
    fn split_pipeline_equals_push_with_findings() {
        let events: Vec<Event> = include_str!("../tests/data/race.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| crate::source::jsonl::parse_line(l).expect("race.jsonl parses"))
            .collect();
        let st = both_ways(&events, PipelineConfig::default());
        assert!(st.findings > 0, "{st:?}");
    }

    /// 300 events each swapped with one up to 400 places later (a few us;
    /// the tests' window is 2 us): some arrive late.
    fn swap_nearby(events: &mut [Event], seed: u64) {
        let mut rng = Rng::new(seed);
        for _ in 0..300 {
            let i = rng.below(events.len() as u64 - 400) as usize;
            events.swap(i, i + 1 + rng.below(399) as usize);
        }
    }

    /// `apply_batch` (with its prefetching) tells the sink exactly what
    /// `apply_released` item by item does, evictions and late events included.
    #[test]
    fn apply_batch_equals_apply_released() {
        let mut events = Workload {
            inodes: 3,
            pages_per_inode: 200,
            ..Workload::default()
        }
        .generate(30_000);
        swap_nearby(&mut events, 11);
        let cfg = PipelineConfig {
            window_ns: 2_000,
            window_events: 64,
            max_pages: 50,
        };
        let run = |batch: bool| {
            let mut p = Pipeline::new(cfg);
            let mut rec = Record::default();
            let mut arr = p.take_arrivals();
            let mut out = Vec::new();
            for (k, e) in events.iter().enumerate() {
                arr.push(*e, &mut out);
                if k % 97 == 0 {
                    if batch {
                        p.apply_batch(&out, &mut rec);
                    } else {
                        out.iter().for_each(|r| p.apply_released(r, &mut rec));
                    }
                    out.clear();
                }
            }
            p.apply_batch(&out, &mut rec);
            p.put_arrivals(arr);
            p.finish(&mut rec);
            (p.stats().clone(), rec)
        };
        let (a, b) = (run(true), run(false));
        assert!(a.0.late > 0 && a.0.evicted > 0, "{:?}", a.0);
        assert_eq!(a, b);
    }

    #[test]
    fn split_pipeline_equals_push_with_late_events() {
        let mut events = Workload {
            inodes: 2,
            pages_per_inode: 64,
            ..Workload::default()
        }
        .generate(30_000);
        swap_nearby(&mut events, 7);
        let st = both_ways(
            &events,
            PipelineConfig {
                window_ns: 2_000,
                window_events: 64,
                max_pages: 20,
            },
        );
        assert!(st.late > 0 && st.evicted > 0, "{st:?}");
    }
}
