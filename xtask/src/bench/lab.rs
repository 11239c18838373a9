//! Setting `lab`: the racing workload on real DAX in the TCG guest
//! (xtask/src/lab), untraced vs daxtrace record vs trace-cmd record vs
//! bpftrace count(), rounds interleaved with a rotated order. TCG is noisy
//! (a 2 s run varies by ~20%), so runs are long and each traced run is
//! compared with the untraced run of its own round; the spread is printed.
//!
//! trace-cmd, bpftrace and their libraries reach the guest over the 9p
//! share (not the initramfs); the guest side is guest-bench.sh, sourced by
//! the lab's /init when the kernel command line says `lab.bench=1`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use super::report::Spread;
use super::tools;
use crate::lab::{fetch, initramfs, qemu};

const GUEST: &str = include_str!("guest-bench.sh");
/// `daxtrace` is `--backend auto`; `daxtrace-B` forces backend B (the guest
/// kernel allows all four). `daxtrace-tracepoint` records the same events
/// as trace-cmd and bpftrace, so its bytes per event compare with trace.dat's.
pub const CONFIGS: [&str; 8] = [
    "untraced",
    "daxtrace",
    "daxtrace-tracepoint",
    "daxtrace-tp_btf",
    "daxtrace-fentry",
    "daxtrace-kprobe",
    "trace-cmd",
    "bpftrace",
];

/// One guest run: what its folder in the share says.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LabRun {
    pub round: u32,
    pub config: String,
    /// The racing workload's own time (lab-workload's "seconds").
    pub workload_s: f64,
    /// Start of the tool to ready, guest clock (/proc/uptime, 10 ms).
    pub ready_s: Option<f64>,
    /// daxtrace's own "attached in".
    pub reported_ready_s: Option<f64>,
    pub events: u64,
    pub lost: u64,
    pub file_bytes: Option<u64>,
    pub data_bytes: Option<u64>,
    /// lab-workload's data check: must stay 0 under every tracer.
    pub mismatches: u64,
    /// CPU the tracer used (its threads and child processes) from its start
    /// to the workload's end, guest clock ticks / 100.
    pub tool_cpu_s: Option<f64>,
    /// `--bpf-stats`: the tracer's eBPF programs that ran during the workload.
    pub progs: Vec<ProgRun>,
}

/// One eBPF program over one workload (kernel accounting).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProgRun {
    pub name: String,
    pub runs: u64,
    pub ns: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LabConfig {
    pub config: String,
    pub workload_s: Option<Spread>,
    /// (traced - untraced of the same round) / untraced, in percent.
    pub added_pct: Option<Spread>,
    pub ready_s: Option<Spread>,
    pub reported_ready_s: Option<Spread>,
    pub events: Option<Spread>,
    pub lost: u64,
    pub file_bytes_per_event: Option<Spread>,
    pub data_bytes_per_event: Option<Spread>,
    /// The tracer's own CPU per event, microseconds of guest CPU.
    pub tool_cpu_us_per_event: Option<Spread>,
    /// `--bpf-stats`: guest seconds inside the tracer's eBPF programs per workload.
    pub progs_s: Option<Spread>,
    /// `--bpf-stats`: per program, runs per workload and ns per run (medians over rounds).
    pub progs: Vec<ProgSummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgSummary {
    pub name: String,
    pub runs: f64,
    pub ns_per_run: Spread,
}

#[derive(Serialize)]
struct LabReport {
    setting: &'static str,
    guest_kernel: String,
    host_loadavg_start: String,
    qemu_nice: i32,
    host_loadavg_end: String,
    bench_rounds: u32,
    workload: String,
    boot_s: Option<f64>,
    total_s: f64,
    configs: Vec<LabConfig>,
    runs: Vec<LabRun>,
}

pub struct LabArgs {
    pub rounds: u32,
    pub workload_rounds: u32,
    pub pages: usize,
    pub passes: u32,
    pub configs: Vec<String>,
    pub out: Option<PathBuf>,
    /// QEMU's nice value.
    pub nice: i32,
    /// A daxtrace binary to run instead of building one.
    pub daxtrace: Option<PathBuf>,
    /// A second daxtrace run as `<config>@before` beside each daxtrace
    /// config, in the same rounds (A/B under the same host load).
    pub daxtrace_before: Option<PathBuf>,
    /// Kernel accounting of the tracers' eBPF programs during the workload.
    pub bpf_stats: bool,
}

pub fn run(a: &LabArgs) -> Result<()> {
    let t0 = Instant::now();
    let loadavg_start = super::loadavg();
    let (built, workload) = crate::lab::build_binaries(a.daxtrace.is_none())?;
    let daxtrace = match &a.daxtrace {
        Some(p) => p
            .canonicalize()
            .with_context(|| format!("--daxtrace {}", p.display()))?,
        None => built.context("daxtrace was not built")?,
    };
    let mut configs = a.configs.clone();
    if a.daxtrace_before.is_some() {
        // Each daxtrace config right after its A/B twin, so both see the same load.
        configs = configs
            .into_iter()
            .flat_map(|c| {
                if c.starts_with("daxtrace") {
                    vec![format!("{c}@before"), c]
                } else {
                    vec![c]
                }
            })
            .collect();
    }
    let cache = fetch::cache_dir();
    let mut fetcher = fetch::Fetcher::new(&cache)?;
    let qtools = fetcher.tools()?;
    let kernel = fetcher.kernel(fetch::KernelLine::V6_12)?;
    let tracers = tools::fetch()?;
    let events: Vec<&str> = tracer_common::Probe::ALL
        .iter()
        .map(|p| p.tracepoint())
        .collect();

    let build = cache.join("bench").join("lab").join(&kernel.release);
    fs::create_dir_all(&build)?;
    eprintln!("bench: lab: building the initramfs ({})", kernel.package);
    let initrd = initramfs::build(
        &initramfs::Inputs {
            tools: &qtools,
            kernel: &kernel,
            daxtrace: Some(&daxtrace),
            workload: &workload,
            events: &events,
        },
        &build,
    )?;
    let share = cache.join("bench").join("lab").join("share");
    if share.exists() {
        fs::remove_dir_all(&share)?;
    }
    let b = share.join("bench");
    fs::create_dir_all(b.join("bin"))?;
    fs::create_dir_all(b.join("lib"))?;
    let share = share.canonicalize()?;
    let b = share.join("bench");
    fs::write(b.join("bench.sh"), GUEST)?;
    // Every tracepoint daxtrace knows exists on 6.12 (DESIGN.md §5).
    let events: Vec<String> = events.iter().map(|s| (*s).to_string()).collect();
    fs::write(b.join("events"), events.join("\n") + "\n")?;
    fs::write(b.join("count.bt"), tools::bpftrace_script(&events) + "\n")?;
    if let Some(p) = &a.daxtrace_before {
        // Same libraries as the initramfs's daxtrace (one workspace, one toolchain).
        fs::copy(p, b.join("bin").join("daxtrace-before"))
            .with_context(|| format!("--daxtrace-before {}", p.display()))?;
    }
    for bin in [&tracers.trace_cmd, &tracers.bpftrace] {
        fs::copy(bin, b.join("bin").join(bin.file_name().unwrap_or_default()))?;
        for lib in libs(bin, &tracers.lib_path)? {
            let dst = b.join("lib").join(lib.file_name().unwrap_or_default());
            if !dst.exists() {
                fs::copy(&lib, &dst).with_context(|| format!("cannot copy {}", lib.display()))?;
            }
        }
    }
    let params = vec![
        "lab.fs=ext4".to_string(),
        "lab.daxtrace=1".to_string(),
        "lab.bench=1".to_string(),
        format!("lab.benchrounds={}", a.rounds),
        format!("lab.configs={}", configs.join(",")),
        format!("lab.rounds={}", a.workload_rounds),
        format!("lab.pages={}", a.pages),
        format!("lab.passes={}", a.passes),
        format!("lab.bpfstats={}", u8::from(a.bpf_stats)),
    ];
    eprintln!("bench: lab: booting 6.12 under TCG: {}", params.join(" "));
    let o = qemu::boot(&qemu::Boot {
        tools: &qtools,
        kernel: &kernel,
        initramfs: &initrd,
        share: &share,
        params,
        timeout: Duration::from_secs(4 * 3600),
        log: share.join("console.log"),
        tcg: qemu::Tcg::Multi,
        nice: Some(a.nice),
    })?;
    if !o.ok() {
        bail!(
            "the bench guest failed ({}); console: {}",
            o.why.clone().unwrap_or_else(|| if o.timed_out {
                "timed out".into()
            } else {
                o.trouble.join(" | ")
            }),
            share.join("console.log").display()
        );
    }
    let mut runs = Vec::new();
    for round in 1..=a.rounds {
        for cfg in &configs {
            runs.push(read_run(
                &b.join("out").join(format!("{round}-{cfg}")),
                round,
                cfg,
                &tracers,
            )?);
        }
    }
    let configs = summarize(&runs, &configs);
    let report = LabReport {
        setting: "lab",
        guest_kernel: kernel.release.clone(),
        host_loadavg_start: loadavg_start,
        qemu_nice: a.nice,
        host_loadavg_end: super::loadavg(),
        bench_rounds: a.rounds,
        workload: format!(
            "lab-workload --rounds {} --pages {} --passes {} on ext4 -o dax (/dev/pmem0)",
            a.workload_rounds, a.pages, a.passes
        ),
        boot_s: o.boot_secs,
        total_s: t0.elapsed().as_secs_f64(),
        configs,
        runs,
    };
    print!("{}", table(&report));
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| cache.join("results").join("bench-overhead-lab.json"));
    if let Some(p) = out.parent() {
        fs::create_dir_all(p)?;
    }
    fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!(
        "bench: lab: {:.0}s; JSON report {}",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// Shared libraries of an unpacked binary (ldd with its library path), the
/// loader left out (the initramfs has the host's).
fn libs(bin: &Path, lib_path: &str) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .env("LD_LIBRARY_PATH", lib_path)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = Vec::new();
    for l in text.lines() {
        if l.contains("not found") {
            bail!(
                "{} needs a library this machine lacks: {}",
                bin.display(),
                l.trim()
            );
        }
        if let Some((_, r)) = l.split_once("=>") {
            if let Some(p) = r.split_whitespace().next().filter(|p| p.starts_with('/')) {
                v.push(PathBuf::from(p));
            }
        }
    }
    Ok(v)
}

fn read_run(dir: &Path, round: u32, cfg: &str, tracers: &tools::Unpacked) -> Result<LabRun> {
    let read = |n: &str| fs::read_to_string(dir.join(n)).unwrap_or_default();
    let w: serde_json::Value = serde_json::from_str(&read("workload.json"))
        .with_context(|| format!("no workload report in {}", dir.display()))?;
    let mut r = LabRun {
        round,
        config: cfg.to_string(),
        workload_s: w["seconds"].as_f64().unwrap_or(f64::NAN),
        mismatches: w["mismatches"].as_u64().unwrap_or(0),
        ..LabRun::default()
    };
    let times: Vec<f64> = read("times")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if cfg != "untraced" && times.len() == 4 {
        r.ready_s = Some(times[1] - times[0]);
    }
    r.tool_cpu_s = read("tool.cpu")
        .trim()
        .parse::<f64>()
        .ok()
        .map(|ticks| ticks / 100.0);
    r.progs = parse_bpf_stats(&read("bpf.stats"));
    let tool = read("tool.out");
    match cfg {
        c if c.starts_with("daxtrace") => {
            r.reported_ready_s = tool.lines().find_map(tools::parse_daxtrace_ready);
            let (e, b, l) = tools::parse_daxtrace_record(&tool)
                .with_context(|| format!("{}: no daxtrace summary:\n{tool}", dir.display()))?;
            (r.events, r.file_bytes, r.lost) = (e, Some(b), l);
        }
        "trace-cmd" => {
            let dat = dir.join("trace.dat");
            r.file_bytes = fs::metadata(&dat).ok().map(|m| m.len());
            r.data_bytes = Some(tools::parse_tracecmd_data_bytes(&tool));
            let out = Command::new(&tracers.trace_cmd)
                .env("LD_LIBRARY_PATH", &tracers.lib_path)
                .args(["report", "--stat", "-i"])
                .arg(&dat)
                .output()
                .context("trace-cmd report --stat")?;
            let (e, l) = tools::parse_tracecmd_stat(&String::from_utf8_lossy(&out.stdout))
                .with_context(|| {
                    format!("{}: trace-cmd report --stat gave no counts", dat.display())
                })?;
            (r.events, r.lost) = (e, l);
        }
        "bpftrace" => r.events = tools::parse_bpftrace_counts(&tool).values().sum(),
        _ => {}
    }
    Ok(r)
}

/// guest-bench.sh's `bpf.stats`: "name runs ns" per program that ran.
fn parse_bpf_stats(text: &str) -> Vec<ProgRun> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, runs, ns) = (w.next()?, w.next()?.parse().ok()?, w.next()?.parse().ok()?);
            Some(ProgRun {
                name: name.to_string(),
                runs,
                ns,
            })
        })
        .collect()
}

#[allow(clippy::cast_precision_loss, reason = "report figures")]
fn prog_summaries(mine: &[&LabRun]) -> Vec<ProgSummary> {
    let mut names: Vec<&str> = mine
        .iter()
        .flat_map(|r| r.progs.iter().map(|p| p.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut v: Vec<ProgSummary> = names
        .into_iter()
        .filter_map(|n| {
            // A name may stand for several programs (bpftrace's): summed per run.
            let per_run: Vec<(f64, f64)> = mine
                .iter()
                .map(|r| {
                    r.progs
                        .iter()
                        .filter(|p| p.name == n)
                        .fold((0.0, 0.0), |(a, b), p| (a + p.runs as f64, b + p.ns as f64))
                })
                .filter(|&(runs, _)| runs > 0.0)
                .collect();
            let runs = Spread::of(&per_run.iter().map(|x| x.0).collect::<Vec<_>>())?.median;
            let ns_per_run = Spread::of(&per_run.iter().map(|x| x.1 / x.0).collect::<Vec<_>>())?;
            Some(ProgSummary {
                name: n.to_string(),
                runs,
                ns_per_run,
            })
        })
        .collect();
    v.sort_by(|a, b| (b.runs * b.ns_per_run.median).total_cmp(&(a.runs * a.ns_per_run.median)));
    v
}

#[allow(clippy::cast_precision_loss, reason = "report figures")]
pub fn summarize(runs: &[LabRun], configs: &[String]) -> Vec<LabConfig> {
    configs
        .iter()
        .map(|c| {
            let mine: Vec<&LabRun> = runs.iter().filter(|r| &r.config == c).collect();
            let col = |f: &dyn Fn(&LabRun) -> Option<f64>| {
                Spread::of(&mine.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            let base = |round: u32| {
                runs.iter()
                    .find(|r| r.round == round && r.config == "untraced")
                    .map(|r| r.workload_s)
            };
            LabConfig {
                config: c.clone(),
                workload_s: col(&|r| Some(r.workload_s)),
                added_pct: if c == "untraced" {
                    None
                } else {
                    col(&|r| base(r.round).map(|b| (r.workload_s - b) / b * 100.0))
                },
                ready_s: col(&|r| r.ready_s),
                reported_ready_s: col(&|r| r.reported_ready_s),
                events: if c == "untraced" {
                    None
                } else {
                    col(&|r| Some(r.events as f64))
                },
                lost: mine.iter().map(|r| r.lost).sum(),
                file_bytes_per_event: col(&|r| Some(r.file_bytes? as f64 / r.events.max(1) as f64)),
                data_bytes_per_event: col(&|r| Some(r.data_bytes? as f64 / r.events.max(1) as f64)),
                tool_cpu_us_per_event: col(&|r| Some(r.tool_cpu_s? * 1e6 / r.events.max(1) as f64)),
                progs_s: col(&|r| {
                    (!r.progs.is_empty())
                        .then(|| r.progs.iter().map(|p| p.ns as f64).sum::<f64>() / 1e9)
                }),
                progs: prog_summaries(&mine),
            }
        })
        .collect()
}

fn table(r: &LabReport) -> String {
    let show = |s: Option<Spread>, p: usize| {
        s.map_or_else(
            || "-".into(),
            |s| format!("{:.p$} {:.p$} {:.p$}", s.min, s.median, s.max, p = p),
        )
    };
    let mut t = format!(
        "\nbench-overhead (lab): guest {} under TCG, {}; {} rounds, order rotated; QEMU at nice {}; host load average {} at start, {} at end\n",
        r.guest_kernel, r.workload, r.bench_rounds, r.qemu_nice, r.host_loadavg_start, r.host_loadavg_end
    );
    t += &format!(
        "{:<28}  {:>20}  {:>20}  {:>17}  {:>17}  {:>20}  {:>5}  {:>16}  {:>17}\n",
        "config",
        "workload s min/med/max",
        "+% vs untraced",
        "ready s",
        "daxtrace's own s",
        "events min/med/max",
        "lost",
        "bytes/event file",
        "tool cpu us/event"
    );
    for c in &r.configs {
        t += &format!(
            "{:<28}  {:>20}  {:>20}  {:>17}  {:>17}  {:>20}  {:>5}  {:>16}  {:>17}\n",
            c.config,
            show(c.workload_s, 2),
            show(c.added_pct, 1),
            show(c.ready_s, 2),
            show(c.reported_ready_s, 2),
            show(c.events, 0),
            c.lost,
            match (c.file_bytes_per_event, c.data_bytes_per_event) {
                (Some(f), Some(d)) => format!("{:.1} (data {:.1})", f.median, d.median),
                (Some(f), None) => format!("{:.2}", f.median),
                _ => "-".into(),
            },
            show(c.tool_cpu_us_per_event, 2)
        );
    }
    if r.configs.iter().any(|c| c.progs_s.is_some()) {
        t += "\n  eBPF programs during the workload (kernel bpf_stats, --bpf-stats; the timings above include its accounting):\n";
        t += &format!(
            "  {:<28}  {:>20}  {:>24}  {:>12}  {:>22}\n",
            "config", "programs s min/med/max", "program", "runs (med)", "ns/run min/med/max"
        );
        for c in r.configs.iter().filter(|c| c.progs_s.is_some()) {
            for (i, p) in c.progs.iter().enumerate() {
                let (cfg, total) = if i == 0 {
                    (c.config.as_str(), show(c.progs_s, 2))
                } else {
                    ("", String::new())
                };
                t += &format!(
                    "  {:<28}  {:>20}  {:>24}  {:>12.0}  {:>22}\n",
                    cfg,
                    total,
                    p.name,
                    p.runs,
                    show(Some(p.ns_per_run), 0)
                );
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_added_percent_is_paired_by_round() {
        let run = |round, config: &str, workload_s| LabRun {
            round,
            config: config.into(),
            workload_s,
            ..LabRun::default()
        };
        let runs = vec![
            run(1, "untraced", 10.0),
            run(1, "daxtrace", 11.0),
            run(2, "untraced", 20.0),
            run(2, "daxtrace", 22.0),
        ];
        let c = summarize(&runs, &["untraced".into(), "daxtrace".into()]);
        assert!(c[0].added_pct.is_none());
        // +10% in both rounds, although round 2 ran at half the speed.
        let s = c[1].added_pct.expect("paired");
        assert!(
            (s.min - 10.0).abs() < 1e-9 && (s.max - 10.0).abs() < 1e-9,
            "{s:?}"
        );
    }

    #[test]
    fn bpf_stats_sum_programs_of_one_name_and_rank_by_time() {
        let mut a = LabRun {
            round: 1,
            config: "bpftrace".into(),
            ..LabRun::default()
        };
        a.progs = parse_bpf_stats(
            "tracepoint_a 100 50000\ntracepoint_a 100 30000\nbtf_iomap 10 50000\nbad line\n",
        );
        let mut b = LabRun {
            round: 2,
            config: "bpftrace".into(),
            ..LabRun::default()
        };
        b.progs = parse_bpf_stats("tracepoint_a 300 90000\n");
        let c = summarize(&[a, b], &["bpftrace".into()]);
        let p = &c[0].progs;
        // Two programs named alike in round 1: 200 runs, 400 ns/run; round 2: 300 ns/run.
        assert_eq!(p[0].name, "tracepoint_a");
        assert!(
            (p[0].ns_per_run.min - 300.0).abs() < 1e-9
                && (p[0].ns_per_run.max - 400.0).abs() < 1e-9,
            "{:?}",
            p[0]
        );
        assert_eq!(p[1].name, "btf_iomap");
        let s = c[0].progs_s.expect("stats");
        assert!(
            (s.min - 90e-6).abs() < 1e-12 && (s.max - 130e-6).abs() < 1e-12,
            "{s:?}"
        );
    }
}
