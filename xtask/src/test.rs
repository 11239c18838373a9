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
    // The lab's short pass: real DAX faults in QEMU on both Debian kernels,
    // daxtrace's counts against the kernel's own trace, the workload's bytes,
    // and no finding on these fixed kernels. DAXTRACE_TEST_LAB=0 skips it
    // (say so in any report that relies on such a run).
    if std::env::var("DAXTRACE_TEST_LAB").is_ok_and(|v| v == "0") {
        eprintln!("xtask test: lab pass skipped (DAXTRACE_TEST_LAB=0)");
    } else {
        eprintln!("xtask test: cargo tests passed in {:.0}s; now the lab's short pass on 6.1 and 6.12", t0.elapsed().as_secs_f64());
        if !crate::lab::run(ShortLab::parse_from(["test"]).lab)? {
            bail!("the lab's short pass found a disagreement, a data mismatch or a finding (table above)");
        }
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
