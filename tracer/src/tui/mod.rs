//! `daxtrace top`: the live dashboard, one more sink on the shared pipeline.
//!
//! Threads and data flow:
//!
//! ```text
//! source -> [pipeline thread: Pipeline + Dashboard sink] --snapshot/notification--+
//!                       ^                                                          v
//!                       +---- Request::Watch(page) ---- [UI thread] <-- one AppEvent channel
//!                                                            ^   <-- keys (input thread)
//!                                                            +-- tick (1 s)
//! ```
//!
//! * `feed`: the pipeline thread; publishes a `snapshot::Snapshot` every 250 ms and never
//!   blocks on the UI. An unpaced replay runs in stages as `analyze` does: decoding,
//!   then the reorder window and the panes' per-event counts (`snapshot::Counts`) on an
//!   arrival thread, then the rules and findings on the pipeline thread.
//! * `app`: state + pure `update(Action) -> Option<Command>`.
//! * `keys`: key -> Action. `event`: the one channel. `ui/`: pure render functions of `&App`.
//!
//! The UI redraws when something arrives (a snapshot, a key, the tick), so the
//! redraw rate is bounded by the publish period whatever the event rate, and an
//! idle dashboard sleeps.

pub mod app;
pub mod event;
pub mod feed;
pub mod keys;
pub mod snapshot;
pub mod ui;

use std::sync::mpsc::{Receiver, Sender};

use ratatui::backend::Backend;
use ratatui::Terminal;

use app::{Action, App, Command};
use event::AppEvent;
use feed::Request;

/// How the event loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// The user quit.
    Quit,
    /// The pipeline thread went away without the user quitting (it panicked).
    FeedGone,
}

/// Apply one event to the app; returns a command for the loop.
pub fn apply(app: &mut App, ev: AppEvent) -> Option<Command> {
    let action = match ev {
        AppEvent::Key(k) => keys::action(app.mode(), k)?,
        AppEvent::Resize => return None,
        AppEvent::Tick => Action::Tick,
        AppEvent::Snapshot(s) => Action::Snapshot(s),
        AppEvent::Notify(n) => Action::Notify(n),
        AppEvent::FeedGone => return Some(Command::Quit),
    };
    app.update(action)
}

/// The event loop, generic over the backend so tests can drive it with
/// `TestBackend`. Blocks on the channel; draws after each batch of events.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    rx: &Receiver<AppEvent>,
    requests: &Sender<Request>,
) -> Result<Exit, B::Error> {
    terminal.draw(|f| ui::render(f, app))?;
    loop {
        let Ok(first) = rx.recv() else {
            return Ok(Exit::FeedGone);
        };
        // Take everything already queued before drawing once (coalescing a burst).
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        for ev in batch {
            let gone = matches!(ev, AppEvent::FeedGone);
            match apply(app, ev) {
                Some(Command::Quit) => return Ok(if gone { Exit::FeedGone } else { Exit::Quit }),
                // The pipeline thread only stops listening when it is gone, which FeedGone reports.
                Some(Command::Watch(key)) => drop(requests.send(Request::Watch(key))),
                None => {}
            }
        }
        terminal.draw(|f| ui::render(f, app))?;
    }
}

#[cfg(test)]
mod tests;
