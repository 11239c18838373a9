//! Drill-down: one page's timeline, the events of the finding's ordering highlighted.
//!
//! ```text
//! +- Timeline of page 259:0 ino 12 pgoff 0 ------------------------------------+
//! | corruption  hole_load_after_allocate  completed at 0.000004500s            |
//! | lookup rd(101) F1 -> alloc wr(102) F2 -> insert wr(102) F2 -> hole rd(101) F1 |
//! | what it means, in one line                                                 |
//! |   +time   +prev  cpu task      fault kind            detail         role   |
//! | > +0ns    ...                                                       lookup |
//! +----------------------------------------------------------------------------+
//! ```

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::findings::ts;
use super::fmt::ns;
use super::severity_style;
use crate::detect::{Finding, Role, Rule, Severity, Step};
use crate::tui::app::App;

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Lookup => "lookup",
        Role::Alloc => "alloc",
        Role::Insert => "insert",
        Role::Hole => "hole load",
        Role::Invalidate => "invalidate",
    }
}

fn meaning(f: &Finding) -> &'static str {
    match (f.rule, f.severity) {
        (Rule::HoleLoadAfterAllocate, Severity::Corruption) => {
            "a zero page was mapped over blocks another task had just allocated and mapped: its data is hidden"
        }
        (Rule::HoleLoadAfterAllocate, _) => {
            "a hole was mapped after another actor allocated blocks for this page: reads see zeroes"
        }
        (Rule::InsertAfterInvalidate, _) => {
            "blocks looked up before an invalidation were mapped after it: they may already be freed"
        }
    }
}

fn step_label(s: &Step) -> String {
    match s.fault {
        Some(id) => format!("{} {}({}) F{id}", role_name(s.role), s.comm, s.tid),
        None => format!("{} {}({})", role_name(s.role), s.comm, s.tid),
    }
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let Some(d) = &app.drill else { return };
    let k = d.key;
    let block = Block::bordered()
        .title(format!(
            " Timeline of page {} ino {} pgoff {} ",
            k.dev, k.ino, k.pgoff
        ))
        .border_style(Style::new().fg(Color::Cyan));
    let inner = block.inner(area);
    f.render_widget(block, area);

    let head_rows = if d.finding.is_some() { 4 } else { 1 };
    let [head, table_area] =
        Layout::vertical([Constraint::Length(head_rows), Constraint::Fill(1)]).areas(inner);
    let steps: &[Step] = d.finding.as_ref().map_or(&[], |x| &x.steps);
    let sev = d
        .finding
        .as_ref()
        .map_or(Style::new().add_modifier(Modifier::BOLD), |x| {
            severity_style(x.severity)
        });

    let page = app.view.page.as_ref().filter(|p| p.key == k);
    let mut head_lines = Vec::new();
    if let Some(fd) = &d.finding {
        head_lines.push(Line::from(vec![
            Span::styled(fd.severity.name(), severity_style(fd.severity)),
            Span::raw("  "),
            Span::styled(fd.rule.name(), Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!("  completed at {}", ts(fd.ts))),
        ]));
        let mut order = Vec::new();
        for (i, s) in fd.steps.iter().enumerate() {
            if i > 0 {
                order.push(Span::styled(" -> ", Style::new().fg(Color::DarkGray)));
            }
            order.push(Span::styled(step_label(s), sev));
        }
        head_lines.push(Line::from(order));
        head_lines.push(Line::from(Span::styled(
            meaning(fd),
            Style::new().fg(Color::Gray),
        )));
    }
    let status = match page {
        None => "asking the pipeline for this page's timeline...".to_string(),
        Some(p) if p.missing => {
            "this page's timeline is not held (evicted or never seen): the ordering above is all there is".to_string()
        }
        Some(p) if p.gap => format!(
            "{} events on this page; the ordering's events are marked; some in between may be missing \
             (more than {} events passed since the finding)",
            p.rows.len(),
            crate::tui::snapshot::RECENT
        ),
        Some(p) => format!("{} events on this page; the ordering's events are marked", p.rows.len()),
    };
    head_lines.push(Line::from(Span::styled(
        status,
        Style::new().fg(Color::DarkGray),
    )));
    f.render_widget(Paragraph::new(head_lines).wrap(Wrap { trim: false }), head);

    let Some(page) = page.filter(|p| !p.missing && !p.rows.is_empty()) else {
        return;
    };
    let t0 = page.rows[0].ts;
    let mut prev = t0;
    let rows: Vec<Row> = page
        .rows
        .iter()
        .map(|r| {
            let role = steps
                .iter()
                .find(|s| s.ts == r.ts && s.tid == r.tid)
                .map(|s| role_name(s.role));
            let dprev = r.ts - prev.min(r.ts);
            prev = r.ts;
            let row = Row::new(vec![
                Cell::from(if role.is_some() { "▶" } else { " " }),
                Cell::from(format!("+{}", ns(r.ts - t0.min(r.ts)))),
                Cell::from(format!("+{}", ns(dprev))),
                Cell::from(r.cpu.to_string()),
                Cell::from(format!("{}({})", r.comm, r.tid)),
                Cell::from(r.fault.map_or("-".to_string(), |x| format!("F{x}"))),
                Cell::from(r.kind),
                Cell::from(r.detail.clone()),
                Cell::from(role.unwrap_or("")),
            ]);
            if role.is_some() {
                row.style(sev.add_modifier(Modifier::BOLD))
            } else {
                row
            }
        })
        .collect();
    let widths = [
        Constraint::Length(1),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(3),
        Constraint::Length(16),
        Constraint::Length(6),
        Constraint::Length(14),
        Constraint::Fill(1),
        Constraint::Length(10),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new([
                "", "+time", "+prev", "cpu", "task", "fault", "kind", "detail", "role",
            ])
            .style(Style::new().fg(Color::DarkGray)),
        )
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(Some(d.scroll.min(page.rows.len() - 1)));
    f.render_stateful_widget(table, table_area, &mut state);
}
