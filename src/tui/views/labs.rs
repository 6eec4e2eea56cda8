//! Labs: the list with progress; an open lab shows the step's text (markdown), its action, a live
//! checklist with the learner-facing failure messages, hints one at a time, the solution after a
//! confirmation. Progress is saved under `Paths::lab_progress()` so a lab resumes after restarts.

use super::{dim, key_hint, panel};
use crate::lab::Progress;
use crate::paths::Paths;
use crate::tui::app::{App, JobKind};
use crate::tui::logpane::LogPane;
use crate::tui::markdown::{self, Scale};
use ratatui::prelude::*;
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};
use std::collections::{BTreeMap, BTreeSet};

/// A lab as the view needs it (adapted from the lab engine's step-file model).
#[derive(Debug, Clone, PartialEq)]
pub struct LabModel {
    pub id: String,
    pub title: String,
    pub summary: String,
    /// Markdown before the first step (what you will learn) and after the last (what you
    /// learned, what's next).
    pub intro: Option<String>,
    pub finish: Option<String>,
    pub steps: Vec<StepModel>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepModel {
    /// The step's id: progress names steps by it (shared with `bootlab lab run`).
    pub id: String,
    pub title: String,
    /// Markdown.
    pub text: String,
    /// What Enter runs, shown in full before it runs (e.g. the host command).
    pub action: Option<String>,
    pub checks: Vec<CheckModel>,
    pub hints: Vec<String>,
    pub has_solution: bool,
    /// Presenter notes (markdown): shown only in presenter mode.
    pub notes: Option<String>,
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
            intro: l.intro.clone(),
            finish: l.finish.clone(),
            steps: l
                .steps
                .iter()
                .map(|s| StepModel {
                    id: s.id.clone(),
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
                    notes: s.notes.clone(),
                    // "Solve" runs the action and then the solve actions.
                    has_solution: !s.solve.is_empty() || s.action != crate::lab::Action::None,
                })
                .collect(),
        }
    }
}

/// The presenter's "next" on a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentNext {
    Action,
    Checks,
    NextStep,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckStatus {
    NotRun,
    Running,
    Passed,
    /// The learner-facing failure message.
    Failed(String),
}

/// Where the learner is in one lab, as the view draws it: a projection of the lab's saved
/// [`Progress`] (the one type the TUI and `bootlab lab run` share) onto step positions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabPosition {
    /// The step the learner is on (0-based).
    pub step: usize,
    /// Steps whose checks all passed.
    pub done: BTreeSet<usize>,
    /// Hints revealed on the current step.
    pub hints: usize,
}

impl LabModel {
    pub fn step_ids(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.id.clone()).collect()
    }
}

/// A lab's saved progress (either face's file, or the previous release's), `None` when the lab
/// was never started. A file that does not read is set aside (the second value says where).
pub fn load_progress(
    paths: &Paths,
    lab: &LabModel,
) -> anyhow::Result<(Option<Progress>, Option<String>)> {
    if !Progress::file(paths, &lab.id).exists() {
        return Ok((None, None));
    }
    let (p, said) = Progress::load_or_set_aside(paths, &lab.id, &lab.step_ids())?;
    Ok((said.is_none().then_some(p), said))
}

pub struct LabsView {
    pub labs: Vec<LabModel>,
    /// The engine's labs the models came from (same order), for the runner.
    pub sources: Vec<crate::lab::Lab>,
    /// Step files that failed to load (`file:line:col: message`), shown under the list.
    pub load_error: Option<String>,
    pub selected: usize,
    pub open: Option<usize>,
    /// Saved progress per lab id (absent: never started).
    pub progress: BTreeMap<String, Progress>,
    /// A lab whose progress changed outside a key press (checks passed): the loop saves it.
    pub unsaved: Option<String>,
    /// Status of the open step's checks.
    pub checks: Vec<CheckStatus>,
    pub solution_shown: bool,
    /// Output of the step's action, checks and solution.
    pub log: LogPane,
    /// Where the lab's guest is (a step's snapshot saved or restored), one line under the checks.
    pub guest_line: Option<String>,
    /// The open step's action ran (the presenter's "next" then runs its checks).
    pub action_done: bool,
}

/// Where a lab job left the lab's guest: the progress fields the engine changed (snapshots, the
/// step the guest is at) and a line for the learner.
#[derive(Debug, Clone, PartialEq)]
pub struct LabGuest {
    pub snapshots: BTreeMap<String, crate::lab::StepSnapshot>,
    pub guest_at: Option<String>,
    pub line: String,
}

impl LabGuest {
    pub fn of(p: &Progress, line: String) -> LabGuest {
        LabGuest {
            snapshots: p.snapshots.clone(),
            guest_at: p.guest_at.clone(),
            line,
        }
    }
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
            unsaved: None,
            checks: vec![],
            solution_shown: false,
            log: LogPane::with_capacity(2000),
            guest_line: None,
            action_done: false,
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
    fn model(&self, lab: &str) -> Option<&LabModel> {
        self.labs.iter().find(|l| l.id == lab)
    }
    /// The lab's saved progress, or a fresh one.
    pub fn saved(&self, lab: &str) -> Progress {
        self.progress
            .get(lab)
            .cloned()
            .unwrap_or_else(|| Progress::new(lab))
    }
    pub fn progress_of(&self, lab: &str) -> LabPosition {
        let Some(m) = self.model(lab) else {
            return LabPosition::default();
        };
        let (ids, p) = (m.step_ids(), self.saved(lab));
        let step = p.position(&ids);
        LabPosition {
            step,
            done: p.passed_positions(&ids),
            hints: ids.get(step).map(|id| p.hints_shown(id)).unwrap_or(0),
        }
    }
    /// Write the lab's progress where `bootlab lab run` reads it.
    pub fn save(&self, paths: &Paths, lab: &str) -> anyhow::Result<()> {
        let mut p = self.saved(lab);
        if let Some(id) = self
            .model(lab)
            .and_then(|m| m.steps.get(self.progress_of(lab).step))
        {
            // Written as a position by id, so the other face resumes on the same step.
            p.current = Some(id.id.clone());
        }
        p.save(paths)
    }
    /// The lab's progress to change (made fresh on first use).
    fn progress_mut(&mut self, lab: &str) -> &mut Progress {
        self.progress
            .entry(lab.to_string())
            .or_insert_with(|| Progress::new(lab))
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
        self.guest_line = None;
        self.action_done = false;
        self.log.clear();
    }

    pub fn open_selected(&mut self) {
        if self.selected < self.labs.len() {
            self.open = Some(self.selected);
            self.reset_step_state();
        }
    }
    pub fn close(&mut self) {
        self.open = None;
    }

    /// Move `d` steps; returns the lab whose progress changed.
    pub fn go_step(&mut self, d: isize) -> Option<String> {
        let lab = self.lab()?;
        let (id, ids) = (lab.id.clone(), lab.step_ids());
        let at = self.progress_of(&id).step;
        let next = crate::tui::app::step_index(at, d, ids.len());
        if next == at {
            return None;
        }
        self.progress_mut(&id).set_position(next, &ids);
        self.reset_step_state();
        Some(id)
    }

    /// Reveal the next hint; returns the lab whose progress changed.
    pub fn reveal_hint(&mut self) -> Option<String> {
        let (total, step) = self.step().map(|s| (s.hints.len(), s.id.clone()))?;
        let id = self.lab()?.id.clone();
        if self.progress_of(&id).hints < total {
            let ids = self.lab()?.step_ids();
            let at = self.progress_of(&id).step;
            let p = self.progress_mut(&id);
            // Pin the step the hint belongs to, so the file says where the learner is.
            p.set_position(at, &ids);
            p.reveal_hint(&step, total);
            Some(id)
        } else {
            None
        }
    }

    /// A lab job's word on the guest: kept in the lab's progress (saved by the loop) and shown.
    pub fn apply_guest(&mut self, lab: &str, g: LabGuest) {
        let p = self.progress_mut(lab);
        p.snapshots = g.snapshots;
        p.guest_at = g.guest_at;
        self.guest_line = Some(g.line);
        self.unsaved = Some(lab.to_string());
    }

    /// The open step starts from a snapshot and the guest is not known to be there: restoring
    /// it puts the guest where the step starts (the engine decides what is needed).
    pub fn step_has_start_snapshot(&self) -> bool {
        let Some(lab) = self.lab() else {
            return false;
        };
        let (ids, p) = (lab.step_ids(), self.saved(&lab.id));
        matches!(
            p.start_of(&ids, self.progress_of(&lab.id).step),
            Some((_, Some(_)))
        )
    }

    /// Moving to the open step calls for a restore: it has a start snapshot and the guest is
    /// somewhere else.
    pub fn needs_rewind(&self) -> bool {
        let Some(lab) = self.lab() else {
            return false;
        };
        let (ids, p) = (lab.step_ids(), self.saved(&lab.id));
        match p.start_of(&ids, self.progress_of(&lab.id).step) {
            Some((after, Some(_))) => p.guest_at.as_deref() != Some(after),
            _ => false,
        }
    }

    /// What the presenter's one "next" key does on the open step: its action first (once), then
    /// its checks, and once they passed, the next step.
    pub fn present_next(&self, lab: &str) -> PresentNext {
        let p = self.progress_of(lab);
        let step = self.step();
        if p.done.contains(&p.step) && self.checks.iter().all(|c| *c == CheckStatus::Passed) {
            PresentNext::NextStep
        } else if step.is_some_and(|s| s.action.is_some()) && !self.action_done {
            PresentNext::Action
        } else {
            PresentNext::Checks
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
        if all && let Some(id) = self.step().map(|s| s.id.clone()) {
            let lab = self.lab().map(|l| l.id.clone()).unwrap_or_default();
            let p = self.progress_mut(&lab);
            // The learner stays on the step that passed (`n` moves on).
            p.start_step(&id);
            p.record_pass(&id);
            self.unsaved = Some(lab);
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
    // The lab's intro above its first step until that step is done; its finish above the last
    // step once every step has passed.
    let page = if p.done.len() >= lab.steps.len() && !lab.steps.is_empty() {
        lab.finish.as_ref().map(|t| ("lab complete", t))
    } else if p.step == 0 && p.done.is_empty() {
        lab.intro.as_ref().map(|t| ("before you start", t))
    } else {
        None
    };
    let with_heading = |scale: Scale| {
        let mut t = Text::default();
        if let Some((heading, body)) = page {
            t.lines.push(Line::styled(
                heading,
                Style::new().fg(Color::LightGreen).bold(),
            ));
            t.lines.extend(markdown::render(body, scale).lines);
            t.lines.push(Line::raw(""));
        }
        t.lines.push(Line::styled(
            step.title.clone(),
            Style::new().fg(Color::Cyan).bold(),
        ));
        t.lines.push(Line::raw(""));
        if scale == Scale::Presenter {
            t.lines.push(Line::raw(""));
        }
        t.lines.extend(markdown::render(&step.text, scale).lines);
        t
    };
    if app.presenter {
        // The step large on the left; the checklist (and the presenter's notes) and the lab
        // VM's console on the right, so the audience sees the claim and the proof together.
        let cols = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
            .split(area);
        let text = with_heading(Scale::Presenter);
        let block = panel(&title, true).padding(ratatui::widgets::Padding::new(3, 3, 1, 1));
        f.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: false }).block(block),
            cols[0],
        );
        let right = Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)])
            .split(cols[1]);
        let mut lines = vec![key_hint(
            "Space",
            &format!(" {}", present_next_label(v, &lab.id)),
        )];
        lines.push(Line::raw(""));
        lines.extend(check_lines(v, step));
        if let Some(n) = &step.notes {
            lines.push(Line::raw(""));
            lines.push(Line::styled("notes (only you see these)", dim()));
            lines.extend(markdown::render_inline(
                n,
                Style::new().fg(Color::Yellow),
                "",
            ));
        }
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel("checks", false)),
            right[0],
        );
        // While the step's own work runs (a build, an upgrade) its output; else the guest's
        // console once there is a VM.
        let lab_job = app.job.as_ref().is_some_and(|j| {
            matches!(
                j.kind,
                JobKind::LabAction { .. } | JobKind::LabSolve { .. } | JobKind::LabSnippet { .. }
            )
        });
        if app.vm.vm.is_some() && !lab_job {
            app.vm.console.draw(f, right[1], "console", "", false);
        } else {
            v.log.draw(
                f,
                right[1],
                "output",
                "the step's output shows here (the console, once a VM runs)",
                false,
            );
        }
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
    let n = markdown::code_blocks(&step.text).len();
    if n > 0 {
        lines.push(Line::styled(
            if n == 1 {
                "x runs or copies the command of the text".to_string()
            } else {
                format!("x runs or copies one of the {n} commands of the text")
            },
            dim(),
        ));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("checks (c runs them)", dim()));
    lines.extend(check_lines(v, step));
    lines.push(Line::raw(""));
    if step.hints.is_empty() {
        lines.push(Line::styled("no hints for this step", dim()));
    } else {
        for (i, h) in step.hints.iter().take(p.hints).enumerate() {
            lines.extend(markdown::render_inline(
                &format!("hint {}: {h}", i + 1),
                Style::new().fg(Color::LightBlue),
                "",
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

/// The step's checklist: each check with its mark, a failed one with what was seen and the
/// lab's advice; then where the guest is.
fn check_lines(v: &LabsView, step: &StepModel) -> Vec<Line<'static>> {
    let mut lines = vec![];
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
            // What was seen (program output, shown as is), then the lab's advice (markdown).
            let red = Style::new().fg(Color::LightRed);
            let mut parts: Vec<&str> = msg.lines().collect();
            let advice = parts.pop().unwrap_or_default();
            for seen in parts {
                lines.push(Line::styled(format!("    {seen}"), red));
            }
            lines.extend(markdown::render_inline(advice, red, "    "));
        }
    }
    if let Some(g) = &v.guest_line {
        lines.push(Line::styled(
            format!("guest: {g}"),
            Style::new().fg(Color::LightBlue),
        ));
    }
    lines
}

/// What the presenter's Space does next on the open step.
pub fn present_next_label(v: &LabsView, lab: &str) -> &'static str {
    match v.present_next(lab) {
        PresentNext::NextStep => "next step",
        PresentNext::Action => "run the step's action",
        PresentNext::Checks => "check",
    }
}
