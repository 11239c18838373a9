//! `cargo xtask bench-overhead`: what tracing costs, daxtrace against
//! Debian's trace-cmd and bpftrace on the same tracepoints (issue 9 point 6).
//!
//! Setting `host`: a tight O_DIRECT loop on a loop-mounted ext4
//! (workload.rs), rounds of untraced / daxtrace per backend / trace-cmd /
//! bpftrace interleaved (the order rotates each round), each traced run
//! compared with the same round's untraced run. A benchmark, not a test:
//! it prints a table and writes JSON, and judges nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::util::root;

mod bpfstats;
mod lab;
mod proc;
mod report;
mod tools;
mod workload;

use report::{ConfigResult, Sample, Summary};
use tools::{DxMode, Tracer};
use workload::Kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Setting {
    /// Native on this machine: O_DIRECT on a loop-mounted ext4.
    Host,
    /// The lab's TCG guest (Debian 6.12, ext4 -o dax on emulated pmem): the
    /// racing workload. Not yet run end to end (guest-bench.sh is untried).
    Lab,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, value_enum, default_value = "host")]
    pub setting: Setting,
    /// Workloads to run (default: read). Writes into holes allocate and go
    /// through the loop device: tens of µs of CPU per op here, which buries
    /// a per-event cost of ~100 ns in noise; run them to see it anyway.
    #[arg(long, value_enum)]
    pub workload: Vec<Kind>,
    /// Rounds; each runs every config once, in a rotated order.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// O_DIRECT reads per run.
    #[arg(long, default_value_t = 2_000_000)]
    pub read_ops: u64,
    /// O_DIRECT writes per run (each allocates, so they are slower).
    #[arg(long, default_value_t = 5_000)]
    pub write_ops: u64,
    /// Lab: racing-workload rounds per run (lab-workload --rounds).
    #[arg(long, default_value_t = 40)]
    pub lab_workload_rounds: u32,
    /// Lab: pages per racing file.
    #[arg(long, default_value_t = 1024)]
    pub lab_pages: usize,
    /// Lab: QEMU's nice value. Negative by default, so that builds and tests
    /// running beside the benchmark take less of the CPU from the guest
    /// (setting it below 0 needs root).
    #[arg(long, default_value_t = -10, allow_hyphen_values = true)]
    pub lab_nice: i32,
    /// Lab: reader passes per round.
    #[arg(long, default_value_t = 3)]
    pub lab_passes: u32,
    /// Only configs whose name contains one of these (e.g. untraced, daxtrace, trace-cmd, bpftrace).
    #[arg(long)]
    pub only: Vec<String>,
    /// Use this daxtrace binary instead of building one (A/B comparisons;
    /// in the lab it must carry its eBPF object).
    #[arg(long)]
    pub daxtrace: Option<PathBuf>,
    /// Also run every daxtrace config with this binary, as `... (before)`
    /// (lab: `...@before`), interleaved in the same rounds: an A/B
    /// comparison under the same load (e.g. a build of main before a change).
    #[arg(long)]
    pub daxtrace_before: Option<PathBuf>,
    /// Also report the eBPF programs' cost per run, from the kernel's own
    /// accounting (kernel.bpf_stats_enabled, on during the timed loops or
    /// the lab workload only): daxtrace's on the host, daxtrace's and
    /// bpftrace's in the lab. The accounting adds two clock reads per
    /// program run, so the timings of such a run include it.
    #[arg(long)]
    pub bpf_stats: bool,
    /// JSON report (default: <lab cache>/results/bench-overhead-<setting>.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Serialize)]
struct WorkloadResult {
    workload: Kind,
    ops_per_run: u64,
    /// The workload's own events per op: `daxtrace stream --dev` on the
    /// bench filesystem only, so other processes' events do not count.
    events_per_op: f64,
    calibration: Calibration,
    configs: Vec<ConfigResult>,
}

#[derive(Serialize, Default)]
struct Calibration {
    command: String,
    ops: u64,
    events: u64,
    by_kind: String,
    jsonl_bytes: u64,
    jsonl_bytes_per_event: f64,
}

#[derive(Serialize)]
struct Report {
    setting: &'static str,
    kernel: String,
    cpus: usize,
    loadavg_start: String,
    loadavg_end: String,
    started_unix: u64,
    total_secs: f64,
    rounds: u32,
    tracepoints: Vec<String>,
    backends: Vec<String>,
    skipped: Vec<String>,
    workloads: Vec<WorkloadResult>,
}

pub fn run(a: Args) -> Result<()> {
    match a.setting {
        Setting::Host => host(&a),
        Setting::Lab => {
            let mut configs: Vec<String> = lab::CONFIGS.iter().map(|s| (*s).to_string()).collect();
            if !a.only.is_empty() {
                configs
                    .retain(|c| c == "untraced" || a.only.iter().any(|o| c.contains(o.as_str())));
            }
            lab::run(&lab::LabArgs {
                rounds: a.rounds,
                workload_rounds: a.lab_workload_rounds,
                pages: a.lab_pages,
                passes: a.lab_passes,
                configs,
                nice: a.lab_nice,
                out: a.out.clone(),
                daxtrace: a.daxtrace.clone(),
                daxtrace_before: a.daxtrace_before.clone(),
                bpf_stats: a.bpf_stats,
            })
        }
    }
}

fn host(a: &Args) -> Result<()> {
    let t0 = Instant::now();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench attaches eBPF programs, runs trace-cmd and mounts a loop device: run it as root");
    }
    let loadavg_start = loadavg();
    let tracefs = tracefs()?;
    let daxtrace = match &a.daxtrace {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("--daxtrace {}", p.display()))?,
        None => build_daxtrace()?,
    };
    let daxtrace_before = match &a.daxtrace_before {
        Some(p) => Some(
            p.canonicalize()
                .with_context(|| format!("--daxtrace-before {}", p.display()))?,
        ),
        None => None,
    };
    let unpacked = tools::fetch()?;
    let tracepoints: Vec<String> = tracer_common::Probe::ALL
        .iter()
        .map(|p| p.tracepoint().to_string())
        .filter(|tp| {
            tp.split_once(':')
                .is_some_and(|(c, e)| tracefs.join("events").join(c).join(e).is_dir())
        })
        .collect();
    let help =
        crate::util::output(Command::new(&daxtrace).args(["stream", "--help"])).unwrap_or_default();
    let backends = tools::parse_backends(&help);
    let scratch = crate::lab::fetch::cache_dir().join("bench").join("host");
    fs::create_dir_all(&scratch)?;
    let scratch = scratch.canonicalize()?;
    let env = tools::Env {
        daxtrace: &daxtrace,
        daxtrace_before: daxtrace_before.as_deref(),
        tools: &unpacked,
        tracepoints: &tracepoints,
        tracefs: &tracefs,
        scratch: &scratch,
        ready_timeout: Duration::from_secs(120),
    };

    let mut tracers = vec![Tracer::Untraced];
    let per_backend: Vec<Option<String>> = if backends.is_empty() {
        vec![None]
    } else {
        backends.iter().cloned().map(Some).collect()
    };
    for b in per_backend {
        for before in if daxtrace_before.is_some() {
            vec![false, true]
        } else {
            vec![false]
        } {
            for mode in [DxMode::Record, DxMode::Stream] {
                tracers.push(Tracer::Daxtrace {
                    mode,
                    backend: b.clone(),
                    before,
                });
            }
        }
    }
    tracers.push(Tracer::TraceCmd);
    tracers.push(Tracer::Bpftrace);
    tracers.push(Tracer::BpftraceEmpty);
    if !a.only.is_empty() {
        tracers.retain(|t| {
            *t == Tracer::Untraced || a.only.iter().any(|o| t.name().contains(o.as_str()))
        });
    }
    // Backends this kernel refuses (kprobe, fentry here) drop out with a note.
    let mut skipped = Vec::new();
    tracers.retain(|t| match t {
        Tracer::Daxtrace {
            mode: DxMode::Stream,
            ..
        }
        | Tracer::Untraced => true,
        _ => match tools::start(t, &env).and_then(|s| s.finish(&env)) {
            Ok(_) => true,
            Err(e) => {
                let first = format!("{e:#}")
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" / ");
                eprintln!("bench: {} skipped: {first}", t.name());
                skipped.push(format!("{}: {first}", t.name()));
                false
            }
        },
    });
    tracers.retain(|t| match t {
        Tracer::Daxtrace {
            mode: DxMode::Stream,
            backend,
            before,
        } => tracers_has_record(&skipped, backend.as_deref(), *before),
        _ => true,
    });

    let fsys = workload::LoopFs::make(&scratch.join("fs"))?;
    eprintln!(
        "bench: ext4 on a loop device ({}) at {}; tracepoints: {}; daxtrace backends: {}",
        fsys.dev,
        fsys.mnt.display(),
        tracepoints.join(" "),
        if backends.is_empty() {
            "default (no --backend flag)".into()
        } else {
            backends.join(", ")
        }
    );
    let kinds = if a.workload.is_empty() {
        vec![Kind::Read]
    } else {
        a.workload.clone()
    };
    let mut results = Vec::new();
    for kind in kinds {
        let ops = if kind == Kind::Read {
            a.read_ops
        } else {
            a.write_ops
        };
        results.push(one_workload(
            kind,
            ops,
            a.rounds,
            &tracers,
            &env,
            &fsys,
            a.bpf_stats,
        )?);
    }
    drop(fsys);

    let report = Report {
        setting: "host",
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        cpus: tools::online_cpus(),
        loadavg_start,
        loadavg_end: loadavg(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        total_secs: t0.elapsed().as_secs_f64(),
        rounds: a.rounds,
        tracepoints: tracepoints.clone(),
        backends,
        skipped,
        workloads: results,
    };
    print_report(&report);
    let out = a.out.clone().unwrap_or_else(|| {
        crate::lab::fetch::cache_dir()
            .join("results")
            .join("bench-overhead-host.json")
    });
    if let Some(p) = out.parent() {
        fs::create_dir_all(p)?;
    }
    fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "bench: {:.0}s; JSON report {}",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// A stream config stays when its backend's record config attached.
fn tracers_has_record(skipped: &[String], backend: Option<&str>, before: bool) -> bool {
    let rec = Tracer::Daxtrace {
        mode: DxMode::Record,
        backend: backend.map(String::from),
        before,
    }
    .name();
    !skipped.iter().any(|s| s.starts_with(&format!("{rec}:")))
}

fn one_workload(
    kind: Kind,
    ops: u64,
    rounds: u32,
    tracers: &[Tracer],
    env: &tools::Env,
    fsys: &workload::LoopFs,
    bpf_stats: bool,
) -> Result<WorkloadResult> {
    let mut wl = workload::Workload::open(fsys, kind)?;
    // Warm the caches and the extent tree; not measured.
    wl.run(ops / 10)?;
    let calibration = calibrate(&mut wl, (ops / 10).max(ops.min(50_000)), env, fsys)?;
    #[allow(clippy::cast_precision_loss, reason = "a ratio")]
    let events_per_op = calibration.events as f64 / calibration.ops as f64;
    eprintln!(
        "bench: {}: {:.3} events/op ({}), {:.1} JSON Lines bytes/event; {rounds} rounds x {} configs x {ops} ops",
        kind.label(),
        events_per_op,
        calibration.by_kind,
        calibration.jsonl_bytes_per_event,
        tracers.len()
    );
    let mut configs: Vec<ConfigResult> = tracers
        .iter()
        .map(|t| ConfigResult {
            name: t.name(),
            tracer: t.clone(),
            command: String::new(),
            samples: Vec::new(),
            summary: Summary::default(),
        })
        .collect();
    for round in 0..rounds {
        let n = configs.len();
        for i in 0..n {
            // Rotate the order each round: no config always runs first.
            let c = &mut configs[(i + round as usize) % n];
            wl.reset()?;
            let started = tools::start(&c.tracer, env).with_context(|| c.name.clone())?;
            // Let the tool's start-up work (threads, first reads) settle.
            std::thread::sleep(Duration::from_millis(200));
            // daxtrace's programs only: bpftrace's are not all found by name here.
            let pid = if bpf_stats && matches!(c.tracer, Tracer::Daxtrace { .. }) {
                started.pid()
            } else {
                None
            };
            let accounting = pid.map(|_| bpfstats::Enabled::new()).transpose()?;
            let before = pid.map(bpfstats::snapshot);
            let timing = wl.run(ops)?;
            let progs = match (pid, &before) {
                (Some(p), Some(b)) => bpfstats::between(b, &bpfstats::snapshot(p)),
                _ => Vec::new(),
            };
            drop(accounting);
            let mut tool = started.finish(env).with_context(|| c.name.clone())?;
            if let Some(t) = &mut tool {
                t.progs = progs;
            }
            if let Some(t) = &tool {
                c.command.clone_from(&t.command);
            }
            #[allow(clippy::cast_precision_loss, reason = "progress line")]
            let per_op = timing.cpu_ns as f64 / ops as f64;
            eprintln!(
                "bench: {} round {}/{rounds} {:<32} {per_op:>7.0} cpu ns/op {:>7.0} wall ns/op{}",
                kind.label(),
                round + 1,
                c.name,
                timing.wall_ns as f64 / ops as f64,
                tool.as_ref()
                    .map(|t| format!(
                        ", ready {:.2}s, {} events, lost {}",
                        t.ready_s, t.events, t.lost
                    ))
                    .unwrap_or_default()
            );
            c.samples.push(Sample {
                round,
                timing,
                tool,
            });
        }
    }
    report::summarize(&mut configs, events_per_op);
    Ok(WorkloadResult {
        workload: kind,
        ops_per_run: ops,
        events_per_op,
        calibration,
        configs,
    })
}

/// The workload's own events per op and JSON Lines size: daxtrace stream
/// filtered to the bench filesystem (`--dev`), written to a file.
fn calibrate(
    wl: &mut workload::Workload,
    ops: u64,
    env: &tools::Env,
    fsys: &workload::LoopFs,
) -> Result<Calibration> {
    let out = env.scratch.join("calibration.jsonl");
    let file = fs::File::create(&out)?;
    let mut c = Command::new(env.daxtrace);
    c.args(["stream", "--json", "--dev", &fsys.dev])
        .stdout(file);
    let command = format!("{} > {}", tools::command_line(&c), out.display());
    wl.reset()?;
    let mut r = proc::Running::spawn(&mut c, false)?;
    r.wait_ready(env.ready_timeout, |ls, _| {
        proc::line_with(ls, "attached in")
    })
    .context("daxtrace stream (calibration)")?;
    wl.run(ops)?;
    let f = r.stop(libc::SIGINT, Duration::from_secs(60))?;
    let text = f.text();
    let (events, lost) = tools::parse_daxtrace_stream(&text)
        .with_context(|| format!("calibration: no summary line in:\n{text}"))?;
    if lost > 0 {
        bail!("calibration lost {lost} events; the events/op figure would be wrong (is the machine overloaded?)");
    }
    let by_kind = text
        .lines()
        .rev()
        .find_map(|l| {
            l.split_once(" events (")
                .map(|(_, r)| r.rsplit_once("), lost").map_or(r, |x| x.0).to_string())
        })
        .unwrap_or_default();
    let jsonl_bytes = fs::metadata(&out)?.len();
    let _ = fs::remove_file(&out);
    #[allow(clippy::cast_precision_loss, reason = "a ratio")]
    Ok(Calibration {
        command,
        ops,
        events,
        by_kind,
        jsonl_bytes,
        jsonl_bytes_per_event: jsonl_bytes as f64 / events.max(1) as f64,
    })
}

fn print_report(r: &Report) {
    println!();
    println!(
        "bench-overhead ({}): kernel {}, {} CPUs, load average {} at start, {} at end; {} rounds, order rotated each round",
        r.setting, r.kernel, r.cpus, r.loadavg_start, r.loadavg_end, r.rounds
    );
    println!("tracepoints: {}", r.tracepoints.join(" "));
    for s in &r.skipped {
        println!("skipped: {s}");
    }
    for w in &r.workloads {
        println!();
        println!(
            "workload {}: {} O_DIRECT 4 KiB {}s per run; {:.3} events/op ({}); +ns/event = (traced - untraced of the same round) / events per op",
            w.workload.label(),
            w.ops_per_run,
            w.workload.label(),
            w.events_per_op,
            w.calibration.by_kind
        );
        print!("{}", report::table(&w.configs));
        print!("{}", report::prog_table(&w.configs, w.ops_per_run));
        println!("  bytes/event on this workload:");
        println!(
            "    daxtrace JSON Lines (stream --json)   {:>8.1}",
            w.calibration.jsonl_bytes_per_event
        );
        for c in &w.configs {
            if let Some(b) = c.summary.file_bytes_per_event {
                let what = match c.tracer {
                    Tracer::TraceCmd => "trace-cmd trace.dat (whole file)",
                    _ => "daxtrace trace file (record -o)",
                };
                println!("    {what:<38}{:>8.2}   ({})", b.median, c.name);
            }
            if let Some(b) = c.summary.data_bytes_per_event {
                println!(
                    "    {:<38}{:>8.2}",
                    "trace-cmd trace.dat (data, no header)", b.median
                );
            }
        }
        println!("  commands:");
        println!("    calibration: {}", w.calibration.command);
        for c in &w.configs {
            if !c.command.is_empty() {
                println!("    {}: {}", c.name, c.command);
            }
        }
    }
    println!();
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The mounted tracefs, mounting it at /sys/kernel/tracing if needed.
fn tracefs() -> Result<PathBuf> {
    for p in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(p).join("events").is_dir() {
            return Ok(PathBuf::from(p));
        }
    }
    crate::util::run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))
        .context("tracefs is not mounted and mounting it failed")?;
    Ok(PathBuf::from("/sys/kernel/tracing"))
}

/// daxtrace in release with the real eBPF object.
fn build_daxtrace() -> Result<PathBuf> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("bench: building daxtrace (release, real eBPF object)");
    let st = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "tracer",
            "--bin",
            "daxtrace",
        ])
        .env_remove("DAXTRACE_EBPF")
        .status()
        .context("cannot run cargo build")?;
    if !st.success() {
        bail!("cargo build --release failed ({st}); `cargo xtask setup` installs bpf-linker and nightly rust-src");
    }
    Ok(target.join("release").join("daxtrace"))
}
