//! Deployments: booted / staged / rollback / pinned, version, checksum or digest; a diff of two.

use super::{dim, key_hint, panel};
use crate::tui::app::App;
use ratatui::prelude::*;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};
use std::time::SystemTime;

/// One deployment as the view shows it (from the deploy engine's model).
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRow {
    pub booted: bool,
    pub staged: bool,
    /// ostree's "pending": the next boot, already finalized (not staged).
    pub pending: bool,
    pub rollback: bool,
    pub pinned: bool,
    pub version: String,
    /// What identifies the content: image digest (bootc) or OSTree checksum.
    pub id: String,
    /// The OSTree commit (what `ostree diff` compares).
    pub checksum: String,
    /// What it was deployed from (`ostree ref` or image reference).
    pub origin: String,
    /// composefs in a few words (`mounted · verity off · 48d59975`, `off`); empty
    /// when it was not read.
    pub composefs: String,
}

impl DeploymentRow {
    pub fn role(&self) -> &'static str {
        if self.booted {
            "booted"
        } else if self.staged {
            "staged"
        } else if self.pending {
            "pending"
        } else if self.rollback {
            "rollback"
        } else {
            "other"
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiffView {
    pub a: String,
    pub b: String,
    /// `ostree diff` lines (`A /usr/bin/x`, `M /etc/motd`…).
    pub files: Vec<String>,
    /// Package changes (`+ pkg 1.2`, `- pkg 1.0`).
    pub packages: Vec<String>,
    /// Whether the composefs digests differ, in one line.
    pub composefs: String,
}

#[derive(Debug, Clone, Default)]
pub struct DeployView {
    pub deployments: Vec<DeploymentRow>,
    pub selected: usize,
    pub marked: Option<usize>,
    pub diff: Option<DiffView>,
    pub refreshed: Option<SystemTime>,
}

impl DeployView {
    pub fn set(&mut self, d: Vec<DeploymentRow>, at: SystemTime) {
        self.deployments = d;
        self.selected = self.selected.min(self.deployments.len().saturating_sub(1));
        self.marked = None;
        self.refreshed = Some(at);
    }
    pub fn move_selection(&mut self, d: isize) {
        self.selected = crate::tui::app::step_index(self.selected, d, self.deployments.len());
    }
    pub fn toggle_mark(&mut self) {
        if self.deployments.is_empty() {
            return;
        }
        self.marked = if self.marked == Some(self.selected) {
            None
        } else {
            Some(self.selected)
        };
    }
    /// The two deployments to diff: the marked one and the selected one.
    pub fn diff_pair(&self) -> Option<(&DeploymentRow, &DeploymentRow)> {
        let m = self.marked?;
        if m == self.selected {
            return None;
        }
        Some((
            self.deployments.get(m)?,
            self.deployments.get(self.selected)?,
        ))
    }
}

pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let v = &app.deploy;
    if v.deployments.is_empty() {
        let mut lines = vec![Line::styled("no deployments read yet", Style::new().bold())];
        lines.push(Line::raw(""));
        if app.vm.vm.is_none() {
            lines.push(Line::raw(
                "no VM running — boot one in the VM view (2, then b), then come back here",
            ));
        }
        lines.push(key_hint(
            "r",
            " reads them from the running guest (ostree admin status / bootc status)",
        ));
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(panel("deployments", true)),
            area,
        );
        return;
    }
    let rows = Layout::vertical([
        Constraint::Length(v.deployments.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .split(area);
    let table_rows: Vec<Row> = v
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let role_style = match d.role() {
                "booted" => Style::new().fg(Color::LightGreen).bold(),
                "staged" | "pending" => Style::new().fg(Color::Yellow).bold(),
                "rollback" => Style::new().fg(Color::LightBlue),
                _ => Style::new(),
            };
            let mark = if v.marked == Some(i) { "◆" } else { " " };
            Row::new(vec![
                Cell::from(mark),
                Cell::from(Span::styled(d.role(), role_style)),
                Cell::from(if d.pinned { "pinned" } else { "" }),
                Cell::from(d.version.clone()),
                Cell::from(short(&d.id)),
                Cell::from(if d.composefs.is_empty() {
                    "-".to_string()
                } else {
                    d.composefs.clone()
                }),
                Cell::from(d.origin.clone()),
            ])
        })
        .collect();
    let title = match v.refreshed {
        Some(_) => "deployments (r refreshes)".to_string(),
        None => "deployments".to_string(),
    };
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(1),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(20),
            Constraint::Length(31),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec![
            "",
            "role",
            "pinned",
            "version",
            "checksum/digest",
            "composefs",
            "origin",
        ])
        .style(dim()),
    )
    .row_highlight_style(Style::new().bg(Color::DarkGray))
    .block(panel(&title, true));
    let mut st = TableState::default().with_selected(Some(v.selected));
    f.render_stateful_widget(table, rows[0], &mut st);

    let lines = match &v.diff {
        None => vec![Line::styled(
            "Space marks a deployment; select another and press d to diff files and packages",
            dim(),
        )],
        Some(d) => {
            let mut l = vec![Line::styled(
                format!("{} → {}", short(&d.a), short(&d.b)),
                Style::new().bold(),
            )];
            l.push(Line::styled(format!("files ({})", d.files.len()), dim()));
            l.extend(d.files.iter().map(|s| diff_line(s)));
            l.push(Line::styled(
                format!("packages ({})", d.packages.len()),
                dim(),
            ));
            l.extend(d.packages.iter().map(|s| diff_line(s)));
            if !d.composefs.is_empty() {
                l.push(Line::styled(d.composefs.clone(), dim()));
            }
            l
        }
    };
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(panel("diff", false)),
        rows[1],
    );
}

fn diff_line(s: &str) -> Line<'static> {
    let st = match s.chars().next() {
        Some('A' | '+') => Style::new().fg(Color::LightGreen),
        Some('D' | '-') => Style::new().fg(Color::LightRed),
        Some('M') => Style::new().fg(Color::Yellow),
        _ => Style::new(),
    };
    Line::styled(s.to_string(), st)
}

/// First 12 characters of a checksum or the digest after `sha256:`.
pub fn short(id: &str) -> String {
    let (prefix, hex) = match id.split_once(':') {
        Some((p, h)) => (format!("{p}:"), h),
        None => (String::new(), id),
    };
    format!("{prefix}{}", hex.chars().take(12).collect::<String>())
}
