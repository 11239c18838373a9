//! `cargo xtask <chore>`: the developer manual. Run `cargo xtask --help`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod setup;
mod util;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "daxtrace developer chores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything the build and the tests need (idempotent).
    Setup,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Setup => setup::run(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
