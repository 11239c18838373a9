//! Boot one guest under TCG and watch its console: progress lines are shown
//! as they come, exactly one `daxtrace-lab: ok|fail` verdict counts as a
//! result, and kernel panics, oopses, lockups and RCU stalls fail the boot.
//! Each such report is kept with its RIP, call trace and what the guest was
//! doing, and classified: an emulator flake (the caller may boot again) or
//! a failure that may be daxtrace's (never retried).

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::fetch::{Kernel, Tools};

const SENTINEL: &str = "daxtrace-lab: ";

/// Console text that means the kernel is in trouble.
const TROUBLE: &[&str] = &[
    "Kernel panic",
    "Oops:",
    "BUG:",
    "soft lockup",
    "hard LOCKUP",
    "rcu_sched self-detected stall",
    "rcu: INFO: rcu_preempt",
    "self-detected stall on CPU",
    "blocked for more than",
];

/// How QEMU runs the vCPUs (`-accel tcg,thread=...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tcg {
    /// One host thread per vCPU (both cores work).
    Multi,
    /// All vCPUs on one host thread, round-robin.
    Single,
}

impl Tcg {
    pub fn name(self) -> &'static str {
        match self {
            Tcg::Multi => "multi",
            Tcg::Single => "single",
        }
    }
}

pub struct Boot<'a> {
    pub tools: &'a Tools,
    pub kernel: &'a Kernel,
    pub initramfs: &'a Path,
    /// Host folder shared with the guest as /share.
    pub share: &'a Path,
    /// `lab.*` parameters for the guest's /init.
    pub params: Vec<String>,
    pub timeout: Duration,
    /// Full console log.
    pub log: PathBuf,
    pub tcg: Tcg,
    /// Nice value for QEMU (negative: ahead of the host's other work), so a
    /// benchmark's TCG timings do not swing with whatever else the host runs.
    pub nice: Option<i32>,
}

/// One kernel trouble report on the console (an oops with its trace, a
/// panic, a lockup or stall), with what the guest was doing then.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trouble {
    /// The report's first line (and a panic that followed it).
    pub line: String,
    /// `func+0x../0x..` of the RIP line.
    pub rip: Option<String>,
    /// Call trace functions, innermost first.
    pub frames: Vec<String>,
    /// The guest's last progress line before it.
    pub during: String,
    /// daxtrace was running in the guest (between attached and stopped).
    pub daxtrace_running: bool,
    /// `Some(why)`: an emulator flake, not daxtrace's doing.
    pub flake: Option<String>,
    /// Runs (fs-backend) whose results were complete before it.
    pub runs_done: Vec<String>,
    /// The report's `---[ end trace` line came.
    #[serde(skip)]
    pub ended: bool,
}

/// Functions whose presence in a report means our programs were involved.
const OURS: &[&str] = &[
    "bpf_prog_",
    "bpf_trampoline",
    "__bpf_prog",
    "bpf_trace_run",
    "trace_call_bpf",
    "bpf_ringbuf",
    "kprobe",
    "rethook",
    "__bpf_",
];

/// Scheduler and idle code: a fault there under TCG is the emulator's.
const SCHED: &[&str] = &[
    "__schedule",
    "schedule",
    "finish_task_switch",
    "pick_next_task",
    "context_switch",
    "do_idle",
    "default_idle",
    "cpu_startup_entry",
];

/// Classify a report: `Some(why)` when it is an emulator flake.
pub fn classify(t: &Trouble) -> Option<String> {
    let func = |f: &str| f.split('+').next().unwrap_or(f).to_string();
    let all: Vec<String> = t.rip.iter().chain(&t.frames).map(|f| func(f)).collect();
    if all.iter().any(|f| OURS.iter().any(|o| f.contains(o))) {
        return None;
    }
    let at = t.rip.as_deref().map(func).unwrap_or_else(|| "?".into());
    if t.line.contains("Oops: int3") {
        return Some(format!(
            "an int3 trap in {at} with no eBPF or probe frame: an instruction the kernel live-patched (a static key or tracepoint switched) that another vCPU ran stale under multi-threaded TCG"
        ));
    }
    if SCHED.iter().any(|s| at == *s) {
        return Some(format!(
            "a fault in scheduler code ({at}) with no eBPF or probe frame"
        ));
    }
    let stall = [
        "soft lockup",
        "hard LOCKUP",
        "self-detected stall",
        "rcu_preempt",
        "rcu_sched",
        "blocked for more than",
    ];
    if stall.iter().any(|s| t.line.contains(s)) {
        return Some("a stall or lockup with no eBPF or probe frame: the emulated CPUs were starved (host load)".into());
    }
    if !t.daxtrace_running && t.rip.is_some() {
        return Some(format!("a fault in {at} while daxtrace was not running"));
    }
    None
}

/// `[   95.051912] RIP: 0010:__schedule+0x339/0xbf0` -> the text after the time stamp.
fn strip_time(line: &str) -> &str {
    let l = line.trim_start();
    match l.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((_, rest)) => rest.trim(),
        None => l.trim(),
    }
}

/// Feed one console line to the open report, if any.
fn note_trace_line(t: &mut Trouble, line: &str) {
    let l = strip_time(line);
    if l.starts_with("---[ end trace") {
        t.ended = true;
    } else if let Some(r) = l.strip_prefix("RIP: ") {
        // "0010:__schedule+0x339/0xbf0" (kernel) or "0033:0x4011" (user)
        let r = r.split_once(':').map_or(r, |x| x.1);
        if t.rip.is_none() {
            t.rip = Some(r.split_whitespace().next().unwrap_or(r).to_string());
        }
    } else {
        // Call trace frames: "schedule+0x27/0xc0", "ext4_dax_huge_fault+0x150/0x2b0 [ext4]";
        // unreliable ones ("? func+..") are skipped.
        let mut w = l.split_whitespace();
        if let (Some(f), rest) = (w.next(), w.next()) {
            let frame = f.contains('+') && f.contains("/0x");
            if frame && rest.is_none_or(|m| m.starts_with('[')) && t.frames.len() < 40 {
                t.frames.push(f.to_string());
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// `Some(true)` for ok, `Some(false)` for fail, `None` when no verdict came.
    pub verdict: Option<bool>,
    pub why: Option<String>,
    pub trouble: Vec<String>,
    /// The same reports, with trace and classification.
    pub troubles: Vec<Trouble>,
    /// Runs (fs-backend) whose results were copied out.
    pub runs_done: Vec<String>,
    /// Wall time from start to the guest's `ready` line.
    pub boot_secs: Option<f64>,
    /// Wall time of each filesystem's workload (start to end line).
    pub run_secs: Vec<(String, f64)>,
    pub total_secs: f64,
    pub timed_out: bool,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.verdict == Some(true) && self.trouble.is_empty() && !self.timed_out
    }

    /// Trouble came, and every report is an emulator flake.
    pub fn only_flakes(&self) -> bool {
        !self.troubles.is_empty() && self.troubles.iter().all(|t| t.flake.is_some())
    }
}

pub fn boot(b: &Boot<'_>) -> Result<Outcome> {
    let mut cmdline =
        String::from("console=ttyS0 memmap=512M!1G panic=-1 quiet loglevel=4 tsc=reliable");
    for p in &b.params {
        cmdline.push(' ');
        cmdline.push_str(p);
    }
    let mut cmd = b.tools.command(&b.tools.qemu);
    cmd.env("QEMU_MODULE_DIR", &b.tools.qemu_modules);
    for l in &b.tools.firmware {
        cmd.arg("-L").arg(l);
    }
    cmd.args([
        "-accel",
        &format!("tcg,thread={}", b.tcg.name()),
        "-cpu",
        "max",
        "-smp",
        "2",
        "-m",
        "2G",
    ])
    .args([
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
    ])
    .arg("-kernel")
    .arg(&b.kernel.vmlinuz)
    .arg("-initrd")
    .arg(b.initramfs)
    .arg("-append")
    .arg(&cmdline)
    .arg("-fsdev")
    .arg(format!(
        "local,id=share,path={},security_model=none",
        b.share.display()
    ))
    .args(["-device", "virtio-9p-pci,fsdev=share,mount_tag=share"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(n) = b.nice {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: setpriority is async-signal-safe; it runs in the child
        // before exec, and its threads (one per vCPU) inherit the value.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setpriority(libc::PRIO_PROCESS, 0, n) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", b.tools.qemu.display()))?;
    let mut log =
        fs::File::create(&b.log).with_context(|| format!("cannot create {}", b.log.display()))?;

    // Both streams into one channel so a quiet stdout cannot hide a
    // QEMU error on stderr, and the timeout is checked between lines.
    let (tx, rx) = mpsc::channel::<String>();
    for s in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(s).split(b'\n') {
                let Ok(line) = line else { break };
                if tx
                    .send(
                        String::from_utf8_lossy(&line)
                            .trim_end_matches('\r')
                            .to_string(),
                    )
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut o = Outcome::default();
    let mut starts: Vec<(String, Instant)> = Vec::new();
    let mut during = String::from("booting");
    let mut running = false;
    loop {
        let left = b.timeout.saturating_sub(t0.elapsed());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                o.timed_out = true;
                eprintln!(
                    "lab:   guest timed out after {:.0}s; stopping QEMU",
                    b.timeout.as_secs_f64()
                );
                kill(&mut child);
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let _ = writeln!(log, "{line}");
        if TROUBLE.iter().any(|t| line.contains(t)) {
            eprintln!("lab:   guest kernel: {line}");
            o.trouble.push(line.clone());
            match o.troubles.last_mut() {
                // A panic right after an oops is that oops's end, and an
                // "Oops:" right after a "BUG:" header its second line: one report.
                Some(t)
                    if (line.contains("Kernel panic") && t.ended)
                        || (!t.ended && t.rip.is_none()) =>
                {
                    t.line.push_str(" | ");
                    t.line.push_str(strip_time(&line));
                }
                _ => o.troubles.push(Trouble {
                    line: strip_time(&line).to_string(),
                    during: during.clone(),
                    daxtrace_running: running,
                    runs_done: o.runs_done.clone(),
                    ..Trouble::default()
                }),
            }
        } else if let Some(t) = o.troubles.last_mut().filter(|t| !t.ended) {
            note_trace_line(t, &line);
        }
        let Some(msg) = line.find(SENTINEL).map(|i| &line[i + SENTINEL.len()..]) else {
            continue;
        };
        eprintln!("lab:   [{:6.1}s] {msg}", t0.elapsed().as_secs_f64());
        during = msg.to_string();
        if msg.starts_with("ready") {
            o.boot_secs = Some(t0.elapsed().as_secs_f64());
        } else if let Some(rest) = msg.strip_prefix("fs ") {
            let fs = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            if rest.contains(" workload start") {
                starts.push((fs, Instant::now()));
            } else if rest.contains(" workload end") {
                if let Some((_, t)) = starts.iter().find(|(f, _)| *f == fs) {
                    o.run_secs.push((fs, t.elapsed().as_secs_f64()));
                }
            } else if rest.contains(" daxtrace attached") {
                running = true;
            } else if rest.contains(" daxtrace stopped") {
                running = false;
            } else if rest.contains(" copied out") {
                o.runs_done.push(fs);
            }
        } else if msg == "ok" || msg.starts_with("fail") {
            if o.verdict.is_some() {
                o.trouble.push(format!("second verdict: {msg}"));
            }
            o.verdict = Some(msg == "ok");
            if let Some(why) = msg.strip_prefix("fail") {
                o.why = Some(why.trim().to_string());
            }
        }
    }
    let _ = child.wait();
    o.total_secs = t0.elapsed().as_secs_f64();
    for t in &mut o.troubles {
        t.flake = classify(t);
    }
    Ok(o)
}

fn kill(child: &mut Child) {
    // Our own child, by its id.
    let _ = child.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed console lines as boot() does; returns the reports.
    fn reports(console: &str, running: bool) -> Vec<Trouble> {
        let mut v: Vec<Trouble> = Vec::new();
        for line in console.lines() {
            if TROUBLE.iter().any(|t| line.contains(t)) {
                match v.last_mut() {
                    Some(t)
                        if (line.contains("Kernel panic") && t.ended)
                            || (!t.ended && t.rip.is_none()) =>
                    {
                        t.line.push_str(" | more")
                    }
                    _ => v.push(Trouble {
                        line: strip_time(line).to_string(),
                        daxtrace_running: running,
                        ..Trouble::default()
                    }),
                }
            } else if let Some(t) = v.last_mut().filter(|t| !t.ended) {
                note_trace_line(t, line);
            }
        }
        for t in &mut v {
            t.flake = classify(t);
        }
        v
    }

    /// The 6.12 guest's report from the first lab run (console.log, cut).
    const INT3_SCHED: &str = "\
[   95.050703] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[   95.051109] CPU: 0 UID: 0 PID: 152 Comm: kworker/0:2 Not tainted 6.12.117+deb12-amd64 #1  Debian 6.12.117-1~deb12u1
[   95.051912] RIP: 0010:__schedule+0x339/0xbf0
[   95.052204] RAX: ff1307e97c621600 RBX: ff1307e97c636040 RCX: ff1307e901e42100
[   95.052610] Call Trace:
[   95.053320]  <TASK>
[   95.053481]  schedule+0x27/0xc0
[   95.053605]  worker_thread+0x97/0x2f0
[   95.053640]  ? __pfx_worker_thread+0x10/0x10
[   95.053651]  kthread+0xd2/0x100
[   95.053777]  </TASK>
[   95.054403] ---[ end trace 0000000000000000 ]---
[   95.054770] Kernel panic - not syncing: Fatal exception in interrupt
";

    #[test]
    fn int3_in_the_scheduler_is_a_flake() {
        let r = reports(INT3_SCHED, true);
        assert_eq!(r.len(), 1, "the panic belongs to the oops: {r:?}");
        assert_eq!(r[0].rip.as_deref(), Some("__schedule+0x339/0xbf0"));
        assert_eq!(
            r[0].frames,
            [
                "schedule+0x27/0xc0",
                "worker_thread+0x97/0x2f0",
                "kthread+0xd2/0x100"
            ]
        );
        assert!(
            r[0].flake
                .as_deref()
                .is_some_and(|w| w.contains("int3 trap in __schedule")),
            "{:?}",
            r[0].flake
        );
    }

    #[test]
    fn a_report_through_our_programs_is_never_a_flake() {
        let ours = INT3_SCHED.replace(
            "worker_thread+0x97/0x2f0",
            "bpf_prog_6deef7357e7b4530_fe_dax_iomap_pte_fault+0x3e/0x1a0",
        );
        assert_eq!(reports(&ours, true)[0].flake, None);
        let kp = INT3_SCHED.replace("schedule+0x27/0xc0", "kprobe_int3_handler+0x80/0x130");
        assert_eq!(reports(&kp, true)[0].flake, None);
    }

    #[test]
    fn an_oops_in_the_fault_path_while_tracing_is_not_a_flake() {
        let dax = "\
[   50.1] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   50.2] Oops: 0000 [#1] PREEMPT SMP NOPTI
[   50.3] RIP: 0010:dax_iomap_pte_fault+0x1d2/0x8c0
[   50.4] Call Trace:
[   50.5]  dax_iomap_fault+0x3a/0x50
[   50.6]  ext4_dax_huge_fault+0x150/0x2b0 [ext4]
[   50.7] ---[ end trace 0000000000000000 ]---
";
        let r = reports(dax, true);
        assert_eq!(r.len(), 1, "BUG: and Oops: are one report: {r:?}");
        assert_eq!(
            r[0].frames,
            [
                "dax_iomap_fault+0x3a/0x50",
                "ext4_dax_huge_fault+0x150/0x2b0"
            ]
        );
        assert_eq!(r[0].flake, None);
        // The same with daxtrace stopped is the kernel's (or the emulator's), not daxtrace's.
        assert!(reports(dax, false)[0].flake.is_some());
    }
}
