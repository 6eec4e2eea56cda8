//! Labs: the list with progress; an open lab shows the step's text (markdown), its action, a live
//! checklist with the learner-facing failure messages, hints one at a time, the solution after a
//! confirmation. Progress is saved under `Paths::lab_progress()` so a lab resumes after restarts.

use super::{dim, key_hint, panel};
use crate::tui::app::App;
use crate::tui::logpane::LogPane;
use crate::tui::markdown::{self, Scale};
use ratatui::prelude::*;
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A lab as the view needs it (adapted from the lab engine's step-file model).
#[derive(Debug, Clone, PartialEq)]
pub struct LabModel {
    pub id: String,
    pub title: String,
    pub summary: String,
    pub steps: Vec<StepModel>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepModel {
    pub title: String,
    /// Markdown.
    pub text: String,
    /// What Enter runs, shown in full before it runs (e.g. the host command).
    pub action: Option<String>,
    pub checks: Vec<CheckModel>,
    pub hints: Vec<String>,
    pub has_solution: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckModel {
    pub description: String,
}

impl From<&crate::lab::Lab> for LabModel {
    fn from(l: &crate::lab::Lab) -> LabModel {
        LabModel {
            id: l.id.clone(),
            title: l.title.clone(),
            summary: format!("{} (~{} min)", l.summary, l.minutes),
            steps: l
                .steps
                .iter()
                .map(|s| StepModel {
                    title: s.title.clone(),
                    text: s.text.clone(),
                    action: match &s.action {
                        crate::lab::Action::None => None,
                        a => Some(a.describe()),
                    },
                    checks: s
                        .checks
                        .iter()
                        .map(|c| CheckModel {
                            description: c.title.clone(),
                        })
                        .collect(),
                    hints: s.hints.clone(),
                    // "Solve" runs the action and then the solve actions.
                    has_solution: !s.solve.is_empty() || s.action != crate::lab::Action::None,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckStatus {
    NotRun,
    Running,
    Passed,
    /// The learner-facing failure message.
    Failed(String),
}

/// What survives a restart, per lab.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabProgress {
    /// The step the learner is on (0-based).
    pub step: usize,
    /// Steps whose checks all passed.
    #[serde(default)]
    pub done: BTreeSet<usize>,
    /// Hints revealed on the current step.
    #[serde(default)]
    pub hints: usize,
}

pub fn load_progress(dir: &Path, lab: &str) -> Option<LabProgress> {
    let s = std::fs::read_to_string(dir.join(format!("{lab}.json"))).ok()?;
    serde_json::from_str(&s).ok()
}

pub fn save_progress(dir: &Path, lab: &str, p: &LabProgress) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(p).map_err(std::io::Error::other)?;
    crate::paths::write_atomic(&dir.join(format!("{lab}.json")), &json)
}

pub struct LabsView {
    pub labs: Vec<LabModel>,
    /// The engine's labs the models came from (same order), for the runner.
    pub sources: Vec<crate::lab::Lab>,
    /// Step files that failed to load (`file:line:col: message`), shown under the list.
    pub load_error: Option<String>,
    pub selected: usize,
    pub open: Option<usize>,
    pub progress: BTreeMap<String, LabProgress>,
    /// Status of the open step's checks.
    pub checks: Vec<CheckStatus>,
    pub solution_shown: bool,
    /// Output of the step's action, checks and solution.
    pub log: LogPane,
}

impl LabsView {
    pub fn new(labs: Result<Vec<LabModel>, String>) -> LabsView {
        let (labs, load_error) = match labs {
            Ok(l) => (l, None),
            Err(e) => (vec![], Some(e)),
        };
        LabsView {
            labs,
            sources: vec![],
            load_error,
            selected: 0,
            open: None,
            progress: BTreeMap::new(),
            checks: vec![],
            solution_shown: false,
            log: LogPane::with_capacity(2000),
        }
    }

    pub fn move_selection(&mut self, d: isize) {
        self.selected = crate::tui::app::step_index(self.selected, d, self.labs.len());
    }

    /// The engine's lab behind the open one (absent for models made in tests).
    pub fn source(&self) -> Option<&crate::lab::Lab> {
        let lab = self.lab()?;
        self.sources.iter().find(|l| l.id == lab.id)
    }

    pub fn lab(&self) -> Option<&LabModel> {
        self.labs.get(self.open?)
    }
    pub fn progress_of(&self, lab: &str) -> LabProgress {
        self.progress.get(lab).cloned().unwrap_or_default()
    }
    pub fn step(&self) -> Option<&StepModel> {
        let lab = self.lab()?;
        lab.steps.get(self.progress_of(&lab.id).step)
    }
    /// (lab id, step index) of the open step.
    pub fn current(&self) -> Option<(String, usize)> {
        let lab = self.lab()?;
        Some((lab.id.clone(), self.progress_of(&lab.id).step))
    }

    fn reset_step_state(&mut self) {
        let n = self.step().map(|s| s.checks.len()).unwrap_or(0);
        self.checks = vec![CheckStatus::NotRun; n];
        self.solution_shown = false;
        self.log.clear();
    }

    pub fn open_selected(&mut self) {
        if self.selected < self.labs.len() {
            self.open = Some(self.selected);
            let id = self.labs[self.selected].id.clone();
            let n = self.labs[self.selected].steps.len();
            let p = self.progress.entry(id).or_default();
            p.step = p.step.min(n.saturating_sub(1));
            self.reset_step_state();
        }
    }
    pub fn close(&mut self) {
        self.open = None;
    }

    /// Move `d` steps; returns the lab whose progress changed.
    pub fn go_step(&mut self, d: isize) -> Option<String> {
        let lab = self.lab()?;
        let (id, n) = (lab.id.clone(), lab.steps.len());
        let p = self.progress.entry(id.clone()).or_default();
        let next = crate::tui::app::step_index(p.step, d, n);
        if next == p.step {
            return None;
        }
        p.step = next;
        p.hints = 0;
        self.reset_step_state();
        Some(id)
    }

    /// Reveal the next hint; returns the lab whose progress changed.
    pub fn reveal_hint(&mut self) -> Option<String> {
        let total = self.step()?.hints.len();
        let id = self.lab()?.id.clone();
        let p = self.progress.entry(id.clone()).or_default();
        if p.hints < total {
            p.hints += 1;
            Some(id)
        } else {
            None
        }
    }

    pub fn set_checks_running(&mut self) {
        for c in &mut self.checks {
            *c = CheckStatus::Running;
        }
    }
    pub fn reset_running_checks(&mut self) {
        for c in &mut self.checks {
            if *c == CheckStatus::Running {
                *c = CheckStatus::NotRun;
            }
        }
    }
    pub fn set_checks(&mut self, c: Vec<CheckStatus>) {
        let all = !c.is_empty() && c.iter().all(|s| *s == CheckStatus::Passed);
        self.checks = c;
        if all && let Some((lab, step)) = self.current() {
            self.progress.entry(lab).or_default().done.insert(step);
        }
    }
}

pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let v = &app.labs;
    match v.open {
        None => draw_list(v, f, area),
        Some(_) => draw_lab(app, f, area),
    }
}

fn draw_list(v: &LabsView, f: &mut Frame, area: Rect) {
    let block = panel("labs", true);
    let area = match &v.load_error {
        Some(e) if !v.labs.is_empty() => {
            let rows = Layout::vertical([Constraint::Min(3), Constraint::Length(5)]).split(area);
            f.render_widget(
                Paragraph::new(format!("some step files did not load:\n{e}"))
                    .style(Style::new().fg(Color::LightRed))
                    .wrap(Wrap { trim: false }),
                rows[1],
            );
            rows[0]
        }
        _ => area,
    };
    if let Some(e) = v.load_error.as_ref().filter(|_| v.labs.is_empty()) {
        f.render_widget(
            Paragraph::new(format!("cannot load labs:\n{e}"))
                .style(Style::new().fg(Color::LightRed))
                .wrap(Wrap { trim: false })
                .block(block),
            area,
        );
        return;
    }
    if v.labs.is_empty() {
        f.render_widget(
            Paragraph::new("no labs found — step files live in labs/ (one file per lab)")
                .block(block),
            area,
        );
        return;
    }
    let items: Vec<ListItem> = v
        .labs
        .iter()
        .map(|l| {
            let p = v.progress_of(&l.id);
            let n = l.steps.len();
            let prog = if n > 0 && p.done.len() >= n {
                Span::styled("done ✔".to_string(), Style::new().fg(Color::LightGreen))
            } else if p.done.is_empty() && p.step == 0 {
                Span::styled(format!("{n} steps"), dim())
            } else {
                Span::styled(
                    format!("step {}/{n} · {} done", p.step + 1, p.done.len()),
                    Style::new().fg(Color::Yellow),
                )
            };
            ListItem::new(vec![
                Line::from(vec![
                    Span::styled(l.title.clone(), Style::new().bold()),
                    Span::raw("  "),
                    prog,
                ]),
                Line::styled(format!("  {}", l.summary), dim()),
            ])
        })
        .collect();
    let mut st = ListState::default().with_selected(Some(v.selected));
    f.render_stateful_widget(
        List::new(items)
            .block(block)
            .highlight_symbol("▶ ")
            .highlight_style(Style::new().fg(Color::Cyan)),
        area,
        &mut st,
    );
}

fn draw_lab(app: &App, f: &mut Frame, area: Rect) {
    let v = &app.labs;
    let (Some(lab), Some(step)) = (v.lab(), v.step()) else {
        return;
    };
    let p = v.progress_of(&lab.id);
    let title = format!("{} — step {}/{}", lab.title, p.step + 1, lab.steps.len());
    let with_heading = |scale: Scale| {
        let mut t = Text::from(vec![
            Line::styled(step.title.clone(), Style::new().fg(Color::Cyan).bold()),
            Line::raw(""),
        ]);
        if scale == Scale::Presenter {
            t.lines.push(Line::raw(""));
        }
        t.lines.extend(markdown::render(&step.text, scale).lines);
        t
    };
    if app.presenter {
        let text = with_heading(Scale::Presenter);
        let block = panel(&title, true).padding(ratatui::widgets::Padding::new(3, 3, 1, 1));
        f.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: false }).block(block),
            area,
        );
        return;
    }
    let cols =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).split(area);
    f.render_widget(
        Paragraph::new(with_heading(Scale::Normal))
            .wrap(Wrap { trim: false })
            .block(panel(&title, true)),
        cols[0],
    );
    let right = Layout::vertical([Constraint::Min(8), Constraint::Length(8)]).split(cols[1]);
    let mut lines = vec![];
    match &step.action {
        Some(a) => {
            lines.push(Line::styled("action (Enter runs it)", dim()));
            lines.push(Line::styled(
                format!("▶ {a}"),
                Style::new().fg(Color::LightGreen),
            ));
        }
        None => lines.push(Line::styled(
            "no action: do it yourself, then press c",
            dim(),
        )),
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("checks (c runs them)", dim()));
    for (i, c) in step.checks.iter().enumerate() {
        let st = v.checks.get(i).cloned().unwrap_or(CheckStatus::NotRun);
        let (mark, style) = match &st {
            CheckStatus::NotRun => ("○", Style::new()),
            CheckStatus::Running => ("…", Style::new().fg(Color::Yellow)),
            CheckStatus::Passed => ("✔", Style::new().fg(Color::LightGreen)),
            CheckStatus::Failed(_) => ("✘", Style::new().fg(Color::LightRed)),
        };
        lines.push(Line::styled(format!("{mark} {}", c.description), style));
        if let CheckStatus::Failed(msg) = st {
            lines.push(Line::styled(
                format!("    {msg}"),
                Style::new().fg(Color::LightRed),
            ));
        }
    }
    lines.push(Line::raw(""));
    if step.hints.is_empty() {
        lines.push(Line::styled("no hints for this step", dim()));
    } else {
        for (i, h) in step.hints.iter().take(p.hints).enumerate() {
            lines.push(Line::styled(
                format!("hint {}: {h}", i + 1),
                Style::new().fg(Color::LightBlue),
            ));
        }
        let left = step.hints.len() - p.hints.min(step.hints.len());
        if left > 0 {
            lines.push(key_hint("h", &format!(" reveals a hint ({left} left)")));
        }
    }
    if step.has_solution {
        lines.push(if v.solution_shown {
            Line::styled("solution run — see the output below", dim())
        } else {
            key_hint("S", " shows and runs the solution (asks first)")
        });
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(panel("do it", false)),
        right[0],
    );
    v.log.draw(
        f,
        right[1],
        "output",
        "action and check output shows here",
        false,
    );
}
