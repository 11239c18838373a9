//! Findings, newest first.
//!
//! ```text
//! +- Findings (newest first) ----------------------------------------------+
//! | time          severity    rule                      page           tasks |
//! | 12.000004500s corruption  hole_load_after_allocate  259:0 12 #0    rd(101) wr(102) |
//! +------------------------------------------------------------------------+
//! ```

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::{pane_block, selected_style, severity_style};
use crate::detect::Finding;
use crate::tui::app::{App, Pane};

/// Seconds of kernel time with nanosecond digits.
pub fn ts(ns: u64) -> String {
    format!("{}.{:09}s", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// The distinct tasks of a finding's ordering, in order: "rd(101) wr(102)".
pub fn tasks(f: &Finding) -> String {
    let mut seen: Vec<u32> = Vec::new();
    let mut out = String::new();
    for s in &f.steps {
        if !seen.contains(&s.tid) {
            seen.push(s.tid);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("{}({})", s.comm, s.tid));
        }
    }
    out
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let list = app.findings();
    let total = app.view.stats.findings;
    let title = if app.filter.is_some() {
        format!(" Findings (newest first): {} shown of {total} ", list.len())
    } else {
        format!(" Findings (newest first): {total} ")
    };
    let block = pane_block(title, app, Pane::Findings);
    if list.is_empty() {
        let msg = if total == 0 {
            "no findings: no racing ordering seen"
        } else {
            "no finding matches the filter"
        };
        f.render_widget(
            Paragraph::new(Line::from(Span::styled(
                msg,
                Style::new().fg(Color::DarkGray),
            )))
            .block(block),
            area,
        );
        return;
    }
    let rows = list.iter().map(|fd| {
        Row::new(vec![
            Cell::from(ts(fd.ts)),
            Cell::from(Span::styled(
                fd.severity.name(),
                severity_style(fd.severity),
            )),
            Cell::from(fd.rule.name()),
            Cell::from(format!(
                "{} ino {} pg {}",
                fd.page.dev, fd.page.ino, fd.page.pgoff
            )),
            Cell::from(tasks(fd)),
        ])
    });
    let widths = [
        Constraint::Length(16),
        Constraint::Length(13),
        Constraint::Length(24),
        Constraint::Length(24),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new(["time", "severity", "rule", "page", "tasks"])
                .style(Style::new().fg(Color::DarkGray)),
        )
        .block(block)
        .row_highlight_style(selected_style(app.focus == Pane::Findings))
        .highlight_symbol("> ");
    let mut state = TableState::default().with_selected(Some(app.sel_finding.min(list.len() - 1)));
    f.render_stateful_widget(table, area, &mut state);
}
