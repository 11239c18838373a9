//! What the pipeline thread publishes to the UI: the [`Dashboard`] sink
//! aggregates events and findings as they leave the pipeline, and
//! [`Dashboard::snapshot`] copies the aggregates into an immutable
//! [`Snapshot`] a few times a second. The UI only ever reads a snapshot,
//! so drawing never holds anything the pipeline needs (trippy's model).
//!
//! Per event the sink does array and hash-map updates only; the maps grow
//! (amortised) when a new page, file or fault id is first seen and are
//! capped so a long run cannot exhaust memory.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

// hashbrown's default hasher (foldhash) is several times cheaper than std's SipHash
// on these small keys, and this sink runs per event.
use hashbrown::HashMap;
use hdrhistogram::Histogram;

use crate::detect::Finding;
use crate::event::{Body, Comm, Dev, Event, MapResult, PageKey, Size};
use crate::pipeline::{Released, Sink, Stats};

/// Width of one rate bucket, in nanoseconds of trace (kernel) time.
pub const BUCKET_NS: u64 = 1_000_000_000;
/// Rate buckets kept (the sparklines show the newest that fit).
pub const BUCKETS: usize = 120;
/// Findings kept for the list (newest); `Stats::findings` counts all.
pub const MAX_FINDINGS: usize = 1000;
/// Rows of the hot pages / hot files tables in a snapshot.
pub const HOT_ROWS: usize = 50;
/// Pages and files tracked for the hot tables; beyond this, new ones are only counted.
const MAX_TRACKED: usize = 1 << 20;
/// Faults awaiting their end; beyond this the oldest are dropped (counted as unmatched).
const MAX_INFLIGHT: usize = 1 << 16;
/// Latency histogram buckets: bucket i holds latencies in [2^(i-1), 2^i) ns.
pub const LAT_BUCKETS: usize = 40;

/// The series drawn in the rates pane, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    PteFaults,
    PmdFaults,
    ReadFaults,
    WriteFaults,
    HoleLoads,
    Allocations,
    Inserts,
    Invalidations,
    Lost,
}

impl Series {
    pub const ALL: [Series; 9] = [
        Series::PteFaults,
        Series::PmdFaults,
        Series::ReadFaults,
        Series::WriteFaults,
        Series::HoleLoads,
        Series::Allocations,
        Series::Inserts,
        Series::Invalidations,
        Series::Lost,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Series::PteFaults => "PTE faults",
            Series::PmdFaults => "PMD faults",
            Series::ReadFaults => "read faults",
            Series::WriteFaults => "write faults",
            Series::HoleLoads => "hole loads",
            Series::Allocations => "allocations",
            Series::Inserts => "inserts",
            Series::Invalidations => "invalidations",
            Series::Lost => "lost",
        }
    }
}

/// Where events come from and what the kernel side looks like; fixed for a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceInfo {
    /// "replay race.jsonl x10", "live".
    pub label: String,
    /// Kernel release, or why there is none.
    pub kernel: String,
    /// Attach backend(s) in use.
    pub backend: String,
    /// The attach plan in one line: what was found, substituted, inferred, missing.
    pub plan: String,
}

/// Where the feeding thread is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedState {
    Running,
    /// Replay ended; the screen holds the final state. Wall time it took.
    Done {
        elapsed: Duration,
    },
    /// The source failed; what was already counted stays on screen.
    Failed(String),
}

/// One rate series: counts per bucket, oldest first, newest (current) last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rate {
    pub series: Series,
    pub buckets: Vec<u64>,
    pub total: u64,
}

/// Fault latency (fault_begin -> fault_end) of one fault size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyRow {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    pub pte: LatencyRow,
    pub pmd: LatencyRow,
    /// Count per power-of-two bucket (both sizes): index i is [2^(i-1), 2^i) ns.
    pub hist: Vec<u64>,
    /// Faults whose end never came before the in-flight cap dropped them.
    pub unmatched: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotPage {
    pub key: PageKey,
    pub faults: u64,
    pub holes: u64,
    pub allocs: u64,
    /// The task of the last fault on it (the thread's latest name).
    pub comm: Comm,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotFile {
    pub dev: Dev,
    pub ino: u64,
    pub faults: u64,
    pub pages: u64,
    pub comm: Comm,
}

/// One row of a page's timeline, as the drill-down shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineRow {
    pub ts: u64,
    pub cpu: u32,
    pub tid: u32,
    pub comm: Comm,
    pub fault: Option<u64>,
    pub kind: &'static str,
    /// The kind's fields in words ("hole", "new mapped 16 pages", "pmd").
    pub detail: String,
}

impl TimelineRow {
    pub fn from_event(ev: &Event) -> Self {
        Self {
            ts: ev.ts,
            cpu: ev.cpu,
            tid: ev.tid,
            comm: ev.comm,
            fault: ev.body.fault(),
            kind: ev.body.kind_name(),
            detail: describe(&ev.body),
        }
    }
}

/// The fields of an event body in words, for the timeline.
pub fn describe(body: &Body) -> String {
    fn size(s: Size) -> &'static str {
        match s {
            Size::Pte => "pte",
            Size::Pmd => "pmd",
        }
    }
    match *body {
        Body::FaultBegin {
            pgoff,
            size: s,
            write,
            ..
        } => {
            format!(
                "{} {} fault at page {pgoff}",
                size(s),
                if write { "write" } else { "read" }
            )
        }
        Body::MapBlocks {
            pgoff,
            npages,
            result,
            new,
            write,
            ..
        } => {
            let r = match result {
                MapResult::Hole => "hole",
                MapResult::Mapped => "mapped",
                MapResult::Unwritten => "unwritten",
            };
            format!(
                "{}{r} {pgoff}+{npages}{}",
                if new { "NEW " } else { "" },
                if write { " (alloc asked)" } else { "" }
            )
        }
        Body::LoadHole { pgoff, size: s, .. } => format!("{} zero page at {pgoff}", size(s)),
        Body::InsertMapping {
            pgoff,
            size: s,
            inferred,
            ..
        } => {
            format!(
                "{} mapping at {pgoff}{}",
                size(s),
                if inferred { " (inferred)" } else { "" }
            )
        }
        Body::FaultEnd { result, .. } => format!("{result:?}").to_lowercase(),
        Body::Invalidate {
            pgoff,
            npages,
            reason,
        } => {
            let n = if npages == u64::MAX {
                "end".to_string()
            } else {
                npages.to_string()
            };
            format!("{reason:?} {pgoff}+{n}").to_lowercase()
        }
        Body::Lost { count } => format!("{count} lost"),
    }
}

/// A page's timeline as the pipeline holds it, for the drill-down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageTimeline {
    pub key: PageKey,
    pub rows: Vec<TimelineRow>,
    /// Nothing about this page was found (not seen, or too long ago).
    pub missing: bool,
    /// Events between the finding's context and the newest ones may be absent
    /// (more than [`RECENT`] events passed in between).
    pub gap: bool,
}

/// Everything one frame draws. Cheap to clone behind an `Arc`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Increases with every publish.
    pub seq: u64,
    pub source: SourceInfo,
    pub state: FeedState,
    pub stats: Stats,
    /// Events taken in per wall-clock second since the previous snapshot.
    pub events_per_sec: f64,
    pub rates: Vec<Rate>,
    pub latency: Latency,
    pub hot_pages: Vec<HotPage>,
    pub hot_files: Vec<HotFile>,
    /// Newest first.
    pub findings: Vec<Arc<Finding>>,
    /// The page the UI asked to follow (drill-down), as of this publish
    /// (shared with earlier snapshots while the page's story is unchanged).
    pub page: Option<Arc<PageTimeline>>,
}

impl Snapshot {
    /// The snapshot before anything arrived.
    pub fn empty(source: SourceInfo) -> Self {
        Self {
            seq: 0,
            source,
            state: FeedState::Running,
            stats: Stats::default(),
            events_per_sec: 0.0,
            rates: Series::ALL
                .iter()
                .map(|&series| Rate {
                    series,
                    buckets: Vec::new(),
                    total: 0,
                })
                .collect(),
            latency: Latency::default(),
            hot_pages: Vec::new(),
            hot_files: Vec::new(),
            findings: Vec::new(),
            page: None,
        }
    }
}

/// Places in [`Inflight`]'s direct-mapped table (24 bytes each: 3 KiB,
/// small enough to stay in cache; several times the faults in flight at
/// once on most machines, and the rest go to a map).
const INFLIGHT_TABLE_BITS: u32 = 7;

/// Faults awaiting their end, by fault id: what a `HashMap<u64, (u64, Size)>`
/// holds, kept mostly in a small direct-mapped table where a begin and its
/// end cost one indexed access each (a hash map costs a probe, an insert
/// and a delete per fault). An id whose place is taken goes to a map.
struct Inflight {
    table: Box<[InflightEntry]>,
    spill: HashMap<u64, (u64, Size)>,
    /// Entries in both.
    len: usize,
}

#[derive(Clone, Copy, Default)]
struct InflightEntry {
    fault: u64,
    ts: u64,
    /// `None`: the place is free.
    size: Option<Size>,
}

impl Inflight {
    fn new() -> Self {
        Self {
            table: vec![InflightEntry::default(); 1 << INFLIGHT_TABLE_BITS].into_boxed_slice(),
            spill: HashMap::new(),
            len: 0,
        }
    }

    /// Fault ids are a per-CPU sequence above the CPU number: multiplied
    /// so that consecutive ids of every CPU spread over the table.
    #[inline]
    fn place(fault: u64) -> usize {
        (fault.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - INFLIGHT_TABLE_BITS)) as usize
    }

    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn insert(&mut self, fault: u64, ts: u64, size: Size) {
        let e = &mut self.table[Self::place(fault)];
        match e.size {
            Some(_) if e.fault != fault => {
                if self.spill.insert(fault, (ts, size)).is_none() {
                    self.len += 1;
                }
                return;
            }
            Some(_) => {}
            None => {
                // The id may wait in the map from when its place was taken.
                if !self.spill.is_empty() && self.spill.remove(&fault).is_some() {
                    self.len -= 1;
                }
                self.len += 1;
            }
        }
        *e = InflightEntry {
            fault,
            ts,
            size: Some(size),
        };
    }

    #[inline]
    fn remove(&mut self, fault: u64) -> Option<(u64, Size)> {
        let e = &mut self.table[Self::place(fault)];
        if let Some(size) = e.size.filter(|_| e.fault == fault) {
            e.size = None;
            self.len -= 1;
            return Some((e.ts, size));
        }
        if self.spill.is_empty() {
            return None;
        }
        let v = self.spill.remove(&fault)?;
        self.len -= 1;
        Some(v)
    }

    fn clear(&mut self) {
        self.table.fill(InflightEntry::default());
        self.spill.clear();
        self.len = 0;
    }
}

/// Files remembered by [`Counts::file`] (a direct-mapped cache).
const RECENT_FILES: usize = 8;

#[inline]
fn file_way(dev: Dev, ino: u64) -> usize {
    (ino ^ u64::from(dev.minor) ^ u64::from(dev.major) << 3) as usize % RECENT_FILES
}

/// Per-page counts. The page table is the dashboard's largest structure and
/// each fault touches a random entry of it, so entries are small (24 bytes
/// with the key; counts saturate at 2^32): the task is its thread id, named
/// from `tasks` when a snapshot is made.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct PageStat {
    faults: u32,
    holes: u32,
    allocs: u32,
    /// Thread of the last fault on the page.
    tid: u32,
}

/// A page as its file's index in `Dashboard::files` (high 24 bits) and its
/// page index (low 40 bits: files up to 4 PiB; pages beyond are not tracked).
type PageRef = u64;

const PGOFF_BITS: u32 = 40;

fn page_ref(file: u32, pgoff: u64) -> Option<PageRef> {
    (file < 1 << (64 - PGOFF_BITS) && pgoff < 1 << PGOFF_BITS)
        .then(|| u64::from(file) << PGOFF_BITS | pgoff)
}

struct FileStat {
    dev: Dev,
    ino: u64,
    faults: u64,
    pages: u64,
    tid: u32,
    /// Stats of the file's pages below `dense.len()`, indexed by page:
    /// one indexed load per event instead of a probe of the (large,
    /// cache-missing) page table. Grown on demand up to [`DENSE_PAGES`].
    dense: Vec<PageStat>,
}

/// Pages below this index are counted in their file's flat array.
const DENSE_PAGES: u64 = 1 << 16;
/// Most entries in all flat arrays together (16 bytes each: 16 MiB);
/// beyond it pages go to the page table.
const DENSE_BUDGET: usize = 1 << 20;

/// No entry: the table was full when the file was first seen.
const UNTRACKED: u32 = u32::MAX;

/// The per-event aggregates behind the rates, latency and hot panes. Run
/// by the [`Dashboard`] sink, or (unpaced replay) by the arrival stage over
/// the same released events, which then hands on [`CountsView`]s.
pub struct Counts {
    /// Ring of BUCKETS x series counts; `head_bucket` is the trace-time bucket of `ring[head]`.
    ring: Vec<[u64; 9]>,
    head: usize,
    head_bucket: Option<u64>,
    /// Trace time where the head bucket starts (`head_bucket * BUCKET_NS`):
    /// an event of the current second costs a compare, not a division.
    head_start: u64,
    first_bucket: u64,
    totals: [u64; 9],
    inflight: Inflight,
    unmatched: u64,
    lat_pte: Histogram<u64>,
    lat_pmd: Histogram<u64>,
    lat_hist: [u64; LAT_BUCKETS],
    /// Exact maxima (the histograms round to their precision): pte, pmd.
    lat_max: [u64; 2],
    pages: HashMap<PageRef, PageStat>,
    /// File -> index in `files` (few files: this lookup stays in cache).
    file_ix: HashMap<(Dev, u64), u32>,
    files: Vec<FileStat>,
    /// The latest name of each thread that faulted.
    tasks: HashMap<u32, Comm>,
    /// The (thread, name) pairs last entered in `tasks`, by thread id modulo
    /// the size: a name already known costs one compare, not a lookup.
    task_seen: Box<[(u32, Comm); 64]>,
    /// Files looked up lately and their indexes, by [`file_way`]: a file
    /// seen lately costs one compare, not a map lookup (faults of a few
    /// files come interleaved).
    recent_files: [Option<((Dev, u64), u32)>; RECENT_FILES],
    /// Entries in all files' flat page arrays.
    dense_total: usize,
    hot_pages: Vec<HotPage>,
    hot_files: Vec<HotFile>,
}

/// What [`Counts`] show at one moment: the rates, latency and hot panes of a [`Snapshot`].
#[derive(Clone, Debug, Default)]
pub struct CountsView {
    pub rates: Vec<Rate>,
    pub latency: Latency,
    pub hot_pages: Vec<HotPage>,
    pub hot_files: Vec<HotFile>,
}

/// The dashboard sink: per-event aggregation for the UI.
pub struct Dashboard {
    counts: Counts,
    /// Off when the counts are made elsewhere ([`Dashboard::counted_elsewhere`]).
    count_events: bool,
    findings: VecDeque<Arc<Finding>>,
    recent: Recent,
    /// Findings raised since the feeding thread last looked: their context
    /// is copied out of the recent events after the current push.
    pub pending: Vec<Arc<Finding>>,
    /// Copy every event into `recent`. Off when the feeding thread keeps the
    /// recent events itself (unpaced replay keeps its batches).
    keep_recent: bool,
}

/// Events kept for drill-down context: the finding's ordering is recent when
/// it completes, so the newest events hold it (about 5 MiB, allocated once).
pub const RECENT: usize = 1 << 16;

/// A ring of the newest [`RECENT`] events, late ones marked as such (the
/// context search relies on the others being in time order).
struct Recent {
    buf: Vec<Released>,
    next: usize,
}

impl Recent {
    fn push(&mut self, r: Released) {
        if self.buf.len() < RECENT {
            self.buf.push(r);
        } else {
            self.buf[self.next] = r;
        }
        self.next = (self.next + 1) % RECENT;
    }

    /// The ring in two runs, oldest first.
    fn slices(&self) -> [&[Released]; 2] {
        let (a, b) = if self.buf.len() < RECENT {
            (&self.buf[..], &[][..])
        } else {
            self.buf.split_at(self.next)
        };
        [b, a]
    }
}

fn released_event(r: &Released) -> &Event {
    match r {
        Released::Event(e) | Released::Late(e) => e,
    }
}

/// Items a finding's context search walks from its ordering to find the
/// begins and ends of the ordering's faults (a fault lasts microseconds;
/// one that began earlier is shown from its first step on).
const CONTEXT_WALK: usize = 4096;

/// A place among runs of items: (run, index in the run).
type At = (usize, usize);

/// The first place in `items` (runs, oldest first) at or after which
/// `past` holds for every released event (those are in time order).
/// A late item is older than the event released before it: it counts as
/// not past, which can only move the place later than the events for
/// which `past` is false (none is cut off).
fn boundary(items: &[&[Released]], past: impl Fn(&Event) -> bool) -> At {
    let not_past = |r: &Released| match r {
        Released::Event(e) => !past(e),
        Released::Late(_) => true,
    };
    // The last run that starts with an event not past holds the place.
    for (i, s) in items.iter().enumerate().rev() {
        if s.first().is_some_and(not_past) {
            // Lowest index whose predecessor is not past and itself is.
            let (mut lo, mut hi) = (0, s.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                if not_past(&s[mid]) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            return (i, lo);
        }
    }
    (0, 0)
}

/// A finding's context among `items` (runs of released items, oldest
/// first, in release order): the events of its page from the begin of the
/// ordering's first fault to the end of its last one, with the ends of the
/// faults among them. Found by binary searches on time for the first and
/// last steps and short walks to the faults' begins and ends, not by a
/// pass over every item (a finding held for a write's teardown comes
/// milliseconds, thousands of events, after its ordering).
pub fn finding_context(items: &[&[Released]], f: &Finding) -> Vec<Event> {
    let first_ts = f.steps.iter().map(|s| s.ts).min().unwrap_or(f.ts);
    let last_ts = f.steps.iter().map(|s| s.ts).max().unwrap_or(f.ts);
    let key = &f.page;
    let mut faults: Vec<u64> = f.steps.iter().filter_map(|s| s.fault).collect();
    faults.sort_unstable();
    faults.dedup();
    let on_file = |e: &Event| e.dev == key.dev && e.ino == key.ino;
    // Back from the first step to the faults' begins.
    let mut from = boundary(items, |e| e.ts >= first_ts);
    let mut need = faults.clone();
    let (mut r, mut i) = from;
    for _ in 0..CONTEXT_WALK {
        if need.is_empty() {
            break;
        }
        if i == 0 {
            if r == 0 {
                break;
            }
            r -= 1;
            i = items[r].len();
            continue;
        }
        i -= 1;
        let e = released_event(&items[r][i]);
        if let Body::FaultBegin { fault, .. } = e.body {
            if let Ok(k) = need.binary_search(&fault) {
                if on_file(e) {
                    need.remove(k);
                    from = (r, i);
                }
            }
        }
    }
    // On from the last step to the faults' ends.
    let mut to = boundary(items, |e| e.ts > last_ts);
    let mut need = faults;
    let (mut r, mut i) = to;
    for _ in 0..CONTEXT_WALK {
        if need.is_empty() || r == items.len() {
            break;
        }
        if i == items[r].len() {
            (r, i) = (r + 1, 0);
            continue;
        }
        let e = released_event(&items[r][i]);
        i += 1;
        if let Body::FaultEnd { fault, .. } = e.body {
            if let Ok(k) = need.binary_search(&fault) {
                if on_file(e) {
                    need.remove(k);
                    to = (r, i);
                }
            }
        }
    }
    let span = items
        .iter()
        .enumerate()
        .skip(from.0)
        .take((to.0 + 1).saturating_sub(from.0))
        .flat_map(|(k, s)| {
            let hi = if k == to.0 {
                to.1.min(s.len())
            } else {
                s.len()
            };
            let lo = if k == from.0 { from.1.min(hi) } else { 0 };
            s[lo..hi].iter().map(released_event)
        });
    page_events(span, key)
}

/// Does `ev` touch `key`'s page (directly, through a range or a PMD span)?
pub fn covers(ev: &Event, key: &PageKey) -> bool {
    if ev.dev != key.dev || ev.ino != key.ino {
        return false;
    }
    let p = key.pgoff;
    let within = |first: u64, n: u64| p >= first && (n == u64::MAX || p - first < n);
    match ev.body {
        Body::FaultBegin { pgoff, size, .. }
        | Body::LoadHole { pgoff, size, .. }
        | Body::InsertMapping { pgoff, size, .. } => {
            let (first, n) = size.span(pgoff);
            within(first, n)
        }
        Body::MapBlocks { pgoff, npages, .. } | Body::Invalidate { pgoff, npages, .. } => {
            within(pgoff, npages)
        }
        Body::FaultEnd { .. } | Body::Lost { .. } => false,
    }
}

/// The events of `key`'s page among `events` (in order), plus the ends of the faults among them.
pub fn page_events<'a>(events: impl Iterator<Item = &'a Event>, key: &PageKey) -> Vec<Event> {
    // One pass: a fault's end comes after its events on the page (time order).
    let mut faults: Vec<u64> = Vec::new();
    let mut out: Vec<Event> = Vec::new();
    for e in events.filter(|e| e.dev == key.dev && e.ino == key.ino) {
        if covers(e, key) {
            faults.extend(e.body.fault());
            out.push(*e);
        } else if matches!(e.body, Body::FaultEnd { fault, .. } if faults.contains(&fault)) {
            out.push(*e);
        }
    }
    out
}

impl Default for Dashboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for Counts {
    fn default() -> Self {
        Self::new()
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 ns .. 100 s at 2 significant digits: a few KiB, fixed, so recording never allocates.
    Histogram::new_with_bounds(1, 100_000_000_000, 2).expect("static histogram bounds are valid")
}

impl Dashboard {
    pub fn new() -> Self {
        Self {
            counts: Counts::new(),
            count_events: true,
            findings: VecDeque::new(),
            recent: Recent {
                buf: Vec::with_capacity(RECENT),
                next: 0,
            },
            pending: Vec::new(),
            keep_recent: true,
        }
    }

    /// Stop copying events for drill-down context (the caller keeps them).
    pub fn without_recent(mut self) -> Self {
        self.keep_recent = false;
        self.recent = Recent {
            buf: Vec::new(),
            next: 0,
        };
        self
    }

    /// Leave the per-event counts to someone else (the arrival stage of an
    /// unpaced replay), who passes them in with [`SnapshotBase::counts`].
    pub fn counted_elsewhere(mut self) -> Self {
        self.count_events = false;
        self
    }

    /// The recent events touching `key` (oldest first).
    pub fn recent_for(&self, key: &PageKey) -> Vec<Event> {
        page_events(
            self.recent
                .slices()
                .into_iter()
                .flatten()
                .map(released_event),
            key,
        )
    }

    /// `f`'s context among the recent events ([`finding_context`]).
    pub fn finding_context(&self, f: &Finding) -> Vec<Event> {
        finding_context(&self.recent.slices(), f)
    }

    /// Timestamp of the oldest event still held for context.
    pub fn recent_oldest_ts(&self) -> Option<u64> {
        self.recent
            .slices()
            .into_iter()
            .flatten()
            .next()
            .map(|r| released_event(r).ts)
    }

    /// Copy the aggregates into a snapshot. `stats` and the rest come from the feeding thread.
    pub fn snapshot(&mut self, base: SnapshotBase) -> Snapshot {
        let CountsView {
            rates,
            latency,
            hot_pages,
            hot_files,
        } = match base.counts {
            Some(v) => v,
            None => self.counts.view(base.refresh_hot),
        };
        Snapshot {
            seq: base.seq,
            source: base.source,
            state: base.state,
            stats: base.stats,
            events_per_sec: base.events_per_sec,
            rates,
            latency,
            hot_pages,
            hot_files,
            findings: self.findings.iter().rev().cloned().collect(),
            page: base.page,
        }
    }
}

impl Counts {
    pub fn new() -> Self {
        Self {
            ring: vec![[0; 9]; BUCKETS],
            head: 0,
            head_bucket: None,
            head_start: 0,
            first_bucket: 0,
            totals: [0; 9],
            inflight: Inflight::new(),
            unmatched: 0,
            lat_pte: new_hist(),
            lat_pmd: new_hist(),
            lat_hist: [0; LAT_BUCKETS],
            lat_max: [0; 2],
            pages: HashMap::new(),
            file_ix: HashMap::new(),
            files: Vec::new(),
            tasks: HashMap::new(),
            task_seen: Box::new([(u32::MAX, Comm::default()); 64]),
            recent_files: [None; RECENT_FILES],
            dense_total: 0,
            hot_pages: Vec::new(),
            hot_files: Vec::new(),
        }
    }

    /// The ring place of `ts`'s bucket (the head: events come in time order).
    #[inline]
    fn bucket(&mut self, ts: u64) -> usize {
        if self.head_bucket.is_some() && ts.wrapping_sub(self.head_start) < BUCKET_NS {
            return self.head;
        }
        self.bucket_slow(ts)
    }

    /// Move the ring so that the bucket of `ts` is the head; zero what is skipped.
    #[inline(never)]
    fn bucket_slow(&mut self, ts: u64) -> usize {
        let b = ts / BUCKET_NS;
        match self.head_bucket {
            None => {
                self.head_bucket = Some(b);
                self.head_start = b * BUCKET_NS;
                self.first_bucket = b;
            }
            Some(h) if b > h => {
                let steps = (b - h).min(BUCKETS as u64) as usize;
                for _ in 0..steps {
                    self.head = (self.head + 1) % BUCKETS;
                    self.ring[self.head] = [0; 9];
                }
                self.head_bucket = Some(b);
                self.head_start = b * BUCKET_NS;
            }
            // Events are released in time order; an older one (a late arrival)
            // is counted in the current bucket rather than rewriting the past.
            Some(_) => {}
        }
        self.head
    }

    fn count(&mut self, slot: usize, s: Series) {
        self.ring[slot][s as usize] += 1;
        self.totals[s as usize] += 1;
    }

    #[inline]
    fn recent_file(&self, dev: Dev, ino: u64) -> Option<u32> {
        match self.recent_files[file_way(dev, ino)] {
            Some((k, i)) if k == (dev, ino) => Some(i),
            _ => None,
        }
    }

    /// Index of a file's stats, made on first sight ([`UNTRACKED`] beyond the cap).
    #[inline]
    fn file(&mut self, dev: Dev, ino: u64) -> u32 {
        if let Some(i) = self.recent_file(dev, ino) {
            return i;
        }
        if let Some(&i) = self.file_ix.get(&(dev, ino)) {
            self.recent_files[file_way(dev, ino)] = Some(((dev, ino), i));
            return i;
        }
        if self.files.len() >= MAX_TRACKED {
            return UNTRACKED;
        }
        let i = self.files.len() as u32;
        self.file_ix.insert((dev, ino), i);
        self.files.push(FileStat {
            dev,
            ino,
            faults: 0,
            pages: 0,
            tid: 0,
            dense: Vec::new(),
        });
        i
    }

    /// A page's stats, made on first sight (`None` beyond the cap).
    #[inline]
    fn page(&mut self, file: u32, pgoff: u64) -> Option<&mut PageStat> {
        if pgoff < self.files.get(file as usize)?.dense.len() as u64 {
            return Some(&mut self.files[file as usize].dense[pgoff as usize]);
        }
        self.page_slow(file, pgoff)
    }

    /// [`Counts::page`] beyond the file's flat array so far (kept out of
    /// line so that the common case inlines small).
    #[inline(never)]
    fn page_slow(&mut self, file: u32, pgoff: u64) -> Option<&mut PageStat> {
        let f = &mut self.files[file as usize];
        let have = f.dense.len();
        if pgoff < DENSE_PAGES {
            // Doubling (at least 64 pages) while the budget allows.
            let want = ((pgoff + 1).next_power_of_two() as usize).max(64);
            if self.dense_total + (want - have) <= DENSE_BUDGET {
                self.dense_total += want - have;
                f.dense.resize(want, PageStat::default());
                return Some(&mut f.dense[pgoff as usize]);
            }
        }
        let r = page_ref(file, pgoff)?;
        if self.pages.len() >= MAX_TRACKED && !self.pages.contains_key(&r) {
            return None;
        }
        Some(self.pages.entry(r).or_default())
    }

    fn comm(&self, tid: u32) -> Comm {
        self.tasks.get(&tid).copied().unwrap_or_default()
    }

    /// What the panes show now. `refresh_hot`: recompute the hot tables (a
    /// walk over every page seen), else the last ones are reused.
    pub fn view(&mut self, refresh_hot: bool) -> CountsView {
        let rates = Series::ALL
            .iter()
            .map(|&s| {
                let n = match self.head_bucket {
                    None => 0,
                    Some(h) => (h - self.first_bucket + 1).min(BUCKETS as u64) as usize,
                };
                let buckets = (0..n)
                    .rev()
                    .map(|back| self.ring[(self.head + BUCKETS - back) % BUCKETS][s as usize])
                    .collect();
                Rate {
                    series: s,
                    buckets,
                    total: self.totals[s as usize],
                }
            })
            .collect();
        // Percentiles are the histogram's (within 1%), never above the exact maximum.
        let row = |h: &Histogram<u64>, max: u64| LatencyRow {
            count: h.len(),
            p50: h.value_at_quantile(0.5).min(max),
            p90: h.value_at_quantile(0.9).min(max),
            p99: h.value_at_quantile(0.99).min(max),
            max,
        };
        let latency = Latency {
            pte: row(&self.lat_pte, self.lat_max[0]),
            pmd: row(&self.lat_pmd, self.lat_max[1]),
            hist: self.lat_hist.to_vec(),
            unmatched: self.unmatched,
        };
        if refresh_hot {
            // A walk over every page seen (hundreds of thousands): done at most
            // about once a second by the caller, not every snapshot.
            let files = &self.files;
            let key = |r: PageRef| {
                let f = &files[(r >> PGOFF_BITS) as usize];
                PageKey {
                    dev: f.dev,
                    ino: f.ino,
                    pgoff: r & ((1 << PGOFF_BITS) - 1),
                }
            };
            let dense = files.iter().flat_map(|f| {
                f.dense.iter().enumerate().map(|(pgoff, p)| {
                    (
                        PageKey {
                            dev: f.dev,
                            ino: f.ino,
                            pgoff: pgoff as u64,
                        },
                        *p,
                    )
                })
            });
            let table = self.pages.iter().map(|(&r, p)| (key(r), *p));
            self.hot_pages = top_n(
                dense
                    .chain(table)
                    .map(|(k, p)| (u64::from(p.faults), (k, p))),
            )
            .into_iter()
            .map(|(faults, (key, p))| HotPage {
                key,
                faults,
                holes: u64::from(p.holes),
                allocs: u64::from(p.allocs),
                comm: self.comm(p.tid),
            })
            .collect();
            self.hot_files = top_n(files.iter().map(|f| (f.faults, (f.dev, f.ino))))
                .into_iter()
                .map(|(faults, (dev, ino))| {
                    let f = &files[self.file_ix[&(dev, ino)] as usize];
                    HotFile {
                        dev,
                        ino,
                        faults,
                        pages: f.pages,
                        comm: self.comm(f.tid),
                    }
                })
                .collect();
        }
        CountsView {
            rates,
            latency,
            hot_pages: self.hot_pages.clone(),
            hot_files: self.hot_files.clone(),
        }
    }
}

/// The parts of a snapshot the feeding thread knows, not the sink.
pub struct SnapshotBase {
    pub seq: u64,
    pub source: SourceInfo,
    pub state: FeedState,
    pub stats: Stats,
    pub events_per_sec: f64,
    pub page: Option<Arc<PageTimeline>>,
    /// Recompute the hot pages and files tables (else the last ones are reused).
    pub refresh_hot: bool,
    /// The rates, latency and hot panes when they are counted elsewhere
    /// ([`Dashboard::counted_elsewhere`]); `None`: the sink's own.
    pub counts: Option<CountsView>,
}

/// The HOT_ROWS keys with the most faults (ties: smaller key first), most
/// first, without sorting or copying the whole map: a min-heap of the best so far.
fn top_n<K: Ord + Copy>(it: impl Iterator<Item = (u64, K)>) -> Vec<(u64, K)> {
    let mut heap: BinaryHeap<Reverse<(u64, Reverse<K>)>> = BinaryHeap::with_capacity(HOT_ROWS + 1);
    for (n, k) in it.filter(|(n, _)| *n > 0) {
        let item = (n, Reverse(k));
        if heap.len() == HOT_ROWS {
            // Most entries are colder than the coldest kept: one comparison, no heap work.
            if heap.peek().is_some_and(|Reverse(min)| item <= *min) {
                continue;
            }
            heap.pop();
        }
        heap.push(Reverse(item));
    }
    let mut out: Vec<(u64, K)> = heap
        .into_iter()
        .map(|Reverse((n, Reverse(k)))| (n, k))
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    out
}

impl Sink for Dashboard {
    #[inline]
    fn on_event(&mut self, ev: &Event) {
        if self.keep_recent {
            self.recent.push(Released::Event(*ev));
        }
        if self.count_events {
            self.counts.on_event(ev);
        }
    }

    /// Late events are out of order but real: counted like the others (the
    /// rate buckets put an older one in the current second).
    fn on_late(&mut self, ev: &Event) {
        if self.keep_recent {
            self.recent.push(Released::Late(*ev));
        }
        if self.count_events {
            self.counts.on_event(ev);
        }
    }

    fn on_finding(&mut self, f: &Finding) {
        if self.findings.len() == MAX_FINDINGS {
            self.findings.pop_front();
        }
        let f = Arc::new(f.clone());
        self.findings.push_back(f.clone());
        self.pending.push(f);
    }
}

impl Counts {
    /// Count one released (or late) event.
    pub fn on_event(&mut self, ev: &Event) {
        let slot = self.bucket(ev.ts);
        match ev.body {
            Body::FaultBegin {
                fault,
                pgoff,
                size,
                write,
            } => {
                self.count(
                    slot,
                    if size == Size::Pmd {
                        Series::PmdFaults
                    } else {
                        Series::PteFaults
                    },
                );
                self.count(
                    slot,
                    if write {
                        Series::WriteFaults
                    } else {
                        Series::ReadFaults
                    },
                );
                if self.inflight.len() >= MAX_INFLIGHT {
                    // Ends that never come (a lost record) must not grow this forever.
                    self.unmatched += self.inflight.len() as u64;
                    self.inflight.clear();
                }
                self.inflight.insert(fault, ev.ts, size);
                let seen = &mut self.task_seen[ev.tid as usize % 64];
                if *seen != (ev.tid, ev.comm) {
                    *seen = (ev.tid, ev.comm);
                    if self.tasks.len() >= MAX_TRACKED {
                        self.tasks.clear();
                        self.task_seen.fill((u32::MAX, Comm::default()));
                        self.task_seen[ev.tid as usize % 64] = (ev.tid, ev.comm);
                    }
                    self.tasks.insert(ev.tid, ev.comm);
                }
                let file = self.file(ev.dev, ev.ino);
                if file == UNTRACKED {
                    return;
                }
                let new_page = match self.page(file, pgoff) {
                    Some(p) => {
                        p.faults = p.faults.saturating_add(1);
                        p.tid = ev.tid;
                        p.faults == 1
                    }
                    None => false,
                };
                let f = &mut self.files[file as usize];
                f.faults += 1;
                f.tid = ev.tid;
                f.pages += u64::from(new_page);
            }
            Body::FaultEnd { fault, .. } => {
                if let Some((t0, size)) = self.inflight.remove(fault) {
                    let lat = ev.ts.saturating_sub(t0).max(1);
                    let i = usize::from(size == Size::Pmd);
                    let h = if i == 1 {
                        &mut self.lat_pmd
                    } else {
                        &mut self.lat_pte
                    };
                    h.saturating_record(lat);
                    self.lat_max[i] = self.lat_max[i].max(lat);
                    let b = (64 - lat.leading_zeros() as usize).min(LAT_BUCKETS - 1);
                    self.lat_hist[b] += 1;
                }
            }
            Body::MapBlocks { pgoff, new, .. } => {
                if new {
                    self.count(slot, Series::Allocations);
                    let file = self.file(ev.dev, ev.ino);
                    if let Some(p) = self.page(file, pgoff) {
                        p.allocs = p.allocs.saturating_add(1);
                    }
                }
            }
            Body::LoadHole { pgoff, .. } => {
                self.count(slot, Series::HoleLoads);
                let file = self.file(ev.dev, ev.ino);
                if let Some(p) = self.page(file, pgoff) {
                    p.holes = p.holes.saturating_add(1);
                }
            }
            Body::InsertMapping { .. } => self.count(slot, Series::Inserts),
            Body::Invalidate { .. } => self.count(slot, Series::Invalidations),
            Body::Lost { count } => {
                self.ring[slot][Series::Lost as usize] += count;
                self.totals[Series::Lost as usize] += count;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Comm, Dev};

    fn ev(ts: u64, ino: u64, body: Body) -> Event {
        Event {
            ts,
            cpu: 0,
            tid: 1,
            pid: 1,
            comm: Comm::new("t"),
            dev: Dev::new(259, 0),
            ino,
            probe: 0,
            body,
        }
    }

    fn base() -> SnapshotBase {
        SnapshotBase {
            seq: 1,
            source: SourceInfo::default(),
            state: FeedState::Running,
            stats: Stats::default(),
            events_per_sec: 0.0,
            page: None,
            refresh_hot: true,
            counts: None,
        }
    }

    #[test]
    fn latency_pairs_begin_with_end_per_fault_id() {
        let mut d = Dashboard::new();
        d.on_event(&ev(
            1_000,
            1,
            Body::FaultBegin {
                fault: 1,
                pgoff: 0,
                size: Size::Pte,
                write: false,
            },
        ));
        d.on_event(&ev(
            1_500,
            1,
            Body::FaultBegin {
                fault: 2,
                pgoff: 0,
                size: Size::Pmd,
                write: true,
            },
        ));
        d.on_event(&ev(
            3_000,
            1,
            Body::FaultEnd {
                fault: 1,
                result: crate::event::FaultResult::Nopage,
            },
        ));
        d.on_event(&ev(
            9_500,
            1,
            Body::FaultEnd {
                fault: 2,
                result: crate::event::FaultResult::Nopage,
            },
        ));
        // An end without a begin is ignored, not paired with something else.
        d.on_event(&ev(
            9_600,
            1,
            Body::FaultEnd {
                fault: 7,
                result: crate::event::FaultResult::Nopage,
            },
        ));
        let s = d.snapshot(base());
        assert_eq!(s.latency.pte.count, 1);
        assert_eq!(s.latency.pte.max, 2_000);
        assert_eq!(s.latency.pmd.count, 1);
        assert_eq!(s.latency.pmd.max, 8_000);
        // 2000 ns is in [1024, 2048): bucket 11; 8000 in [4096, 8192): bucket 13.
        assert_eq!(s.latency.hist[11], 1);
        assert_eq!(s.latency.hist[13], 1);
        assert_eq!(s.latency.hist.iter().sum::<u64>(), 2);
    }

    #[test]
    fn rates_bucket_by_trace_second_and_zero_gaps() {
        let mut d = Dashboard::new();
        let hole = |ts| {
            ev(
                ts,
                1,
                Body::LoadHole {
                    fault: 1,
                    pgoff: 0,
                    size: Size::Pte,
                },
            )
        };
        d.on_event(&hole(5 * BUCKET_NS));
        d.on_event(&hole(5 * BUCKET_NS + 10));
        d.on_event(&hole(8 * BUCKET_NS));
        let s = d.snapshot(base());
        let r = s
            .rates
            .iter()
            .find(|r| r.series == Series::HoleLoads)
            .unwrap();
        assert_eq!(r.total, 3);
        // Buckets start at the first event's second, not at time zero.
        assert_eq!(r.buckets, [2, 0, 0, 1]);
    }

    #[test]
    fn hot_tables_rank_by_faults() {
        let mut d = Dashboard::new();
        let mut id = 0;
        // Page 1 << 20 is beyond the flat per-file arrays: counted in the page table.
        for (ino, pgoff, n) in [(1, 0, 3), (1, 1, 5), (2, 7, 4), (1, 1 << 20, 6)] {
            for _ in 0..n {
                id += 1;
                d.on_event(&ev(
                    id,
                    ino,
                    Body::FaultBegin {
                        fault: id,
                        pgoff,
                        size: Size::Pte,
                        write: false,
                    },
                ));
            }
        }
        let s = d.snapshot(base());
        let pages: Vec<_> = s
            .hot_pages
            .iter()
            .map(|p| (p.key.ino, p.key.pgoff, p.faults))
            .collect();
        assert_eq!(pages, [(1, 1 << 20, 6), (1, 1, 5), (2, 7, 4), (1, 0, 3)]);
        let files: Vec<_> = s
            .hot_files
            .iter()
            .map(|f| (f.ino, f.faults, f.pages))
            .collect();
        assert_eq!(files, [(1, 14, 3), (2, 4, 1)]);
    }

    /// The hot tables (flat per-file arrays and the page table beyond them)
    /// hold exact counts whenever the panes are made.
    #[test]
    fn page_counts_are_exact_whenever_viewed() {
        let mut rng = crate::workload::Rng::new(11);
        let mut c = Counts::new();
        let mut want: std::collections::HashMap<PageKey, (u64, u64, u64)> =
            std::collections::HashMap::new();
        for id in 1..20_000u64 {
            let ino = 1 + rng.below(3);
            // Some pages beyond the flat per-file arrays (the page table).
            let pgoff = if rng.below(10) == 0 {
                (1 << 20) + rng.below(50)
            } else {
                rng.below(300)
            };
            let key = PageKey {
                dev: Dev::new(259, 0),
                ino,
                pgoff,
            };
            let w = want.entry(key).or_default();
            match rng.below(3) {
                0 => {
                    c.on_event(&ev(
                        id,
                        ino,
                        Body::FaultBegin {
                            fault: id,
                            pgoff,
                            size: Size::Pte,
                            write: false,
                        },
                    ));
                    w.0 += 1;
                }
                1 => {
                    c.on_event(&ev(
                        id,
                        ino,
                        Body::LoadHole {
                            fault: id,
                            pgoff,
                            size: Size::Pte,
                        },
                    ));
                    w.1 += 1;
                }
                _ => {
                    let body = Body::MapBlocks {
                        fault: Some(id),
                        pgoff,
                        npages: 1,
                        result: MapResult::Mapped,
                        new: true,
                        write: true,
                    };
                    c.on_event(&ev(id, ino, body));
                    w.2 += 1;
                }
            }
            if rng.below(500) == 0 || id == 19_999 {
                let v = c.view(true);
                let mut rank: Vec<_> = want
                    .iter()
                    .filter(|(_, w)| w.0 > 0)
                    .map(|(k, w)| (w.0, *k, *w))
                    .collect();
                rank.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                let rank: Vec<_> = rank
                    .into_iter()
                    .take(HOT_ROWS)
                    .map(|(_, k, w)| (k, w))
                    .collect();
                let got: Vec<_> = v
                    .hot_pages
                    .iter()
                    .map(|p| (p.key, (p.faults, p.holes, p.allocs)))
                    .collect();
                assert_eq!(got, rank, "after {id} events");
                for f in &v.hot_files {
                    let pages = want
                        .iter()
                        .filter(|(k, w)| k.ino == f.ino && w.0 > 0)
                        .count() as u64;
                    assert_eq!(f.pages, pages, "file {} after {id} events", f.ino);
                }
            }
        }
    }

    /// The in-flight table holds exactly what a map would, through ids that
    /// share a place, repeated begins and ends without a begin.
    #[test]
    fn inflight_acts_as_a_map() {
        let mut rng = crate::workload::Rng::new(5);
        let mut t = Inflight::new();
        let mut m: std::collections::HashMap<u64, (u64, Size)> = std::collections::HashMap::new();
        // Few enough ids that places are shared and ids come back.
        let ids: Vec<u64> = (0..2000).map(|_| rng.below(1 << 20)).collect();
        let mut spilled = false;
        for step in 0..200_000u64 {
            let id = ids[rng.below(ids.len() as u64) as usize];
            if rng.below(2) == 0 {
                let size = if rng.below(2) == 0 {
                    Size::Pte
                } else {
                    Size::Pmd
                };
                t.insert(id, step, size);
                m.insert(id, (step, size));
            } else {
                assert_eq!(t.remove(id), m.remove(&id), "step {step} id {id}");
            }
            assert_eq!(t.len(), m.len());
            spilled |= !t.spill.is_empty();
            if step == 100_000 {
                t.clear();
                m.clear();
            }
        }
        assert!(spilled, "the test never shared a place");
    }

    #[test]
    fn top_n_keeps_only_the_largest() {
        let items = (0..200u64).map(|i| (i % 97, i));
        let top = top_n(items);
        assert_eq!(top.len(), HOT_ROWS);
        assert_eq!(top[0].0, 96);
        assert!(top.windows(2).all(|w| w[0].0 >= w[1].0));
        // 96 occurs for i = 96 and 193; the smaller key ranks first on a tie.
        assert_eq!((top[0].1, top[1].1), (96, 193));
        // Values 6..=96 occur twice each: the 50 largest are 96..=72, two of each.
        assert_eq!(top.last().unwrap().0, 72);
    }

    fn step(role: crate::detect::Role, ts: u64, fault: Option<u64>) -> crate::detect::Step {
        crate::detect::Step {
            role,
            ts,
            tid: 1,
            pid: 1,
            cpu: 0,
            comm: Comm::new("t"),
            fault,
        }
    }

    /// A stale mapping on page 5 of inode 1 (fault 7: begin, lookup, a hole
    /// punch, the insert) after an older fault on the page and thousands of
    /// other pages' events, and the finding that names it.
    fn context_case() -> (Vec<Released>, Finding, Vec<Event>) {
        use crate::detect::Role;
        use crate::event::{FaultResult, InvalidateReason};
        let mut items = Vec::new();
        let mut ts = 1_000;
        let mut push = |items: &mut Vec<Released>, ino: u64, body: Body| {
            ts += 10;
            items.push(Released::Event(ev(ts, ino, body)));
            ts
        };
        // An older fault on the page: not part of the ordering.
        push(
            &mut items,
            1,
            Body::FaultBegin {
                fault: 3,
                pgoff: 5,
                size: Size::Pte,
                write: false,
            },
        );
        push(
            &mut items,
            1,
            Body::FaultEnd {
                fault: 3,
                result: FaultResult::Nopage,
            },
        );
        let filler = |items: &mut Vec<Released>,
                      push: &mut dyn FnMut(&mut Vec<Released>, u64, Body) -> u64,
                      n: u64| {
            for k in 0..n {
                push(
                    items,
                    2,
                    Body::FaultBegin {
                        fault: 100 + k,
                        pgoff: 5,
                        size: Size::Pte,
                        write: false,
                    },
                );
            }
        };
        filler(&mut items, &mut push, 3000);
        let begin = Body::FaultBegin {
            fault: 7,
            pgoff: 5,
            size: Size::Pte,
            write: true,
        };
        push(&mut items, 1, begin);
        filler(&mut items, &mut push, 50);
        let lookup = Body::MapBlocks {
            fault: Some(7),
            pgoff: 5,
            npages: 1,
            result: MapResult::Mapped,
            new: false,
            write: true,
        };
        let t_lookup = push(&mut items, 1, lookup);
        filler(&mut items, &mut push, 50);
        let t_inv = push(
            &mut items,
            1,
            Body::Invalidate {
                pgoff: 0,
                npages: 16,
                reason: InvalidateReason::PunchHole,
            },
        );
        let insert = Body::InsertMapping {
            fault: 7,
            pgoff: 5,
            size: Size::Pte,
            inferred: false,
        };
        let t_ins = push(&mut items, 1, insert);
        filler(&mut items, &mut push, 20);
        let t_end = push(
            &mut items,
            1,
            Body::FaultEnd {
                fault: 7,
                result: FaultResult::Nopage,
            },
        );
        // A later fault on the page, before the finding is raised (held for
        // a write's teardown): not part of the ordering.
        filler(&mut items, &mut push, 2000);
        push(
            &mut items,
            1,
            Body::FaultBegin {
                fault: 8,
                pgoff: 5,
                size: Size::Pte,
                write: false,
            },
        );
        push(
            &mut items,
            1,
            Body::FaultEnd {
                fault: 8,
                result: FaultResult::Nopage,
            },
        );
        filler(&mut items, &mut push, 10);
        let f = Finding {
            rule: crate::detect::Rule::InsertAfterInvalidate,
            severity: crate::detect::Severity::StaleMapping,
            page: PageKey {
                dev: Dev::new(259, 0),
                ino: 1,
                pgoff: 5,
            },
            ts: t_ins,
            steps: vec![
                step(Role::Lookup, t_lookup, Some(7)),
                step(Role::Invalidate, t_inv, None),
                step(Role::Insert, t_ins, Some(7)),
            ],
        };
        let want: Vec<Event> = items
            .iter()
            .map(released_event)
            .filter(|e| e.ino == 1 && e.ts > 1_020 && e.ts <= t_end)
            .copied()
            .collect();
        assert_eq!(want.len(), 5);
        (items, f, want)
    }

    /// The context is the page's events from the begin of the ordering's
    /// fault to its end: not the older or later faults, not other pages,
    /// however the items are split into runs.
    #[test]
    fn finding_context_is_the_ordering_from_its_faults_begin_to_end() {
        let (items, f, want) = context_case();
        assert_eq!(finding_context(&[&items], &f), want);
        for cut in [
            1,
            2,
            3000,
            3002,
            3003,
            3030,
            3104,
            3124,
            3125,
            3126,
            items.len() - 1,
        ] {
            let (a, b) = items.split_at(cut);
            assert_eq!(finding_context(&[a, b], &f), want, "cut at {cut}");
            let (b, c) = b.split_at(b.len() / 2);
            assert_eq!(finding_context(&[a, b, c, &[]], &f), want, "cut at {cut}");
        }
        // Without the items before the fault's begin, the same.
        assert_eq!(finding_context(&[&items[3002..]], &f), want);
        // A fault whose begin is gone: shown from the first step on.
        assert_eq!(finding_context(&[&items[3003..]], &f), want[1..]);
        // Raised before its fault's end was released: up to the last step.
        assert_eq!(finding_context(&[&items[..3124]], &f), want[..4]);
    }

    /// Late items (older than the event released before them) anywhere in
    /// the runs never make the search skip the ordering's events.
    #[test]
    fn finding_context_survives_late_items() {
        let (items, f, want) = context_case();
        for at in (1..items.len())
            .step_by(37)
            .chain([3001, 3002, 3003, 3053, 3054, 3104, 3105, 3124, 3125, 3126])
        {
            let mut v = items.clone();
            v.insert(
                at,
                Released::Late(ev(
                    5,
                    2,
                    Body::FaultBegin {
                        fault: 9,
                        pgoff: 5,
                        size: Size::Pte,
                        write: false,
                    },
                )),
            );
            assert_eq!(finding_context(&[&v], &f), want, "late item at {at}");
            let (a, b) = v.split_at(at.min(v.len() - 1));
            assert_eq!(
                finding_context(&[a, b], &f),
                want,
                "late item at {at}, runs cut there"
            );
        }
    }

    #[test]
    fn findings_are_newest_first_and_capped() {
        let mut d = Dashboard::new();
        let f = |ts| Finding {
            rule: crate::detect::Rule::HoleLoadAfterAllocate,
            severity: crate::detect::Severity::StaleHole,
            page: PageKey {
                dev: Dev::new(1, 0),
                ino: 1,
                pgoff: 0,
            },
            ts,
            steps: vec![],
        };
        for ts in 0..(MAX_FINDINGS as u64 + 5) {
            d.on_finding(&f(ts));
        }
        let s = d.snapshot(base());
        assert_eq!(s.findings.len(), MAX_FINDINGS);
        assert_eq!(s.findings[0].ts, MAX_FINDINGS as u64 + 4);
        assert_eq!(s.findings.last().unwrap().ts, 5);
    }
}
