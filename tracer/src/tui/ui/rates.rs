//! Fault rates over time, one sparkline per kind (per second of trace time).
//!
//! ```text
//! +- Fault rates (per s of trace time) -------------------+
//! | PTE faults    ▁▂▅▇█▃▁           12/s   total 1.2k     |
//! | ... PMD, read, write, hole loads, allocations,        |
//! |     inserts, invalidations, lost                      |
//! +-------------------------------------------------------+
//! ```

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};
use ratatui::Frame;

use super::fmt::count;
use super::pane_block;
use crate::tui::app::{App, Pane};
use crate::tui::snapshot::Series;

fn color(s: Series) -> Color {
    match s {
        Series::PteFaults | Series::PmdFaults => Color::Cyan,
        Series::ReadFaults => Color::Blue,
        Series::WriteFaults => Color::Magenta,
        Series::HoleLoads => Color::Yellow,
        Series::Allocations => Color::Green,
        Series::Inserts => Color::LightGreen,
        Series::Invalidations => Color::LightRed,
        Series::Lost => Color::Red,
    }
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let block = pane_block(" Fault rates (per second of trace time) ", app, Pane::Rates);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows = Layout::vertical(vec![Constraint::Length(1); app.view.rates.len()]).split(inner);
    for (rate, row) in app.view.rates.iter().zip(rows.iter()) {
        let [label, spark, now, total] = Layout::horizontal([
            Constraint::Length(14),
            Constraint::Fill(1),
            Constraint::Length(8),
            Constraint::Length(12),
        ])
        .areas(*row);
        let c = color(rate.series);
        f.render_widget(
            Paragraph::new(Span::styled(rate.series.label(), Style::new().fg(c))),
            label,
        );
        // The newest buckets that fit, right-aligned so "now" is at the edge.
        let n = rate.buckets.len().min(spark.width as usize);
        let data = &rate.buckets[rate.buckets.len() - n..];
        let spark = Rect {
            x: spark.x + spark.width - n as u16,
            width: n as u16,
            ..spark
        };
        f.render_widget(
            Sparkline::default().data(data).style(Style::new().fg(c)),
            spark,
        );
        let last = rate.buckets.last().copied().unwrap_or(0);
        f.render_widget(
            Paragraph::new(format!("{}/s", count(last))).right_aligned(),
            now,
        );
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(" total ", Style::new().fg(Color::DarkGray)),
                Span::raw(count(rate.total)),
            ]))
            .right_aligned(),
            total,
        );
    }
}
