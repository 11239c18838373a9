//! The status lines (top) and the key line (bottom).
//!
//! ```text
//! daxtrace │ replay race.jsonl at full speed │ kernel … │ backend … │ plan …
//! events 1.2M  35.1k/s │ lost 0 │ late 0 │ evicted 0 │ findings 1 │ up 0:00:12 │ done
//! ```

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::fmt::{count, uptime};
use crate::tui::app::{App, Mode};
use crate::tui::snapshot::FeedState;

fn sep() -> Span<'static> {
    Span::styled(" │ ", Style::new().fg(Color::DarkGray))
}

fn dim(s: &str) -> Span<'_> {
    Span::styled(s, Style::new().fg(Color::DarkGray))
}

/// A counter that must never be hidden: coloured when not zero.
fn alarm(label: &'static str, n: u64, color: Color) -> Vec<Span<'static>> {
    let style = if n > 0 {
        Style::new().fg(color).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    vec![dim(label), Span::styled(count(n), style)]
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let s = &app.view;
    let src = &s.source;
    let line1 = Line::from(vec![
        Span::styled(
            " daxtrace ",
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(" "),
        Span::styled(src.label.clone(), Style::new().add_modifier(Modifier::BOLD)),
        sep(),
        dim("kernel "),
        Span::raw(src.kernel.clone()),
        sep(),
        dim("backend "),
        Span::raw(src.backend.clone()),
        sep(),
        dim("plan "),
        Span::raw(src.plan.clone()),
    ]);
    let st = &s.stats;
    let mut l2 = vec![
        dim(" events "),
        Span::styled(count(st.events), Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!("  {}/s", count(s.events_per_sec.round() as u64))),
        sep(),
    ];
    l2.extend(alarm("lost ", st.lost, Color::Red));
    l2.push(sep());
    l2.extend(alarm("late ", st.late, Color::Yellow));
    l2.push(sep());
    l2.extend(alarm("evicted ", st.evicted, Color::Yellow));
    l2.push(sep());
    l2.extend(alarm("findings ", st.findings, Color::Red));
    if st.bad_input > 0 {
        l2.push(sep());
        l2.extend(alarm("bad lines ", st.bad_input, Color::Red));
    }
    l2.push(sep());
    l2.push(dim("up "));
    l2.push(Span::raw(uptime(app.ticks)));
    l2.push(sep());
    l2.push(match &s.state {
        FeedState::Running => Span::styled("running", Style::new().fg(Color::Green)),
        FeedState::Done { elapsed } => {
            let secs = elapsed.as_secs_f64();
            let rate = if secs > 0.0 {
                st.events as f64 / secs
            } else {
                0.0
            };
            Span::styled(
                format!("done in {secs:.2}s ({}/s)", count(rate.round() as u64)),
                Style::new().fg(Color::Cyan),
            )
        }
        FeedState::Failed(e) => Span::styled(format!("stopped: {e}"), Style::new().fg(Color::Red)),
    });
    if app.paused {
        l2.push(sep());
        l2.push(Span::styled(
            format!("PAUSED (now {} events)", count(app.latest.stats.events)),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    f.render_widget(Paragraph::new(vec![line1, Line::from(l2)]), area);
}

pub fn render_keys(f: &mut Frame, area: Rect, app: &App) {
    let key = |k: &'static str| Span::styled(k, Style::new().fg(Color::Black).bg(Color::DarkGray));
    let mut spans = match app.mode() {
        Mode::FilterInput => vec![
            key(" / "),
            Span::raw(" filter (inode or comm): "),
            Span::styled(
                format!("{}█", app.filter_input.as_deref().unwrap_or("")),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw("   "),
            key(" Enter "),
            Span::raw(" apply  "),
            key(" Esc "),
            Span::raw(" cancel"),
        ],
        Mode::Drill => vec![
            key(" Esc "),
            Span::raw(" back  "),
            key(" ↑↓ "),
            Span::raw(" scroll  "),
            key(" p "),
            Span::raw(if app.paused { " resume  " } else { " pause  " }),
            key(" q "),
            Span::raw(" quit  "),
            key(" ? "),
            Span::raw(" help"),
        ],
        Mode::Normal | Mode::Help => vec![
            key(" q "),
            Span::raw(" quit  "),
            key(" p "),
            Span::raw(if app.paused { " resume  " } else { " pause  " }),
            key(" / "),
            Span::raw(" filter  "),
            key(" Tab "),
            Span::raw(" pane  "),
            key(" Enter "),
            Span::raw(" timeline  "),
            key(" ? "),
            Span::raw(" help"),
        ],
    };
    if let (Some(filt), false) = (&app.filter, app.mode() == Mode::FilterInput) {
        spans.push(Span::raw("   "));
        spans.push(Span::styled(
            format!("filter: {filt} (Esc clears)"),
            Style::new().fg(Color::Cyan),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
