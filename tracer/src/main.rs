//! `daxtrace`: a thin binary over the `tracer` library. Each subcommand lives
//! in `cli/<name>.rs`: it parses arguments, calls the library and prints.
//!
//! Exit status: 0 ok / no finding, 1 findings, 2 error (grep's convention).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(name = "daxtrace", version, about = "Trace the Linux DAX page-fault path and flag stale-hole races")]
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
}

fn main() -> ExitCode {
    cli::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Probe(a) => cli::probe::run(a),
        Command::Stream(a) => cli::stream::run(a),
    };
    cli::exit(result)
}
