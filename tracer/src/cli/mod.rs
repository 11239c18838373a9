//! One module per subcommand, plus the exit-status discipline they share.

use std::process::ExitCode;

pub mod analyze;
pub mod export;
pub mod input;
pub mod live;
pub mod probe;
pub mod record;
pub mod serve;
pub mod simulate;
pub mod stream;
pub mod summary;
pub mod timeline;
pub mod top;
pub mod watch;

/// What a subcommand reports on success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Clean,
    /// Exit 1: the input holds findings.
    Findings,
}

pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DAXTRACE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Map a subcommand's result to the process exit status. Errors print one
/// line (`{:#}` chains the context) and exit 2; a broken pipe is success.
pub fn exit(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("daxtrace: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
