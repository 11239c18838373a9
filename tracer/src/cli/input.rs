//! Postmortem input for `summary` and `export`: a trace file or JSON Lines,
//! told apart by content (`source::sniff`), with a progress bar on a terminal.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use tracer::event::Event;
use tracer::pipeline::{Pipeline, PipelineConfig, Sink, Stats};
use tracer::source::jsonl::JsonlReader;
use tracer::source::tracefile::{Header, ReadReport, TraceReader};
use tracer::source::{sniff, Format};

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    n: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.set(self.n.get() + k as u64);
        Ok(k)
    }
}

enum Inner {
    Trace(Box<TraceReader<BufReader<File>>>),
    Jsonl(JsonlReader<BufReader<Counting<File>>>, Rc<Cell<u64>>),
}

pub struct Input {
    pub path: PathBuf,
    pub format: Format,
    pub len: u64,
    inner: Inner,
    bar: ProgressBar,
    events: u64,
}

impl Input {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let format = sniff(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let inner = match format {
            Format::TraceFile => {
                Inner::Trace(Box::new(TraceReader::open(path).with_context(|| {
                    format!("cannot read trace file {}", path.display())
                })?))
            }
            Format::JsonLines => {
                let f =
                    File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let n = Rc::new(Cell::new(0));
                let r = BufReader::with_capacity(
                    1 << 20,
                    Counting {
                        inner: f,
                        n: Rc::clone(&n),
                    },
                );
                Inner::Jsonl(JsonlReader::new(r, path.display().to_string()), n)
            }
        };
        // Drawn only when stderr is a terminal: indicatif hides itself otherwise.
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("reading {}", path.display()));
        Ok(Self {
            path: path.to_owned(),
            format,
            len,
            inner,
            bar,
            events: 0,
        })
    }

    /// Next event; `Ok(None)` at the end. A bad JSON line is an error naming the line.
    pub fn next_event(&mut self) -> anyhow::Result<Option<Event>> {
        let ev = match &mut self.inner {
            Inner::Trace(r) => r.next_event(),
            Inner::Jsonl(r, _) => match r.next() {
                None => None,
                Some(Ok(ev)) => Some(ev),
                Some(Err(e)) => {
                    self.bar.finish_and_clear();
                    return Err(anyhow::Error::new(e)
                        .context("bad input (fix the line or convert only the part before it)"));
                }
            },
        };
        self.events += 1;
        if self.events.is_multiple_of(65536) {
            self.bar.set_position(self.position());
        }
        Ok(ev)
    }

    fn position(&self) -> u64 {
        match &self.inner {
            Inner::Trace(r) => r.report().bytes_read,
            Inner::Jsonl(_, n) => n.get(),
        }
    }

    pub fn trace_header(&self) -> Option<&Header> {
        match &self.inner {
            Inner::Trace(r) => r.header(),
            Inner::Jsonl(..) => None,
        }
    }

    pub fn trace_report(&self) -> Option<&ReadReport> {
        match &self.inner {
            Inner::Trace(r) => Some(r.report()),
            Inner::Jsonl(..) => None,
        }
    }

    /// Clear the progress bar and print what a trace file skipped, one
    /// warning per line on stderr (never hidden).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        if let Some(rep) = self.trace_report() {
            for w in rep.warnings() {
                eprintln!("daxtrace: warning: {}: {w}", self.path.display());
            }
        }
    }
}

/// Run every event of `input` through the pipeline (reorder window,
/// timelines, detector) into `sink`, which sees events in time order and
/// every finding. Returns the pipeline's counters.
pub fn detect_all<S: Sink>(input: &mut Input, sink: &mut S) -> anyhow::Result<Stats> {
    let mut pipe = Pipeline::new(PipelineConfig::default());
    let res = (|| {
        while let Some(ev) = input.next_event()? {
            pipe.push(ev, sink);
        }
        anyhow::Ok(())
    })();
    // Judge and release what was read, even when the input stopped early.
    pipe.finish(sink);
    input.finish();
    res.map(|()| pipe.stats().clone())
}
