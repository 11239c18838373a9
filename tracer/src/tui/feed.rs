//! The pipeline thread: reads the source, pushes every event through the
//! shared [`Pipeline`] into the [`Dashboard`] sink, and publishes a
//! [`Snapshot`] every [`PUBLISH_EVERY`]. It never waits for the UI: snapshots
//! and notifications go out with `try_send` and a full channel skips one.
//!
//! Drill-down: the UI asks to follow a page ([`Request::Watch`]). Its story is
//! the context captured from the recent events when a finding was raised on
//! it, what the recent events hold at request time, and from then on the
//! pipeline's own history of the page (`Pipeline::watch`).

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::app::{Level, Notification};
use super::event::{offer, AppEvent};
use super::snapshot::{Dashboard, FeedState, PageTimeline, SnapshotBase, SourceInfo, TimelineRow};
use crate::event::{Event, PageKey};
use crate::attach::{Filter, Status};
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::source::ringbuf::{monotonic_ns, LiveSource};
use crate::source::EventIter;

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

/// What the UI asks of the pipeline thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Include this page's timeline in every snapshot (None: stop).
    Watch(Option<PageKey>),
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
    captures: HashMap<PageKey, Vec<Event>>,
    capture_order: Vec<PageKey>,
    ui_gone: bool,
    /// Input is over: nothing to keep up with any more, so sends may wait for
    /// room (the final state must not be the snapshot a full channel drops).
    holding: bool,
    /// Tracing the running kernel (not replaying).
    live: bool,
}

impl Feed {
    fn new(cfg: PipelineConfig, source: SourceInfo, tx: SyncSender<AppEvent>, requests: Receiver<Request>) -> Self {
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
            captures: HashMap::new(),
            capture_order: Vec::new(),
            ui_gone: false,
            holding: false,
            live: false,
        }
    }

    #[inline]
    fn push(&mut self, ev: Event) {
        self.pipe.push(ev, &mut self.dash);
        if !self.dash.pending.is_empty() {
            self.capture();
        }
    }

    /// Copy the context of newly found pages out of the recent events.
    #[cold]
    fn capture(&mut self) {
        for key in std::mem::take(&mut self.dash.pending) {
            let ctx = self.dash.recent_for(&key);
            if !self.captures.contains_key(&key) {
                self.capture_order.push(key);
                if self.capture_order.len() > MAX_CAPTURES {
                    let old = self.capture_order.remove(0);
                    self.captures.remove(&old);
                }
            }
            self.captures.insert(key, ctx);
        }
    }

    fn send(&mut self, ev: AppEvent) {
        let delivered = if self.holding { self.tx.send(ev).is_ok() } else { offer(&self.tx, ev) };
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
        match r {
            Request::Watch(Some(key)) => {
                self.watch_base = self.dash.recent_for(&key);
                self.pipe.watch(key);
                self.watch = Some(key);
            }
            Request::Watch(None) => {
                self.watch = None;
                self.watch_base.clear();
            }
        }
        // Answer now rather than at the next period: the user is waiting.
        self.publish();
    }

    /// The watched page's story: finding context + request-time context + history since.
    fn page(&self) -> Option<PageTimeline> {
        let key = self.watch?;
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
        // A gap is possible when the finding's context ended before the oldest
        // event the request-time context could see.
        let gap = match (self.captures.get(&key).and_then(|c| c.last()), self.watch_base.first()) {
            (Some(c), Some(_)) | (Some(c), None) => {
                self.dash.recent_oldest_ts().is_some_and(|oldest| oldest > c.ts)
            }
            _ => false,
        };
        Some(PageTimeline {
            key,
            missing: events.is_empty(),
            gap,
            rows: events.iter().map(TimelineRow::from_event).collect(),
        })
    }

    /// Publish if anything changed since the last snapshot (an idle source
    /// then costs no redraws).
    fn publish_if_changed(&mut self) {
        if self.pipe.stats().events != self.last_pub_events || self.last_eps != 0.0 {
            self.publish();
        } else {
            self.last_pub = Instant::now();
        }
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let stats = self.pipe.stats().clone();
        let dt = now.duration_since(self.last_pub).as_secs_f64();
        let eps = if dt > 0.0 { (stats.events - self.last_pub_events) as f64 / dt } else { 0.0 };
        self.last_eps = eps;
        self.last_pub = now;
        self.last_pub_events = stats.events;
        self.seq += 1;
        let refresh_hot = self.holding || self.last_hot.is_none_or(|t| now.duration_since(t) >= HOT_EVERY);
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
        });
        self.send(AppEvent::Snapshot(Arc::new(snap)));
        self.notes(now);
    }

    /// Loss, lateness and new findings since the last note, as notifications.
    fn notes(&mut self, now: Instant) {
        if now.duration_since(self.last_note) < NOTE_EVERY && !matches!(self.state, FeedState::Done { .. }) {
            return;
        }
        self.last_note = now;
        let st = self.pipe.stats().clone();
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
                format!("{n} events arrived after the reorder window (total {}): not judged", st.late),
            )));
        }
        if st.findings > self.noted_findings {
            let n = st.findings - self.noted_findings;
            self.send(AppEvent::Notify(Notification::new(
                Level::Warn,
                format!("{n} new finding{}: see the findings pane", if n == 1 { "" } else { "s" }),
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

    /// The input ended (or failed): release everything, publish, then answer
    /// drill-down requests until the UI goes away.
    fn hold(mut self, state: FeedState) {
        self.pipe.finish(&mut self.dash);
        if !self.dash.pending.is_empty() {
            self.capture();
        }
        let note = match &state {
            FeedState::Done { .. } => Notification::new(
                Level::Info,
                format!(
                    "{}: {} events; holding the final state (q quits)",
                    if self.live { "tracing stopped at --duration" } else { "replay finished" },
                    self.pipe.stats().events
                ),
            ),
            FeedState::Failed(e) => Notification::new(Level::Error, format!("stopped: {e}")),
            FeedState::Running => unreachable!("hold is called with a final state"),
        };
        self.state = state;
        self.holding = true;
        self.publish();
        self.send(AppEvent::Notify(note));
        while !self.ui_gone {
            match self.requests.recv() {
                Ok(r) => self.request(r),
                Err(_) => return,
            }
        }
    }
}

/// Replay `events` on a new thread. Bad input stops the replay with an error
/// notification and a `Failed` state (what was counted stays on screen),
/// unless `skip_bad` and the record alone is bad: then it is counted
/// (`Stats::bad_input`) and skipped.
pub fn spawn_replay(
    events: EventIter,
    pace: Pace,
    skip_bad: bool,
    cfg: PipelineConfig,
    source: SourceInfo,
    tx: SyncSender<AppEvent>,
    requests: Receiver<Request>,
) -> thread::JoinHandle<Option<String>> {
    thread::Builder::new()
        .name("daxtrace-pipeline".into())
        .spawn(move || replay(events, pace, skip_bad, Feed::new(cfg, source, tx, requests)))
        .expect("spawning a thread")
}

/// Returns the input's error, if it stopped on one.
fn replay(events: EventIter, pace: Pace, skip_bad: bool, mut feed: Feed) -> Option<String> {
    let start = Instant::now();
    feed.publish();
    let mut origin: Option<u64> = None;
    let mut n: u64 = 0;
    for item in events {
        let ev = match item {
            Ok(ev) => ev,
            Err(e) if skip_bad && e.is_skippable() => {
                feed.pipe.note_bad_input();
                continue;
            }
            Err(e) => {
                let msg = format!("{e} (fix or remove the record, or pass --skip-bad)");
                feed.hold(FeedState::Failed(msg.clone()));
                return Some(msg);
            }
        };
        if let Pace::Speed(x) = pace {
            let t0 = *origin.get_or_insert(ev.ts);
            let offset = Duration::from_secs_f64(ev.ts.saturating_sub(t0) as f64 / 1e9 / x);
            // Trace time that corresponds to a wall-clock instant, for `advance`.
            let trace_now = move |now: Instant| Some(t0 + (now.duration_since(start).as_secs_f64() * x * 1e9) as u64);
            feed.wait_until(start + offset, trace_now);
        }
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
    feed.hold(FeedState::Done { elapsed: start.elapsed() });
    None
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
    thread::Builder::new()
        .name("daxtrace-pipeline".into())
        .spawn(move || live(&filter, deadline, Feed::new(cfg, source, tx, requests)))
        .expect("spawning a thread")
}

fn live(filter: &Filter, deadline: Option<Instant>, mut feed: Feed) -> Option<String> {
    let start = Instant::now();
    feed.live = true;
    feed.publish();
    let mut src = match LiveSource::open(filter) {
        Ok(src) => src,
        Err(e) => {
            let msg = format!("cannot trace: {e}");
            feed.hold(FeedState::Failed(msg.clone()));
            return Some(msg);
        }
    };
    let plan = src.plan();
    feed.source.kernel = plan.kernel.release.clone();
    feed.source.backend = match plan.backends_used().as_slice() {
        [] => plan.backend.name().to_string(),
        used => used.iter().map(|(b, _)| b.name()).collect::<Vec<_>>().join("+"),
    };
    feed.source.plan = plan.summary_line();
    let mut notes = vec![Notification::new(
        Level::Info,
        format!(
            "{} probes attached in {:.2}s ({})",
            plan.used().count(),
            src.ready_after().as_secs_f64(),
            plan.backends_used().iter().map(|(b, n)| format!("{} {n}", b.name())).collect::<Vec<_>>().join(", ")
        ),
    )];
    for n in &plan.notes {
        notes.push(Notification::new(Level::Info, n.clone()));
    }
    for e in &plan.entries {
        if let Status::Failed(why) = &e.status {
            notes.push(Notification::new(Level::Error, format!("attach {} failed: {why}", e.symbol)));
        }
    }
    for c in plan.coverage.iter().filter(|c| c.how != "traced") {
        let level = if c.how == "missing" { Level::Warn } else { Level::Info };
        notes.push(Notification::new(level, format!("{}: {} on this kernel", c.step.name(), c.how)));
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
            feed.hold(FeedState::Failed(msg.clone()));
            Some(msg)
        }
        None => {
            feed.hold(FeedState::Done { elapsed: start.elapsed() });
            None
        }
    }
}
