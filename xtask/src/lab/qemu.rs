//! Boot one guest under TCG and watch its console: progress lines are shown
//! as they come, exactly one `daxtrace-lab: ok|fail` verdict counts as a
//! result, and kernel panics, oopses, lockups and RCU stalls fail the boot.

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

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
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// `Some(true)` for ok, `Some(false)` for fail, `None` when no verdict came.
    pub verdict: Option<bool>,
    pub why: Option<String>,
    pub trouble: Vec<String>,
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
}

pub fn boot(b: &Boot<'_>) -> Result<Outcome> {
    let mut cmdline = String::from("console=ttyS0 memmap=512M!1G panic=-1 quiet loglevel=4 tsc=reliable");
    for p in &b.params {
        cmdline.push(' ');
        cmdline.push_str(p);
    }
    let mut cmd = b.tools.command(&b.tools.qemu);
    cmd.env("QEMU_MODULE_DIR", &b.tools.qemu_modules);
    for l in &b.tools.firmware {
        cmd.arg("-L").arg(l);
    }
    cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "2G"])
        .args(["-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(&b.kernel.vmlinuz)
        .arg("-initrd")
        .arg(b.initramfs)
        .arg("-append")
        .arg(&cmdline)
        .arg("-fsdev")
        .arg(format!("local,id=share,path={},security_model=none", b.share.display()))
        .args(["-device", "virtio-9p-pci,fsdev=share,mount_tag=share"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", b.tools.qemu.display()))?;
    let mut log = fs::File::create(&b.log).with_context(|| format!("cannot create {}", b.log.display()))?;

    // Both streams into one channel so a quiet stdout cannot hide a
    // QEMU error on stderr, and the timeout is checked between lines.
    let (tx, rx) = mpsc::channel::<String>();
    for s in [child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), child.stderr.take().map(|s| Box::new(s) as _)]
        .into_iter()
        .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(s).split(b'\n') {
                let Ok(line) = line else { break };
                if tx.send(String::from_utf8_lossy(&line).trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut o = Outcome::default();
    let mut starts: Vec<(String, Instant)> = Vec::new();
    loop {
        let left = b.timeout.saturating_sub(t0.elapsed());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                o.timed_out = true;
                eprintln!("lab:   guest timed out after {:.0}s; stopping QEMU", b.timeout.as_secs_f64());
                kill(&mut child);
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let _ = writeln!(log, "{line}");
        if TROUBLE.iter().any(|t| line.contains(t)) {
            eprintln!("lab:   guest kernel: {line}");
            o.trouble.push(line.clone());
        }
        let Some(msg) = line.find(SENTINEL).map(|i| &line[i + SENTINEL.len()..]) else { continue };
        eprintln!("lab:   [{:6.1}s] {msg}", t0.elapsed().as_secs_f64());
        if msg.starts_with("ready") {
            o.boot_secs = Some(t0.elapsed().as_secs_f64());
        } else if let Some(rest) = msg.strip_prefix("fs ") {
            let fs = rest.split_whitespace().next().unwrap_or_default().to_string();
            if rest.contains(" workload start") {
                starts.push((fs, Instant::now()));
            } else if rest.contains(" workload end") {
                if let Some((_, t)) = starts.iter().find(|(f, _)| *f == fs) {
                    o.run_secs.push((fs, t.elapsed().as_secs_f64()));
                }
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
    Ok(o)
}

fn kill(child: &mut Child) {
    // Our own child, by its id.
    let _ = child.kill();
}
