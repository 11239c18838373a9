//! `daxtrace record -o FILE`: write the event stream to a trace file.
//!
//! Two threads and a bounded queue between them:
//!
//! ```text
//! source (ring buffer | --replay) --try_send--> [queue, N events] --> writer thread --> FILE
//!            full queue: count as lost, never wait        writes a `lost` event for each drop burst,
//!                                                          a chunk + stats record every second
//! ```
//!
//! Events cross the queue in batches (what one poll of the ring buffer
//! drained, at most [`BATCH`]), their buffers sent back for reuse: a send and
//! a wakeup per event would cost more than writing the event, above all in
//! an emulated guest where every futex call is slow.
//!
//! The source side never blocks on the disk and the queue never grows: when
//! the disk is slower than the kernel, the excess is counted, written into
//! the file as `lost` events and shown on the progress line. SIGINT, SIGTERM,
//! `--duration` and `--max-size` stop cleanly (footer written); a SIGKILL
//! leaves every chunk written so far readable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use tracer::event::{Body, Dev, Event};
use tracer::sink::tracefile::{TraceWriter, WriterOptions};
use tracer::source::ringbuf::LiveSource;
use tracer::source::tracefile::{Footer, Header};

use super::input::Input;

#[derive(clap::Args)]
pub struct Args {
    /// Trace file to write (created mode 0600; an existing file is replaced).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// --dev, --inode (filters), --duration.
    #[command(flatten)]
    pub live: super::live::LiveArgs,
    /// Stop when the file reaches this size (e.g. 100M, 2G).
    #[arg(long)]
    pub max_size: Option<bytesize::ByteSize>,
    /// Record events from a trace file or JSON Lines instead of the kernel
    /// (tests, demos; events keep their timestamps).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// With --replay: deliver at most this many events per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub replay_rate: u64,
    /// Events the writer queue holds before counting more as lost.
    #[arg(long, default_value_t = 1 << 16)]
    pub queue: usize,
    /// zstd level (1 fastest .. 19 smallest). 1: the recorder runs beside
    /// the traced work (on the lab's events 3.26 bytes/event at 1, 3.16 at 3,
    /// for about a tenth less of the recorder's CPU per event).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: i32,
}

/// Why recording stopped; written into the footer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Stop {
    EndOfInput,
    Signal,
    Duration,
    MaxSize,
    InputError,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::EndOfInput => "end of input",
            Stop::Signal => "signal",
            Stop::Duration => "duration",
            Stop::MaxSize => "max size",
            Stop::InputError => "input error",
        }
    }

    fn from_u8(v: u8) -> Self {
        [
            Stop::EndOfInput,
            Stop::Signal,
            Stop::Duration,
            Stop::MaxSize,
            Stop::InputError,
        ]
        .get(usize::from(v))
        .copied()
        .unwrap_or(Stop::EndOfInput)
    }
}

/// Counters shared by the two threads (relaxed atomics: only shown and summed).
#[derive(Default)]
struct Shared {
    /// Events the full queue turned away.
    dropped: AtomicU64,
    /// Events on the queue (sent, not yet written): the queue's bound.
    queued: AtomicU64,
    /// Set by the writer when `--max-size` is reached.
    full: AtomicBool,
    /// Why the source side stopped (`Stop as u8`), read by the writer for the footer.
    stop: AtomicU8,
}

/// Where events come from.
enum Source {
    Live(Box<LiveSource>),
    Replay(Box<dyn Iterator<Item = anyhow::Result<Event>>>),
}

pub fn run(a: Args) -> anyhow::Result<super::Outcome> {
    // Signals first: a SIGINT during the (slow) attach still stops cleanly.
    let stop_flag = super::live::stop_flag()?;
    let (header, source) = match &a.replay {
        None => {
            let src = super::live::open(&a.live)?;
            let plan = serde_json::to_value(src.plan()).unwrap_or(serde_json::Value::Null);
            (
                Header::for_this_host("live", plan),
                Source::Live(Box::new(src)),
            )
        }
        Some(replay) => {
            let mut input = Input::open(replay)?;
            let header = Header::for_this_host(
                &format!("replay:{}", replay.display()),
                serde_json::json!({ "replay": replay.display().to_string() }),
            );
            (
                header,
                Source::Replay(Box::new(std::iter::from_fn(move || {
                    input.next_event().transpose()
                }))),
            )
        }
    };
    record(&a, &header, source, &stop_flag)
}

/// Most events in one batch on the queue.
const BATCH: usize = 1024;

/// The source side of the queue: filter, batch, offer to the writer, never wait.
struct Feeder<'a> {
    tx: mpsc::Sender<Vec<Event>>,
    /// Most events on the queue (`--queue`).
    bound: u64,
    /// Batches the writer is done with, for reuse.
    spent: mpsc::Receiver<Vec<Event>>,
    batch: Vec<Event>,
    shared: &'a Shared,
    filter: &'a super::live::LiveArgs,
    /// Events offered (for replay pacing).
    sent: u64,
    writer_gone: bool,
}

impl Feeder<'_> {
    #[inline]
    fn push(&mut self, ev: Event) {
        if self.filter.dev.is_some_and(|d| d != ev.dev)
            || self.filter.inode.is_some_and(|i| i != ev.ino)
        {
            return;
        }
        self.batch.push(ev);
        if self.batch.len() >= BATCH {
            self.flush();
        }
        self.sent += 1;
    }

    /// Offer the batch to the writer (after each poll, and when full).
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        // What the queue has room for goes; the rest is counted as lost.
        let room = self
            .bound
            .saturating_sub(self.shared.queued.load(Ordering::Acquire));
        if (self.batch.len() as u64) > room {
            let cut = usize::try_from(room).unwrap_or(usize::MAX);
            self.shared
                .dropped
                .fetch_add((self.batch.len() - cut) as u64, Ordering::Relaxed);
            self.batch.truncate(cut);
            if cut == 0 {
                return;
            }
        }
        self.shared
            .queued
            .fetch_add(self.batch.len() as u64, Ordering::AcqRel);
        let next = self
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        if self
            .tx
            .send(std::mem::replace(&mut self.batch, next))
            .is_err()
        {
            // The writer failed; its error is reported when it is joined.
            self.writer_gone = true;
        }
    }
}

/// Record `source` into `a.output` until it ends or a stop condition holds.
fn record(
    a: &Args,
    header: &Header,
    mut source: Source,
    stop_flag: &AtomicBool,
) -> anyhow::Result<super::Outcome> {
    let writer = TraceWriter::create(
        &a.output,
        header,
        WriterOptions {
            zstd_level: a.zstd_level,
            ..WriterOptions::default()
        },
    )
    .with_context(|| format!("cannot create {}", a.output.display()))?;
    let shared = Arc::new(Shared::default());
    // Bounded by `Shared::queued` (events, not batches): `--queue` holds
    // as many events whatever the batches' sizes.
    let (tx, rx) = mpsc::channel::<Vec<Event>>();
    let (spent_tx, spent) = mpsc::sync_channel::<Vec<Event>>(a.queue.div_ceil(BATCH).clamp(1, 64));
    let max_size = a.max_size.map(|s| s.as_u64());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(
        ProgressStyle::with_template("{spinner} recording {msg}").expect("valid template"),
    );
    let writer_thread = {
        let shared = Arc::clone(&shared);
        let bar = bar.clone();
        std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || write_loop(writer, &rx, &spent_tx, &shared, max_size, &bar))
            .context("cannot start the writer thread")?
    };

    let start = Instant::now();
    let mut stop = Stop::EndOfInput;
    let mut source_error = None;
    let mut feed = Feeder {
        tx,
        bound: a.queue.max(1) as u64,
        spent,
        batch: Vec::with_capacity(BATCH),
        shared: &shared,
        filter: &a.live,
        sent: 0,
        writer_gone: false,
    };
    loop {
        if stop_flag.load(Ordering::Relaxed) {
            stop = Stop::Signal;
            break;
        }
        if a.live.duration.is_some_and(|d| start.elapsed() >= d) {
            stop = Stop::Duration;
            break;
        }
        if shared.full.load(Ordering::Relaxed) {
            stop = Stop::MaxSize;
            break;
        }
        if feed.writer_gone {
            break;
        }
        match &mut source {
            Source::Live(src) => {
                let r = src.poll(Duration::from_millis(100), &mut |ev| feed.push(ev));
                feed.flush();
                super::live::print_notes(src, &a.live);
                if let Err(e) = r {
                    source_error = Some(anyhow::Error::new(e).context("reading the ring buffer"));
                    break;
                }
            }
            Source::Replay(it) => match it.next() {
                None => break,
                Some(Ok(ev)) => {
                    feed.push(ev);
                    if a.replay_rate > 0 && feed.sent.is_multiple_of(256) {
                        // A paced replay's events reach the file as they come.
                        feed.flush();
                        // Pace a replay: sleep until `sent` events are due.
                        let due = Duration::from_secs_f64(feed.sent as f64 / a.replay_rate as f64);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
                Some(Err(e)) => {
                    // Keep what was captured: stop cleanly, then report.
                    source_error = Some(e);
                    break;
                }
            },
        }
    }
    if let Source::Live(src) = source {
        // Detach, then drain what the kernel still holds and its last drop count.
        let st = src.finish(&mut |ev| feed.push(ev));
        feed.flush();
        if st.undecodable > 0 {
            eprintln!(
                "daxtrace: warning: {} ring-buffer records did not decode",
                st.undecodable
            );
        }
    }
    feed.flush();
    let Feeder { tx, .. } = feed;
    if source_error.is_some() {
        stop = Stop::InputError;
    }
    shared.stop.store(stop as u8, Ordering::Relaxed);
    drop(tx);
    let res = writer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    bar.finish_and_clear();
    let footer = res.with_context(|| format!("writing {}", a.output.display()))?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let bytes = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "daxtrace: recorded {} events to {} ({} bytes, {:.2} bytes/event, {:.0} events/s); lost {} ({} by the writer queue); stopped: {}",
        footer.events,
        a.output.display(),
        bytes,
        bytes as f64 / footer.events.max(1) as f64,
        footer.events as f64 / secs,
        footer.lost,
        footer.queue_dropped,
        footer.stop_reason,
    );
    if let Some(e) = source_error {
        return Err(e.context(format!(
            "input ended early; {} holds everything read before",
            a.output.display()
        )));
    }
    Ok(super::Outcome::Clean)
}

/// The writer thread: drain the queue into the file; once a second, cut a
/// chunk, write a stats record and update the progress line.
fn write_loop(
    mut w: TraceWriter<std::fs::File>,
    rx: &mpsc::Receiver<Vec<Event>>,
    spent: &mpsc::SyncSender<Vec<Event>>,
    shared: &Shared,
    max_size: Option<u64>,
    bar: &ProgressBar,
) -> std::io::Result<Footer> {
    let started = Instant::now();
    let mut last_tick = Instant::now();
    let mut dropped_seen = 0u64;
    let mut last_ts = 0u64;
    let tick = |w: &mut TraceWriter<std::fs::File>,
                dropped_seen: &mut u64,
                last_ts: u64|
     -> std::io::Result<()> {
        // Drops become a `lost` event at the point of the stream where they happened.
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped > *dropped_seen {
            let count = dropped - *dropped_seen;
            *dropped_seen = dropped;
            w.write_event(&Event {
                ts: last_ts,
                cpu: 0,
                tid: 0,
                pid: 0,
                comm: tracer::event::Comm::new("daxtrace"),
                dev: Dev::default(),
                ino: 0,
                probe: 0,
                body: Body::Lost { count },
            });
        }
        w.write_stats(0, *dropped_seen);
        if let Some(e) = w.error() {
            return Err(std::io::Error::new(e.kind(), e.to_string()));
        }
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{} events, {}, lost {}, {:.0} events/s",
            w.events(),
            bytesize::ByteSize::b(w.bytes_written()),
            shared.dropped.load(Ordering::Relaxed),
            w.events() as f64 / secs
        ));
        bar.tick();
        Ok(())
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(mut batch) => {
                for ev in &batch {
                    w.write_event(ev);
                }
                last_ts = batch.last().map_or(last_ts, |e| e.ts);
                shared
                    .queued
                    .fetch_sub(batch.len() as u64, Ordering::AcqRel);
                batch.clear();
                // Back for reuse; if the source has enough spare, it is freed.
                let _ = spent.try_send(batch);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            tick(&mut w, &mut dropped_seen, last_ts)?;
            // Survive power loss too, not only a killed recorder.
            w.sync()?;
        }
        if max_size.is_some_and(|m| w.bytes_written() >= m) && !shared.full.load(Ordering::Relaxed)
        {
            shared.full.store(true, Ordering::Relaxed);
        }
    }
    // Drops after the last tick still get their `lost` event.
    let dropped = shared.dropped.load(Ordering::Relaxed);
    if dropped > dropped_seen {
        tick(&mut w, &mut dropped_seen, last_ts)?;
    }
    let reason = Stop::from_u8(shared.stop.load(Ordering::Relaxed)).name();
    let (footer, file) = w.finish(0, dropped_seen, reason)?;
    file.sync_all()?;
    Ok(footer)
}
