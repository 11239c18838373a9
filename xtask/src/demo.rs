//! `cargo xtask demo`: the README's first command. Installs what is missing,
//! then runs the lab's short pass: real DAX faults in a QEMU guest (Debian
//! 6.12, ext4 and xfs on emulated pmem) traced by daxtrace and checked
//! against the kernel's own trace.

use anyhow::Result;
use clap::Parser;

use crate::lab;

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    lab: lab::Args,
}

pub fn run() -> Result<bool> {
    crate::setup::run()?;
    let ok = lab::run(Defaults::parse_from(["demo", "--kernel", "6.12"]).lab)?;
    eprintln!(
        "\nNext: `daxtrace analyze --json FILE` judges a trace, `daxtrace timeline --dev MAJ:MIN --ino N --pgoff P FILE` \
         tells one page's story, `daxtrace top --replay FILE` replays it on the dashboard (the lab's results folder holds the files)."
    );
    Ok(ok)
}
