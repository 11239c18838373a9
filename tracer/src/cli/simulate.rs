//! `daxtrace simulate`: random schedules of the legacy (4.0-4.5) DAX fault
//! path, each judged by the real pipeline and by the byte oracle, compared per
//! page and per schedule. A self-check: exit 0 when precision and recall are
//! both exactly 1 (and, with `--fixed`, nothing is found or corrupted), exit 1
//! otherwise, exit 2 on error.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tracer::source::sim::{Clock, Mix, ScenarioShape, SimOptions, Simulation, Tally};

use super::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Every schedule run.
    All,
    /// Schedules the oracle found corrupting.
    Corrupt,
    /// Schedules where the detector raised a finding.
    Findings,
    /// Schedules where detector and oracle disagree on some page.
    Disagree,
}

#[derive(clap::Args)]
pub struct Args {
    /// Seed of the run; schedule I draws from (seed, I), so one schedule can be replayed alone.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Schedules to run.
    #[arg(long, default_value_t = 100_000)]
    schedules: u64,
    /// Index of the first schedule (replay schedule I: --first I --schedules 1).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Processes per schedule.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=1000))]
    actors: u16,
    /// Most operations per process.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1000))]
    ops: u16,
    /// Files (inodes) the processes share.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=64))]
    files: u8,
    /// 4 KiB operations pick their page among this many (inside the first 2 MiB).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=512))]
    pages: u64,
    /// Model the 4.6+ per-entry lock: must never corrupt, never find.
    #[arg(long)]
    fixed: bool,
    /// Deliver events out of order across CPUs, inside the reorder window.
    #[arg(long)]
    jitter: bool,
    /// Make about one timestamp gap in N zero. Equal timestamps never order
    /// anything (DESIGN.md §2), so races whose ordering ties are missed: expect
    /// recall below 1 (and exit 1); shows how many.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    ties: Option<u32>,
    /// Leave out kinds of operations (comma list: read,write,pmd_read,pmd_write,pwrite,punch,truncate).
    #[arg(long, value_delimiter = ',')]
    without: Vec<String>,
    /// Write schedules as JSON Lines to FILE (`-`: stdout), in the order the pipeline received them.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Which schedules `-o` writes.
    #[arg(long, value_enum, default_value_t = Which::All)]
    write: Which,
    /// Most schedules `-o` writes.
    #[arg(long, default_value_t = u64::MAX)]
    limit: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    kind: &'static str,
    seed: u64,
    first: u64,
    model: &'static str,
    actors: u16,
    ops: u16,
    files: u8,
    pages: u64,
    jitter: bool,
    ties: Option<u32>,
    #[serde(flatten)]
    tally: &'a Tally,
    schedule_precision: f64,
    schedule_recall: f64,
    page_precision: f64,
    page_recall: f64,
    written: u64,
    seconds: f64,
    pass: bool,
}

fn mix(without: &[String]) -> anyhow::Result<Mix> {
    let mut m = Mix::default();
    for w in without {
        match w.trim() {
            "read" => m.read = 0,
            "write" => m.write = 0,
            "pmd_read" => m.pmd_read = 0,
            "pmd_write" => m.pmd_write = 0,
            "pwrite" => m.pwrite = 0,
            "punch" => m.punch = 0,
            "truncate" => m.truncate = 0,
            other => bail!(
                "--without {other:?}: not an operation; use read, write, pmd_read, pmd_write, pwrite, punch or truncate"
            ),
        }
    }
    if m.read + m.write + m.pmd_read + m.pmd_write + m.pwrite + m.punch + m.truncate == 0 {
        bail!("--without leaves no operation to simulate; drop one of them");
    }
    Ok(m)
}

pub fn run(a: Args) -> anyhow::Result<Outcome> {
    let opts = SimOptions {
        seed: a.seed,
        shape: ScenarioShape {
            actors: usize::from(a.actors),
            ops: usize::from(a.ops),
            files: usize::from(a.files),
            hot_pages: a.pages,
            mix: mix(&a.without)?,
        },
        fixed: a.fixed,
        clock: a.ties.map_or(Clock::Strict, Clock::Ties),
        jitter: a.jitter,
        ..SimOptions::default()
    };
    let end = a
        .first
        .checked_add(a.schedules)
        .context("--first + --schedules overflows")?;

    let mut out: Option<Box<dyn Write>> = match &a.output {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(BufWriter::new(io::stdout().lock()))),
        Some(p) => Some(Box::new(BufWriter::new(File::create(p).with_context(
            || {
                format!(
                    "cannot create {}: check the folder exists and is writable",
                    p.display()
                )
            },
        )?))),
    };
    let summary_to_stderr = matches!(&a.output, Some(p) if p.as_os_str() == "-");

    let bar = if io::stderr().is_terminal() && a.schedules >= 10_000 {
        let b = ProgressBar::new(a.schedules);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {pos}/{len} schedules {per_sec} eta {eta} {msg}",
            )
            .expect("static template"),
        );
        Some(b)
    } else {
        None
    };

    let started = Instant::now();
    let mut sim = Simulation::new(opts);
    let mut tally = Tally::default();
    let mut written = 0u64;
    for index in a.first..end {
        let j = sim.judge(index);
        tally.add_judged(&j);
        if let Some(w) = out.as_mut() {
            let pick = match a.write {
                Which::All => true,
                Which::Corrupt => j.verdict.corrupt,
                Which::Findings => j.verdict.flagged,
                Which::Disagree => !j.verdict.agrees(),
            };
            if pick && written < a.limit {
                for ev in j.delivered {
                    serde_json::to_writer(&mut *w, ev)?;
                    w.write_all(b"\n")?;
                }
                written += 1;
            }
        }
        if let Some(b) = &bar {
            if index % 1024 == 0 {
                b.set_position(index - a.first);
                b.set_message(format!(
                    "corrupting {} disagree {}",
                    tally.corrupting_schedules, tally.disagreeing_total
                ));
            }
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(mut w) = out.take() {
        w.flush().context("writing the schedules")?;
    }
    let seconds = started.elapsed().as_secs_f64();

    let s = &tally.schedule_matrix;
    let p = &tally.page_matrix;
    let mut pass =
        s.precision() == 1.0 && s.recall() == 1.0 && p.precision() == 1.0 && p.recall() == 1.0;
    if a.fixed {
        pass &= tally.findings == 0 && tally.corrupting_schedules == 0;
    }
    pass &= tally.late == 0 && tally.evicted == 0;
    let summary = Summary {
        kind: "simulate_summary",
        seed: a.seed,
        first: a.first,
        model: if a.fixed {
            "fixed-4.6"
        } else {
            "legacy-4.0-4.5"
        },
        actors: a.actors,
        ops: a.ops,
        files: a.files,
        pages: a.pages,
        jitter: a.jitter,
        ties: a.ties,
        tally: &tally,
        schedule_precision: s.precision(),
        schedule_recall: s.recall(),
        page_precision: p.precision(),
        page_recall: p.recall(),
        written,
        seconds,
        pass,
    };
    let mut text = Vec::new();
    if a.json {
        serde_json::to_writer(&mut text, &summary)?;
        text.push(b'\n');
    } else {
        human(&mut text, &summary)?;
    }
    if summary_to_stderr {
        io::stderr().write_all(&text)?;
    } else {
        io::stdout().write_all(&text)?;
    }
    Ok(if pass {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn human(w: &mut impl Write, s: &Summary<'_>) -> io::Result<()> {
    let t = s.tally;
    let pct = |n: u64, d: u64| {
        if d == 0 {
            0.0
        } else {
            100.0 * n as f64 / d as f64
        }
    };
    writeln!(
        w,
        "simulate: {} schedules of the {} model (seed {}, from {}; {} actors x <= {} ops, {} files, {} hot pages{}{})",
        t.schedules,
        s.model,
        s.seed,
        s.first,
        s.actors,
        s.ops,
        s.files,
        s.pages,
        if s.jitter { ", jittered delivery" } else { "" },
        s.ties.map(|n| format!(", ties 1/{n}")).unwrap_or_default(),
    )?;
    writeln!(
        w,
        "  events {}  steps {}  in {:.2} s ({:.0} schedules/s)",
        t.events,
        t.steps,
        s.seconds,
        t.schedules as f64 / s.seconds.max(1e-9)
    )?;
    writeln!(
        w,
        "  oracle: corrupting schedules {} ({:.3}%), corrupted pages {}, reads that returned wrong bytes {}",
        t.corrupting_schedules,
        pct(t.corrupting_schedules, t.schedules),
        t.corrupted_pages,
        t.wrong_reads
    )?;
    writeln!(
        w,
        "  detector: findings {} (hole_load_after_allocate {}: corruption {}, stale_hole {}; insert_after_invalidate {})",
        t.findings,
        t.findings_hole_load_after_allocate,
        t.findings_corruption,
        t.findings_stale_hole,
        t.findings_insert_after_invalidate
    )?;
    writeln!(
        w,
        "  pipeline: late {}  lost {}  evicted {}",
        t.late, t.lost, t.evicted
    )?;
    writeln!(w)?;
    writeln!(
        w,
        "  {:<10} {:<12} {:>14} {:>14}",
        "", "", "corrupted", "not corrupted"
    )?;
    for (name, m) in [("schedules", &t.schedule_matrix), ("pages", &t.page_matrix)] {
        writeln!(
            w,
            "  {:<10} {:<12} {:>14} {:>14}",
            name, "finding", m.tp, m.fp
        )?;
        writeln!(
            w,
            "  {:<10} {:<12} {:>14} {:>14}",
            "", "no finding", m.fn_, m.tn
        )?;
    }
    writeln!(w)?;
    writeln!(
        w,
        "  precision {:.6} recall {:.6} (schedules); precision {:.6} recall {:.6} (pages)",
        s.schedule_precision, s.schedule_recall, s.page_precision, s.page_recall
    )?;
    if t.disagreeing_total > 0 {
        let idx: Vec<String> = t.disagreeing.iter().map(u64::to_string).collect();
        writeln!(
            w,
            "  disagreeing schedules {} (first: {}); replay one with --seed {} --first I --schedules 1 -o -",
            t.disagreeing_total,
            idx.join(" "),
            s.seed
        )?;
    }
    if s.written > 0 {
        writeln!(w, "  wrote {} schedules", s.written)?;
    }
    writeln!(w, "  self-check: {}", if s.pass { "pass" } else { "FAIL" })?;
    Ok(())
}
