//! `cargo xtask test`: the one test command (README, .ci/run). Installs what
//! is missing, builds with the real eBPF object, runs every test including
//! the real-kernel ones (as root).

use std::process::Command;

use anyhow::{bail, Result};
use clap::Parser;

use crate::util::{root, run};

pub fn run_all() -> Result<()> {
    crate::setup::run()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!("the tests attach eBPF programs and mount loop devices: run `sudo -E cargo xtask test`");
    }
    let t0 = std::time::Instant::now();
    run(Command::new("cargo")
        .current_dir(root())
        .args(["test", "--workspace", "--release", "--features", "tracer/kernel-tests"])
        .env_remove("DAXTRACE_EBPF"))?;
    // The lab's short pass (real DAX faults in QEMU on 6.1 and 6.12, counts
    // against the kernel's own trace, the workload's bytes, no finding) runs
    // when asked: DAXTRACE_TEST_LAB=1. Not by default yet: one run here saw
    // the 6.12 guest oops on an int3 in __schedule under multi-threaded TCG
    // after daxtrace had stopped, an emulator flake that would fail CI at
    // random (see the issue note).
    if std::env::var("DAXTRACE_TEST_LAB").is_ok_and(|v| v == "1") {
        eprintln!("xtask test: cargo tests passed in {:.0}s; now the lab's short pass on 6.1 and 6.12", t0.elapsed().as_secs_f64());
        if !crate::lab::run(ShortLab::parse_from(["test"]).lab)? {
            bail!("the lab's short pass found a disagreement, a data mismatch or a finding (table above)");
        }
    } else {
        eprintln!("xtask test: lab pass skipped (set DAXTRACE_TEST_LAB=1 to run it; see xtask/src/test.rs)");
    }
    eprintln!("xtask test: everything passed in {:.0}s", t0.elapsed().as_secs_f64());
    Ok(())
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[derive(Parser)]
struct ShortLab {
    #[command(flatten)]
    lab: crate::lab::Args,
}
