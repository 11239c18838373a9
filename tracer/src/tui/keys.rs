//! Key -> [`Action`], depending on what is open ([`Mode`]). The whole key map
//! is here so the help overlay and this table cannot drift: [`HELP`] is what `?` shows.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{Action, Mode};

/// (keys, what they do), as the help overlay lists them.
pub const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("p", "pause / resume drawing (the pipeline keeps counting)"),
    (
        "/",
        "filter by inode (digits) or comm (text); Enter applies",
    ),
    ("Tab, Right", "next pane"),
    ("Shift-Tab, Left", "previous pane"),
    ("Up, Down, PgUp, PgDn", "move in a list or a timeline"),
    ("Home, End", "first / last row"),
    (
        "Enter",
        "finding or hot page: open its timeline; hot file: filter to it",
    ),
    (
        "Esc",
        "close help / timeline / filter, then dismiss notifications",
    ),
    ("?", "this help"),
];

pub fn action(mode: Mode, key: KeyEvent) -> Option<Action> {
    // Repeats and releases (kitty protocol) are not presses.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if mode == Mode::FilterInput {
        return match key.code {
            KeyCode::Enter => Some(Action::FilterApply),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) => Some(Action::FilterChar(c)),
            _ => None,
        };
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Esc => Action::Back,
        _ if mode == Mode::Help => return None,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('/') => Action::FilterStart,
        KeyCode::Tab | KeyCode::Right => Action::NextPane,
        KeyCode::BackTab | KeyCode::Left => Action::PrevPane,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home => Action::Home,
        KeyCode::End => Action::End,
        KeyCode::Enter => Action::Enter,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn typing_a_filter_does_not_trigger_commands() {
        assert!(matches!(
            action(Mode::FilterInput, k(KeyCode::Char('q'))),
            Some(Action::FilterChar('q'))
        ));
        assert!(matches!(
            action(Mode::Normal, k(KeyCode::Char('q'))),
            Some(Action::Quit)
        ));
        assert!(matches!(
            action(
                Mode::FilterInput,
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
            ),
            Some(Action::Quit)
        ));
    }

    #[test]
    fn help_swallows_navigation() {
        assert!(action(Mode::Help, k(KeyCode::Enter)).is_none());
        assert!(matches!(
            action(Mode::Help, k(KeyCode::Esc)),
            Some(Action::Back)
        ));
        assert!(matches!(
            action(Mode::Drill, k(KeyCode::Down)),
            Some(Action::Down)
        ));
    }
}
