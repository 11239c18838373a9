//! What every live subcommand shares: filter flags, duration, signals.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tracer::attach::{Choice, Filter};
use tracer::event::Dev;
use tracer::source::ringbuf::LiveSource;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct LiveArgs {
    /// Trace only this block device (MAJ:MIN, as `stat -c %d` / lsblk show it).
    #[arg(long, value_name = "MAJ:MIN")]
    pub dev: Option<Dev>,
    /// Trace only this inode number (`stat -c %i FILE`).
    #[arg(long, value_name = "N")]
    pub inode: Option<u64>,
    /// Stop after this long (e.g. 10s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Once attached, write the attach plan as attached (JSON, the shape of
    /// `daxtrace probe --json`) to FILE: what each step really uses. Written
    /// again when it changes (`iomap:iomap_iter` attached once a DAX
    /// filesystem is mounted).
    #[arg(long, value_name = "FILE")]
    pub plan_json: Option<PathBuf>,
    #[command(flatten)]
    pub attach: BackendArgs,
}

/// How to attach: shared by every live subcommand (and `probe`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BackendArgs {
    /// Attach backend to try first; the others follow as fallbacks, and the
    /// plan says what was substituted (`daxtrace probe` shows it).
    #[arg(long, value_enum, default_value_t = Choice::Auto)]
    pub backend: Choice,
    /// Take struct offsets from this BTF file instead of the running
    /// kernel's (/sys/kernel/btf/vmlinux), e.g. for a kernel without BTF.
    #[arg(long, value_name = "FILE")]
    pub btf: Option<PathBuf>,
}

impl BackendArgs {
    pub fn filter(&self, dev: Option<Dev>, ino: Option<u64>) -> Filter {
        Filter {
            dev,
            ino,
            backend: self.backend,
            btf: self.btf.clone(),
        }
    }
}

impl LiveArgs {
    pub fn filter(&self) -> Filter {
        self.attach.filter(self.dev, self.inode)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.duration.map(|d| Instant::now() + d)
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 500ms, 5m"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// A flag set by SIGINT or SIGTERM, so every live loop ends cleanly.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Print what changed while tracing (see `LiveSource::take_notes`) on
/// stderr, and write `--plan-json` again: the plan changed with it.
pub fn print_notes(src: &mut LiveSource, args: &LiveArgs) {
    let notes = src.take_notes();
    for n in &notes {
        eprintln!("daxtrace: {n}");
    }
    if !notes.is_empty() {
        if let Err(e) = write_plan(src, args) {
            eprintln!("daxtrace: {e:#}");
        }
    }
}

/// `--plan-json`: the attach plan as it stands.
fn write_plan(src: &LiveSource, args: &LiveArgs) -> Result<()> {
    if let Some(f) = &args.plan_json {
        let text =
            serde_json::to_string_pretty(src.plan()).context("serializing the attach plan")?;
        std::fs::write(f, text + "\n")
            .with_context(|| format!("cannot write the attach plan to {}", f.display()))?;
    }
    Ok(())
}

/// Load, attach and report what was attached (on stderr, at info level).
pub fn open(args: &LiveArgs) -> Result<LiveSource> {
    let src = LiveSource::open(&args.filter())?;
    let n = src.plan().used().count();
    for note in &src.plan().notes {
        eprintln!("daxtrace: {note}");
    }
    eprintln!(
        "daxtrace: {n} probes attached in {:.2}s ({})",
        src.ready_after().as_secs_f64(),
        src.plan().summary_line()
    );
    write_plan(&src, args)?;
    Ok(src)
}
