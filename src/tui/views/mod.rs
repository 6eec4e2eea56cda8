//! One module per view: its state (a small view model) and its pure draw function.

pub mod deployments;
pub mod drills;
pub mod labs;
pub mod recipes;
pub mod vm;

use ratatui::prelude::*;
use ratatui::widgets::{Block, Borders};

/// A bordered block with a title; focused panes get a brighter border.
pub fn panel(title: &str, focused: bool) -> Block<'static> {
    Block::new()
        .borders(Borders::ALL)
        .border_style(if focused {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().fg(Color::DarkGray)
        })
        .title(format!(" {title} "))
}

pub fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub fn key_hint(key: &str, rest: &str) -> Line<'static> {
    Line::from(vec![
        Span::styled(key.to_string(), Style::new().fg(Color::Yellow).bold()),
        Span::raw(rest.to_string()),
    ])
}

/// "12s", "3m04s": short and stable.
pub fn fmt_secs(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}
