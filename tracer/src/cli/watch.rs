//! `daxtrace watch`: the live pipeline (ring buffer -> reorder -> timelines +
//! detector) printing each finding the moment it is raised, and the summary
//! at the end. Same detector code as `analyze`; exit codes as `analyze`.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::analyze::{print_summary, says, who};
use super::{live, Outcome};
use tracer::detect::Finding;
use tracer::event::Event;
use tracer::pipeline::{Pipeline, PipelineConfig, Sink};
use tracer::sink::jsonl::{JsonlSink, SeverityCounts};
use tracer::source::ringbuf::monotonic_ns;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    live: live::LiveArgs,
    /// Print findings and the final summary as JSON Lines (DESIGN.md §3).
    #[arg(long)]
    json: bool,
    /// Reorder window in milliseconds of kernel time.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    window_ms: u64,
    /// Most pages with a timeline (least recently used are evicted and counted).
    #[arg(long, default_value_t = 10_000_000, value_name = "N")]
    max_pages: usize,
}

/// Human output: one block per finding, flushed at once.
struct Human<W: Write> {
    out: W,
    n: u64,
    severity: SeverityCounts,
    err: Option<io::Error>,
}

impl<W: Write> Sink for Human<W> {
    fn on_finding(&mut self, f: &Finding) {
        self.n += 1;
        self.severity.add(f.severity);
        if self.err.is_some() {
            return;
        }
        let mut text = format!(
            "[{}] {} ({}) dev {} ino {} page {}\n",
            self.n,
            f.rule.name(),
            f.severity.name(),
            f.page.dev,
            f.page.ino,
            f.page.pgoff
        );
        for s in &f.steps {
            text += &format!(
                "      t={:<14} {:<10} {}: {}\n",
                s.ts,
                format!("{:?}", s.role).to_lowercase(),
                who(s),
                says(f.rule, s)
            );
        }
        self.err = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .err();
    }
}

enum Out<W: Write> {
    Human(Human<W>),
    Json(JsonlSink<W>),
}

impl<W: Write> Sink for Out<W> {
    fn on_event(&mut self, ev: &Event) {
        match self {
            Out::Human(h) => h.on_event(ev),
            Out::Json(j) => j.on_event(ev),
        }
    }
    fn on_finding(&mut self, f: &Finding) {
        match self {
            Out::Human(h) => h.on_finding(f),
            Out::Json(j) => j.on_finding(f),
        }
    }
    fn on_late(&mut self, ev: &Event) {
        match self {
            Out::Human(h) => h.on_late(ev),
            Out::Json(j) => j.on_late(ev),
        }
    }
}

pub fn run(a: Args) -> Result<Outcome> {
    let stop = live::stop_flag()?;
    let mut src = live::open(&a.live)?;
    let deadline = a.live.deadline();
    let cfg = PipelineConfig {
        window_ns: a.window_ms.saturating_mul(1_000_000),
        max_pages: a.max_pages.max(1),
        ..PipelineConfig::default()
    };
    let mut pipe = Pipeline::new(cfg);
    let stdout = io::stdout();
    let mut out = if a.json {
        Out::Json(JsonlSink::new(io::LineWriter::new(stdout.lock())))
    } else {
        Out::Human(Human {
            out: io::LineWriter::new(stdout.lock()),
            n: 0,
            severity: SeverityCounts::default(),
            err: None,
        })
    };
    while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| std::time::Instant::now() < d) {
        src.poll(Duration::from_millis(100), &mut |ev| {
            pipe.push(ev, &mut out)
        })?;
        live::print_notes(&mut src, &a.live);
        // Release what the window holds even when the kernel is quiet, so a
        // finding is printed within one window of its last event.
        pipe.advance(monotonic_ns(), &mut out);
        if matches!(&out, Out::Human(Human { err: Some(_), .. })) {
            break;
        }
    }
    src.finish(&mut |ev| pipe.push(ev, &mut out));
    pipe.finish(&mut out);
    let stats = pipe.stats().clone();
    match out {
        Out::Json(mut j) => {
            j.summary(&stats, None);
            j.finish().context("writing output")?;
        }
        Out::Human(h) => {
            if let Some(e) = h.err {
                return Err(e).context("writing output");
            }
            let mut err = io::stderr().lock();
            print_summary(&mut err, &stats, Some(&h.severity))?;
        }
    }
    Ok(if stats.findings > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}
