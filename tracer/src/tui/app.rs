//! Dashboard state and its one way to change: [`App::update`] takes an
//! [`Action`] and returns what the outside world must do ([`Command`]).
//! No I/O, no clock: the tests drive it with actions and snapshots.

use std::sync::Arc;

use crate::detect::Finding;
use crate::event::PageKey;

use super::snapshot::{HotFile, HotPage, Snapshot};

/// Panes that take focus, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Findings,
    HotPages,
    HotFiles,
    Rates,
    Latency,
}

impl Pane {
    const ORDER: [Pane; 5] = [
        Pane::Findings,
        Pane::HotPages,
        Pane::HotFiles,
        Pane::Rates,
        Pane::Latency,
    ];

    fn step(self, by: isize) -> Pane {
        let i = Self::ORDER.iter().position(|&p| p == self).unwrap_or(0) as isize;
        Self::ORDER[(i + by).rem_euclid(Self::ORDER.len() as isize) as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Something the user should notice: a loss burst, an attach failure, the end of a replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub level: Level,
    pub text: String,
}

impl Notification {
    pub fn new(level: Level, text: impl Into<String>) -> Self {
        Self {
            level,
            text: text.into(),
        }
    }
}

/// Ticks (seconds) an info or warning stays on screen; errors stay until Esc.
pub const NOTE_TICKS: u64 = 8;

/// What `/` narrows the lists to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Inode(u64),
    /// Substring of a task's command name.
    Comm(String),
}

impl Filter {
    /// Digits are an inode number; anything else is part of a comm.
    pub fn parse(s: &str) -> Option<Filter> {
        let s = s.trim();
        if s.is_empty() {
            None
        } else if let Ok(ino) = s.parse() {
            Some(Filter::Inode(ino))
        } else {
            Some(Filter::Comm(s.to_string()))
        }
    }

    pub fn finding(&self, f: &Finding) -> bool {
        match self {
            Filter::Inode(i) => f.page.ino == *i,
            Filter::Comm(c) => f.steps.iter().any(|s| s.comm.as_str().contains(c.as_str())),
        }
    }

    pub fn page(&self, p: &HotPage) -> bool {
        match self {
            Filter::Inode(i) => p.key.ino == *i,
            Filter::Comm(c) => p.comm.as_str().contains(c.as_str()),
        }
    }

    pub fn file(&self, f: &HotFile) -> bool {
        match self {
            Filter::Inode(i) => f.ino == *i,
            Filter::Comm(c) => f.comm.as_str().contains(c.as_str()),
        }
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::Inode(i) => write!(f, "inode {i}"),
            Filter::Comm(c) => write!(f, "comm ~ {c:?}"),
        }
    }
}

/// The drill-down: one page's timeline, and the finding that led there.
#[derive(Clone, Debug)]
pub struct Drill {
    pub key: PageKey,
    pub finding: Option<Arc<Finding>>,
    pub scroll: usize,
}

/// Which keys mean what right now (see `keys.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    FilterInput,
    Help,
    Drill,
}

#[derive(Clone, Debug)]
pub enum Action {
    Quit,
    TogglePause,
    ToggleHelp,
    FilterStart,
    FilterChar(char),
    FilterBackspace,
    FilterApply,
    /// Esc: close the innermost thing open.
    Back,
    NextPane,
    PrevPane,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    /// One second passed.
    Tick,
    Snapshot(Arc<Snapshot>),
    Notify(Notification),
}

/// Side effects `update` asks for; the event loop performs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Quit,
    /// Ask the pipeline thread to include (or stop including) this page's timeline.
    Watch(Option<PageKey>),
}

const PAGE: usize = 10;

pub struct App {
    /// What is drawn: the newest snapshot, or the one held while paused.
    pub view: Arc<Snapshot>,
    /// The newest snapshot received (the pipeline keeps counting while paused).
    pub latest: Arc<Snapshot>,
    pub paused: bool,
    pub focus: Pane,
    pub sel_finding: usize,
    pub sel_page: usize,
    pub sel_file: usize,
    pub filter: Option<Filter>,
    /// The filter being typed after `/`.
    pub filter_input: Option<String>,
    pub help: bool,
    pub drill: Option<Drill>,
    /// Newest last, with the tick at which each expires (None: until Esc).
    pub notes: Vec<(Notification, Option<u64>)>,
    pub ticks: u64,
}

impl App {
    pub fn new(first: Arc<Snapshot>) -> Self {
        Self {
            view: first.clone(),
            latest: first,
            paused: false,
            focus: Pane::Findings,
            sel_finding: 0,
            sel_page: 0,
            sel_file: 0,
            filter: None,
            filter_input: None,
            help: false,
            drill: None,
            notes: Vec::new(),
            ticks: 0,
        }
    }

    pub fn mode(&self) -> Mode {
        if self.filter_input.is_some() {
            Mode::FilterInput
        } else if self.help {
            Mode::Help
        } else if self.drill.is_some() {
            Mode::Drill
        } else {
            Mode::Normal
        }
    }

    pub fn findings(&self) -> Vec<&Arc<Finding>> {
        self.view
            .findings
            .iter()
            .filter(|f| self.filter.as_ref().is_none_or(|x| x.finding(f)))
            .collect()
    }

    pub fn hot_pages(&self) -> Vec<&HotPage> {
        self.view
            .hot_pages
            .iter()
            .filter(|p| self.filter.as_ref().is_none_or(|x| x.page(p)))
            .collect()
    }

    pub fn hot_files(&self) -> Vec<&HotFile> {
        self.view
            .hot_files
            .iter()
            .filter(|f| self.filter.as_ref().is_none_or(|x| x.file(f)))
            .collect()
    }

    /// The drilled page's timeline rows, if the pipeline has answered for that page.
    pub fn drill_rows(&self) -> usize {
        match (&self.drill, &self.view.page) {
            (Some(d), Some(p)) if p.key == d.key => p.rows.len(),
            _ => 0,
        }
    }

    fn list_len(&self) -> usize {
        match self.focus {
            Pane::Findings => self.findings().len(),
            Pane::HotPages => self.hot_pages().len(),
            Pane::HotFiles => self.hot_files().len(),
            Pane::Rates | Pane::Latency => 0,
        }
    }

    fn move_sel(&mut self, f: impl Fn(usize, usize) -> usize) {
        if let Some(d) = self.drill.as_mut() {
            let len = match &self.view.page {
                Some(p) if p.key == d.key => p.rows.len(),
                _ => 0,
            };
            d.scroll = f(d.scroll, len);
            return;
        }
        let len = self.list_len();
        let sel = match self.focus {
            Pane::Findings => &mut self.sel_finding,
            Pane::HotPages => &mut self.sel_page,
            Pane::HotFiles => &mut self.sel_file,
            Pane::Rates | Pane::Latency => return,
        };
        *sel = f(*sel, len);
    }

    fn notify(&mut self, n: Notification) {
        let expires = (n.level != Level::Error).then_some(self.ticks + NOTE_TICKS);
        self.notes.push((n, expires));
        // Keep the newest few; older ones were seen or are in the log.
        if self.notes.len() > 5 {
            self.notes.remove(0);
        }
    }

    fn open_drill(&mut self) -> Option<Command> {
        let (key, finding) = match self.focus {
            Pane::Findings => {
                let f = self
                    .findings()
                    .get(self.sel_finding)
                    .map(|f| (*f).clone())?;
                (f.page, Some(f))
            }
            Pane::HotPages => (self.hot_pages().get(self.sel_page)?.key, None),
            Pane::HotFiles => {
                // A file has no single timeline: narrow the lists to it instead.
                let ino = self.hot_files().get(self.sel_file)?.ino;
                self.filter = Some(Filter::Inode(ino));
                self.reset_selection();
                self.focus = Pane::HotPages;
                return None;
            }
            Pane::Rates | Pane::Latency => return None,
        };
        self.drill = Some(Drill {
            key,
            finding,
            scroll: 0,
        });
        Some(Command::Watch(Some(key)))
    }

    fn reset_selection(&mut self) {
        self.sel_finding = 0;
        self.sel_page = 0;
        self.sel_file = 0;
    }

    /// The only place state changes.
    pub fn update(&mut self, action: Action) -> Option<Command> {
        match action {
            Action::Quit => return Some(Command::Quit),
            Action::TogglePause => {
                self.paused = !self.paused;
                if !self.paused {
                    self.view = self.latest.clone();
                }
            }
            Action::ToggleHelp => self.help = !self.help,
            Action::FilterStart => {
                self.filter_input = Some(match &self.filter {
                    Some(Filter::Inode(i)) => i.to_string(),
                    Some(Filter::Comm(c)) => c.clone(),
                    None => String::new(),
                });
            }
            Action::FilterChar(c) => {
                if let Some(s) = self.filter_input.as_mut() {
                    s.push(c);
                }
            }
            Action::FilterBackspace => {
                if let Some(s) = self.filter_input.as_mut() {
                    s.pop();
                }
            }
            Action::FilterApply => {
                if let Some(s) = self.filter_input.take() {
                    self.filter = Filter::parse(&s);
                    self.reset_selection();
                }
            }
            Action::Back => {
                if self.filter_input.take().is_some() {
                } else if self.help {
                    self.help = false;
                } else if self.drill.take().is_some() {
                    return Some(Command::Watch(None));
                } else if self.filter.take().is_some() {
                    self.reset_selection();
                } else {
                    self.notes.clear();
                }
            }
            Action::NextPane => self.focus = self.focus.step(1),
            Action::PrevPane => self.focus = self.focus.step(-1),
            Action::Up => self.move_sel(|s, _| s.saturating_sub(1)),
            Action::Down => self.move_sel(|s, len| (s + 1).min(len.saturating_sub(1))),
            Action::PageUp => self.move_sel(|s, _| s.saturating_sub(PAGE)),
            Action::PageDown => self.move_sel(|s, len| (s + PAGE).min(len.saturating_sub(1))),
            Action::Home => self.move_sel(|_, _| 0),
            Action::End => self.move_sel(|_, len| len.saturating_sub(1)),
            Action::Enter => {
                if self.drill.is_none() {
                    return self.open_drill();
                }
            }
            Action::Tick => {
                self.ticks += 1;
                let now = self.ticks;
                self.notes.retain(|(_, exp)| exp.is_none_or(|e| e > now));
            }
            Action::Snapshot(s) => {
                self.latest = s;
                if !self.paused {
                    self.view = self.latest.clone();
                }
            }
            Action::Notify(n) => self.notify(n),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Role, Rule, Severity, Step};
    use crate::event::{Comm, Dev};
    use crate::tui::snapshot::SourceInfo;

    fn finding(ino: u64, comm: &str) -> Arc<Finding> {
        let step = Step {
            role: Role::Hole,
            ts: 1,
            tid: 1,
            pid: 1,
            cpu: 0,
            comm: Comm::new(comm),
            fault: Some(1),
        };
        Arc::new(Finding {
            rule: Rule::HoleLoadAfterAllocate,
            severity: Severity::Corruption,
            page: PageKey {
                dev: Dev::new(259, 0),
                ino,
                pgoff: 0,
            },
            ts: 1,
            steps: vec![step],
        })
    }

    fn app_with(findings: Vec<Arc<Finding>>) -> App {
        let mut s = Snapshot::empty(SourceInfo::default());
        s.findings = findings;
        App::new(Arc::new(s))
    }

    #[test]
    fn pause_holds_the_view_while_snapshots_keep_arriving() {
        let mut app = app_with(vec![]);
        app.update(Action::TogglePause);
        let mut s = Snapshot::empty(SourceInfo::default());
        s.seq = 7;
        app.update(Action::Snapshot(Arc::new(s)));
        assert_eq!(app.view.seq, 0);
        assert_eq!(app.latest.seq, 7);
        app.update(Action::TogglePause);
        assert_eq!(app.view.seq, 7);
    }

    #[test]
    fn filter_by_inode_or_comm() {
        let mut app = app_with(vec![finding(12, "reader"), finding(13, "writer")]);
        app.update(Action::FilterStart);
        assert_eq!(app.mode(), Mode::FilterInput);
        for c in "13".chars() {
            app.update(Action::FilterChar(c));
        }
        app.update(Action::FilterApply);
        assert_eq!(app.filter, Some(Filter::Inode(13)));
        assert_eq!(app.findings().len(), 1);
        // Reopening starts from the filter in force ("13").
        app.update(Action::FilterStart);
        app.update(Action::FilterBackspace);
        app.update(Action::FilterBackspace);
        for c in "read".chars() {
            app.update(Action::FilterChar(c));
        }
        app.update(Action::FilterApply);
        assert_eq!(
            app.findings()
                .iter()
                .map(|f| f.page.ino)
                .collect::<Vec<_>>(),
            [12]
        );
        app.update(Action::Back);
        assert_eq!(app.filter, None);
        assert_eq!(app.findings().len(), 2);
    }

    #[test]
    fn enter_on_a_finding_drills_into_its_page_and_esc_returns() {
        let mut app = app_with(vec![finding(12, "a"), finding(13, "b")]);
        app.update(Action::Down);
        assert_eq!(app.sel_finding, 1);
        app.update(Action::Down);
        assert_eq!(app.sel_finding, 1, "selection stops at the last row");
        let cmd = app.update(Action::Enter);
        let key = PageKey {
            dev: Dev::new(259, 0),
            ino: 13,
            pgoff: 0,
        };
        assert_eq!(cmd, Some(Command::Watch(Some(key))));
        assert_eq!(app.mode(), Mode::Drill);
        assert_eq!(app.update(Action::Back), Some(Command::Watch(None)));
        assert_eq!(app.mode(), Mode::Normal);
    }

    #[test]
    fn panes_cycle_both_ways() {
        let mut app = app_with(vec![]);
        app.update(Action::PrevPane);
        assert_eq!(app.focus, Pane::Latency);
        for _ in 0..5 {
            app.update(Action::NextPane);
        }
        assert_eq!(app.focus, Pane::Latency);
        // Enter on an empty list does nothing.
        assert_eq!(app.update(Action::Enter), None);
    }

    #[test]
    fn warnings_expire_errors_stay() {
        let mut app = app_with(vec![]);
        app.update(Action::Notify(Notification::new(Level::Warn, "lost 5")));
        app.update(Action::Notify(Notification::new(
            Level::Error,
            "attach failed",
        )));
        for _ in 0..NOTE_TICKS {
            app.update(Action::Tick);
        }
        assert_eq!(app.notes.len(), 1);
        assert_eq!(app.notes[0].0.level, Level::Error);
        app.update(Action::Back);
        assert!(app.notes.is_empty());
    }
}
