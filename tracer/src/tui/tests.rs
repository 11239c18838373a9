//! Render snapshots (insta, TestBackend) of the real thing: a JSON Lines
//! trace replayed through the pipeline thread, the App driven with keys, the
//! screen drawn by the pure render functions. Only wall-clock figures (ingest
//! rate, replay time) are pinned before drawing.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;

use super::app::{App, Command, Level, Mode};
use super::event::{self, AppEvent};
use super::feed::{self, Narrow, Pace, ReplayInput, Request};
use super::snapshot::{Dashboard, FeedState, Snapshot, SnapshotBase, SourceInfo};
use super::{apply, ui};
use crate::event::Event;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::source::jsonl::JsonlReader;
use crate::source::EventIter;

const RACE: &str = include_str!("../../tests/data/top-race.jsonl");

struct Harness {
    app: App,
    rx: Receiver<AppEvent>,
    req: Sender<Request>,
    term: Terminal<TestBackend>,
}

fn events(jsonl: &str) -> EventIter {
    Box::new(JsonlReader::new(
        std::io::Cursor::new(jsonl.to_string()),
        "test.jsonl",
    ))
}

impl Harness {
    /// Replay `jsonl` at full speed and wait until the final state is on screen.
    fn replay(jsonl: &str, w: u16, h: u16) -> Self {
        let source = SourceInfo {
            label: "replay top-race.jsonl at full speed".into(),
            kernel: "n/a (replay)".into(),
            backend: "none (replay)".into(),
            plan: "n/a (replay)".into(),
        };
        let (tx, rx) = event::channel();
        let (req, req_rx) = mpsc::channel();
        feed::spawn_replay(
            events(jsonl),
            Pace::Unpaced,
            false,
            PipelineConfig::default(),
            source.clone(),
            tx,
            req_rx,
        );
        let mut h = Self {
            app: App::new(Arc::new(Snapshot::empty(source))),
            rx,
            req,
            term: Terminal::new(TestBackend::new(w, h)).unwrap(),
        };
        // The final snapshot, then the "replay finished" note that follows it.
        h.pump_until(|a| {
            a.notes
                .iter()
                .any(|(n, _)| n.text.starts_with("replay finished"))
        });
        h
    }

    fn handle(&mut self, cmd: Option<Command>) {
        if let Some(Command::Watch(k)) = cmd {
            self.req.send(Request::Watch(k)).unwrap();
        }
    }

    fn pump_until(&mut self, done: impl Fn(&App) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&self.app) {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self
                .rx
                .recv_timeout(left)
                .expect("the pipeline thread did not deliver in time");
            let cmd = apply(&mut self.app, ev);
            self.handle(cmd);
        }
    }

    fn key(&mut self, code: KeyCode) {
        let cmd = apply(
            &mut self.app,
            AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)),
        );
        self.handle(cmd);
    }

    /// Draw, with the wall-clock figures pinned so the screen is reproducible.
    fn draw(&mut self) -> &Buffer {
        for s in [&mut self.app.view, &mut self.app.latest] {
            let mut pinned = (**s).clone();
            pinned.events_per_sec = 0.0;
            if let FeedState::Done { elapsed } = &mut pinned.state {
                *elapsed = Duration::from_millis(10);
            }
            *s = Arc::new(pinned);
        }
        self.term.draw(|f| ui::render(f, &self.app)).unwrap();
        self.term.backend().buffer()
    }
}

/// Where `text` starts on screen.
fn find(buf: &Buffer, text: &str) -> Option<(u16, u16)> {
    let area = buf.area;
    for y in 0..area.height {
        let line: String = (0..area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        if let Some(i) = line.find(text) {
            // Column in cells: count chars before the byte index.
            return Some((line[..i].chars().count() as u16, y));
        }
    }
    None
}

#[test]
fn main_screen() {
    let mut h = Harness::replay(RACE, 120, 34);
    assert_eq!(h.app.view.stats.events, 56);
    let buf = h.draw().clone();
    insta::assert_snapshot!(h.term.backend());
    // The finding's severity is shown in red, and the counters are on the status line.
    let (x, y) = find(&buf, "corruption").expect("the finding is listed");
    assert_eq!(buf[(x, y)].fg, Color::Red);
    assert!(find(&buf, "hole_load_after_allocate").is_some());
    assert!(find(&buf, "lost 0").is_some() && find(&buf, "late 0").is_some());
}

#[test]
fn drill_down_highlights_the_ordering() {
    let mut h = Harness::replay(RACE, 120, 34);
    h.key(KeyCode::Enter);
    assert_eq!(h.app.mode(), Mode::Drill);
    h.pump_until(|a| {
        a.view
            .page
            .as_ref()
            .is_some_and(|p| Some(p.key) == a.drill.as_ref().map(|d| d.key))
    });
    let rows = &h.app.view.page.as_ref().unwrap().rows;
    // The race page's own events: two faults, lookups, the insert, the hole load, both ends.
    assert_eq!(rows.len(), 8, "{rows:#?}");
    let buf = h.draw().clone();
    insta::assert_snapshot!(h.term.backend());
    // The hole load is part of the ordering: marked and coloured by severity.
    let (_, y) = find(&buf, "load_hole").expect("the hole load is in the timeline");
    assert_eq!(buf[(1, y)].symbol(), "▶");
    assert_eq!(buf[(1, y)].fg, Color::Red);
    // fault_end is not part of it.
    let (_, y_end) = find(&buf, "fault_end").unwrap();
    assert_eq!(buf[(1, y_end)].symbol(), " ");
    h.key(KeyCode::Esc);
    assert_eq!(h.app.mode(), Mode::Normal);
}

#[test]
fn help_overlay() {
    let mut h = Harness::replay(RACE, 100, 30);
    h.key(KeyCode::Char('?'));
    h.draw();
    insta::assert_snapshot!(h.term.backend());
    h.key(KeyCode::Esc);
    assert!(!h.app.help);
}

#[test]
fn terminal_too_small() {
    let mut h = Harness::replay(RACE, 60, 12);
    let buf = h.draw().clone();
    insta::assert_snapshot!(h.term.backend());
    assert!(find(&buf, "terminal too small").is_some());
    // Resizing back up brings the dashboard.
    h.term.backend_mut().resize(100, 30);
    let buf = h.draw().clone();
    assert!(find(&buf, "Fault rates").is_some());
}

#[test]
fn loss_notification() {
    // The kernel side reported lost records in the middle of the trace.
    let mut lines: Vec<&str> = RACE.lines().collect();
    let lost = r#"{"ts":2000000000,"kind":"lost","count":1234}"#;
    let at = lines
        .iter()
        .position(|l| l.starts_with(r#"{"ts":2000"#))
        .unwrap();
    lines.insert(at, lost);
    let trace = lines.join("\n");
    let mut h = Harness::replay(&trace, 100, 30);
    let note = h
        .app
        .notes
        .iter()
        .find(|(n, _)| n.level == Level::Warn && n.text.contains("lost"));
    let note = &note.expect("a loss notification").0;
    assert!(note.text.starts_with("1234 events lost"), "{}", note.text);
    assert_eq!(h.app.view.stats.lost, 1234);
    assert_eq!(h.app.view.stats.late, 0);
    let lost_rate = h
        .app
        .view
        .rates
        .iter()
        .find(|r| r.series == super::snapshot::Series::Lost)
        .unwrap();
    assert_eq!(lost_rate.total, 1234);
    let buf = h.draw().clone();
    insta::assert_snapshot!(h.term.backend());
    let (x, y) = find(&buf, "lost 1.2k").expect("the status line shows the loss");
    assert_eq!(buf[(x + 5, y)].fg, Color::Red);
}

#[test]
fn hot_page_drill_shows_its_recent_story() {
    let mut h = Harness::replay(RACE, 120, 34);
    h.key(KeyCode::Tab);
    h.key(KeyCode::Enter);
    let key = h
        .app
        .drill
        .as_ref()
        .expect("Enter on a hot page opens it")
        .key;
    // The most-faulted page: ino 20 page 0 (3 faults), before the race page (2).
    assert_eq!((key.ino, key.pgoff), (20, 0));
    h.pump_until(|a| {
        a.view
            .page
            .as_ref()
            .is_some_and(|p| Some(p.key) == a.drill.as_ref().map(|d| d.key))
    });
    let page = h.app.view.page.as_ref().unwrap();
    // 3 faults x (begin, map_blocks, insert, end), no finding to mark.
    assert_eq!(page.rows.len(), 12);
    assert!(page.rows.windows(2).all(|w| w[0].ts <= w[1].ts));
    let buf = h.draw().clone();
    assert!(
        find(&buf, "▶").is_none(),
        "nothing is marked without a finding"
    );
}

#[test]
fn filter_narrows_every_list() {
    let mut h = Harness::replay(RACE, 120, 34);
    h.key(KeyCode::Char('/'));
    for c in "writ".chars() {
        h.key(KeyCode::Char(c));
    }
    h.key(KeyCode::Enter);
    assert_eq!(h.app.findings().len(), 1);
    assert!(h
        .app
        .hot_pages()
        .iter()
        .all(|p| p.comm.as_str() == "writer"));
    let buf = h.draw().clone();
    assert!(find(&buf, "filter: comm ~ \"writ\"").is_some());
    assert!(
        find(&buf, "dbscan").is_none(),
        "the other task's pages are filtered out"
    );
}

#[test]
fn paced_replay_follows_trace_time() {
    // The fixture spans 2.75 s of trace time; at 10x that is at least 0.275 s.
    let (tx, rx) = event::channel();
    let (_req, req_rx) = mpsc::channel();
    let start = Instant::now();
    let feed = feed::spawn_replay(
        events(RACE),
        Pace::Speed(10.0),
        false,
        PipelineConfig::default(),
        SourceInfo::default(),
        tx,
        req_rx,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("replay ends")
        {
            AppEvent::Snapshot(s) if matches!(s.state, FeedState::Done { .. }) => break,
            _ => {}
        }
    }
    assert!(
        start.elapsed() >= Duration::from_millis(270),
        "{:?}",
        start.elapsed()
    );
    drop(rx);
    drop(_req);
    assert_eq!(feed.join().unwrap(), None);
}

#[test]
fn bad_line_stops_the_replay_keeps_what_was_counted() {
    let trace = format!(
        "{}\nnot json\n",
        RACE.lines().take(10).collect::<Vec<_>>().join("\n")
    );
    let (tx, rx) = event::channel();
    let (req, req_rx) = mpsc::channel();
    let feed = feed::spawn_replay(
        events(&trace),
        Pace::Unpaced,
        false,
        PipelineConfig::default(),
        SourceInfo::default(),
        tx,
        req_rx,
    );
    let mut last = None;
    while let Ok(ev) = rx.recv_timeout(Duration::from_secs(20)) {
        match ev {
            AppEvent::Snapshot(s) => last = Some(s),
            AppEvent::Notify(n) if n.level == Level::Error => break,
            _ => {}
        }
    }
    let last = last.unwrap();
    assert_eq!(last.stats.events, 10);
    assert!(matches!(last.state, FeedState::Failed(_)));
    drop(rx);
    drop(req);
    let err = feed
        .join()
        .unwrap()
        .expect("the error goes back to `top` (exit 2)");
    assert!(err.starts_with("test.jsonl:11: "), "{err}");
}

/// Replay to the end; the final snapshot (the state `top` holds on screen).
fn final_snapshot(replay: feed::Replay) -> Arc<Snapshot> {
    let (tx, rx) = event::channel();
    let (req, req_rx) = mpsc::channel();
    let feed = feed::spawn(
        replay,
        PipelineConfig::default(),
        SourceInfo::default(),
        tx,
        req_rx,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let snap = loop {
        match rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("replay ends")
        {
            AppEvent::Snapshot(s) if matches!(s.state, FeedState::Done { .. }) => break s,
            _ => {}
        }
    };
    drop(rx);
    drop(req);
    assert_eq!(feed.join().unwrap(), None);
    snap
}

/// 60,000 lab-shaped events (many arrival-stage batches), then the racing
/// fixture on an inode of its own, so there are findings.
fn workload_with_findings() -> Vec<Event> {
    let mut evs: Vec<Event> = crate::source::tracefile::synth::Workload::new(3)
        .take(60_000)
        .collect();
    let race: Vec<Event> = JsonlReader::new(std::io::Cursor::new(RACE.to_string()), "race")
        .map(Result::unwrap)
        .collect();
    let shift = evs.last().unwrap().ts + 1_000_000_000 - race[0].ts;
    evs.extend(race.into_iter().map(|e| Event {
        ts: e.ts + shift,
        ino: 99,
        ..e
    }));
    evs
}

fn replay_of(input: ReplayInput, narrow: Narrow) -> feed::Replay {
    feed::Replay {
        input,
        pace: Pace::Unpaced,
        skip_bad: false,
        narrow,
    }
}

#[test]
fn unpaced_replay_shows_what_the_sink_counts_event_by_event() {
    // The unpaced replay orders and counts on the arrival stage and judges on
    // the pipeline thread; the panes must equal the dashboard sink fed by
    // `Pipeline::push` one event at a time (live and paced replay).
    let evs = workload_with_findings();
    let mut pipe = Pipeline::new(PipelineConfig::default());
    let mut dash = Dashboard::new();
    for e in &evs {
        pipe.push(*e, &mut dash);
    }
    pipe.finish(&mut dash);
    let want = dash.snapshot(SnapshotBase {
        seq: 0,
        source: SourceInfo::default(),
        state: FeedState::Running,
        stats: pipe.stats().clone(),
        events_per_sec: 0.0,
        page: None,
        refresh_hot: true,
        counts: None,
    });
    assert!(
        want.stats.findings > 0 && want.latency.pte.count > 10_000,
        "{:?}",
        want.stats
    );
    let stream: EventIter = Box::new(evs.into_iter().map(Ok));
    let got = final_snapshot(replay_of(ReplayInput::Events(stream), Narrow::default()));
    assert_eq!(got.stats, want.stats);
    assert_eq!(got.rates, want.rates);
    assert_eq!(got.latency, want.latency);
    assert_eq!(got.hot_pages, want.hot_pages);
    assert_eq!(got.hot_files, want.hot_files);
    assert_eq!(got.findings, want.findings);
}

#[test]
fn trace_file_replays_in_chunks_narrowed_like_an_event_stream() {
    use crate::sink::tracefile::{TraceWriter, WriterOptions};
    use crate::source::tracefile::{open_batches_quiet, Header};
    let evs = workload_with_findings();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.dxt");
    let mut w = TraceWriter::create(
        &path,
        &Header::for_this_host("test", serde_json::Value::Null),
        WriterOptions::default(),
    )
    .unwrap();
    for e in &evs {
        w.write_event(e);
    }
    w.finish(0, 0, "end of input").unwrap();
    let narrow = Narrow {
        dev: None,
        inode: Some(99),
    };
    let chunks = final_snapshot(replay_of(
        ReplayInput::Batches(open_batches_quiet(&path, "t.dxt".into()).unwrap()),
        narrow,
    ));
    assert_eq!(
        chunks.stats.events,
        evs.iter().filter(|e| e.ino == 99).count() as u64
    );
    assert!(chunks.stats.findings > 0);
    assert!(
        !chunks.hot_files.is_empty() && chunks.hot_files.iter().all(|f| f.ino == 99),
        "{:?}",
        chunks.hot_files
    );
    let stream = final_snapshot(replay_of(
        ReplayInput::Events(crate::source::open_any(&path).unwrap()),
        narrow,
    ));
    assert_eq!(chunks.stats, stream.stats);
    assert_eq!(chunks.rates, stream.rates);
    assert_eq!(chunks.hot_pages, stream.hot_pages);
    assert_eq!(chunks.findings, stream.findings);
}
