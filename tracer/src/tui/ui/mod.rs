//! Pure render functions: each takes `&App` (and an area) and draws; nothing
//! here changes state or looks at a clock.
//!
//! Main screen (80x24 at least; extra rows go to findings and hot tables):
//!
//! ```text
//! +--------------------------------------------------------------------------+
//! | status: source, kernel, backend, attach plan                (2 rows)     |
//! |         events, events/s, lost, late, evicted, findings, uptime          |
//! +- Fault rates ------------------------------+- Fault latency -------------+
//! | PTE faults   ▁▂▅▇█▃   12/s      1.2k       | size  n  p50  p90  p99  max |
//! | ... one sparkline per kind (9 rows)        | log2 histogram (bar chart)  |
//! +- Findings (newest first) ------------------+-----------------------------+
//! | time  severity  rule  page  tasks                                        |
//! +- Hot pages ---------------------------+- Hot files ----------------------+
//! | dev ino pgoff faults holes allocs task | dev ino faults pages task        |
//! +----------------------------------------+----------------------------------+
//! | keys / filter line                                           (1 row)     |
//! +--------------------------------------------------------------------------+
//! ```
//!
//! Drill-down replaces everything between the status and key lines with
//! `drill::render`; help and notifications are drawn over the top.

mod drill;
mod findings;
mod fmt;
mod help;
mod hot;
mod latency;
mod notes;
mod rates;
mod status;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, BorderType, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Pane};
use crate::detect::Severity;

pub use fmt::{count, ns};

/// Smallest terminal the layout fits.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// Rows of the rates / latency band (9 series + borders).
const RATES_ROWS: u16 = 11;

pub fn render(f: &mut Frame, app: &App) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(f, area);
        return;
    }
    let [status_area, body, keys_area] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    status::render(f, status_area, app);
    if app.drill.is_some() {
        drill::render(f, body, app);
    } else {
        let [top, findings_area, hot_area] = Layout::vertical([
            Constraint::Length(RATES_ROWS),
            Constraint::Fill(1),
            Constraint::Fill(1),
        ])
        .areas(body);
        let [rates_area, latency_area] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(top);
        rates::render(f, rates_area, app);
        latency::render(f, latency_area, app);
        findings::render(f, findings_area, app);
        let [pages_area, files_area] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(hot_area);
        hot::render_pages(f, pages_area, app);
        hot::render_files(f, files_area, app);
    }
    status::render_keys(f, keys_area, app);
    notes::render(f, body, app);
    if app.help {
        help::render(f, area);
    }
}

fn too_small(f: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("daxtrace top: terminal too small")
            .style(Style::new().add_modifier(Modifier::BOLD)),
        Line::from(format!(
            "{}x{} here, {MIN_WIDTH}x{MIN_HEIGHT} needed",
            area.width, area.height
        )),
        Line::from("enlarge the window, or press q to quit"),
    ];
    let h = (text.len() as u16).min(area.height);
    let y = area.y + area.height.saturating_sub(h) / 2;
    f.render_widget(
        Paragraph::new(text).centered().wrap(Wrap { trim: true }),
        Rect {
            x: area.x,
            y,
            width: area.width,
            height: h,
        },
    );
}

/// A pane's frame; the focused pane has a thick, highlighted border.
fn pane_block<'a>(title: impl Into<Line<'a>>, app: &App, pane: Pane) -> Block<'a> {
    let b = Block::bordered().title(title);
    if app.focus == pane && app.drill.is_none() {
        b.border_type(BorderType::Thick)
            .border_style(Style::new().fg(Color::Cyan))
    } else {
        b.border_style(Style::new().fg(Color::DarkGray))
    }
}

pub fn severity_style(s: Severity) -> Style {
    match s {
        Severity::Corruption => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Severity::StaleHole => Style::new().fg(Color::Yellow),
        Severity::StaleMapping => Style::new().fg(Color::Magenta),
    }
}

/// The selection highlight of list panes.
fn selected_style(focused: bool) -> Style {
    if focused {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    }
}
