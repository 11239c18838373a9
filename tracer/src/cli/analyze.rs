//! `daxtrace analyze [--json] [--skip-bad] FILE...`: run the pipeline over a
//! captured trace (JSON Lines; `-` is stdin; several files are read one after
//! another) and report findings.
//!
//! Human output: a findings table, each finding's page story, then the
//! summary (events, pages, faults, late, lost, evicted). `--json`: one
//! finding per line, late events, then a summary line. Exit 0 no finding,
//! 1 findings, 2 error. On a bad line without `--skip-bad` everything read
//! before it is still judged and printed, then the error exits 2.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context as _;

use super::Outcome;
use tracer::detect::{Finding, Role, Rule, Step};
use tracer::event::Event;
use tracer::pipeline::{Pipeline, PipelineConfig, Sink, Stats};
use tracer::sink::jsonl::{JsonlSink, SeverityCounts};
use tracer::source::{self, SourceError};

/// Options every postmortem reader shares.
#[derive(clap::Args, Clone, Debug)]
pub struct InputArgs {
    /// Input files (JSON Lines); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Count and skip bad input lines instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Reorder window in milliseconds of kernel time.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub window_ms: u64,
    /// Most events held in the reorder window.
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    pub window_events: usize,
    /// Most pages with a timeline; least recently used pages are evicted (and counted).
    #[arg(long, default_value_t = 10_000_000, value_name = "N")]
    pub max_pages: usize,
}

impl InputArgs {
    pub fn config(&self) -> PipelineConfig {
        PipelineConfig {
            window_ns: self.window_ms.saturating_mul(1_000_000),
            window_events: self.window_events.max(1),
            max_pages: self.max_pages.max(1),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Print findings and the summary as JSON Lines.
    #[arg(long)]
    pub json: bool,
    /// With --json, also print every event (in timestamp order).
    #[arg(long, requires = "json")]
    pub events: bool,
}

/// Feed every input event through the pipeline. Returns the error that
/// stopped the input, if any; events before it are always judged (`finish`
/// runs either way).
pub fn drive<S: Sink + ?Sized>(
    input: &InputArgs,
    pipe: &mut Pipeline,
    sink: &mut S,
) -> Option<SourceError> {
    const SHOWN: u64 = 10;
    for path in &input.files {
        // Trace files a decoded chunk at a time (no per-event iterator
        // object); JSON Lines and stdin event by event.
        if path.as_os_str() != "-"
            && source::sniff(path).is_ok_and(|f| f == source::Format::TraceFile)
        {
            // Decoding and the reorder window run on the reading thread, the
            // rules here: the same items in the same order as `push`.
            match source::tracefile::open_ordered(
                path,
                path.display().to_string(),
                pipe.take_arrivals(),
            ) {
                Ok(mut file) => {
                    while let Some(batch) = file.next_slice() {
                        pipe.apply_batch(batch, sink);
                    }
                    pipe.put_arrivals(
                        file.into_state()
                            .expect("the reader returns the window at the end"),
                    );
                    continue;
                }
                Err((e, arrivals)) => {
                    pipe.put_arrivals(arrivals);
                    pipe.finish(sink);
                    return Some(e);
                }
            }
        }
        let events = match source::open_any(path) {
            Ok(it) => it,
            Err(e) => {
                pipe.finish(sink);
                return Some(e);
            }
        };
        for item in events {
            match item {
                Ok(ev) => pipe.push(ev, sink),
                Err(e) if input.skip_bad && e.is_skippable() => {
                    pipe.note_bad_input();
                    let n = pipe.stats().bad_input;
                    if n <= SHOWN {
                        eprintln!("daxtrace: skipped {e}");
                    } else if n == SHOWN + 1 {
                        eprintln!("daxtrace: skipping more bad lines (counted in the summary)");
                    }
                }
                Err(e) => {
                    pipe.finish(sink);
                    return Some(e);
                }
            }
        }
    }
    pipe.finish(sink);
    None
}

/// Turn the stopping error into the one-line message `analyze` exits 2
/// with: what is wrong first, then what to do, then (when anything was
/// read) that what came before it was judged and reported.
pub fn input_error(e: SourceError, events_read: u64) -> anyhow::Error {
    let hint = if e.is_skippable() {
        "fix the line, or pass --skip-bad to count and skip bad lines"
    } else {
        "check the path and the file's format"
    };
    let kept = if events_read > 0 {
        "; findings before it were reported"
    } else {
        ""
    };
    anyhow::anyhow!("{e}; {hint}{kept}")
}

/// Collects findings for the human report.
#[derive(Default)]
struct Collect {
    findings: Vec<Finding>,
    late: u64,
}

impl Sink for Collect {
    fn on_finding(&mut self, f: &Finding) {
        self.findings.push(f.clone());
    }
    fn on_late(&mut self, _ev: &Event) {
        self.late += 1;
    }
}

pub fn run(a: Args) -> anyhow::Result<Outcome> {
    let mut pipe = Pipeline::new(a.input.config());
    let stdout = io::stdout();
    let err = if a.json {
        let mut sink = JsonlSink::new(io::BufWriter::new(stdout.lock()));
        sink.events = a.events;
        let err = drive(&a.input, &mut pipe, &mut sink);
        let msg = err.as_ref().map(ToString::to_string);
        sink.summary(pipe.stats(), msg.as_deref());
        sink.finish().context("writing output")?;
        err
    } else {
        let mut sink = Collect::default();
        let err = drive(&a.input, &mut pipe, &mut sink);
        let mut out = io::BufWriter::new(stdout.lock());
        print_report(&mut out, &sink.findings, pipe.stats())?;
        out.flush().context("writing output")?;
        err
    };
    if let Some(e) = err {
        return Err(input_error(e, pipe.stats().events));
    }
    Ok(if pipe.stats().findings > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

pub fn who(s: &Step) -> String {
    let actor = match s.fault {
        Some(f) => format!("fault {f}"),
        None => "no fault".to_owned(),
    };
    format!("{actor}, tid {} ({}) cpu {}", s.tid, s.comm, s.cpu)
}

/// What a step did, in words, for the page story.
pub fn says(rule: Rule, s: &Step) -> &'static str {
    match (rule, s.role) {
        (Rule::HoleLoadAfterAllocate, Role::Lookup) => "looked up the page: hole",
        (_, Role::Alloc) if s.fault.is_none() => "write(2) allocated blocks for the page",
        (_, Role::Alloc) => "allocated blocks for the page",
        (Rule::HoleLoadAfterAllocate, Role::Insert) => {
            "mapped the new blocks (data written through them)"
        }
        (_, Role::Hole) => "loaded the zero page over the allocated blocks: stale hole",
        (Rule::InsertAfterInvalidate, Role::Lookup) => "looked up the page: blocks",
        (_, Role::Invalidate) => "invalidated the page (blocks freed)",
        (Rule::InsertAfterInvalidate, Role::Insert) => {
            "mapped the blocks it had looked up: freed blocks"
        }
    }
}

pub fn print_report(out: &mut impl Write, findings: &[Finding], st: &Stats) -> io::Result<()> {
    if findings.is_empty() {
        writeln!(out, "No findings.")?;
    } else {
        writeln!(out, "{} finding(s):", findings.len())?;
        writeln!(
            out,
            "{:>4}  {:<25} {:<13} {:<10} {:>10} {:>10}  {:>10} {:>8}  ORDERING (ts)",
            "#", "RULE", "SEVERITY", "DEV", "INO", "PGOFF", "FAULT", "TID"
        )?;
        for (i, f) in findings.iter().enumerate() {
            let l = f.step(Role::Lookup);
            let order: Vec<String> = f
                .steps
                .iter()
                .map(|s| format!("{:?} {}", s.role, s.ts).to_lowercase())
                .collect();
            writeln!(
                out,
                "{:>4}  {:<25} {:<13} {:<10} {:>10} {:>10}  {:>10} {:>8}  {}",
                i + 1,
                f.rule.name(),
                f.severity.name(),
                f.page.dev.to_string(),
                f.page.ino,
                f.page.pgoff,
                l.and_then(|s| s.fault)
                    .map_or("-".into(), |x| x.to_string()),
                l.map_or("-".into(), |s| s.tid.to_string()),
                order.join(" < ")
            )?;
        }
        writeln!(out)?;
        for (i, f) in findings.iter().enumerate() {
            writeln!(
                out,
                "[{}] {} ({}) on dev {} ino {} page {}:",
                i + 1,
                f.rule.name(),
                f.severity.name(),
                f.page.dev,
                f.page.ino,
                f.page.pgoff
            )?;
            for s in &f.steps {
                writeln!(
                    out,
                    "      t={:<14} {:<10} {}: {}",
                    s.ts,
                    format!("{:?}", s.role).to_lowercase(),
                    who(s),
                    says(f.rule, s)
                )?;
            }
        }
        writeln!(out)?;
    }
    let mut sev = SeverityCounts::default();
    findings.iter().for_each(|f| sev.add(f.severity));
    print_summary(out, st, Some(&sev))
}

pub fn print_summary(
    out: &mut impl Write,
    st: &Stats,
    sev: Option<&SeverityCounts>,
) -> io::Result<()> {
    writeln!(
        out,
        "Summary: {} events, {} pages, {} faults, {} late, {} lost, {} evicted, {} findings{}",
        st.events,
        st.pages,
        st.faults,
        st.late,
        st.lost,
        st.evicted,
        st.findings,
        if st.bad_input > 0 {
            format!(", {} bad input lines skipped", st.bad_input)
        } else {
            String::new()
        }
    )?;
    if let Some(s) = sev {
        writeln!(
            out,
            "  by severity: {} corruption, {} stale_hole, {} stale_mapping",
            s.corruption, s.stale_hole, s.stale_mapping
        )?;
    }
    if st.late > 0 {
        writeln!(out, "  warning: {} event(s) arrived later than the reorder window and were not judged (try a larger --window-ms)", st.late)?;
    }
    if st.lost > 0 {
        writeln!(
            out,
            "  warning: the kernel side lost {} event(s): orderings through them cannot be seen",
            st.lost
        )?;
    }
    if st.healed > 0 {
        writeln!(
            out,
            "  note: {} write(2) stale hole(s) healed: the allocating write tore the zero page down after the load (not findings)",
            st.healed
        )?;
    }
    if st.evicted > 0 {
        writeln!(
            out,
            "  note: {} page(s) evicted by the page cap (try a larger --max-pages)",
            st.evicted
        )?;
    }
    Ok(())
}
