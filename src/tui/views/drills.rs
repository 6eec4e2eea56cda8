//! Drills: start upgrade / rollback / switch / power-cut; a live timeline; the verdict with evidence.

use super::{dim, panel};
use crate::tui::action::DrillKind;
use crate::tui::app::App;
use crate::tui::logpane::LogPane;
use ratatui::prelude::*;
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub summary: String,
    /// What was observed (booted checksum before/after, command outputs).
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DrillRun {
    pub kind: DrillKind,
    pub timeline: Vec<(SystemTime, String)>,
    pub verdict: Option<Verdict>,
}

impl DrillRun {
    pub fn new(kind: DrillKind) -> DrillRun {
        DrillRun {
            kind,
            timeline: vec![],
            verdict: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DrillsView {
    pub selected: usize,
    pub running: Option<DrillRun>,
    /// Full output of the drill's commands (the timeline keeps the milestones).
    pub log: LogPane,
}

impl DrillsView {
    pub fn timeline(&mut self, at: SystemTime, text: &str) {
        if let Some(r) = &mut self.running {
            r.timeline.push((at, text.to_string()));
        }
    }
}

pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let v = &app.drills;
    let cols = Layout::horizontal([Constraint::Length(34), Constraint::Min(40)]).split(area);
    if !app.presenter {
        let items: Vec<ListItem> = DrillKind::ALL
            .iter()
            .map(|k| {
                ListItem::new(vec![
                    Line::styled(k.name(), Style::new().bold()),
                    Line::styled(format!("  {}", k.what()), dim()),
                ])
            })
            .collect();
        let mut st = ListState::default().with_selected(Some(v.selected));
        f.render_stateful_widget(
            List::new(items)
                .block(panel("drills", true))
                .highlight_symbol("▶ ")
                .highlight_style(Style::new().fg(Color::Cyan)),
            cols[0],
            &mut st,
        );
    }
    let right = if app.presenter { area } else { cols[1] };
    let Some(run) = &v.running else {
        let mut lines = vec![
            Line::styled("no drill run yet", Style::new().bold()),
            Line::raw(""),
        ];
        if app.vm.vm.is_none() {
            lines.push(Line::raw(
                "no VM running — boot one in the VM view (2, then b); drills act on it",
            ));
        } else {
            lines.push(Line::raw(
                "Enter starts the selected drill on the running VM",
            ));
        }
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel("timeline", false)),
            right,
        );
        return;
    };
    let rows = Layout::vertical([Constraint::Min(5), Constraint::Length(7)]).split(right);
    let start = run.timeline.first().map(|t| t.0);
    let lines: Vec<Line> = run
        .timeline
        .iter()
        .map(|(at, text)| {
            let rel = start
                .and_then(|s| at.duration_since(s).ok())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            Line::from(vec![
                Span::styled(format!("{:>7} ", format!("+{rel:.1}s")), dim()),
                Span::raw(text.clone()),
            ])
        })
        .collect();
    let skip = lines
        .len()
        .saturating_sub(rows[0].height.saturating_sub(2) as usize);
    f.render_widget(
        Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()).block(panel(
            &format!("{} drill — timeline", run.kind.name()),
            true,
        )),
        rows[0],
    );
    let verdict = match &run.verdict {
        None => vec![Line::styled("running… (Ctrl-C cancels)", dim())],
        Some(vd) => {
            let mut l = vec![Line::styled(
                format!(
                    "{} {}",
                    if vd.passed { "✔ PASS" } else { "✘ FAIL" },
                    vd.summary
                ),
                if vd.passed {
                    Style::new().fg(Color::LightGreen).bold()
                } else {
                    Style::new().fg(Color::LightRed).bold()
                },
            )];
            l.extend(vd.evidence.iter().map(|e| Line::raw(format!("  {e}"))));
            l
        }
    };
    f.render_widget(
        Paragraph::new(verdict)
            .wrap(Wrap { trim: false })
            .block(panel("verdict", false)),
        rows[1],
    );
}
