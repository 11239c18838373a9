//! Fault latency, fault_begin -> fault_end of the same fault id.
//!
//! ```text
//! +- Fault latency ------------------------+
//! | size      n   p50   p90   p99   max    |
//! | pte     1.2k 2.1µs 5.0µs 9.8µs 31µs    |
//! | pmd       12  ...                      |
//! |  ▆  █  ▃  ▁        (log2 histogram)    |
//! | 1u 2u 4u 8u                            |
//! +----------------------------------------+
//! ```

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, Paragraph, Row, Table};
use ratatui::Frame;

use super::fmt::{count, ns, pow2_label};
use super::pane_block;
use crate::tui::app::{App, Pane};
use crate::tui::snapshot::LatencyRow;

const BAR_WIDTH: u16 = 4;

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let lat = &app.view.latency;
    let block = pane_block(" Fault latency (begin -> end) ", app, Pane::Latency);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [table_area, hist_area] =
        Layout::vertical([Constraint::Length(3), Constraint::Fill(1)]).areas(inner);
    let row = |name: &'static str, r: &LatencyRow| {
        if r.count == 0 {
            Row::new(vec![
                name.to_string(),
                "0".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ])
        } else {
            Row::new(vec![
                name.to_string(),
                count(r.count),
                ns(r.p50),
                ns(r.p90),
                ns(r.p99),
                ns(r.max),
            ])
        }
    };
    let widths = [
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    let table = Table::new([row("pte", &lat.pte), row("pmd", &lat.pmd)], widths)
        .header(
            Row::new(["size", "n", "p50", "p90", "p99", "max"])
                .style(Style::new().fg(Color::DarkGray)),
        )
        .column_spacing(1);
    f.render_widget(table, table_area);

    let lo = lat.hist.iter().position(|&c| c > 0);
    let hi = lat.hist.iter().rposition(|&c| c > 0);
    let (Some(lo), Some(hi)) = (lo, hi) else {
        f.render_widget(
            Paragraph::new(
                Line::from("no completed faults yet").style(Style::new().fg(Color::DarkGray)),
            ),
            hist_area,
        );
        return;
    };
    // Merge neighbouring octaves when the range is wider than the pane.
    let fit = usize::from((hist_area.width + 1) / (BAR_WIDTH + 1)).max(1);
    let group = (hi - lo + 1).div_ceil(fit);
    let bars: Vec<Bar> = (lo..=hi)
        .step_by(group)
        .map(|start| {
            let end = (start + group).min(hi + 1);
            let v: u64 = lat.hist[start..end].iter().sum();
            // Bucket i holds [2^(i-1), 2^i): label it by its lower bound.
            // No number inside the bars: they are too thin; the table above has the figures.
            Bar::default()
                .value(v)
                .text_value(String::new())
                .label(Line::from(pow2_label(start.saturating_sub(1))))
        })
        .collect();
    let chart = BarChart::vertical(bars)
        .bar_width(BAR_WIDTH)
        .bar_gap(1)
        .bar_style(Style::new().fg(Color::Cyan));
    f.render_widget(chart, hist_area);
}
