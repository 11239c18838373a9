//! `daxtrace summary IN`: what a trace file or JSON Lines holds: its header,
//! duration, events by kind, pages, faults, lost, late, findings and, for a
//! trace file, bytes per event and any damage.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use tracer::event::KIND_NAMES;
use tracer::source::Format;

use super::input::Input;

#[derive(clap::Args)]
pub struct Args {
    /// A trace file or JSON Lines (told apart by content).
    pub input: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<super::Outcome> {
    let mut input = Input::open(&a.input)?;
    let c = super::input::detect_all(&mut input, &mut ())?;
    let mut o = String::new();
    let kind = match input.format {
        Format::TraceFile => "trace file",
        Format::JsonLines => "JSON Lines",
    };
    o += &format!(
        "file:      {} ({kind}, {} bytes)\n",
        a.input.display(),
        input.len
    );
    if let Some(h) = input.trace_header() {
        o += &format!(
            "host:      {}  kernel: {}  boot id: {}\n",
            or_dash(&h.host),
            or_dash(&h.kernel),
            or_dash(&h.boot_id)
        );
        let start = if h.start_unix_ns > 0 {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(h.start_unix_ns))
                .to_string()
        } else {
            "-".into()
        };
        o += &format!(
            "started:   {start}  clock: {}  source: {}  writer: {}\n",
            or_dash(&h.clock),
            or_dash(&h.source),
            or_dash(&h.writer)
        );
        let mut plan = h.attach_plan.to_string();
        if plan.len() > 160 {
            plan.truncate(
                plan.char_indices()
                    .take_while(|(i, _)| *i < 157)
                    .last()
                    .map_or(0, |(i, ch)| i + ch.len_utf8()),
            );
            plan += "...";
        }
        o += &format!("plan:      {plan}\n");
    }
    let dur = c.last_ts.saturating_sub(c.first_ts);
    o += &format!(
        "duration:  {:.9} s (ts {} .. {})\n",
        dur as f64 / 1e9,
        c.first_ts,
        c.last_ts
    );
    let bpe = if c.events > 0 {
        input.len as f64 / c.events as f64
    } else {
        0.0
    };
    o += &format!("events:    {} ({bpe:.2} bytes/event)\n", c.events);
    for (name, n) in KIND_NAMES.iter().zip(c.by_kind) {
        o += &format!("  {name:<15} {n}\n");
    }
    let rep = input.trace_report();
    let recorded_late = rep.and_then(|r| {
        r.footer
            .as_ref()
            .map(|f| f.late)
            .or(r.stats.as_ref().map(|s| s.late))
    });
    let queue = rep
        .and_then(|r| {
            r.footer
                .as_ref()
                .map(|f| f.queue_dropped)
                .or(r.stats.as_ref().map(|s| s.queue_dropped))
        })
        .unwrap_or(0);
    o += &format!("pages:     {}\nfaults:    {}\n", c.pages, c.faults);
    o += &format!("lost:      {} (writer queue: {queue})\n", c.lost);
    // Late on reading (this reorder window) and, for a trace file, as recorded.
    let rec = recorded_late.map_or(String::new(), |l| format!(" (when recorded: {l})"));
    o += &format!("late:      {}{rec}\n", c.late);
    o += &format!("findings:  {}\n", c.findings);
    if let Some(r) = rep {
        let state = match &r.footer {
            Some(f) => format!("yes ({})", f.stop_reason),
            None => "no".into(),
        };
        o += &format!(
            "closed:    {state}; {} chunks read, {} damaged regions\n",
            r.chunks,
            r.damage.len()
        );
    }
    print!("{o}");
    Ok(super::Outcome::Clean)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}
