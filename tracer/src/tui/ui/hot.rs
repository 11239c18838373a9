//! Hot pages and hot files, most-faulted first.
//!
//! ```text
//! +- Hot pages -----------------------------------+- Hot files -----------------------+
//! | dev    ino  pgoff faults holes allocs task    | dev    ino  faults pages task     |
//! +-----------------------------------------------+-----------------------------------+
//! ```

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::{Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::fmt::count;
use super::{pane_block, selected_style};
use crate::tui::app::{App, Pane};

fn empty(f: &mut Frame, area: Rect, block: ratatui::widgets::Block, filtered: bool) {
    let msg = if filtered {
        "nothing matches the filter"
    } else {
        "no faults yet"
    };
    f.render_widget(
        Paragraph::new(Span::styled(msg, Style::new().fg(Color::DarkGray))).block(block),
        area,
    );
}

pub fn render_pages(f: &mut Frame, area: Rect, app: &App) {
    let block = pane_block(" Hot pages ", app, Pane::HotPages);
    let list = app.hot_pages();
    if list.is_empty() {
        return empty(f, area, block, app.filter.is_some());
    }
    let rows = list.iter().map(|p| {
        Row::new(vec![
            p.key.dev.to_string(),
            p.key.ino.to_string(),
            p.key.pgoff.to_string(),
            count(p.faults),
            count(p.holes),
            count(p.allocs),
            p.comm.to_string(),
        ])
    });
    let widths = [
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new(["dev", "ino", "pgoff", "faults", "holes", "allocs", "task"])
                .style(Style::new().fg(Color::DarkGray)),
        )
        .block(block)
        .row_highlight_style(selected_style(app.focus == Pane::HotPages));
    let mut state = TableState::default().with_selected(Some(app.sel_page.min(list.len() - 1)));
    f.render_stateful_widget(table, area, &mut state);
}

pub fn render_files(f: &mut Frame, area: Rect, app: &App) {
    let block = pane_block(" Hot files ", app, Pane::HotFiles);
    let list = app.hot_files();
    if list.is_empty() {
        return empty(f, area, block, app.filter.is_some());
    }
    let rows = list.iter().map(|x| {
        Row::new(vec![
            x.dev.to_string(),
            x.ino.to_string(),
            count(x.faults),
            count(x.pages),
            x.comm.to_string(),
        ])
    });
    let widths = [
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new(["dev", "ino", "faults", "pages", "task"])
                .style(Style::new().fg(Color::DarkGray)),
        )
        .block(block)
        .row_highlight_style(selected_style(app.focus == Pane::HotFiles));
    let mut state = TableState::default().with_selected(Some(app.sel_file.min(list.len() - 1)));
    f.render_stateful_widget(table, area, &mut state);
}
