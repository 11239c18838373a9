//! `daxtrace timeline --dev MAJ:MIN --ino N --pgoff P FILE...`: one page's
//! history, every event that covers it (PMD spans, npages ranges and
//! invalidations to EOF included), with the findings on it.

use std::io::{self, Write};

use anyhow::Context as _;

use super::analyze::{drive, input_error, print_summary, InputArgs};
use super::Outcome;
use tracer::detect::Finding;
use tracer::event::{Body, Dev, Event, PageKey};
use tracer::pipeline::{Pipeline, Sink};
use tracer::sink::jsonl::FindingLine;

#[derive(clap::Args)]
pub struct Args {
    /// Device as MAJOR:MINOR (for example 259:0).
    #[arg(long, value_name = "MAJ:MIN")]
    pub dev: Dev,
    /// Inode number.
    #[arg(long, value_name = "N")]
    pub ino: u64,
    /// Page index in the file.
    #[arg(long, value_name = "P")]
    pub pgoff: u64,
    /// Print the history as JSON Lines (events, then the page's findings).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub input: InputArgs,
}

struct PageFindings {
    key: PageKey,
    findings: Vec<Finding>,
}

impl Sink for PageFindings {
    fn on_finding(&mut self, f: &Finding) {
        if f.page == self.key {
            self.findings.push(f.clone());
        }
    }
}

fn describe(ev: &Event) -> String {
    match ev.body {
        Body::FaultBegin {
            fault,
            pgoff,
            size,
            write,
        } => {
            format!(
                "fault_begin    fault {fault} {} {:?} fault at pgoff {pgoff}",
                if write { "write" } else { "read" },
                size
            )
        }
        Body::MapBlocks {
            fault,
            pgoff,
            npages,
            result,
            new,
            write,
        } => format!(
            "map_blocks     {} pages {pgoff}..{} -> {:?}{}{}",
            fault.map_or("no fault (write(2)/io)".to_owned(), |f| format!(
                "fault {f}"
            )),
            pgoff.saturating_add(npages),
            result,
            if new { ", NEW (allocated)" } else { "" },
            if write { ", create" } else { "" }
        ),
        Body::LoadHole { fault, pgoff, size } => {
            format!("load_hole      fault {fault} {size:?} at pgoff {pgoff} (zero page)")
        }
        Body::InsertMapping {
            fault,
            pgoff,
            size,
            inferred,
        } => {
            format!(
                "insert_mapping fault {fault} {size:?} at pgoff {pgoff}{}",
                if inferred { " (inferred)" } else { "" }
            )
        }
        Body::FaultEnd { fault, result } => format!("fault_end      fault {fault} -> {result:?}"),
        Body::Invalidate {
            pgoff,
            npages,
            reason,
        } => {
            let end = if npages == u64::MAX {
                "EOF".to_owned()
            } else {
                pgoff.saturating_add(npages).to_string()
            };
            format!("invalidate     pages {pgoff}..{end} ({reason:?})")
        }
        Body::Lost { count } => format!("lost           {count} events"),
    }
}

pub fn run(a: Args) -> anyhow::Result<Outcome> {
    let key = PageKey {
        dev: a.dev,
        ino: a.ino,
        pgoff: a.pgoff,
    };
    let mut pipe = Pipeline::new(a.input.config());
    pipe.watch(key);
    let mut sink = PageFindings {
        key,
        findings: Vec::new(),
    };
    let err = drive(&a.input, &mut pipe, &mut sink);
    let hist = pipe.timeline(&key).unwrap_or(&[]);
    let mut out = io::BufWriter::new(io::stdout().lock());
    if a.json {
        for ev in hist {
            serde_json::to_writer(&mut out, ev)?;
            writeln!(out)?;
        }
        for f in &sink.findings {
            serde_json::to_writer(&mut out, &FindingLine::new(f))?;
            writeln!(out)?;
        }
    } else {
        writeln!(
            out,
            "Page {} ino {} pgoff {}: {} event(s)",
            key.dev,
            key.ino,
            key.pgoff,
            hist.len()
        )?;
        for ev in hist {
            writeln!(
                out,
                "  t={:<14} cpu {:<3} tid {:<7} {:<16} {}",
                ev.ts,
                ev.cpu,
                ev.tid,
                ev.comm.as_str(),
                describe(ev)
            )?;
        }
        if hist.is_empty() {
            writeln!(out, "  (no event covers this page)")?;
        }
        for f in &sink.findings {
            let order: Vec<String> = f
                .steps
                .iter()
                .map(|s| format!("{:?}@{}", s.role, s.ts).to_lowercase())
                .collect();
            writeln!(
                out,
                "  finding: {} ({}): {}",
                f.rule.name(),
                f.severity.name(),
                order.join(" < ")
            )?;
        }
        print_summary(&mut out, pipe.stats(), None)?;
    }
    out.flush().context("writing output")?;
    if let Some(e) = err {
        return Err(input_error(e, pipe.stats().events));
    }
    Ok(if sink.findings.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
