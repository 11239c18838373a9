//! `daxtrace top`: the terminal dashboard over the shared pipeline (`tracer::tui`).

use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::{bail, Context};

use super::live;

use tracer::pipeline::PipelineConfig;
use tracer::source::{sniff, tracefile, Format};
use tracer::tui::app::App;
use tracer::tui::feed::{self, Narrow, Pace, Replay, ReplayInput};
use tracer::tui::snapshot::{Snapshot, SourceInfo};
use tracer::tui::{self as dash, event, Exit};

#[derive(clap::Args)]
pub struct Args {
    // --dev and --inode narrow live tracing and replay alike; --duration stops
    // live tracing and holds the final state.
    #[command(flatten)]
    live: live::LiveArgs,
    /// Replay a capture (JSON Lines; `-` reads stdin) instead of tracing the running kernel.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Replay at X times the trace's own pace; 0 replays as fast as possible,
    /// then holds the final state on screen.
    #[arg(long, value_name = "X", default_value_t = 1.0, requires = "replay")]
    speed: f64,
    /// Count and skip records that do not parse instead of stopping the replay.
    #[arg(long, requires = "replay")]
    skip_bad: bool,
}

pub fn run(a: Args) -> anyhow::Result<super::Outcome> {
    if !(a.speed >= 0.0 && a.speed.is_finite()) {
        bail!(
            "--speed {} is not a number >= 0 (0 means as fast as possible)",
            a.speed
        );
    }
    let (tx, rx) = event::channel();
    let (req_tx, req_rx) = mpsc::channel();
    let source = match &a.replay {
        Some(path) => {
            let name = path.display().to_string();
            // A trace file goes a decoded chunk at a time (no bar: stderr is the screen);
            // anything else as an event stream.
            let trace_file =
                path.as_os_str() != "-" && sniff(path).is_ok_and(|f| f == Format::TraceFile);
            let input = if trace_file {
                ReplayInput::Batches(tracefile::open_batches_quiet(path, name)?)
            } else {
                ReplayInput::Events(tracer::source::open_any(path)?)
            };
            // The same narrowing the kernel side applies live.
            let narrow = Narrow {
                dev: a.live.dev,
                inode: a.live.inode,
            };
            let pace = if a.speed == 0.0 {
                Pace::Unpaced
            } else {
                Pace::Speed(a.speed)
            };
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let source = SourceInfo {
                label: if a.speed == 0.0 {
                    format!("replay {name} at full speed")
                } else {
                    format!("replay {name} at {}x", a.speed)
                },
                kernel: "n/a (replay)".into(),
                backend: "none (replay)".into(),
                plan: "n/a (replay)".into(),
            };
            let replay = Replay {
                input,
                pace,
                skip_bad: a.skip_bad,
                narrow,
            };
            let feed = feed::spawn(
                replay,
                PipelineConfig::default(),
                source.clone(),
                tx.clone(),
                req_rx,
            );
            (source, feed)
        }
        None => {
            // Attaching happens on the pipeline thread: the dashboard shows its progress and failures.
            let source = SourceInfo {
                label: "live".into(),
                kernel: "attaching...".into(),
                backend: "-".into(),
                plan: "-".into(),
            };
            let feed = feed::spawn_live(
                a.live.filter(),
                a.live.deadline(),
                PipelineConfig::default(),
                source.clone(),
                tx.clone(),
                req_rx,
            );
            (source, feed)
        }
    };
    let (source, feed) = source;
    let mut app = App::new(std::sync::Arc::new(Snapshot::empty(source)));

    let exit = {
        let mut terminal = Restore::init()?;
        event::spawn_input(tx.clone());
        event::spawn_ticker(tx);
        dash::run_loop(&mut terminal.0, &mut app, &rx, &req_tx).context("drawing the dashboard")?
    };
    // Dropping our ends tells the pipeline thread to stop.
    drop(rx);
    drop(req_tx);
    let end = feed
        .join()
        .map_err(|_| anyhow::anyhow!("the pipeline thread panicked (message above)"))?;
    if let Some(err) = end {
        bail!("{err}");
    }
    match exit {
        Exit::Quit | Exit::FeedGone => Ok(super::Outcome::Clean),
    }
}

/// The terminal in raw mode on the alternate screen, restored on drop (also
/// on an error return). `ratatui::try_init` installs a panic hook that
/// restores it before the panic message prints.
struct Restore(ratatui::DefaultTerminal);

impl Restore {
    fn init() -> anyhow::Result<Self> {
        Ok(Self(ratatui::try_init().context(
            "setting up the terminal (is this an interactive terminal?)",
        )?))
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}
