//! `cargo xtask <chore>`: the developer manual. Run `cargo xtask --help`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod dashboards;
mod demo;
mod lab;
mod setup;
mod test;
mod util;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "daxtrace developer chores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up (when needed), build, and trace real DAX faults: the lab's short pass.
    Demo,
    /// Install everything the build and the tests need (idempotent).
    Setup,
    /// Boot real DAX guests (Debian 6.1/6.12 kernels, ext4 and xfs on
    /// emulated pmem) and prove daxtrace's events against the kernel's own
    /// trace. Default: the short pass (6.12, both filesystems); --full: both
    /// kernels, longer workload. Exit 1 on any disagreement, data mismatch
    /// or finding.
    Lab(lab::Args),
    /// Run every test, the real-kernel ones included (needs root; runs setup first).
    Test,
    /// Check dashboards/ (queries, rules, scrape config) against the exporter and a real Prometheus.
    CheckDashboards,
    /// Measure what tracing costs: untraced vs daxtrace (each backend) vs
    /// trace-cmd vs bpftrace on the same tracepoints, interleaved rounds;
    /// prints a table and writes JSON (needs root).
    BenchOverhead(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Demo => match demo::run() {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Setup => setup::run(),
        Command::Lab(a) => match lab::run(a) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Test => test::run_all(),
        Command::CheckDashboards => dashboards::run_checks(),
        Command::BenchOverhead(a) => bench::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
