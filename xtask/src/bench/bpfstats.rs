//! `--bpf-stats`: what each eBPF program of a traced tool costs per run,
//! from the kernel's own accounting (`kernel.bpf_stats_enabled`: run count
//! and run time per program, read from the tool's `/proc/PID/fdinfo`).
//! The accounting itself adds two clock reads per run, so timings of a run
//! with it are not comparable with runs without it.

use std::collections::BTreeMap;
use std::fs;

use anyhow::{Context as _, Result};
use serde::Serialize;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// One program over one timed run.
#[derive(Clone, Debug, Serialize)]
pub struct ProgStat {
    pub name: String,
    pub runs: u64,
    pub ns_per_run: f64,
}

/// Kernel accounting on for as long as this lives (the old value comes back on drop).
pub struct Enabled {
    old: String,
}

impl Enabled {
    pub fn new() -> Result<Self> {
        let old = fs::read_to_string(SYSCTL)
            .with_context(|| format!("cannot read {SYSCTL}"))?
            .trim()
            .to_string();
        fs::write(SYSCTL, "1").with_context(|| format!("cannot write {SYSCTL}"))?;
        Ok(Self { old })
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        let _ = fs::write(SYSCTL, &self.old);
    }
}

/// (run_time_ns, run_cnt) per program id of the programs `pid` holds open.
pub fn snapshot(pid: i32) -> BTreeMap<u32, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(text) = fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        // Program fds (links name a prog_id too, but carry no run_time_ns).
        if let (Some(id), Some(t), Some(n)) =
            (field("prog_id"), field("run_time_ns"), field("run_cnt"))
        {
            out.insert(u32::try_from(id).unwrap_or(u32::MAX), (t, n));
        }
    }
    out
}

/// Programs that ran between two snapshots, by name.
pub fn between(
    before: &BTreeMap<u32, (u64, u64)>,
    after: &BTreeMap<u32, (u64, u64)>,
) -> Vec<ProgStat> {
    let mut v = Vec::new();
    for (id, (t1, n1)) in after {
        let (t0, n0) = before.get(id).copied().unwrap_or((0, 0));
        let runs = n1.saturating_sub(n0);
        if runs == 0 {
            continue;
        }
        #[allow(clippy::cast_precision_loss, reason = "ns per run for a report")]
        let ns_per_run = t1.saturating_sub(t0) as f64 / runs as f64;
        v.push(ProgStat {
            name: prog_name(*id).unwrap_or_else(|| format!("prog {id}")),
            runs,
            ns_per_run,
        });
    }
    v.sort_by_key(|p| std::cmp::Reverse(p.runs));
    v
}

/// The program's name (the kernel keeps its first 15 bytes).
fn prog_name(id: u32) -> Option<String> {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    /// `struct bpf_prog_info`: `name[16]` at byte 64.
    const NAME_AT: usize = 64;
    let mut attr = [0u8; 16];
    attr[..4].copy_from_slice(&id.to_ne_bytes());
    // SAFETY: bpf(2) with a zeroed attr of the stated size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            attr.len(),
        )
    };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    let mut info = [0u8; 256];
    let mut attr = [0u8; 16];
    attr[..4].copy_from_slice(&fd.to_ne_bytes());
    attr[4..8].copy_from_slice(&u32::try_from(info.len()).unwrap_or(0).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: info is valid for its stated length; fd is ours and closed below.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            attr.len(),
        )
    };
    // SAFETY: fd came from the call above.
    unsafe { libc::close(fd) };
    if r != 0 {
        return None;
    }
    let name = &info[NAME_AT..NAME_AT + 16];
    let n = name.iter().position(|&c| c == 0).unwrap_or(16);
    Some(String::from_utf8_lossy(&name[..n]).into_owned())
}
