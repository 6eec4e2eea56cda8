//! Recipes: the list, a recipe's details, and its build (gauge, stage timings, log pane).

use super::{dim, fmt_secs, panel};
use crate::recipe::{DEFAULT_RECIPE, Recipe};
use crate::tui::app::App;
use crate::tui::logpane::LogPane;
use ratatui::prelude::*;
use ratatui::widgets::{Gauge, List, ListItem, ListState, Paragraph, Wrap};

#[derive(Debug, Clone, PartialEq)]
pub struct StageRow {
    pub stage: String,
    /// `None` while the stage runs.
    pub secs: Option<f64>,
    pub cached: bool,
}

/// The last (or running) build, from the engine's events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildState {
    pub target: Option<String>,
    pub gauge: Option<(u64, u64, String)>,
    pub stages: Vec<StageRow>,
    pub outcome: Option<Result<String, String>>,
    /// The lint of the built image (each finding's why is in the build log).
    pub lint: Option<crate::recipe::lint::LintReport>,
}

impl BuildState {
    pub fn stage_started(&mut self, stage: &str) {
        self.stages.push(StageRow {
            stage: stage.into(),
            secs: None,
            cached: false,
        });
    }
    pub fn stage_finished(&mut self, stage: &str, secs: f64, cached: bool) {
        match self
            .stages
            .iter_mut()
            .rev()
            .find(|r| r.stage == stage && r.secs.is_none())
        {
            Some(r) => {
                r.secs = Some(secs);
                r.cached = cached;
            }
            None => self.stages.push(StageRow {
                stage: stage.into(),
                secs: Some(secs),
                cached,
            }),
        }
    }
}

pub struct RecipesView {
    pub recipes: Vec<Recipe>,
    pub load_error: Option<String>,
    pub selected: usize,
    /// Index of the version `b` builds, for the selected recipe.
    pub version: usize,
    pub build: BuildState,
    pub log: LogPane,
}

impl RecipesView {
    pub fn new(recipes: Result<Vec<Recipe>, String>) -> RecipesView {
        let (recipes, load_error) = match recipes {
            Ok(r) => (r, None),
            Err(e) => (vec![], Some(e)),
        };
        let selected = recipes
            .iter()
            .position(|r| r.name() == DEFAULT_RECIPE)
            .unwrap_or(0);
        let mut v = RecipesView {
            recipes,
            load_error,
            selected,
            version: 0,
            build: BuildState::default(),
            log: LogPane::default(),
        };
        v.reset_version();
        v
    }

    pub fn selected(&self) -> Option<&Recipe> {
        self.recipes.get(self.selected)
    }

    fn reset_version(&mut self) {
        self.version = self
            .selected()
            .and_then(|r| {
                let d = &r.default_version().id;
                r.file.versions.iter().position(|v| &v.id == d)
            })
            .unwrap_or(0);
    }

    /// Select the recipe named `name`, if there is one.
    pub fn select(&mut self, name: &str) {
        if let Some(i) = self.recipes.iter().position(|r| r.name() == name) {
            self.selected = i;
            self.reset_version();
        }
    }

    pub fn move_selection(&mut self, d: isize) {
        let n = crate::tui::app::step_index(self.selected, d, self.recipes.len());
        if n != self.selected {
            self.selected = n;
            self.reset_version();
        }
    }

    pub fn next_version(&mut self) {
        if let Some(r) = self.selected() {
            self.version = (self.version + 1) % r.file.versions.len();
        }
    }

    /// (recipe, version) that `b` builds.
    pub fn selected_target(&self) -> Option<(String, String)> {
        let r = self.selected()?;
        let v = r.file.versions.get(self.version)?;
        Some((r.name().to_string(), v.id.clone()))
    }

    pub fn begin_build(&mut self, label: &str) {
        self.build = BuildState {
            target: Some(label.to_string()),
            ..Default::default()
        };
        self.log.clear();
    }
}

pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let v = &app.recipes;
    if app.presenter {
        v.log.draw(
            f,
            area,
            "build log",
            "no build yet — press b to build",
            true,
        );
        return;
    }
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(15),
        Constraint::Min(6),
    ])
    .split(area);
    draw_banner(app, f, rows[0]);
    let top = Layout::horizontal([Constraint::Length(30), Constraint::Min(40)]).split(rows[1]);
    draw_list(v, f, top[0]);
    draw_details(v, f, top[1]);
    let bottom = Layout::horizontal([Constraint::Length(30), Constraint::Min(40)]).split(rows[2]);
    draw_build(v, f, bottom[0]);
    v.log.draw(
        f,
        bottom[1],
        "build log",
        "no build yet — press b to build the selected recipe",
        true,
    );
}

fn draw_banner(app: &App, f: &mut Frame, area: Rect) {
    let lab = app.labs.labs.first().map(|l| l.title.clone());
    let mut spans = vec![Span::styled(
        " New here? ",
        Style::new().fg(Color::Black).bg(Color::Cyan),
    )];
    match lab {
        Some(t) => spans.push(Span::raw(format!(
            " Start with the lab \"{t}\": press 5, then Enter."
        ))),
        None => spans.push(Span::raw(
            " Press b to build the selected recipe, then boot it in the VM view (2).",
        )),
    }
    f.render_widget(Line::from(spans), area);
}

fn draw_list(v: &RecipesView, f: &mut Frame, area: Rect) {
    let block = panel("recipes", true);
    if let Some(e) = &v.load_error {
        f.render_widget(
            Paragraph::new(format!("cannot load recipes:\n{e}"))
                .style(Style::new().fg(Color::LightRed))
                .wrap(Wrap { trim: false })
                .block(block),
            area,
        );
        return;
    }
    if v.recipes.is_empty() {
        f.render_widget(
            Paragraph::new("no recipes found in assets/recipes").block(block),
            area,
        );
        return;
    }
    let items: Vec<ListItem> = v
        .recipes
        .iter()
        .map(|r| {
            let mut name = vec![Span::raw(r.name().to_string())];
            if r.origin == crate::recipe::Origin::Yours {
                name.push(Span::styled("  yours", Style::new().fg(Color::Green)));
            }
            ListItem::new(vec![
                Line::from(name),
                Line::styled(format!("  {}", r.file.family), dim()),
            ])
        })
        .collect();
    let list = List::new(items)
        .block(block)
        .highlight_symbol("▶ ")
        .highlight_style(Style::new().bold().fg(Color::Cyan));
    let mut st = ListState::default().with_selected(Some(v.selected));
    f.render_stateful_widget(list, area, &mut st);
}

fn draw_details(v: &RecipesView, f: &mut Frame, area: Rect) {
    let Some(r) = v.selected() else {
        f.render_widget(panel("details", false), area);
        return;
    };
    let label = |s: &str| Span::styled(format!("{s:<8}"), dim());
    let mut lines = vec![
        Line::styled(r.file.title.clone(), Style::new().bold()),
        Line::raw(r.file.summary.clone()),
        Line::from(vec![
            label("family"),
            Span::raw(r.file.family.to_string()),
            Span::styled("   base ", dim()),
            Span::raw(r.file.base.clone()),
        ]),
    ];
    let mut guest = vec![label("guest")];
    let mut offers = vec![];
    if r.file.guest.agent {
        offers.push("guest agent");
    }
    if r.file.guest.ssh {
        offers.push("ssh (127.0.0.1)");
    }
    guest.push(Span::raw(if offers.is_empty() {
        "console only".to_string()
    } else {
        offers.join(", ")
    }));
    if let Some(l) = &r.file.guest.known_password {
        guest.push(Span::raw("  "));
        guest.push(Span::styled(
            format!(
                " ⚠ known password {}/{} — lab VMs only ",
                l.user, l.password
            ),
            Style::new().fg(Color::Black).bg(Color::LightRed).bold(),
        ));
    }
    lines.push(Line::from(guest));
    lines.push(Line::styled("versions (v picks the one b builds)", dim()));
    for (i, ver) in r.file.versions.iter().enumerate() {
        let chosen = i == v.version;
        let mark = if chosen { "▶ " } else { "  " };
        let default = if ver.id == r.default_version().id {
            " (default)"
        } else {
            ""
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!("{mark}{}{default}", ver.id),
                if chosen {
                    Style::new().fg(Color::Cyan).bold()
                } else {
                    Style::new()
                },
            ),
            Span::raw(format!("  {}", ver.changes)),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(panel(&format!("{} — details", r.name()), false)),
        area,
    );
}

fn draw_build(v: &RecipesView, f: &mut Frame, area: Rect) {
    let b = &v.build;
    let block = panel("build", false);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(target) = &b.target else {
        let (recipe, version) = v.selected_target().unwrap_or_default();
        f.render_widget(
            Paragraph::new(vec![
                Line::styled("not built in this session", dim()),
                Line::raw(""),
                super::key_hint("b", &format!(" builds {recipe}:{version}")),
            ])
            .wrap(Wrap { trim: false }),
            inner,
        );
        return;
    };
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .split(inner);
    f.render_widget(Line::raw(target.clone()), rows[0]);
    let (ratio, label) = match (&b.gauge, &b.outcome) {
        (_, Some(Ok(_))) => (1.0, "done".to_string()),
        (Some((d, t, _)), Some(Err(e))) if *t > 0 => (
            (*d as f64 / *t as f64).clamp(0.0, 1.0),
            format!("stopped: {e}"),
        ),
        (_, Some(Err(e))) => (0.0, format!("stopped: {e}")),
        (gauge, _) => match gauge {
            Some((d, t, l)) if *t > 0 => (
                (*d as f64 / *t as f64).clamp(0.0, 1.0),
                format!("{d}/{t} {l}"),
            ),
            _ => (0.0, "waiting for the first step".to_string()),
        },
    };
    f.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(label)
            .gauge_style(Style::new().fg(Color::Cyan).bg(Color::Black)),
        rows[1],
    );
    // The lint first: after a build it is what the learner should act on.
    let mut lines: Vec<Line> = b.lint.iter().map(lint_line).collect();
    lines.extend(b.stages.iter().map(|s| {
        let t = match s.secs {
            Some(x) => fmt_secs(x),
            None => "…".into(),
        };
        let c = if s.cached { " cached" } else { "" };
        Line::raw(format!("{:<14}{:>7}{c}", s.stage, t))
    }));
    let total: f64 = b.stages.iter().filter_map(|s| s.secs).sum();
    if !b.stages.is_empty() {
        lines.push(Line::styled(
            format!("{:<14}{:>7}", "total", fmt_secs(total)),
            Style::new().bold(),
        ));
    }
    match &b.outcome {
        Some(Ok(s)) => lines.push(Line::styled(
            format!("✔ built {s}"),
            Style::new().fg(Color::LightGreen),
        )),
        Some(Err(e)) => lines.push(Line::styled(
            format!("✘ {e}"),
            Style::new().fg(Color::LightRed),
        )),
        None => {}
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), rows[2]);
}

/// The lint after a build, in one wrapped line (the why of each finding is in the build log).
pub fn lint_line(l: &crate::recipe::lint::LintReport) -> Line<'static> {
    use crate::recipe::lint::Level;
    if l.findings.is_empty() {
        return Line::styled("lint ✔ no findings", Style::new().fg(Color::LightGreen));
    }
    let mut spans = vec![Span::styled("lint (why: log)", Style::new().bold())];
    for f in &l.findings {
        let (mark, color) = match f.level {
            Level::Fatal => ("✘", Color::LightRed),
            Level::Warning => ("⚠", Color::Yellow),
        };
        spans.push(Span::styled(
            format!(" {mark}{}", f.rule),
            Style::new().fg(color),
        ));
    }
    Line::from(spans)
}
