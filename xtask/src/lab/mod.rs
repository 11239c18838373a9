//! `cargo xtask lab`: boot real DAX guests (Debian's 6.1 and 6.12 kernels,
//! ext4 and xfs on an emulated pmem region) and prove daxtrace's events
//! against the kernel's own trace of the same tracepoints (issue 5).
//!
//! fetch.rs (cache of .debs, unpacked) -> initramfs.rs (busybox, modules,
//! binaries, guest.sh as /init) -> qemu.rs (TCG boot, console verdict) ->
//! compare.rs (kernel trace vs daxtrace events) + `daxtrace analyze`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::util::root;

pub mod compare;
pub mod fetch;
pub mod initramfs;
pub mod qemu;

use fetch::KernelLine;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelArg {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FsArg {
    Ext4,
    Xfs,
    All,
}

/// daxtrace's `--backend` in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Tracepoint,
    #[value(name = "tp_btf")]
    TpBtf,
    #[value(name = "raw_tp")]
    RawTp,
    Kprobe,
    Fentry,
    Auto,
}

impl BackendArg {
    pub fn name(self) -> &'static str {
        match self {
            BackendArg::Tracepoint => "tracepoint",
            BackendArg::TpBtf => "tp_btf",
            BackendArg::RawTp => "raw_tp",
            BackendArg::Kprobe => "kprobe",
            BackendArg::Fentry => "fentry",
            BackendArg::Auto => "auto",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kernel line(s) to boot (default: all, i.e. 6.1 then 6.12).
    #[arg(long, value_enum)]
    pub kernel: Option<KernelArg>,
    /// Filesystem(s) to make on /dev/pmem0.
    #[arg(long, value_enum, default_value = "all")]
    pub fs: FsArg,
    /// daxtrace's attach backend(s) in the guest, comma-separated: each
    /// runs the workload on a fresh filesystem in the same boot, and each
    /// is checked against the kernel's own trace (function probes against
    /// the tracepoints their functions fire).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tracepoint")]
    pub backend: Vec<BackendArg>,
    /// QEMU's TCG threading: one host thread per vCPU, or one for all.
    #[arg(long, value_enum, default_value = "multi")]
    pub tcg: qemu::Tcg,
    /// Judge the results already in the results folder again (no build, no
    /// boot); with --inject-mismatch, the mismatch test on real traces.
    #[arg(long)]
    pub judge_only: bool,
    /// The long pass: both kernels and a longer workload.
    #[arg(long)]
    pub full: bool,
    /// Workload rounds per filesystem (overrides the pass's default).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Boot and run the workload without daxtrace (tests the boot path alone).
    #[arg(long)]
    pub no_daxtrace: bool,
    /// Start daxtrace before the DAX filesystem is mounted (it must then
    /// attach `iomap:iomap_iter` once the mount appears, or DAX write(2)
    /// teardowns go missing and the comparison fails).
    #[arg(long)]
    pub mount_after_start: bool,
    /// Drop one daxtrace event before comparing: the lab must then fail.
    #[arg(long)]
    pub inject_mismatch: bool,
    /// Where results and the JSON summary go (default: <cache>/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Workload size per pass.
struct Pass {
    rounds: u32,
    pages: usize,
    passes: u32,
    bufkb: u32,
    timeout: Duration,
}

const SHORT: Pass = Pass {
    rounds: 6,
    pages: 1024,
    passes: 3,
    bufkb: 32768,
    timeout: Duration::from_secs(20 * 60),
};
const FULL: Pass = Pass {
    rounds: 30,
    pages: 2048,
    passes: 4,
    bufkb: 131_072,
    timeout: Duration::from_secs(60 * 60),
};

/// One kernel × filesystem × backend result: the table row and the JSON summary entry.
#[derive(Debug, Default, Serialize)]
pub struct FsResult {
    pub kernel: String,
    pub release: String,
    pub fs: String,
    /// daxtrace's `--backend` in the guest.
    pub backend: String,
    /// What was attached ("fentry 5, tp_btf 2, ...; step coverage"), from daxtrace.
    pub attached: String,
    /// daxtrace's own start-to-ready time (load and attach), in the guest.
    pub ready_secs: Option<f64>,
    /// Fallbacks and refused attaches daxtrace reported (verifier verdicts included).
    pub attach_notes: Vec<String>,
    /// Entries of the attach plan as attached ("backend symbol").
    pub used: Vec<String>,
    /// Function-probe events with no tracepoint counterpart (insert-mapping), by probe.
    pub function_only: BTreeMap<String, u64>,
    /// Kernel counts of recorded tracepoints this backend did not attach.
    pub not_attached: BTreeMap<String, u64>,
    /// Boots of this row after an emulator flake (0 or 1).
    pub retries: u32,
    /// Guest kernel reports classified as emulator flakes, with why.
    pub flakes: Vec<String>,
    /// false: the workload ran without daxtrace (counts are the kernel's).
    pub daxtrace: bool,
    pub pte_faults: u64,
    pub pmd_faults: u64,
    pub hole_loads: u64,
    pub map_blocks: u64,
    pub inserts: u64,
    pub inferred_inserts: u64,
    /// Events inside and outside faults whose fault id was checked.
    #[serde(default)]
    pub fault_ids_checked: u64,
    pub invalidations: u64,
    /// write(2) teardowns reported at the writer's next iomap_iter (derived).
    pub write_teardowns: u64,
    /// write(2) stale holes the write tore down itself (analyze's `healed`).
    pub healed: u64,
    pub lost: u64,
    pub late: u64,
    pub kernel_overrun: u64,
    pub findings: u64,
    pub data_mismatches: u64,
    pub boot_secs: f64,
    pub run_secs: f64,
    pub median_skew_ns: u64,
    pub max_skew_ns: u64,
    pub absent_tracepoints: Vec<String>,
    pub counts: BTreeMap<String, compare::Row>,
    pub workload: Option<serde_json::Value>,
    /// Every reason this row fails; empty means it passed.
    pub problems: Vec<String>,
}

#[derive(Serialize)]
struct Summary<'a> {
    ok: bool,
    pass: &'static str,
    tcg: qemu::Tcg,
    downloaded_bytes: u64,
    total_secs: f64,
    /// Boots repeated after an emulator flake, over all kernels.
    retries: u32,
    /// Every guest kernel report, flake or not, with its classification.
    troubles: Vec<(String, qemu::Trouble)>,
    results: &'a [FsResult],
}

pub fn run(a: Args) -> Result<bool> {
    let t0 = Instant::now();
    let pass = if a.full { &FULL } else { &SHORT };
    let rounds = a.rounds.unwrap_or(pass.rounds);
    let kernels: Vec<KernelLine> = match a.kernel.unwrap_or(KernelArg::All) {
        KernelArg::V6_1 => vec![KernelLine::V6_1],
        KernelArg::V6_12 => vec![KernelLine::V6_12],
        KernelArg::All => KernelLine::ALL.to_vec(),
    };
    let fss: Vec<&str> = match a.fs {
        FsArg::Ext4 => vec!["ext4"],
        FsArg::Xfs => vec!["xfs"],
        FsArg::All => vec!["ext4", "xfs"],
    };
    let mut backends: Vec<&str> = Vec::new();
    for b in &a.backend {
        if !backends.contains(&b.name()) {
            backends.push(b.name());
        }
    }
    if a.no_daxtrace {
        backends = vec!["none"];
    }
    // One run per filesystem and backend, each on a fresh filesystem.
    let runs: Vec<(&str, &str)> = fss
        .iter()
        .flat_map(|f| backends.iter().map(move |b| (*f, *b)))
        .collect();
    let cache = fetch::cache_dir();
    let out = a.out.clone().unwrap_or_else(|| cache.join("results"));
    eprintln!(
        "lab: {} pass: kernel {} x {} x backend {}, {rounds} rounds of {} pages; TCG thread={}; cache {}",
        if a.full { "full" } else { "short" },
        kernels.iter().map(|k| k.label()).collect::<Vec<_>>().join(","),
        fss.join(","),
        backends.join(","),
        pass.pages,
        a.tcg.name(),
        cache.display()
    );
    // The kernel's own trace records the tracepoints whose records are one
    // per kernel event; derived ones (iomap_iter) would only flood it.
    let tracepoints: Vec<&str> = tracer_common::Probe::ALL
        .iter()
        .filter(|p| !p.derived())
        .map(|p| p.tracepoint())
        .collect();

    if a.judge_only {
        return judge_again(&a, &out, &kernels, &runs, &tracepoints);
    }

    let (daxtrace, workload) = build_binaries(!a.no_daxtrace)?;
    let mut fetcher = fetch::Fetcher::new(&cache)?;
    let tools = fetcher.tools()?;
    let mut results = Vec::new();
    let mut troubles = Vec::new();
    let mut retries = 0;
    for line in kernels {
        let kernel = fetcher.kernel(line)?;
        let build = cache.join("build").join(&kernel.release);
        fs::create_dir_all(&build)?;
        eprintln!(
            "lab: {} ({}): building the initramfs",
            line.label(),
            kernel.package
        );
        let initrd = initramfs::build(
            &initramfs::Inputs {
                tools: &tools,
                kernel: &kernel,
                daxtrace: daxtrace.as_deref(),
                workload: &workload,
                events: &tracepoints,
            },
            &build,
        )?;
        let share = out.join(line.label());
        if share.exists() {
            fs::remove_dir_all(&share)?;
        }
        fs::create_dir_all(&share)?;
        let share = share.canonicalize()?;
        // Boot; after a boot whose only trouble was an emulator flake, boot
        // once more for the runs it left unfinished.
        let mut todo: Vec<(&str, &str)> = runs.clone();
        let mut attempt = 0u32;
        let mut carried: Vec<String> = Vec::new();
        while !todo.is_empty() {
            let log = share.join(if attempt == 0 {
                "console.log".to_string()
            } else {
                format!("console-retry{attempt}.log")
            });
            eprintln!(
                "lab: {}: booting under TCG ({} MB initramfs){}",
                line.label(),
                fs::metadata(&initrd)?.len() / 1_000_000,
                if attempt > 0 {
                    format!(
                        ", retry {attempt} for {}",
                        todo.iter()
                            .map(|(f, b)| format!("{f}-{b}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                } else {
                    String::new()
                }
            );
            let o = qemu::boot(&qemu::Boot {
                tools: &tools,
                kernel: &kernel,
                initramfs: &initrd,
                share: &share,
                params: vec![
                    format!(
                        "lab.runs={}",
                        todo.iter()
                            .map(|(f, b)| format!("{f}:{b}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    format!("lab.rounds={rounds}"),
                    format!("lab.pages={}", pass.pages),
                    format!("lab.passes={}", pass.passes),
                    format!("lab.bufkb={}", pass.bufkb),
                    format!("lab.daxtrace={}", u8::from(daxtrace.is_some())),
                    format!("lab.latemount={}", u8::from(a.mount_after_start)),
                ],
                timeout: pass.timeout,
                log: log.clone(),
                tcg: a.tcg,
                nice: None,
            })?;
            let flakes: Vec<String> = o
                .troubles
                .iter()
                .filter_map(|t| {
                    t.flake.as_ref().map(|w| {
                        format!(
                            "{} (during \"{}\"; {w}; console {})",
                            t.line,
                            t.during,
                            log.display()
                        )
                    })
                })
                .collect();
            for t in &o.troubles {
                eprintln!(
                    "lab:   {}: guest kernel report: {} at {} during \"{}\": {}",
                    line.label(),
                    t.line,
                    t.rip.as_deref().unwrap_or("?"),
                    t.during,
                    t.flake.as_deref().map_or_else(
                        || "NOT a flake (may be daxtrace's)".to_string(),
                        |w| format!("emulator flake: {w}")
                    )
                );
                troubles.push((line.label().to_string(), t.clone()));
            }
            let mut again = Vec::new();
            for (run, fate) in todo.iter().zip(fate_of_runs(&o, &todo, attempt)) {
                let (fs_name, backend) = *run;
                let label = format!("{fs_name}-{backend}");
                if fate == Fate::BootAgain {
                    eprintln!("lab:   {}: {label} unfinished after an emulator flake: booting again for it", line.label());
                    again.push(*run);
                    continue;
                }
                let mut r = judge(
                    &share.join(&label),
                    daxtrace.as_deref(),
                    &tracepoints,
                    a.inject_mismatch,
                );
                r.kernel = line.label().to_string();
                r.release = kernel.release.clone();
                r.fs = fs_name.to_string();
                r.backend = backend.to_string();
                r.boot_secs = o.boot_secs.unwrap_or(0.0);
                r.run_secs = o
                    .run_secs
                    .iter()
                    .find(|(f, _)| *f == label)
                    .map_or(0.0, |x| x.1);
                r.retries = attempt;
                r.flakes = carried.iter().chain(&flakes).cloned().collect();
                if fate == Fate::BootFailed {
                    r.problems.insert(0, boot_problem(&o, &log));
                }
                results.push(r);
            }
            if !again.is_empty() {
                retries += 1;
            }
            todo = again;
            attempt += 1;
            carried.extend(flakes);
        }
    }
    finish(&a, &out, results, troubles, retries, fetcher.downloaded, t0)
}

/// Table, JSON summary, verdict.
fn finish(
    a: &Args,
    out: &Path,
    results: Vec<FsResult>,
    troubles: Vec<(String, qemu::Trouble)>,
    retries: u32,
    downloaded: u64,
    t0: Instant,
) -> Result<bool> {
    let ok = results.iter().all(|r| r.problems.is_empty());
    print_table(&results);
    fs::create_dir_all(out)?;
    // A re-judged summary never replaces the run's own.
    let summary = out.join(if a.judge_only {
        "summary-judged-again.json"
    } else {
        "summary.json"
    });
    let s = Summary {
        ok,
        pass: if a.full { "full" } else { "short" },
        tcg: a.tcg,
        downloaded_bytes: downloaded,
        total_secs: t0.elapsed().as_secs_f64(),
        retries,
        troubles,
        results: &results,
    };
    fs::write(&summary, serde_json::to_string_pretty(&s)? + "\n")?;
    println!(
        "lab: {} in {:.0}s ({:.1} MB downloaded, {retries} boot(s) repeated after an emulator flake); summary {}",
        if ok { "every count agrees, no data mismatch, no finding" } else { "FAILED" },
        t0.elapsed().as_secs_f64(),
        downloaded as f64 / 1e6,
        summary.display()
    );
    Ok(ok)
}

/// `--judge-only`: judge the results folder of an earlier run again.
fn judge_again(
    a: &Args,
    out: &Path,
    kernels: &[KernelLine],
    runs: &[(&str, &str)],
    tracepoints: &[&str],
) -> Result<bool> {
    let t0 = Instant::now();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let daxtrace = target.join("release").join("daxtrace");
    if !daxtrace.exists() {
        bail!(
            "{} is missing: run `cargo xtask lab` first (it builds it)",
            daxtrace.display()
        );
    }
    let mut results = Vec::new();
    for line in kernels {
        for &(fs_name, backend) in runs {
            let dir = out.join(line.label()).join(format!("{fs_name}-{backend}"));
            if !dir.is_dir() {
                bail!("{} is missing: run `cargo xtask lab` with the same --kernel/--fs/--backend first", dir.display());
            }
            let mut r = judge(&dir, Some(&daxtrace), tracepoints, a.inject_mismatch);
            r.kernel = line.label().to_string();
            r.release = fs::read_to_string(out.join(line.label()).join("uname"))
                .unwrap_or_default()
                .trim()
                .to_string();
            r.fs = fs_name.to_string();
            r.backend = backend.to_string();
            results.push(r);
        }
    }
    finish(a, out, results, Vec::new(), 0, 0, t0)
}

/// What one boot means for each of the runs it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Judge its results.
    Judge,
    /// Judge its results, and fail it for the boot's trouble.
    BootFailed,
    /// Unfinished when an emulator flake struck: boot once more for it.
    BootAgain,
}

/// A clean boot: judge every run. Trouble that is all emulator flakes: runs
/// whose results were copied out before it stand, the others get one more
/// boot (on the first attempt only). Any other trouble fails every run.
fn fate_of_runs(o: &qemu::Outcome, runs: &[(&str, &str)], attempt: u32) -> Vec<Fate> {
    runs.iter()
        .map(|(f, b)| {
            let done = o.runs_done.contains(&format!("{f}-{b}"));
            if o.ok() || (o.only_flakes() && done) {
                Fate::Judge
            } else if o.only_flakes() && attempt == 0 {
                Fate::BootAgain
            } else {
                Fate::BootFailed
            }
        })
        .collect()
}

fn boot_problem(o: &qemu::Outcome, log: &Path) -> String {
    if o.timed_out {
        format!("the guest timed out (console: {})", log.display())
    } else if !o.trouble.is_empty() {
        format!(
            "guest kernel trouble: {} (console: {})",
            o.trouble.join(" | "),
            log.display()
        )
    } else {
        match (o.verdict, &o.why) {
            (Some(false), Some(w)) => format!("the guest failed: {w} (console: {})", log.display()),
            _ => format!(
                "the guest gave no verdict line (console: {})",
                log.display()
            ),
        }
    }
}

/// Build the guest's binaries: daxtrace with the real eBPF object, and the workload.
pub(crate) fn build_binaries(with_daxtrace: bool) -> Result<(Option<PathBuf>, PathBuf)> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let release = target.join("release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "lab: building lab-workload{} (release)",
        if with_daxtrace {
            " and daxtrace with its eBPF object"
        } else {
            ""
        }
    );
    let mut c = Command::new(&cargo);
    c.current_dir(root()).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "xtask",
        "--bin",
        "lab-workload",
    ]);
    if with_daxtrace {
        c.args(["-p", "tracer", "--bin", "daxtrace"]);
    }
    // The guest needs the real programs, never the stub object.
    c.env_remove("DAXTRACE_EBPF");
    let st = c.status().context("cannot run cargo build")?;
    if !st.success() {
        bail!("cargo build --release failed ({st}); `cargo xtask setup` installs bpf-linker and nightly rust-src");
    }
    let dt = release.join("daxtrace");
    let wl = release.join("lab-workload");
    Ok((with_daxtrace.then_some(dt), wl))
}

/// Judge one filesystem's results folder.
fn judge(dir: &Path, daxtrace: Option<&Path>, tracepoints: &[&str], inject: bool) -> FsResult {
    let mut r = FsResult::default();
    let read = |name: &str| fs::read_to_string(dir.join(name));
    r.absent_tracepoints = read("absent")
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();

    match read("workload.json")
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    {
        Some(w) => {
            r.data_mismatches = w["mismatches"].as_u64().unwrap_or(0);
            if r.data_mismatches > 0 {
                r.problems.push(format!(
                    "the workload saw {} data mismatch(es) (see {})",
                    r.data_mismatches,
                    dir.join("workload.err").display()
                ));
            }
            r.workload = Some(w);
        }
        None => r.problems.push(format!(
            "no workload report in {} (see workload.err)",
            dir.display()
        )),
    }
    // Copies out of the guest must be whole (9p writes onto a full host
    // disk fail quietly inside the guest).
    for f in ["kernel.trace", "events.jsonl"] {
        let want = read(&format!("{f}.size"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        let got = fs::metadata(dir.join(f)).map(|m| m.len()).ok();
        if let (Some(w), g) = (want, got) {
            if g != Some(w) {
                r.problems.push(format!(
                    "{} is incomplete: {} of {w} bytes came out of the guest (is the host's disk full? `df {}`)",
                    dir.join(f).display(),
                    g.unwrap_or(0),
                    dir.display()
                ));
            }
        }
    }
    let kernel_trace = read("kernel.trace").unwrap_or_default();
    r.kernel_overrun = compare::kernel_overrun(&read("kernel.stats").unwrap_or_default());
    if r.kernel_overrun > 0 {
        r.problems.push(format!(
            "the kernel's own trace overran by {} events (raise lab.bufkb)",
            r.kernel_overrun
        ));
    }
    let dev = read("dev")
        .ok()
        .and_then(|s| {
            let (a, b) = s.trim().split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((0, 0));

    r.daxtrace = daxtrace.is_some();
    let Some(daxtrace) = daxtrace else {
        // Boot path alone: count the kernel's events only.
        let c = compare::compare(&kernel_trace, &[], dev, tracepoints, None);
        fill_counts(&mut r, &c, true);
        return r;
    };
    if read("daxtrace.rc").ok().is_some_and(|s| s.trim() != "0") {
        let err = read("daxtrace.err").unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        r.problems.push(format!(
            "daxtrace stream exited {} in the guest: {}",
            read("daxtrace.rc").unwrap_or_default().trim(),
            tail.join(" / ")
        ));
    }
    let events_path = dir.join("events.jsonl");
    let mut events = match read("events.jsonl")
        .map_err(|e| e.to_string())
        .and_then(|t| compare::parse_events(&t))
    {
        Ok(e) => e,
        Err(e) => {
            r.problems.push(format!("{}: {e}", events_path.display()));
            Vec::new()
        }
    };
    if inject {
        // One fault's begin goes missing, silently (whichever probe saw it):
        // the one in the middle, well inside the compared window.
        let faults: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == "fault_begin")
            .map(|(i, _)| i)
            .collect();
        if let Some(&i) = faults.get(faults.len() / 2) {
            let e = events.remove(i);
            eprintln!(
                "lab: --inject-mismatch: dropped daxtrace's {} event at ts {}",
                e.probe.unwrap_or_default(),
                e.ts
            );
        }
    }
    let attached = match read("plan.json") {
        Ok(t) => match serde_json::from_str::<serde_json::Value>(&t)
            .map_err(|e| e.to_string())
            .and_then(|v| compare::Attached::from_plan(&v))
        {
            Ok(a) => Some(a),
            Err(e) => {
                r.problems
                    .push(format!("{}: {e}", dir.join("plan.json").display()));
                None
            }
        },
        // An older daxtrace without --plan-json: compare every tracepoint.
        Err(_) => None,
    };
    if let Some(a) = &attached {
        r.used.clone_from(&a.used);
    }
    let err = read("daxtrace.err").unwrap_or_default();
    for l in err.lines() {
        let l = l.trim_start_matches("daxtrace: ");
        if let Some((_, rest)) = l.split_once(" probes attached in ") {
            // "16 probes attached in 5.70s (fentry 5, ...; fault begin traced, ...)"
            let (secs, what) = rest.split_once("s (").unwrap_or((rest, ""));
            r.ready_secs = secs.parse().ok();
            r.attached = what.trim_end_matches(')').to_string();
        } else if l.contains(" failed (") || l.contains(" instead of ") {
            r.attach_notes.push(l.to_string());
        }
    }
    let c = compare::compare(&kernel_trace, &events, dev, tracepoints, attached.as_ref());
    fill_counts(&mut r, &c, false);
    r.function_only.clone_from(&c.function_only);
    r.not_attached.clone_from(&c.not_attached);
    r.problems.extend(c.disagreements.iter().cloned());

    // Analysis on the host: these fixed kernels must give no finding. Its
    // summary line carries the reorder window's late count.
    match Command::new(daxtrace)
        .args(["analyze", "--json"])
        .arg(&events_path)
        .output()
    {
        Ok(out) => {
            let mut summary = None;
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                    continue;
                };
                match v["kind"].as_str() {
                    Some("finding") => r.findings += 1,
                    Some("summary") => summary = Some(v),
                    _ => {}
                }
            }
            match &summary {
                Some(s) => {
                    r.late = s["late"].as_u64().unwrap_or(0);
                    r.healed = s["healed"].as_u64().unwrap_or(0);
                    r.findings = r.findings.max(s["findings"].as_u64().unwrap_or(0));
                    if s["lost"].as_u64().is_some_and(|l| l != c.lost) {
                        r.problems.push(format!(
                            "daxtrace analyze counts {} lost, the lab {}",
                            s["lost"], c.lost
                        ));
                    }
                }
                None => r
                    .problems
                    .push("daxtrace analyze --json printed no summary line".into()),
            }
            if !matches!(out.status.code(), Some(0 | 1)) {
                r.problems.push(format!(
                    "daxtrace analyze failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                ));
            }
            if r.findings > 0 || out.status.code() == Some(1) {
                r.problems.push(format!(
                    "daxtrace analyze raised {} finding(s) on a fixed kernel",
                    r.findings
                ));
            }
        }
        Err(e) => r.problems.push(format!("cannot run daxtrace analyze: {e}")),
    }
    r
}

fn fill_counts(r: &mut FsResult, c: &compare::Comparison, kernel_only: bool) {
    let n = |tp: &str| {
        if kernel_only {
            c.kernel(tp)
        } else {
            c.rows.get(tp).map_or(0, |x| x.daxtrace)
        }
    };
    r.pte_faults = n("fs_dax:dax_pte_fault");
    r.pmd_faults = n("fs_dax:dax_pmd_fault");
    r.hole_loads = n("fs_dax:dax_load_hole") + n("fs_dax:dax_pmd_load_hole");
    r.map_blocks = n("iomap:iomap_iter_dstmap")
        + n("ext4:ext4_ext_map_blocks_exit")
        + n("xfs:xfs_iomap_alloc");
    r.invalidations = [
        "ext4:ext4_punch_hole",
        "ext4:ext4_truncate_enter",
        "ext4:ext4_collapse_range",
        "ext4:ext4_zero_range",
        "xfs:xfs_free_file_space",
    ]
    .iter()
    .map(|tp| n(tp))
    .sum();
    r.inserts = c.kinds.get("insert_mapping").copied().unwrap_or(0);
    r.inferred_inserts = c.inferred_inserts;
    r.fault_ids_checked = c.fault_ids_checked;
    r.write_teardowns = c.derived;
    r.lost = c.lost;
    r.median_skew_ns = c.median_skew_ns;
    r.max_skew_ns = c.max_skew_ns;
    r.counts = c.rows.clone();
}

fn print_table(rs: &[FsResult]) {
    println!();
    println!(
        "{:<6} {:<5} {:<10} {:>7} {:>5} {:>7} {:>10} {:>7} {:>5} {:>4} {:>4} {:>8} {:>8} {:>6} {:>6} {:>6} {:>5}  verdict",
        "kernel", "fs", "backend", "PTE", "PMD", "holes", "map_blocks", "inserts", "inval", "lost", "late", "findings", "mismatch", "boot s", "run s", "ready", "retry"
    );
    for r in rs {
        println!(
            "{:<6} {:<5} {:<10} {:>7} {:>5} {:>7} {:>10} {:>7} {:>5} {:>4} {:>4} {:>8} {:>8} {:>6.1} {:>6.1} {:>6} {:>5}  {}",
            r.kernel,
            r.fs,
            r.backend,
            r.pte_faults,
            r.pmd_faults,
            r.hole_loads,
            r.map_blocks,
            r.inserts,
            r.invalidations,
            r.lost,
            r.late,
            r.findings,
            r.data_mismatches,
            r.boot_secs,
            r.run_secs,
            r.ready_secs.map_or_else(|| "-".to_string(), |s| format!("{s:.2}")),
            r.retries,
            if r.problems.is_empty() { "ok" } else { "FAIL" }
        );
    }
    for r in rs {
        let who = format!("{} {} {}", r.kernel, r.fs, r.backend);
        if !r.attached.is_empty() {
            println!("  {who} attached: {}", r.attached);
        }
        for n in &r.attach_notes {
            println!("  {who} fallback: {n}");
        }
        if !r.counts.is_empty() {
            let per: Vec<String> = r
                .counts
                .iter()
                .map(|(tp, c)| {
                    let via = if c.via.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (via {})",
                            c.via.iter().cloned().collect::<Vec<_>>().join("+")
                        )
                    };
                    if c.kernel == c.daxtrace || !r.daxtrace {
                        format!("{tp} {}{via}", c.kernel)
                    } else {
                        format!("{tp} kernel {} daxtrace {}{via}", c.kernel, c.daxtrace)
                    }
                })
                .collect();
            let what = if r.daxtrace {
                "kernel trace vs daxtrace"
            } else {
                "kernel trace only (--no-daxtrace)"
            };
            println!("  {who} {what}: {}", per.join(", "));
            if !r.function_only.is_empty() {
                let f: Vec<String> = r
                    .function_only
                    .iter()
                    .map(|(p, n)| format!("{p} {n}"))
                    .collect();
                println!(
                    "  {who} function probes with no tracepoint counterpart: {}",
                    f.join(", ")
                );
            }
            if !r.not_attached.is_empty() {
                let f: Vec<String> = r
                    .not_attached
                    .iter()
                    .map(|(p, n)| format!("{p} {n}"))
                    .collect();
                println!("  {who} recorded by the kernel, not attached on this backend (not compared): {}", f.join(", "));
            }
            if r.daxtrace {
                println!(
                    "  {who} timestamps daxtrace - kernel: median {:.1} us, max {:.1} ms; {} inferred inserts and {} write(2) teardowns (no kernel counterpart); {} write(2) stale holes healed by their own teardown; fault ids right on {} lookups, hole loads and inserts",
                    r.median_skew_ns as f64 / 1e3,
                    r.max_skew_ns as f64 / 1e6,
                    r.inferred_inserts,
                    r.write_teardowns,
                    r.healed,
                    r.fault_ids_checked
                );
            }
        }
        for f in &r.flakes {
            println!(
                "  {who} emulator flake{}: {f}",
                if r.retries > 0 {
                    " (booted again)"
                } else {
                    " (results were complete)"
                }
            );
        }
        for p in &r.problems {
            println!("  {who}: {p}");
        }
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use qemu::{Outcome, Trouble};

    fn outcome(verdict: Option<bool>, flakes: &[Option<&str>], done: &[&str]) -> Outcome {
        let troubles: Vec<Trouble> = flakes
            .iter()
            .map(|f| Trouble {
                line: "Oops: int3".into(),
                flake: f.map(String::from),
                ..Trouble::default()
            })
            .collect();
        Outcome {
            verdict,
            trouble: troubles.iter().map(|t| t.line.clone()).collect(),
            troubles,
            runs_done: done.iter().map(|s| s.to_string()).collect(),
            ..Outcome::default()
        }
    }

    const RUNS: &[(&str, &str)] = &[("ext4", "tracepoint"), ("xfs", "tracepoint")];

    #[test]
    fn a_clean_boot_judges_every_run() {
        assert_eq!(
            fate_of_runs(
                &outcome(Some(true), &[], &["ext4-tracepoint", "xfs-tracepoint"]),
                RUNS,
                0
            ),
            [Fate::Judge, Fate::Judge]
        );
        // No verdict and no report (QEMU died): a failure, never retried.
        assert_eq!(
            fate_of_runs(&outcome(None, &[], &["ext4-tracepoint"]), RUNS, 0),
            [Fate::BootFailed, Fate::BootFailed]
        );
    }

    #[test]
    fn a_flake_boots_again_only_for_unfinished_runs_and_only_once() {
        // The first lab run's 6.12 boot: ext4 was being copied out, xfs never ran.
        let o = outcome(None, &[Some("int3 in __schedule")], &[]);
        assert_eq!(
            fate_of_runs(&o, RUNS, 0),
            [Fate::BootAgain, Fate::BootAgain]
        );
        let o = outcome(None, &[Some("int3 in __schedule")], &["ext4-tracepoint"]);
        assert_eq!(fate_of_runs(&o, RUNS, 0), [Fate::Judge, Fate::BootAgain]);
        // A second flake in the retry fails what is still unfinished.
        assert_eq!(fate_of_runs(&o, RUNS, 1), [Fate::Judge, Fate::BootFailed]);
    }

    #[test]
    fn a_report_that_is_not_a_flake_fails_every_run() {
        let o = outcome(
            None,
            &[Some("int3 in __schedule"), None],
            &["ext4-tracepoint"],
        );
        assert_eq!(
            fate_of_runs(&o, RUNS, 0),
            [Fate::BootFailed, Fate::BootFailed]
        );
        // Even with a verdict of ok: the report still fails the boot.
        let o = outcome(Some(true), &[None], &["ext4-tracepoint", "xfs-tracepoint"]);
        assert_eq!(
            fate_of_runs(&o, RUNS, 0),
            [Fate::BootFailed, Fate::BootFailed]
        );
    }
}
