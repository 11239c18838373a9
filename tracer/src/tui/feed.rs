//! The pipeline thread: reads the source, pushes every event through the
//! shared [`Pipeline`] into the [`Dashboard`] sink, and publishes a
//! [`Snapshot`] every [`PUBLISH_EVERY`]. It never waits for the UI: snapshots
//! and notifications go out with `try_send` and a full channel skips one.
//!
//! Drill-down: the UI asks to follow a page ([`Request::Watch`]). Its story is
//! the context captured from the recent events when a finding was raised on
//! it (the page's events from the ordering's first fault on:
//! `snapshot::finding_context`), what the recent events hold at request
//! time, and from then on the pipeline's own history of the page
//! (`Pipeline::watch`, dropped when the UI stops watching).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::app::{Level, Notification};
use super::event::{offer, AppEvent};
use super::snapshot::{
    finding_context, page_events, Counts, CountsView, Dashboard, FeedState, PageTimeline,
    SnapshotBase, SourceInfo, TimelineRow, RECENT,
};
use crate::attach::{Filter, Status};
use crate::event::{Body, Dev, Event, PageKey};
use crate::pipeline::{ArrivalCounts, Arrivals, Pipeline, PipelineConfig, Released, Stats};
use crate::source::ringbuf::{monotonic_ns, LiveSource};
use crate::source::tracefile::ReadAhead;
use crate::source::{EventIter, SourceError};

/// Snapshot period while events flow: redraws are bounded by this, not by the event rate.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// The hot tables walk every page seen: refreshed at most this often.
const HOT_EVERY: Duration = Duration::from_secs(1);
/// Loss and lateness are reported at most this often (summed in between).
const NOTE_EVERY: Duration = Duration::from_secs(2);
/// Events between clock checks on the fast path.
const CHECK_EVERY: u64 = 1024;
/// Finding contexts kept for drill-down.
const MAX_CAPTURES: usize = 1024;
/// Events an unpaced replay's arrival stage reads from an event stream
/// before handing on what its window released (trace files go a chunk at a time).
const STAGE_BATCH: usize = 4096;
/// Batches in flight between the arrival stage and the pipeline thread.
const STAGE_DEPTH: usize = 2;

/// What the UI asks of the pipeline thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Include this page's timeline in every snapshot (None: stop).
    Watch(Option<PageKey>),
}

/// Finding contexts for drill-down, the newest [`MAX_CAPTURES`] pages.
#[derive(Default)]
struct Captures {
    /// A page's context and the number of the insert that put it there.
    map: HashMap<PageKey, (Vec<Event>, u64)>,
    order: VecDeque<PageKey>,
    inserts: u64,
}

impl Captures {
    fn insert(&mut self, key: PageKey, ctx: Vec<Event>) {
        if !self.map.contains_key(&key) {
            self.order.push_back(key);
            if self.order.len() > MAX_CAPTURES {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
        self.inserts += 1;
        self.map.insert(key, (ctx, self.inserts));
    }

    fn get(&self, key: &PageKey) -> Option<&Vec<Event>> {
        self.map.get(key).map(|(c, _)| c)
    }

    /// Changes when the page's context is replaced (a newer finding on it).
    fn version(&self, key: &PageKey) -> u64 {
        self.map.get(key).map_or(0, |&(_, n)| n)
    }
}

/// What the watched page's timeline was made from: it is rebuilt (copied,
/// sorted, formatted) only when one of these changed, not every publish.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PageStamp {
    key: PageKey,
    capture: u64,
    history: usize,
    gap: bool,
}

/// The recent events of an unpaced replay: its latest batches themselves,
/// each kept until [`RECENT`] newer items came after it, instead of a copy
/// of every event (the dashboard's ring) — on the hot path that copy costs
/// as much as a pipeline stage.
#[derive(Default)]
struct Kept {
    batches: VecDeque<Vec<Released>>,
    /// Items in all batches.
    total: usize,
}

impl Kept {
    /// The newest [`RECENT`] items judged, oldest first, counting only the
    /// first `upto` of the newest batch (the rest is not judged yet).
    fn events(&self, upto: usize) -> impl Iterator<Item = &Event> {
        let last = self.batches.len().saturating_sub(1);
        let newest = self.batches.back().map_or(0, Vec::len);
        let upto = upto.min(newest);
        let mut skip = (self.total - (newest - upto)).saturating_sub(RECENT);
        self.batches
            .iter()
            .enumerate()
            .filter_map(move |(i, b)| {
                let b = if i == last { &b[..upto] } else { &b[..] };
                // Whole batches skipped at once, not item by item.
                let s = b.get(skip..);
                skip = skip.saturating_sub(b.len());
                s
            })
            .flatten()
            .map(|r| match r {
                Released::Event(e) | Released::Late(e) => e,
            })
    }

    /// The batches as runs of items, oldest first, the newest one cut at
    /// `upto` (the rest is not judged yet).
    fn runs(&self, upto: usize) -> Vec<&[Released]> {
        let last = self.batches.len().saturating_sub(1);
        self.batches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if i == last {
                    &b[..upto.min(b.len())]
                } else {
                    &b[..]
                }
            })
            .collect()
    }

    fn push(&mut self, batch: Vec<Released>) {
        self.total += batch.len();
        self.batches.push_back(batch);
    }

    /// The oldest batch, once the newer ones hold [`RECENT`] items: to reuse.
    fn spare(&mut self) -> Option<Vec<Released>> {
        let oldest = self.batches.front()?.len();
        if self.batches.len() > 1 && self.total - oldest >= RECENT {
            self.total -= oldest;
            return self.batches.pop_front();
        }
        None
    }
}

/// What a replay reads.
pub enum ReplayInput {
    /// Any event stream (JSON Lines, stdin, tests).
    Events(EventIter),
    /// A trace file decoded a chunk at a time on a thread of its own
    /// (`tracefile::open_batches_quiet`): the unpaced replay takes its chunks
    /// whole, as `analyze` does.
    Batches(ReadAhead<Event, ()>),
}

impl From<EventIter> for ReplayInput {
    fn from(it: EventIter) -> Self {
        ReplayInput::Events(it)
    }
}

/// Which events a replay keeps: the narrowing the kernel side applies live
/// (`--dev`, `--inode`); `lost` records always pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Narrow {
    pub dev: Option<Dev>,
    pub inode: Option<u64>,
}

impl Narrow {
    #[inline]
    pub fn keep(&self, ev: &Event) -> bool {
        matches!(ev.body, Body::Lost { .. })
            || (self.dev.is_none_or(|d| d == ev.dev) && self.inode.is_none_or(|i| i == ev.ino))
    }
}

/// How replay is paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// As fast as possible (`--speed 0`).
    Unpaced,
    /// This many times real (trace) time.
    Speed(f64),
}

struct Feed {
    pipe: Pipeline,
    dash: Dashboard,
    tx: SyncSender<AppEvent>,
    requests: Receiver<Request>,
    source: SourceInfo,
    state: FeedState,
    seq: u64,
    last_pub: Instant,
    last_pub_events: u64,
    last_eps: f64,
    last_note: Instant,
    last_hot: Option<Instant>,
    noted_lost: u64,
    noted_late: u64,
    noted_findings: u64,
    watch: Option<PageKey>,
    /// Context of the watched page at request time (recent events).
    watch_base: Vec<Event>,
    /// The watched page's timeline as last published, and what it was made from.
    page_cache: Option<(PageStamp, Arc<PageTimeline>)>,
    captures: Captures,
    /// Unpaced replay: the recent events are its latest batches, not the dashboard's copy.
    kept: Option<Kept>,
    ui_gone: bool,
    /// Input is over: nothing to keep up with any more, so sends may wait for
    /// room (the final state must not be the snapshot a full channel drops).
    holding: bool,
    /// Tracing the running kernel (not replaying).
    live: bool,
    /// While the reorder window runs on the arrival stage (unpaced replay):
    /// its latest counts and the bad records it skipped, which `pipe.stats()` lacks.
    arrived: Option<(ArrivalCounts, u64)>,
    /// What a trace file skipped or is missing, notified with the final state.
    file_notes: Vec<String>,
    /// Unpaced replay: the panes' counts, as the arrival stage last sent them.
    counts_view: Option<CountsView>,
}

impl Feed {
    fn new(
        cfg: PipelineConfig,
        source: SourceInfo,
        tx: SyncSender<AppEvent>,
        requests: Receiver<Request>,
    ) -> Self {
        let now = Instant::now();
        Self {
            pipe: Pipeline::new(cfg),
            dash: Dashboard::new(),
            tx,
            requests,
            source,
            state: FeedState::Running,
            seq: 0,
            last_pub: now,
            last_pub_events: 0,
            last_eps: 0.0,
            last_note: now,
            last_hot: None,
            noted_lost: 0,
            noted_late: 0,
            noted_findings: 0,
            watch: None,
            watch_base: Vec::new(),
            page_cache: None,
            captures: Captures::default(),
            kept: None,
            ui_gone: false,
            holding: false,
            live: false,
            arrived: None,
            file_notes: Vec::new(),
            counts_view: None,
        }
    }

    /// The pipeline's counters, with the arrival stage's while it has them.
    fn stats(&self) -> Stats {
        let mut st = self.pipe.stats().clone();
        if let Some((counts, bad)) = &self.arrived {
            counts.add_to(&mut st);
            st.bad_input += bad;
        }
        st
    }

    #[inline]
    fn push(&mut self, ev: Event) {
        self.pipe.push(ev, &mut self.dash);
        if !self.dash.pending.is_empty() {
            self.capture();
        }
    }

    /// Copy the context of new findings out of the recent events.
    #[cold]
    fn capture(&mut self) {
        for f in std::mem::take(&mut self.dash.pending) {
            let ctx = match &self.kept {
                Some(k) => finding_context(&k.runs(usize::MAX), &f),
                None => self.dash.finding_context(&f),
            };
            self.captures.insert(f.page, ctx);
        }
    }

    /// The recent events touching `key` (oldest first).
    fn recent_for(&self, key: &PageKey) -> Vec<Event> {
        match &self.kept {
            Some(k) => page_events(k.events(usize::MAX), key),
            None => self.dash.recent_for(key),
        }
    }

    /// Timestamp of the oldest event still held for context.
    fn recent_oldest_ts(&self) -> Option<u64> {
        match &self.kept {
            Some(k) => k.events(usize::MAX).next().map(|e| e.ts),
            None => self.dash.recent_oldest_ts(),
        }
    }

    fn send(&mut self, ev: AppEvent) {
        let delivered = if self.holding {
            self.tx.send(ev).is_ok()
        } else {
            offer(&self.tx, ev)
        };
        if !delivered {
            self.ui_gone = true;
        }
    }

    fn handle_requests(&mut self) {
        loop {
            match self.requests.try_recv() {
                Ok(r) => self.request(r),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.ui_gone = true;
                    return;
                }
            }
        }
    }

    fn request(&mut self, r: Request) {
        // The pipeline keeps a watched page's whole history, at a cost per
        // event: only the page on screen stays watched.
        if let Some(old) = self.watch.take() {
            self.pipe.unwatch(&old);
        }
        self.watch_base.clear();
        self.page_cache = None;
        if let Request::Watch(Some(key)) = r {
            self.watch_base = self.recent_for(&key);
            self.pipe.watch(key);
            self.watch = Some(key);
        }
        // Answer now rather than at the next period: the user is waiting.
        self.publish();
    }

    /// The watched page's story: finding context + request-time context +
    /// history since; the last one again while none of them changed.
    fn page(&mut self) -> Option<Arc<PageTimeline>> {
        let key = self.watch?;
        let gap = self.gap(&key);
        let stamp = PageStamp {
            key,
            capture: self.captures.version(&key),
            history: self.pipe.timeline(&key).map_or(0, <[Event]>::len),
            gap,
        };
        if let Some((s, page)) = &self.page_cache {
            if *s == stamp {
                return Some(page.clone());
            }
        }
        let mut events: Vec<Event> = Vec::new();
        if let Some(c) = self.captures.get(&key) {
            events.extend_from_slice(c);
        }
        events.extend_from_slice(&self.watch_base);
        if let Some(h) = self.pipe.timeline(&key) {
            events.extend_from_slice(h);
        }
        events.sort_by_key(|e| e.ts);
        events.dedup();
        let page = Arc::new(PageTimeline {
            key,
            missing: events.is_empty(),
            gap,
            rows: events.iter().map(TimelineRow::from_event).collect(),
        });
        self.page_cache = Some((stamp, page.clone()));
        Some(page)
    }

    /// A gap is possible when the finding's context ended before the oldest
    /// event the request-time context could see.
    fn gap(&self, key: &PageKey) -> bool {
        self.captures
            .get(key)
            .and_then(|c| c.last())
            .is_some_and(|c| self.recent_oldest_ts().is_some_and(|oldest| oldest > c.ts))
    }

    /// Publish if anything changed since the last snapshot (an idle source
    /// then costs no redraws).
    fn publish_if_changed(&mut self) {
        if self.stats().events != self.last_pub_events || self.last_eps != 0.0 {
            self.publish();
        } else {
            self.last_pub = Instant::now();
        }
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let stats = self.stats();
        let dt = now.duration_since(self.last_pub).as_secs_f64();
        let eps = if dt > 0.0 {
            (stats.events - self.last_pub_events) as f64 / dt
        } else {
            0.0
        };
        self.last_eps = eps;
        self.last_pub = now;
        self.last_pub_events = stats.events;
        self.seq += 1;
        let refresh_hot = self.holding
            || self
                .last_hot
                .is_none_or(|t| now.duration_since(t) >= HOT_EVERY);
        if refresh_hot {
            self.last_hot = Some(now);
        }
        let page = self.page();
        let snap = self.dash.snapshot(SnapshotBase {
            refresh_hot,
            seq: self.seq,
            source: self.source.clone(),
            state: self.state.clone(),
            stats,
            events_per_sec: eps,
            page,
            counts: self.counts_view.clone(),
        });
        self.send(AppEvent::Snapshot(Arc::new(snap)));
        self.notes(now);
    }

    /// Loss, lateness and new findings since the last note, as notifications.
    fn notes(&mut self, now: Instant) {
        if now.duration_since(self.last_note) < NOTE_EVERY
            && !matches!(self.state, FeedState::Done { .. })
        {
            return;
        }
        self.last_note = now;
        let st = self.stats();
        if st.lost > self.noted_lost {
            let n = st.lost - self.noted_lost;
            self.send(AppEvent::Notify(Notification::new(
                Level::Warn,
                format!("{n} events lost (total {}): the kernel could not deliver them; findings may be missed", st.lost),
            )));
        }
        if st.late > self.noted_late {
            let n = st.late - self.noted_late;
            self.send(AppEvent::Notify(Notification::new(
                Level::Warn,
                format!(
                    "{n} events arrived after the reorder window (total {}): not judged",
                    st.late
                ),
            )));
        }
        if st.findings > self.noted_findings {
            let n = st.findings - self.noted_findings;
            self.send(AppEvent::Notify(Notification::new(
                Level::Warn,
                format!(
                    "{n} new finding{}: see the findings pane",
                    if n == 1 { "" } else { "s" }
                ),
            )));
        }
        self.noted_lost = st.lost;
        self.noted_late = st.late;
        self.noted_findings = st.findings;
    }

    fn due(&self) -> bool {
        self.last_pub.elapsed() >= PUBLISH_EVERY
    }

    /// Sleep until `deadline`, still answering the UI and publishing on time.
    fn wait_until(&mut self, deadline: Instant, advance: impl Fn(Instant) -> Option<u64>) {
        loop {
            let now = Instant::now();
            if now >= deadline || self.ui_gone {
                return;
            }
            let step = (deadline - now).min(PUBLISH_EVERY);
            match self.requests.recv_timeout(step) {
                Ok(r) => self.request(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.ui_gone = true,
            }
            if let Some(ts) = advance(Instant::now()) {
                self.pipe.advance(ts, &mut self.dash);
                if !self.dash.pending.is_empty() {
                    self.capture();
                }
            }
            if self.due() {
                self.publish_if_changed();
            }
        }
    }

    /// The input ended (`Ok(when it started)`) or failed (`Err(why)`):
    /// release everything, publish, then answer drill-down requests until
    /// the UI goes away. The time shown ("done in") includes releasing what
    /// the window still held, as `analyze`'s run time does.
    fn hold(mut self, end: Result<Instant, String>) {
        self.pipe.finish(&mut self.dash);
        if !self.dash.pending.is_empty() {
            self.capture();
        }
        let state = match end {
            Ok(start) => FeedState::Done {
                elapsed: start.elapsed(),
            },
            Err(e) => FeedState::Failed(e),
        };
        let note = match &state {
            FeedState::Done { .. } => Notification::new(
                Level::Info,
                format!(
                    "{}: {} events; holding the final state (q quits)",
                    if self.live {
                        "tracing stopped at --duration"
                    } else {
                        "replay finished"
                    },
                    self.pipe.stats().events
                ),
            ),
            FeedState::Failed(e) => Notification::new(Level::Error, format!("stopped: {e}")),
            FeedState::Running => unreachable!("hold is called with a final state"),
        };
        self.state = state;
        self.holding = true;
        self.publish();
        for w in std::mem::take(&mut self.file_notes) {
            self.send(AppEvent::Notify(Notification::new(Level::Warn, w)));
        }
        self.send(AppEvent::Notify(note));
        while !self.ui_gone {
            match self.requests.recv() {
                Ok(r) => self.request(r),
                Err(_) => return,
            }
        }
    }
}

/// A replay: what to read, how fast, and which events to keep.
pub struct Replay {
    pub input: ReplayInput,
    pub pace: Pace,
    /// Count and skip a bad record (`Stats::bad_input`) instead of stopping.
    pub skip_bad: bool,
    pub narrow: Narrow,
}

/// Replay on a new thread. Bad input stops the replay with an error
/// notification and a `Failed` state (what was counted stays on screen),
/// unless `skip_bad` and the record alone is bad: then it is counted
/// (`Stats::bad_input`) and skipped.
pub fn spawn(
    replay: Replay,
    cfg: PipelineConfig,
    source: SourceInfo,
    tx: SyncSender<AppEvent>,
    requests: Receiver<Request>,
) -> thread::JoinHandle<Option<String>> {
    pipeline_thread(cfg, source, tx, requests, move |feed| match replay.pace {
        Pace::Unpaced => staged(replay.input, replay.narrow, replay.skip_bad, feed),
        Pace::Speed(x) => paced(replay.input, x, replay.narrow, replay.skip_bad, feed),
    })
}

/// The pipeline's thread: `run` drives a [`Feed`] made on it.
fn pipeline_thread(
    cfg: PipelineConfig,
    source: SourceInfo,
    tx: SyncSender<AppEvent>,
    requests: Receiver<Request>,
    run: impl FnOnce(Feed) -> Option<String> + Send + 'static,
) -> thread::JoinHandle<Option<String>> {
    thread::Builder::new()
        .name("daxtrace-pipeline".into())
        .spawn(move || run(Feed::new(cfg, source, tx, requests)))
        .expect("spawning a thread")
}

/// [`spawn`] of every event of `events`.
pub fn spawn_replay(
    events: EventIter,
    pace: Pace,
    skip_bad: bool,
    cfg: PipelineConfig,
    source: SourceInfo,
    tx: SyncSender<AppEvent>,
    requests: Receiver<Request>,
) -> thread::JoinHandle<Option<String>> {
    spawn(
        Replay {
            input: events.into(),
            pace,
            skip_bad,
            narrow: Narrow::default(),
        },
        cfg,
        source,
        tx,
        requests,
    )
}

fn stop_message(e: &SourceError) -> String {
    format!("{e} (fix or remove the record, or pass --skip-bad)")
}

/// Replay at `x` times trace time, one event at a time. Returns the input's
/// error, if it stopped on one.
fn paced(
    mut input: ReplayInput,
    x: f64,
    narrow: Narrow,
    skip_bad: bool,
    mut feed: Feed,
) -> Option<String> {
    let start = Instant::now();
    feed.publish();
    let mut origin: Option<u64> = None;
    let mut n: u64 = 0;
    loop {
        let item = match &mut input {
            ReplayInput::Events(it) => it.next(),
            ReplayInput::Batches(ra) => ra.next_item().map(Ok),
        };
        let Some(item) = item else { break };
        let ev = match item {
            Ok(ev) if narrow.keep(&ev) => ev,
            Ok(_) => continue,
            Err(e) if skip_bad && e.is_skippable() => {
                feed.pipe.note_bad_input();
                continue;
            }
            Err(e) => {
                let msg = stop_message(&e);
                feed.hold(Err(msg.clone()));
                return Some(msg);
            }
        };
        let t0 = *origin.get_or_insert(ev.ts);
        let offset = Duration::from_secs_f64(ev.ts.saturating_sub(t0) as f64 / 1e9 / x);
        // Trace time that corresponds to a wall-clock instant, for `advance`.
        let trace_now = move |now: Instant| {
            Some(t0 + (now.duration_since(start).as_secs_f64() * x * 1e9) as u64)
        };
        feed.wait_until(start + offset, trace_now);
        feed.push(ev);
        n += 1;
        if n.is_multiple_of(CHECK_EVERY) && feed.due() {
            feed.handle_requests();
            feed.publish();
        }
        if feed.ui_gone {
            return None;
        }
    }
    if let ReplayInput::Batches(ra) = &mut input {
        feed.file_notes = ra.take_warnings();
    }
    feed.hold(Ok(start));
    None
}

/// What the arrival stage hands the pipeline thread.
enum Staged {
    /// Released items in the order `Pipeline::push` acts on them, then the
    /// arrival counters and bad records skipped after them, and (at the
    /// publish period) what the panes counted from them show.
    Items(Vec<Released>, ArrivalCounts, u64, Option<CountsView>),
    /// The input is over: the arrival side back, bad records skipped, the
    /// error that stopped the input, what a trace file skipped, the panes' final counts.
    End {
        arrivals: Arrivals,
        bad: u64,
        error: Option<SourceError>,
        warnings: Vec<String>,
        view: CountsView,
    },
}

/// The arrival stage's sending side. It also runs the dashboard's per-event
/// counts ([`Counts`]) over what it releases: the same events in the same
/// order the sink would see, counted on the stage that has time to spare
/// (the judging stage is the busiest), in a cache apart from the timelines'.
struct StageOut<'a> {
    tx: &'a SyncSender<Staged>,
    back: &'a Receiver<Vec<Released>>,
    counts: Counts,
    last_view: Instant,
    last_hot: Instant,
}

impl StageOut<'_> {
    /// Take one event through the window; count what it releases while
    /// that is still in cache (a batch is larger than the cache).
    #[inline]
    fn push(&mut self, arrivals: &mut Arrivals, ev: Event, out: &mut Vec<Released>) {
        let from = out.len();
        arrivals.push(ev, out);
        for r in &out[from..] {
            match r {
                Released::Event(e) | Released::Late(e) => self.counts.on_event(e),
            }
        }
    }

    /// Hand `out` on, continuing in an emptied buffer that came back.
    /// False once the pipeline thread is gone.
    fn flush(&mut self, out: &mut Vec<Released>, arrivals: &Arrivals, bad: u64) -> bool {
        let now = Instant::now();
        let view = (now.duration_since(self.last_view) >= PUBLISH_EVERY).then(|| {
            self.last_view = now;
            let hot = now.duration_since(self.last_hot) >= HOT_EVERY;
            if hot {
                self.last_hot = now;
            }
            self.counts.view(hot)
        });
        let next = self.back.try_recv().map(|mut v| {
            v.clear();
            v
        });
        // A new buffer starts at the size batches have, not growing by doubling.
        let next = next.unwrap_or_else(|_| Vec::with_capacity(out.len()));
        let full = std::mem::replace(out, next);
        self.tx
            .send(Staged::Items(full, arrivals.counts(), bad, view))
            .is_ok()
    }
}

/// Replay as fast as possible, in stages as `analyze` runs a trace file:
/// decoding (a trace file's own reading thread), the reorder window (the
/// `daxtrace-order` thread: [`arrive`]) and the timelines, rules and
/// dashboard sink here, with snapshots at the publish period. Items come a
/// batch at a time and their buffers go back for reuse: nothing is
/// allocated or locked per event. Returns the input's error, if it stopped on one.
fn staged(input: ReplayInput, narrow: Narrow, skip_bad: bool, mut feed: Feed) -> Option<String> {
    let start = Instant::now();
    feed.publish();
    let (tx, rx) = mpsc::sync_channel(STAGE_DEPTH);
    let (back_tx, back_rx) = mpsc::channel();
    let arrivals = feed.pipe.take_arrivals();
    feed.arrived = Some((ArrivalCounts::default(), 0));
    feed.kept = Some(Kept::default());
    feed.dash = std::mem::take(&mut feed.dash)
        .without_recent()
        .counted_elsewhere();
    let stage = thread::Builder::new()
        .name("daxtrace-order".into())
        .spawn(move || arrive(input, narrow, skip_bad, arrivals, &tx, &back_rx))
        .expect("spawning a thread");
    loop {
        match rx.recv_timeout(PUBLISH_EVERY) {
            Ok(Staged::Items(items, counts, bad, view)) => {
                if view.is_some() {
                    feed.counts_view = view;
                }
                let Feed {
                    pipe,
                    dash,
                    kept,
                    captures,
                    ..
                } = &mut feed;
                let kept = kept.as_mut().expect("set above");
                kept.push(items);
                let batch = kept.batches.back().expect("just pushed");
                // With the pages of items a few places ahead prefetched, as `analyze` judges.
                pipe.apply_batch_then(batch, dash, |i, dash| {
                    if !dash.pending.is_empty() {
                        // Context: among the kept items up to this one.
                        for f in std::mem::take(&mut dash.pending) {
                            captures.insert(f.page, finding_context(&kept.runs(i + 1), &f));
                        }
                    }
                });
                while let Some(old) = kept.spare() {
                    // The stage may have ended already: then the buffer is freed.
                    let _ = back_tx.send(old);
                }
                feed.arrived = Some((counts, bad));
            }
            Ok(Staged::End {
                arrivals,
                bad,
                error,
                warnings,
                view,
            }) => {
                feed.counts_view = Some(view);
                feed.pipe.put_arrivals(arrivals);
                for _ in 0..bad {
                    feed.pipe.note_bad_input();
                }
                feed.arrived = None;
                feed.file_notes = warnings;
                // It returns right after sending this.
                if let Err(panic) = stage.join() {
                    std::panic::resume_unwind(panic);
                }
                let msg = error.as_ref().map(stop_message);
                feed.hold(msg.clone().map_or(Ok(start), Err));
                return msg;
            }
            // A source that is slow to deliver (stdin): publish and answer anyway.
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // The stage sends `End` before it returns: it panicked.
                match stage.join() {
                    Err(panic) => std::panic::resume_unwind(panic),
                    Ok(()) => unreachable!("the arrival stage ended without End"),
                }
            }
        }
        if feed.due() {
            feed.handle_requests();
            feed.publish_if_changed();
        }
        if feed.ui_gone {
            // Dropping `rx` stops the arrival stage at its next send.
            return None;
        }
    }
}

/// The arrival stage of an unpaced replay: narrowing, bad-record
/// accounting and the reorder window, a batch at a time. Returns early
/// once the pipeline thread is gone.
fn arrive(
    input: ReplayInput,
    narrow: Narrow,
    skip_bad: bool,
    mut arrivals: Arrivals,
    tx: &SyncSender<Staged>,
    back: &Receiver<Vec<Released>>,
) {
    let mut bad = 0u64;
    let mut error = None;
    let mut warnings = Vec::new();
    let mut out: Vec<Released> = Vec::new();
    let long_ago = Instant::now()
        .checked_sub(HOT_EVERY)
        .unwrap_or_else(Instant::now);
    let mut stage = StageOut {
        tx,
        back,
        counts: Counts::new(),
        last_view: long_ago,
        last_hot: long_ago,
    };
    match input {
        ReplayInput::Batches(mut ra) => {
            while let Some(evs) = ra.next_slice() {
                for &ev in evs {
                    if narrow.keep(&ev) {
                        stage.push(&mut arrivals, ev, &mut out);
                    }
                }
                if !stage.flush(&mut out, &arrivals, bad) {
                    return;
                }
            }
            warnings = ra.take_warnings();
        }
        ReplayInput::Events(it) => {
            for (n, item) in (1..).zip(it) {
                match item {
                    Ok(ev) if narrow.keep(&ev) => stage.push(&mut arrivals, ev, &mut out),
                    Ok(_) => {}
                    Err(e) if skip_bad && e.is_skippable() => bad += 1,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
                if n % STAGE_BATCH == 0 && !stage.flush(&mut out, &arrivals, bad) {
                    return;
                }
            }
        }
    }
    // Released here rather than by `Pipeline::finish`, so the pipeline
    // thread judges them as batch items, with their context kept.
    let from = out.len();
    arrivals.finish(&mut out);
    for r in &out[from..] {
        match r {
            Released::Event(e) | Released::Late(e) => stage.counts.on_event(e),
        }
    }
    if stage.flush(&mut out, &arrivals, bad) {
        let view = stage.counts.view(true);
        // The pipeline thread may be gone (quit): nothing left to tell.
        let _ = tx.send(Staged::End {
            arrivals,
            bad,
            error,
            warnings,
            view,
        });
    }
}

/// Trace the running kernel on a new thread. Attaching happens there, so a
/// failure becomes an error notification and a `Failed` state on screen (the
/// error also goes back to `top` for its exit status), never a crash. Probes
/// the plan could not use, and steps only inferred, are notified too.
pub fn spawn_live(
    filter: Filter,
    deadline: Option<Instant>,
    cfg: PipelineConfig,
    source: SourceInfo,
    tx: SyncSender<AppEvent>,
    requests: Receiver<Request>,
) -> thread::JoinHandle<Option<String>> {
    pipeline_thread(cfg, source, tx, requests, move |feed| {
        live(&filter, deadline, feed)
    })
}

/// The status line's kernel, backends and plan summary, from the attach plan.
fn plan_info(info: &mut SourceInfo, plan: &crate::attach::AttachPlan) {
    info.kernel = plan.kernel.release.clone();
    info.backend = match plan.backends_used().as_slice() {
        [] => plan.backend.name().to_string(),
        used => used
            .iter()
            .map(|(b, _)| b.name())
            .collect::<Vec<_>>()
            .join("+"),
    };
    info.plan = plan.summary_line();
}
fn live(filter: &Filter, deadline: Option<Instant>, mut feed: Feed) -> Option<String> {
    let start = Instant::now();
    feed.live = true;
    feed.publish();
    let mut src = match LiveSource::open(filter) {
        Ok(src) => src,
        Err(e) => {
            let msg = format!("cannot trace: {e}");
            feed.hold(Err(msg.clone()));
            return Some(msg);
        }
    };
    let plan = src.plan();
    plan_info(&mut feed.source, plan);
    let mut notes = vec![Notification::new(
        Level::Info,
        format!(
            "{} probes attached in {:.2}s ({})",
            plan.used().count(),
            src.ready_after().as_secs_f64(),
            plan.backends_used()
                .iter()
                .map(|(b, n)| format!("{} {n}", b.name()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )];
    for n in &plan.notes {
        notes.push(Notification::new(Level::Info, n.clone()));
    }
    for e in &plan.entries {
        if let Status::Failed(why) = &e.status {
            notes.push(Notification::new(
                Level::Error,
                format!("attach {} failed: {why}", e.symbol),
            ));
        }
    }
    for c in plan.coverage.iter().filter(|c| c.how != "traced") {
        let level = if c.how == "missing" {
            Level::Warn
        } else {
            Level::Info
        };
        notes.push(Notification::new(
            level,
            format!("{}: {} on this kernel", c.step.name(), c.how),
        ));
    }
    for n in notes {
        feed.send(AppEvent::Notify(n));
    }
    feed.publish();
    let failed = loop {
        if feed.ui_gone || deadline.is_some_and(|d| Instant::now() >= d) {
            break None;
        }
        if let Err(e) = src.poll(Duration::from_millis(100), &mut |ev| feed.push(ev)) {
            break Some(format!("reading the ring buffer failed: {e}"));
        }
        let notes = src.take_notes();
        if !notes.is_empty() {
            // An attach point attached while tracing: the status line's plan too.
            plan_info(&mut feed.source, src.plan());
        }
        for n in notes {
            feed.send(AppEvent::Notify(Notification::new(Level::Info, n)));
        }
        // Nothing newer may come for a while: release what the window no longer needs.
        feed.pipe.advance(monotonic_ns(), &mut feed.dash);
        if !feed.dash.pending.is_empty() {
            feed.capture();
        }
        feed.handle_requests();
        if feed.due() {
            feed.publish_if_changed();
        }
    };
    // Detach, then take what the ring buffer still holds: nothing captured is lost.
    src.finish(&mut |ev| feed.push(ev));
    if feed.ui_gone {
        return None;
    }
    match failed {
        Some(msg) => {
            feed.hold(Err(msg.clone()));
            Some(msg)
        }
        None => {
            feed.hold(Ok(start));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Comm, Size};

    fn feed() -> (Feed, Receiver<AppEvent>) {
        let (tx, rx) = super::super::event::channel();
        let (_req, req_rx) = mpsc::channel();
        (
            Feed::new(PipelineConfig::default(), SourceInfo::default(), tx, req_rx),
            rx,
        )
    }

    fn key(pgoff: u64) -> PageKey {
        PageKey {
            dev: Dev::new(259, 0),
            ino: 1,
            pgoff,
        }
    }

    fn fault(ts: u64, id: u64, pgoff: u64) -> Event {
        let body = Body::FaultBegin {
            fault: id,
            pgoff,
            size: Size::Pte,
            write: false,
        };
        Event {
            ts,
            cpu: 0,
            tid: 1,
            pid: 1,
            comm: Comm::new("t"),
            dev: Dev::new(259, 0),
            ino: 1,
            probe: 0,
            body,
        }
    }

    /// `Watch(None)` stops the pipeline keeping the page's history (a cost
    /// per event for as long as it is kept), and watching another page
    /// stops watching the first.
    #[test]
    fn unwatching_drops_the_pipelines_history() {
        let (mut f, _rx) = feed();
        f.request(Request::Watch(Some(key(1))));
        assert!(f.pipe.timeline(&key(1)).is_some());
        f.request(Request::Watch(None));
        assert_eq!(f.pipe.timeline(&key(1)), None);
        assert!(f.page().is_none());
        f.request(Request::Watch(Some(key(1))));
        f.request(Request::Watch(Some(key(2))));
        assert_eq!(f.pipe.timeline(&key(1)), None);
        assert!(f.pipe.timeline(&key(2)).is_some());
    }

    /// The watched page's timeline is made again only when its story changed.
    #[test]
    fn watched_timeline_is_rebuilt_only_when_it_changed() {
        let (mut f, _rx) = feed();
        f.request(Request::Watch(Some(key(1))));
        let a = f.page().unwrap();
        assert!(a.missing);
        assert!(
            Arc::ptr_eq(&a, &f.page().unwrap()),
            "nothing changed: the same timeline"
        );
        // Events released on another page leave it as it was.
        for (i, ts) in (1..=3).zip([1_000, 2_000, 3_000]) {
            f.push(fault(ts, i, 2));
        }
        f.pipe.finish(&mut f.dash);
        assert!(Arc::ptr_eq(&a, &f.page().unwrap()));
        f.push(fault(4_000, 4, 1));
        f.pipe.finish(&mut f.dash);
        let b = f.page().unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.rows.len(), 1);
        assert!(Arc::ptr_eq(&b, &f.page().unwrap()));
    }
}
