//! The `?` overlay: the key table of `keys.rs` and the severity legend, centred.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::severity_style;
use crate::detect::Severity;
use crate::tui::keys::HELP;

pub fn render(f: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:>22}  "),
                    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    for (s, what) in [
        (
            Severity::Corruption,
            "a hole mapped over data another task allocated and mapped",
        ),
        (
            Severity::StaleHole,
            "a hole mapped after another actor allocated the page",
        ),
        (
            Severity::StaleMapping,
            "blocks mapped after the page was truncated or punched",
        ),
    ] {
        lines.push(Line::from(vec![
            Span::styled(format!("{:>22}  ", s.name()), severity_style(s)),
            Span::raw(what),
        ]));
    }
    let h = lines.len() as u16 + 2;
    let popup = area.centered(
        Constraint::Length(area.width.saturating_sub(4).min(96)),
        Constraint::Length(h),
    );
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" Help: keys (Esc or ? closes) ")
                .border_style(Style::new().fg(Color::Cyan)),
        ),
        popup,
    );
}
