//! One channel into the UI thread: keys (and resizes), a one-second tick,
//! pipeline snapshots and notifications all arrive as [`AppEvent`]s, so the
//! event loop waits in one place and sleeps when nothing happens.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEvent};

use super::app::Notification;
use super::snapshot::Snapshot;

#[derive(Debug)]
pub enum AppEvent {
    Key(KeyEvent),
    Resize,
    Tick,
    Snapshot(Arc<Snapshot>),
    Notify(Notification),
    /// The pipeline thread ended (replay finished and the UI went away, or it failed).
    FeedGone,
}

/// Slots in the channel. The pipeline thread uses `try_send` and skips a
/// snapshot when the UI is this far behind: the next one supersedes it.
pub const CAPACITY: usize = 64;

pub fn channel() -> (SyncSender<AppEvent>, Receiver<AppEvent>) {
    std::sync::mpsc::sync_channel(CAPACITY)
}

/// Send without ever blocking the sender; a full channel drops the event.
/// Returns false once the UI is gone.
pub fn offer(tx: &SyncSender<AppEvent>, ev: AppEvent) -> bool {
    !matches!(tx.try_send(ev), Err(TrySendError::Disconnected(_)))
}

/// Read the terminal on its own thread (crossterm's `read` blocks).
pub fn spawn_input(tx: SyncSender<AppEvent>) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("daxtrace-input".into())
        .spawn(move || loop {
            let ev = match event::read() {
                Ok(TermEvent::Key(k)) => AppEvent::Key(k),
                Ok(TermEvent::Resize(..)) => AppEvent::Resize,
                Ok(_) => continue,
                Err(e) => AppEvent::Notify(Notification::new(
                    super::app::Level::Error,
                    format!("cannot read the terminal: {e}"),
                )),
            };
            let failed = matches!(ev, AppEvent::Notify(_));
            if tx.send(ev).is_err() || failed {
                return;
            }
        })
        .expect("spawning a thread")
}

/// One tick a second: expires notifications and advances the uptime shown.
pub fn spawn_ticker(tx: SyncSender<AppEvent>) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("daxtrace-tick".into())
        .spawn(move || loop {
            thread::sleep(Duration::from_secs(1));
            if tx.send(AppEvent::Tick).is_err() {
                return;
            }
        })
        .expect("spawning a thread")
}
