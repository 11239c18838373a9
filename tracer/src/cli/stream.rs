//! `daxtrace stream --json`: live kernel events as JSON Lines on stdout, as
//! they arrive (per-CPU order; `analyze` reorders). A one-line summary on
//! stderr at the end.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Result};

use super::{live, Outcome};
use tracer::event::{Body, Event, KIND_NAMES};

#[derive(clap::Args)]
pub struct Args {
    /// Write JSON Lines (DESIGN.md §3) on stdout. The only format for now.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    live: live::LiveArgs,
}

pub fn run(a: Args) -> Result<Outcome> {
    if !a.json {
        bail!("stream writes JSON Lines only: add --json (or use `daxtrace watch` for findings)");
    }
    let stop = live::stop_flag()?;
    let mut src = live::open(&a.live)?;
    let deadline = a.live.deadline();
    let stdout = std::io::stdout();
    let mut w = Writer {
        out: std::io::BufWriter::with_capacity(1 << 16, stdout.lock()),
        counts: [0; KIND_NAMES.len()],
        lost: 0,
        err: None,
    };
    while !stop.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| std::time::Instant::now() < d)
        && w.err.is_none()
    {
        if src.poll(Duration::from_millis(100), &mut |ev| w.event(&ev))? > 0 && w.err.is_none() {
            // A live stream: readers see events within one poll, and a
            // closed pipe is noticed now rather than at 64 KiB.
            w.err = w.out.flush().err();
        }
        live::print_notes(&mut src, &a.live);
    }
    let stats = src.finish(&mut |ev| w.event(&ev));
    let Writer {
        mut out,
        counts,
        lost,
        err: write_err,
    } = w;
    let flush = out.flush();
    let total: u64 = counts.iter().sum();
    let by_kind: Vec<String> = KIND_NAMES
        .iter()
        .zip(counts)
        .filter(|(_, c)| *c > 0)
        .map(|(k, c)| format!("{k} {c}"))
        .collect();
    eprintln!(
        "daxtrace: {total} events ({}), lost {lost}{}",
        if by_kind.is_empty() {
            "none".to_string()
        } else {
            by_kind.join(", ")
        },
        if stats.undecodable > 0 {
            format!(", undecodable {}", stats.undecodable)
        } else {
            String::new()
        }
    );
    if let Some(e) = write_err {
        return Err(e.into());
    }
    flush?;
    Ok(Outcome::Clean)
}

/// JSON Lines on stdout plus the counts for the summary line. A write error
/// (e.g. a closed pipe) stops writing but not counting.
struct Writer<W: Write> {
    out: W,
    counts: [u64; KIND_NAMES.len()],
    lost: u64,
    err: Option<std::io::Error>,
}

impl<W: Write> Writer<W> {
    fn event(&mut self, ev: &Event) {
        self.counts[ev.body.kind_index()] += 1;
        if let Body::Lost { count } = ev.body {
            self.lost += count;
        }
        if self.err.is_none() {
            let r = serde_json::to_writer(&mut self.out, ev)
                .map_err(std::io::Error::from)
                .and_then(|()| self.out.write_all(b"\n"));
            self.err = r.err();
        }
    }
}
