//! Notifications (loss bursts, attach failures, end of replay), newest last,
//! drawn over the bottom right of the body.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::tui::app::{App, Level};

const SHOWN: usize = 4;

pub fn render(f: &mut Frame, body: Rect, app: &App) {
    if app.notes.is_empty() {
        return;
    }
    let notes = &app.notes[app.notes.len().saturating_sub(SHOWN)..];
    let width = body.width.saturating_sub(4).min(70);
    let lines: Vec<Line> = notes
        .iter()
        .map(|(n, _)| {
            let (tag, style) = match n.level {
                Level::Info => ("info ", Style::new().fg(Color::Cyan)),
                Level::Warn => (
                    "warn ",
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                ),
                Level::Error => (
                    "error",
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
                ),
            };
            Line::from(vec![
                Span::styled(tag, style),
                Span::raw(" "),
                Span::raw(n.text.clone()),
            ])
        })
        .collect();
    // Each note may wrap: count rows as the paragraph will lay them out.
    let inner_w = usize::from(width.saturating_sub(2)).max(1);
    let rows: usize = lines
        .iter()
        .map(|l| l.width().div_ceil(inner_w).max(1))
        .sum();
    let height = (rows as u16 + 2).min(body.height.saturating_sub(1));
    // Inside the bottom-right pane, clear of its borders.
    let area = Rect {
        x: body.x + body.width - width - 2,
        y: body.y + body.height - height - 1,
        width,
        height,
    };
    let worst = notes
        .iter()
        .map(|(n, _)| n.level)
        .max()
        .unwrap_or(Level::Info);
    let border = match worst {
        Level::Info => Color::Cyan,
        Level::Warn => Color::Yellow,
        Level::Error => Color::Red,
    };
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::bordered()
                .title(" Notifications (Esc dismisses) ")
                .border_style(Style::new().fg(border)),
        ),
        area,
    );
}
