//! `daxtrace export [--format daxtrace|perfetto|jsonl|csv] -o OUT IN`
//!
//! IN is a trace file or JSON Lines (told apart by content); without
//! `--format`, OUT's extension names the output format. JSON Lines and
//! trace files convert both ways exactly; Perfetto and CSV are one way.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use tracer::event::{Body, Event};
use tracer::sink::tracefile::{create_private, TraceWriter, WriterOptions};
use tracer::source::tracefile::Header;

use super::input::Input;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    /// daxtrace trace file (compressed, crash-safe; docs/trace-format.md).
    Daxtrace,
    /// Perfetto protobuf trace (open in the Perfetto UI).
    Perfetto,
    /// JSON Lines, one event per line (DESIGN.md §3).
    Jsonl,
    /// CSV, one row per event.
    Csv,
}

#[derive(clap::Args)]
pub struct Args {
    /// Output format [default: from the output's extension: .dxt,
    /// .perfetto-trace or .pftrace, .jsonl or .ndjson, .csv].
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<OutFormat>,
    /// Output file ("-" for stdout with jsonl and csv). Created mode 0600.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// zstd level for --format daxtrace (1 fastest .. 19 smallest).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: i32,
    /// Input: a trace file or JSON Lines.
    pub input: PathBuf,
}

impl OutFormat {
    /// The format an output file's name asks for, by its extension.
    fn of_name(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let (_, ext) = name.rsplit_once('.')?;
        Some(match ext {
            "dxt" => Self::Daxtrace,
            "perfetto-trace" | "pftrace" => Self::Perfetto,
            "jsonl" | "ndjson" => Self::Jsonl,
            "csv" => Self::Csv,
            _ => return None,
        })
    }
}

pub fn run(a: Args) -> anyhow::Result<super::Outcome> {
    let to_stdout = a.output.as_os_str() == "-";
    let Some(format) = a.format.or_else(|| OutFormat::of_name(&a.output)) else {
        anyhow::bail!(
            "cannot tell the output format from {:?}: pass --format daxtrace|perfetto|jsonl|csv, or name it .dxt, .perfetto-trace, .jsonl or .csv",
            a.output.display().to_string()
        );
    };
    if to_stdout && matches!(format, OutFormat::Daxtrace | OutFormat::Perfetto) {
        anyhow::bail!("--format {format:?} is binary: give a file with -o");
    }
    let n = match format {
        OutFormat::Daxtrace => to_tracefile(&a.input, &a.output, a.zstd_level)?,
        OutFormat::Jsonl => with_text_out(&a.output, |out| to_jsonl(&a.input, out))?,
        OutFormat::Csv => with_text_out(&a.output, |out| to_csv(&a.input, out))?,
        OutFormat::Perfetto => to_perfetto(&a.input, &a.output)?,
    };
    if !to_stdout {
        eprintln!("daxtrace: wrote {n} events to {}", a.output.display());
    }
    Ok(super::Outcome::Clean)
}

fn with_text_out(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> anyhow::Result<u64>,
) -> anyhow::Result<u64> {
    if path.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let n = f(&mut out)?;
        out.flush()?;
        Ok(n)
    } else {
        let mut out = BufWriter::new(create_out(path)?);
        let n = f(&mut out)?;
        out.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(n)
    }
}

fn create_out(path: &Path) -> anyhow::Result<File> {
    create_private(path).with_context(|| format!("cannot create {}", path.display()))
}

/// Feed every event of `input` to `sink`; returns the count.
fn pump(
    input: &mut Input,
    mut each: impl FnMut(&Event) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut n = 0;
    while let Some(ev) = input.next_event()? {
        each(&ev)?;
        n += 1;
    }
    input.finish();
    Ok(n)
}

pub fn to_tracefile(input: &Path, output: &Path, zstd_level: i32) -> anyhow::Result<u64> {
    let mut inp = Input::open(input)?;
    let header = inp.trace_header().cloned().unwrap_or_else(|| Header {
        clock: "mono".into(),
        writer: concat!("daxtrace ", env!("CARGO_PKG_VERSION")).into(),
        source: format!("jsonl:{}", input.display()),
        ..Header::default()
    });
    let mut w = TraceWriter::create(
        output,
        &header,
        WriterOptions {
            zstd_level,
            ..WriterOptions::default()
        },
    )
    .with_context(|| format!("cannot create {}", output.display()))?;
    let n = pump(&mut inp, |ev| {
        w.write_event(ev);
        Ok(())
    })?;
    let (late, dropped) = inp
        .trace_report()
        .and_then(|r| r.footer.as_ref())
        .map_or((0, 0), |f| (f.late, f.queue_dropped));
    w.finish(late, dropped, "export")
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(n)
}

fn to_jsonl(input: &Path, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut inp = Input::open(input)?;
    pump(&mut inp, |ev| {
        serde_json::to_writer(&mut *out, ev)?;
        out.write_all(b"\n")?;
        Ok(())
    })
}

/// CSV columns: the common fields, then every kind-specific field (empty when
/// the kind has none).
const CSV_HEADER: [&str; 19] = [
    "ts", "cpu", "tid", "pid", "comm", "dev", "ino", "probe", "kind", "fault", "pgoff", "size",
    "write", "npages", "result", "new", "inferred", "reason", "count",
];

fn to_csv(input: &Path, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut inp = Input::open(input)?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADER)?;
    let mut row: Vec<String> = vec![String::new(); CSV_HEADER.len()];
    let n = pump(&mut inp, |ev| {
        csv_row(ev, &mut row);
        w.write_record(&row)?;
        Ok(())
    })?;
    w.flush()?;
    Ok(n)
}

fn name<T: serde::Serialize>(v: T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn csv_row(ev: &Event, row: &mut [String]) {
    for c in row.iter_mut() {
        c.clear();
    }
    let probe =
        tracer_common::Probe::from_u16(ev.probe).map_or("", tracer_common::Probe::tracepoint);
    let common = [
        ev.ts.to_string(),
        ev.cpu.to_string(),
        ev.tid.to_string(),
        ev.pid.to_string(),
        ev.comm.as_str().to_owned(),
        ev.dev.to_string(),
        ev.ino.to_string(),
        probe.to_owned(),
        ev.body.kind_name().to_owned(),
    ];
    for (c, v) in row.iter_mut().zip(common) {
        *c = v;
    }
    if let Some(f) = ev.body.fault() {
        row[9] = f.to_string();
    }
    match ev.body {
        Body::FaultBegin {
            pgoff, size, write, ..
        } => {
            row[10] = pgoff.to_string();
            row[11] = name(size);
            row[12] = write.to_string();
        }
        Body::MapBlocks {
            pgoff,
            npages,
            result,
            new,
            write,
            ..
        } => {
            row[10] = pgoff.to_string();
            row[12] = write.to_string();
            row[13] = npages.to_string();
            row[14] = name(result);
            row[15] = new.to_string();
        }
        Body::LoadHole { pgoff, size, .. } => {
            row[10] = pgoff.to_string();
            row[11] = name(size);
        }
        Body::InsertMapping {
            pgoff,
            size,
            inferred,
            ..
        } => {
            row[10] = pgoff.to_string();
            row[11] = name(size);
            row[16] = inferred.to_string();
        }
        Body::FaultEnd { result, .. } => row[14] = name(result),
        Body::Invalidate {
            pgoff,
            npages,
            reason,
        } => {
            row[10] = pgoff.to_string();
            row[13] = npages.to_string();
            row[17] = name(reason);
        }
        Body::Lost { count } => row[18] = count.to_string(),
    }
}

#[cfg(not(feature = "perfetto"))]
pub fn to_perfetto(_input: &Path, _output: &Path) -> anyhow::Result<u64> {
    anyhow::bail!(
        "this daxtrace was built without the `perfetto` feature: rebuild with default features"
    )
}

/// Two passes over IN: the first runs the detector to find the pages of
/// interest, the second writes the tracks (so nothing is held in memory).
#[cfg(feature = "perfetto")]
pub fn to_perfetto(input: &Path, output: &Path) -> anyhow::Result<u64> {
    use tracer::sink::perfetto::{Interest, PerfettoWriter};
    let mut interest = Interest::default();
    let mut inp = Input::open(input)?;
    super::input::detect_all(&mut inp, &mut interest)?;
    let pages = interest.pages();
    let out = BufWriter::new(create_out(output)?);
    let mut w = PerfettoWriter::new(out, pages);
    let mut inp = Input::open(input)?;
    let stats = super::input::detect_all(&mut inp, &mut w)?;
    w.finish()
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(stats.events)
}
