//! `daxtrace`: a thin binary over the `tracer` library. Each subcommand lives
//! in `cli/<name>.rs`: it parses arguments, calls the library and prints.
//!
//! Exit status: 0 ok / no finding, 1 findings, 2 error (grep's convention).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "daxtrace",
    version,
    about = "Trace the Linux DAX page-fault path and flag stale-hole races"
)]
#[command(propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show which attach points the running kernel offers and which would be used.
    Probe(cli::probe::Args),
    /// Stream live kernel events as JSON Lines on stdout.
    Stream(cli::stream::Args),
    /// Trace live and print each finding the moment it is raised.
    Watch(cli::watch::Args),
    /// Record live events into a trace file.
    Record(cli::record::Args),
    /// Analyze a trace file or JSON Lines for findings (exit 1 when any).
    Analyze(cli::analyze::Args),
    /// Print one page's history.
    Timeline(cli::timeline::Args),
    /// Summarize a trace file or JSON Lines.
    Summary(cli::summary::Args),
    /// Convert between trace file, JSON Lines, Perfetto and CSV.
    Export(cli::export::Args),
    /// Simulate the legacy (4.0-4.5) DAX fault path and its race.
    Simulate(cli::simulate::Args),
    /// Live terminal dashboard.
    Top(cli::top::Args),
    /// Run as a daemon serving Prometheus metrics.
    Serve(cli::serve::Args),
}

fn main() -> ExitCode {
    cli::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Probe(a) => cli::probe::run(a),
        Command::Stream(a) => cli::stream::run(a),
        Command::Watch(a) => cli::watch::run(a),
        Command::Record(a) => cli::record::run(a),
        Command::Analyze(a) => cli::analyze::run(a),
        Command::Timeline(a) => cli::timeline::run(a),
        Command::Summary(a) => cli::summary::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::Simulate(a) => cli::simulate::run(a),
        Command::Top(a) => cli::top::run(a),
        Command::Serve(a) => cli::serve::run(a),
    };
    cli::exit(result)
}
