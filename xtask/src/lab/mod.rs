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

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kernel line(s) to boot (default: all, i.e. 6.1 then 6.12).
    #[arg(long, value_enum)]
    pub kernel: Option<KernelArg>,
    /// Filesystem(s) to make on /dev/pmem0.
    #[arg(long, value_enum, default_value = "all")]
    pub fs: FsArg,
    /// The long pass: both kernels and a longer workload.
    #[arg(long)]
    pub full: bool,
    /// Workload rounds per filesystem (overrides the pass's default).
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Boot and run the workload without daxtrace (tests the boot path alone).
    #[arg(long)]
    pub no_daxtrace: bool,
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

const SHORT: Pass = Pass { rounds: 6, pages: 1024, passes: 3, bufkb: 32768, timeout: Duration::from_secs(20 * 60) };
const FULL: Pass = Pass { rounds: 30, pages: 2048, passes: 4, bufkb: 131_072, timeout: Duration::from_secs(60 * 60) };

/// One kernel × filesystem result: the table row and the JSON summary entry.
#[derive(Debug, Default, Serialize)]
pub struct FsResult {
    pub kernel: String,
    pub release: String,
    pub fs: String,
    /// false: the workload ran without daxtrace (counts are the kernel's).
    pub daxtrace: bool,
    pub pte_faults: u64,
    pub pmd_faults: u64,
    pub hole_loads: u64,
    pub map_blocks: u64,
    pub inserts: u64,
    pub inferred_inserts: u64,
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
    downloaded_bytes: u64,
    total_secs: f64,
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
    let cache = fetch::cache_dir();
    let out = a.out.clone().unwrap_or_else(|| cache.join("results"));
    eprintln!(
        "lab: {} pass: kernel {} x {}, {rounds} rounds of {} pages; cache {}",
        if a.full { "full" } else { "short" },
        kernels.iter().map(|k| k.label()).collect::<Vec<_>>().join(","),
        fss.join(","),
        pass.pages,
        cache.display()
    );

    let (daxtrace, workload) = build_binaries(!a.no_daxtrace)?;
    let mut fetcher = fetch::Fetcher::new(&cache)?;
    let tools = fetcher.tools()?;
    let mut results = Vec::new();
    // The kernel's own trace records the tracepoints whose records are one
    // per kernel event; derived ones (iomap_iter) would only flood it.
    let tracepoints: Vec<&str> = tracer_common::Probe::ALL.iter().filter(|p| !p.derived()).map(|p| p.tracepoint()).collect();
    for line in kernels {
        let kernel = fetcher.kernel(line)?;
        let build = cache.join("build").join(&kernel.release);
        fs::create_dir_all(&build)?;
        eprintln!("lab: {} ({}): building the initramfs", line.label(), kernel.package);
        let initrd = initramfs::build(
            &initramfs::Inputs { tools: &tools, kernel: &kernel, daxtrace: daxtrace.as_deref(), workload: &workload, events: &tracepoints },
            &build,
        )?;
        let share = out.join(line.label());
        if share.exists() {
            fs::remove_dir_all(&share)?;
        }
        fs::create_dir_all(&share)?;
        let share = share.canonicalize()?;
        eprintln!("lab: {}: booting under TCG ({} MB initramfs)", line.label(), fs::metadata(&initrd)?.len() / 1_000_000);
        let o = qemu::boot(&qemu::Boot {
            tools: &tools,
            kernel: &kernel,
            initramfs: &initrd,
            share: &share,
            params: vec![
                format!("lab.fs={}", fss.join(",")),
                format!("lab.rounds={rounds}"),
                format!("lab.pages={}", pass.pages),
                format!("lab.passes={}", pass.passes),
                format!("lab.bufkb={}", pass.bufkb),
                format!("lab.daxtrace={}", u8::from(daxtrace.is_some())),
            ],
            timeout: pass.timeout,
            log: share.join("console.log"),
        })?;
        for fs_name in &fss {
            let mut r = judge(
                &share.join(fs_name),
                daxtrace.as_deref(),
                &tracepoints,
                a.inject_mismatch,
            );
            r.kernel = line.label().to_string();
            r.release = kernel.release.clone();
            r.fs = (*fs_name).to_string();
            r.boot_secs = o.boot_secs.unwrap_or(0.0);
            r.run_secs = o.run_secs.iter().find(|(f, _)| f == fs_name).map_or(0.0, |x| x.1);
            if !o.ok() {
                r.problems.insert(0, boot_problem(&o, &share));
            }
            results.push(r);
        }
    }

    let ok = results.iter().all(|r| r.problems.is_empty());
    print_table(&results);
    let summary = out.join("summary.json");
    let s = Summary {
        ok,
        pass: if a.full { "full" } else { "short" },
        downloaded_bytes: fetcher.downloaded,
        total_secs: t0.elapsed().as_secs_f64(),
        results: &results,
    };
    fs::write(&summary, serde_json::to_string_pretty(&s)? + "\n")?;
    println!(
        "lab: {} in {:.0}s ({:.1} MB downloaded); summary {}",
        if ok { "every count agrees, no data mismatch, no finding" } else { "FAILED" },
        t0.elapsed().as_secs_f64(),
        fetcher.downloaded as f64 / 1e6,
        summary.display()
    );
    Ok(ok)
}

fn boot_problem(o: &qemu::Outcome, share: &Path) -> String {
    let log = share.join("console.log");
    if o.timed_out {
        format!("the guest timed out (console: {})", log.display())
    } else if !o.trouble.is_empty() {
        format!("guest kernel trouble: {} (console: {})", o.trouble.join(" | "), log.display())
    } else {
        match (o.verdict, &o.why) {
            (Some(false), Some(w)) => format!("the guest failed: {w} (console: {})", log.display()),
            _ => format!("the guest gave no verdict line (console: {})", log.display()),
        }
    }
}

/// Build the guest's binaries: daxtrace with the real eBPF object, and the workload.
pub(crate) fn build_binaries(with_daxtrace: bool) -> Result<(Option<PathBuf>, PathBuf)> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let release = target.join("release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("lab: building lab-workload{} (release)", if with_daxtrace { " and daxtrace with its eBPF object" } else { "" });
    let mut c = Command::new(&cargo);
    c.current_dir(root()).args(["build", "--release", "--quiet", "-p", "xtask", "--bin", "lab-workload"]);
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
    r.absent_tracepoints = read("absent").unwrap_or_default().lines().map(String::from).collect();

    match read("workload.json").ok().and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()) {
        Some(w) => {
            r.data_mismatches = w["mismatches"].as_u64().unwrap_or(0);
            if r.data_mismatches > 0 {
                r.problems.push(format!("the workload saw {} data mismatch(es) (see {})", r.data_mismatches, dir.join("workload.err").display()));
            }
            r.workload = Some(w);
        }
        None => r.problems.push(format!("no workload report in {} (see workload.err)", dir.display())),
    }
    let kernel_trace = read("kernel.trace").unwrap_or_default();
    r.kernel_overrun = compare::kernel_overrun(&read("kernel.stats").unwrap_or_default());
    if r.kernel_overrun > 0 {
        r.problems.push(format!("the kernel's own trace overran by {} events (raise lab.bufkb)", r.kernel_overrun));
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
        let c = compare::compare(&kernel_trace, &[], dev, tracepoints);
        fill_counts(&mut r, &c, true);
        return r;
    };
    if read("daxtrace.rc").ok().is_some_and(|s| s.trim() != "0") {
        let err = read("daxtrace.err").unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        r.problems.push(format!("daxtrace stream exited {} in the guest: {}", read("daxtrace.rc").unwrap_or_default().trim(), tail.join(" / ")));
    }
    let events_path = dir.join("events.jsonl");
    let mut events = match read("events.jsonl").map_err(|e| e.to_string()).and_then(|t| compare::parse_events(&t)) {
        Ok(e) => e,
        Err(e) => {
            r.problems.push(format!("{}: {e}", events_path.display()));
            Vec::new()
        }
    };
    if inject {
        // The most common tracepoint loses one event, silently.
        if let Some(i) = events.iter().position(|e| e.probe.as_deref() == Some("fs_dax:dax_pte_fault") && !e.inferred) {
            let e = events.remove(i);
            eprintln!("lab: --inject-mismatch: dropped daxtrace's {} event at ts {}", e.probe.unwrap_or_default(), e.ts);
        }
    }
    let c = compare::compare(&kernel_trace, &events, dev, tracepoints);
    fill_counts(&mut r, &c, false);
    r.problems.extend(c.disagreements.iter().cloned());

    // Analysis on the host: these fixed kernels must give no finding. Its
    // summary line carries the reorder window's late count.
    match Command::new(daxtrace).args(["analyze", "--json"]).arg(&events_path).output() {
        Ok(out) => {
            let mut summary = None;
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else { continue };
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
                        r.problems.push(format!("daxtrace analyze counts {} lost, the lab {}", s["lost"], c.lost));
                    }
                }
                None => r.problems.push("daxtrace analyze --json printed no summary line".into()),
            }
            if !matches!(out.status.code(), Some(0 | 1)) {
                r.problems.push(format!(
                    "daxtrace analyze failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("")
                ));
            }
            if r.findings > 0 || out.status.code() == Some(1) {
                r.problems.push(format!("daxtrace analyze raised {} finding(s) on a fixed kernel", r.findings));
            }
        }
        Err(e) => r.problems.push(format!("cannot run daxtrace analyze: {e}")),
    }
    r
}

fn fill_counts(r: &mut FsResult, c: &compare::Comparison, kernel_only: bool) {
    let n = |tp: &str| if kernel_only { c.kernel(tp) } else { c.rows.get(tp).map_or(0, |x| x.daxtrace) };
    r.pte_faults = n("fs_dax:dax_pte_fault");
    r.pmd_faults = n("fs_dax:dax_pmd_fault");
    r.hole_loads = n("fs_dax:dax_load_hole") + n("fs_dax:dax_pmd_load_hole");
    r.map_blocks = n("iomap:iomap_iter_dstmap") + n("ext4:ext4_ext_map_blocks_exit") + n("xfs:xfs_iomap_alloc");
    r.invalidations = ["ext4:ext4_punch_hole", "ext4:ext4_truncate_enter", "ext4:ext4_collapse_range", "ext4:ext4_zero_range", "xfs:xfs_free_file_space"]
        .iter()
        .map(|tp| n(tp))
        .sum();
    r.inserts = c.kinds.get("insert_mapping").copied().unwrap_or(0);
    r.inferred_inserts = c.inferred_inserts;
    r.write_teardowns = c.derived;
    r.lost = c.lost;
    r.median_skew_ns = c.median_skew_ns;
    r.max_skew_ns = c.max_skew_ns;
    r.counts = c.rows.clone();
}

fn print_table(rs: &[FsResult]) {
    println!();
    println!(
        "{:<6} {:<5} {:>8} {:>6} {:>8} {:>10} {:>8} {:>6} {:>5} {:>5} {:>8} {:>9} {:>7} {:>7}  verdict",
        "kernel", "fs", "PTE", "PMD", "holes", "map_blocks", "inserts", "inval", "lost", "late", "findings", "mismatch", "boot s", "run s"
    );
    for r in rs {
        println!(
            "{:<6} {:<5} {:>8} {:>6} {:>8} {:>10} {:>8} {:>6} {:>5} {:>5} {:>8} {:>9} {:>7.1} {:>7.1}  {}",
            r.kernel,
            r.fs,
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
            if r.problems.is_empty() { "ok" } else { "FAIL" }
        );
    }
    for r in rs {
        if !r.counts.is_empty() {
            let per: Vec<String> = r
                .counts
                .iter()
                .map(|(tp, c)| {
                    if c.kernel == c.daxtrace || !r.daxtrace {
                        format!("{tp} {}", c.kernel)
                    } else {
                        format!("{tp} kernel {} daxtrace {}", c.kernel, c.daxtrace)
                    }
                })
                .collect();
            let what = if r.daxtrace { "kernel trace vs daxtrace" } else { "kernel trace only (--no-daxtrace)" };
            println!("  {} {} {what}: {}", r.kernel, r.fs, per.join(", "));
            if r.daxtrace {
                println!(
                    "  {} {} timestamps daxtrace - kernel: median {:.1} us, max {:.1} ms; {} inferred inserts and {} write(2) teardowns (no kernel counterpart); {} write(2) stale holes healed by their own teardown",
                    r.kernel,
                    r.fs,
                    r.median_skew_ns as f64 / 1e3,
                    r.max_skew_ns as f64 / 1e6,
                    r.inferred_inserts,
                    r.write_teardowns,
                    r.healed
                );
            }
        }
        for p in &r.problems {
            println!("  {} {}: {p}", r.kernel, r.fs);
        }
    }
    println!();
}
