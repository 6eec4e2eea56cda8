//! The whole screen as a pure function of [`App`]: tabs, the focused view, status line, the help
//! bar generated from the keymap, and popups.

use super::action::Tab;
use super::app::{App, Modal};
use super::keymap;
use super::views::{self, dim, fmt_secs};
use ratatui::prelude::*;
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Row, Table, Wrap};

pub fn draw(app: &App, f: &mut Frame) {
    let area = f.area();
    let chrome = !app.presenter;
    let rows = Layout::vertical([
        Constraint::Length(if chrome { 1 } else { 0 }),
        Constraint::Min(3),
        Constraint::Length(if chrome { 1 } else { 0 }),
        Constraint::Length(1),
    ])
    .split(area);
    if chrome {
        draw_tabs(app, f, rows[0]);
        draw_status(app, f, rows[2]);
    }
    match app.tab {
        Tab::Recipes => views::recipes::draw(app, f, rows[1]),
        Tab::Vm => views::vm::draw(app, f, rows[1]),
        Tab::Deployments => views::deployments::draw(app, f, rows[1]),
        Tab::Drills => views::drills::draw(app, f, rows[1]),
        Tab::Labs => views::labs::draw(app, f, rows[1]),
    }
    draw_help_bar(app, f, rows[3]);
    match &app.modal {
        Some(Modal::Help) => draw_help_popup(app, f, area),
        Some(m) => draw_confirm(app, m, f, area),
        None => {}
    }
}

fn draw_tabs(app: &App, f: &mut Frame, area: Rect) {
    let mut spans = vec![Span::styled(
        " bootlab ",
        Style::new().fg(Color::Black).bg(Color::Cyan).bold(),
    )];
    for (i, t) in Tab::ALL.iter().enumerate() {
        let style = if *t == app.tab {
            Style::new().fg(Color::Cyan).bold().reversed()
        } else {
            Style::new()
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(format!(" {} {} ", i + 1, t.title()), style));
    }
    f.render_widget(Line::from(spans), area);
    if let Some(j) = &app.job {
        let s = format!(
            "⟳ {} {} ",
            j.kind.label(),
            fmt_secs(secs_since(app, j.started))
        );
        f.render_widget(
            Line::styled(s, Style::new().fg(Color::Yellow)).alignment(Alignment::Right),
            area,
        );
    }
}

/// Seconds from `t` to the app's clock (0 for a time after it).
fn secs_since(app: &App, t: std::time::SystemTime) -> f64 {
    app.now
        .duration_since(t)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn draw_status(app: &App, f: &mut Frame, area: Rect) {
    let mut text = app.status.clone().unwrap_or_default();
    // The running job's innermost stage: how long it runs, what it took before on this machine.
    if let Some((stage, at, expected)) = app.job.as_ref().and_then(|j| j.stages.last()) {
        text.push_str(&format!(" · {stage} {}", fmt_secs(secs_since(app, *at))));
        if let Some(e) = expected {
            text.push_str(&format!(" of ~{} before", fmt_secs(*e)));
        }
    }
    let style = if text.starts_with("failed") {
        Style::new().fg(Color::LightRed)
    } else {
        dim()
    };
    f.render_widget(Line::styled(format!(" {text}"), style), area);
}

/// `key what · key what …`, cut at the width (the `?` popup has everything).
pub fn help_bar_line(app: &App, width: u16) -> Line<'static> {
    let mut spans = vec![];
    let mut used = 0usize;
    for (key, what) in keymap::help_bar(app) {
        let w = key.chars().count() + 1 + what.chars().count() + 2;
        if used + w > width as usize {
            break;
        }
        used += w;
        spans.push(Span::styled(key, Style::new().fg(Color::Yellow).bold()));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    Line::from(spans)
}

fn draw_help_bar(app: &App, f: &mut Frame, area: Rect) {
    f.render_widget(help_bar_line(app, area.width), area);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn popup_block(title: &str) -> Block<'static> {
    Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(Color::Yellow))
        .title(format!(" {title} "))
}

fn draw_help_popup(app: &App, f: &mut Frame, area: Rect) {
    // The keys of the view under the popup: pretend the popup is closed and ask the keymap.
    let under = keymap::bindings_under_modal(app);
    let rows: Vec<Row> = under
        .iter()
        .map(|b| {
            Row::new(vec![
                Span::styled(b.key.label(), Style::new().fg(Color::Yellow).bold()),
                Span::raw(b.help),
            ])
        })
        .collect();
    let h = rows.len() as u16 + 4;
    let r = centered(area, 50, h);
    f.render_widget(Clear, r);
    let title = format!("keys — {}", app.tab.title());
    f.render_widget(
        Table::new(rows, [Constraint::Length(10), Constraint::Min(10)])
            .block(popup_block(&title).title_bottom(" Esc or ? closes ")),
        r,
    );
}

fn draw_confirm(app: &App, m: &Modal, f: &mut Frame, area: Rect) {
    let (title, mut lines) = match m {
        Modal::ConfirmQuit { vms, job } => {
            let mut l = vec![];
            if !vms.is_empty() {
                l.push(Line::raw(format!("Running VMs: {}", vms.join(", "))));
                l.push(Line::raw(
                    "Each runs under its own bootlab supervisor: quitting",
                ));
                l.push(Line::raw(
                    "the TUI leaves them running unless you stop them.",
                ));
            }
            if let Some(j) = job {
                l.push(Line::raw(format!(
                    "A job is running: {j}. It will be cancelled."
                )));
            }
            ("quit bootlab?", l)
        }
        Modal::ConfirmSolve { .. } => (
            "show the solution?",
            vec![
                Line::raw("The solution runs the step's solve commands for you."),
                Line::raw("Try a hint first (h) if you have not."),
            ],
        ),
        Modal::NewRecipe { from, name, error } => {
            let mut l = vec![
                Line::raw(format!("A recipe of yours, copied from {from}.")),
                Line::raw("Its Containerfile opens in $EDITOR; bootlab builds it when you quit."),
                Line::raw(""),
                Line::from(vec![
                    Span::styled("name: ", dim()),
                    Span::styled(format!("{name}▏"), Style::new().bold()),
                ]),
            ];
            if let Some(e) = error {
                l.push(Line::styled(e.clone(), Style::new().fg(Color::LightRed)));
            }
            ("new recipe", l)
        }
        Modal::Snippets {
            snippets, selected, ..
        } => {
            let mut l = vec![Line::styled(
                "Runs as root in the lab's guest; its output goes to the log.",
                dim(),
            )];
            for (i, s) in snippets.iter().enumerate() {
                let mark = if i == *selected { "▶ " } else { "  " };
                let style = match (i == *selected, s.runnable) {
                    (true, _) => Style::new().fg(Color::Cyan).bold(),
                    (false, true) => Style::new(),
                    (false, false) => dim(),
                };
                let note = if s.runnable { "" } else { "  [copy only]" };
                l.push(Line::styled(format!("{mark}{}{note}", s.summary()), style));
            }
            if let Some(s) = snippets.get(*selected) {
                l.push(Line::raw(""));
                for c in s.code.lines() {
                    l.push(Line::styled(
                        format!("    {c}"),
                        Style::new().fg(Color::LightGreen),
                    ));
                }
            }
            ("the step's commands", l)
        }
        Modal::Help => return,
    };
    lines.push(Line::raw(""));
    lines.push(help_bar_line(app, 56));
    let r = centered(area, 60, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(popup_block(title)),
        r,
    );
}
