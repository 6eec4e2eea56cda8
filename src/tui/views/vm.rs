//! VM: state, accelerator (and why), a live console pane, QMP controls, a shell in the guest.

use super::{dim, key_hint, panel};
use crate::tui::app::App;
use crate::tui::logpane::LogPane;
use ratatui::prelude::*;
use ratatui::widgets::{Paragraph, Wrap};

/// What the VM view shows about one VM (filled from the VM engine's state and events).
#[derive(Debug, Clone, PartialEq)]
pub struct VmInfo {
    pub name: String,
    pub recipe: String,
    /// `starting`, `running`, `paused`, `stopped`…
    pub state: String,
    /// `KVM` or `TCG`.
    pub accel: String,
    /// Why that accelerator (e.g. "KVM guest never left early boot (nested PVM): TCG").
    pub accel_reason: String,
    /// `user/password` when the recipe has a known console password.
    pub known_password: Option<String>,
    /// How to reach a shell: a human-readable hint (e.g. `ssh -p 2222 root@127.0.0.1`).
    pub access: Vec<String>,
}

impl VmInfo {
    pub fn is_running(&self) -> bool {
        !matches!(self.state.as_str(), "stopped" | "exited" | "crashed")
    }
    #[cfg(test)]
    pub fn running_for_test(name: &str) -> VmInfo {
        VmInfo {
            name: name.into(),
            recipe: "debian-minimal".into(),
            state: "running".into(),
            accel: "TCG".into(),
            accel_reason: "test".into(),
            known_password: None,
            access: vec![],
        }
    }
}

#[derive(Debug, Clone)]
pub struct VmView {
    pub vm: Option<VmInfo>,
    /// The host's accelerator verdict from the last KVM probe: (KVM or TCG, why).
    pub host_accel: Option<(String, String)>,
    pub console: LogPane,
    /// The boot-phase line of the VM's current (or last) boot: the detail of its booting,
    /// rebooting and ready states ("initramfs since 9.1 s (firmware 0.9 s, …)").
    pub boot_line: Option<String>,
}

impl Default for VmView {
    fn default() -> Self {
        VmView {
            vm: None,
            host_accel: None,
            console: LogPane::console(5000),
            boot_line: None,
        }
    }
}

impl VmView {
    /// A `VmState` event from the engine about VM `vm`.
    pub fn on_state(&mut self, vm: &str, state: &str, detail: &str) {
        // Also before the VM's record arrives: a first boot is where the line matters most.
        let ours = self.vm.as_ref().is_none_or(|v| v.name == vm);
        if ours && matches!(state, "booting" | "rebooting" | "ready") && !detail.is_empty() {
            self.boot_line = Some(detail.to_string());
        }
        if let Some(v) = &mut self.vm
            && v.name == vm
        {
            if state == "accelerator" {
                // detail: "TCG: why" — the accelerator, then the reason it was chosen.
                let (accel, why) = detail.split_once(':').unwrap_or((detail, ""));
                v.accel = accel.trim().to_string();
                v.accel_reason = why.trim().to_string();
            } else {
                v.state = state.to_string();
            }
        }
    }
}

pub fn draw(app: &App, f: &mut Frame, area: Rect) {
    let v = &app.vm;
    if app.presenter {
        v.console.draw(f, area, "console", "no console yet", true);
        return;
    }
    let rows = Layout::vertical([Constraint::Length(8), Constraint::Min(5)]).split(area);
    let block = panel("virtual machine", false);
    let text = match &v.vm {
        None => {
            let recipe = app
                .recipes
                .selected()
                .map(|r| r.name().to_string())
                .unwrap_or_default();
            let accel = match &v.host_accel {
                Some((a, why)) => Line::from(vec![
                    Span::styled(format!("{:<12}", "accelerator"), dim()),
                    Span::styled(a.clone(), Style::new().bold()),
                    Span::raw(format!("  {why}")),
                ]),
                None => Line::styled(
                    "accelerator: not probed yet (the first boot probes KVM; so does `bootlab doctor`)",
                    dim(),
                ),
            };
            let booting = match app.job.as_ref().map(|j| &j.kind) {
                Some(crate::tui::app::JobKind::Boot { recipe, .. }) => Some(recipe.clone()),
                _ => None,
            };
            if let Some(r) = booting {
                vec![
                    Line::styled(
                        format!("booting {r}…"),
                        Style::new().bold().fg(Color::Yellow),
                    ),
                    Line::from(vec![
                        Span::styled(format!("{:<12}", "boot"), dim()),
                        Span::raw(
                            v.boot_line
                                .clone()
                                .unwrap_or_else(|| "starting QEMU".into()),
                        ),
                    ]),
                    Line::raw("the console below shows the boot; Ctrl-C cancels it"),
                    accel,
                ]
            } else {
                vec![
                    Line::styled("no VM running", Style::new().bold()),
                    Line::raw(""),
                    key_hint(
                        "b",
                        &format!(" boots {recipe} (the recipe and version selected in Recipes)"),
                    ),
                    accel,
                ]
            }
        }
        Some(vm) => {
            let state_style = match vm.state.as_str() {
                "running" | "ready" => Style::new().fg(Color::LightGreen).bold(),
                "paused" => Style::new().fg(Color::Yellow).bold(),
                _ => Style::new().fg(Color::LightRed).bold(),
            };
            let mut l = vec![
                Line::from(vec![
                    Span::styled(format!("{:<12}", "name"), dim()),
                    Span::raw(format!("{}  ", vm.name)),
                    Span::styled(format!("({})", vm.recipe), dim()),
                ]),
                Line::from(vec![
                    Span::styled(format!("{:<12}", "state"), dim()),
                    Span::styled(vm.state.clone(), state_style),
                    Span::raw(
                        v.boot_line
                            .as_ref()
                            .map(|b| format!("  {b}"))
                            .unwrap_or_default(),
                    ),
                ]),
                Line::from(vec![
                    Span::styled(format!("{:<12}", "accelerator"), dim()),
                    Span::styled(vm.accel.clone(), Style::new().bold()),
                    Span::raw(format!("  {}", vm.accel_reason)),
                ]),
            ];
            if let Some(pw) = &vm.known_password {
                l.push(Line::styled(
                    format!(" ⚠ known password {pw} — lab VM only "),
                    Style::new().fg(Color::Black).bg(Color::LightRed).bold(),
                ));
            }
            for a in &vm.access {
                l.push(Line::styled(a.clone(), dim()));
            }
            l
        }
    };
    f.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(block),
        rows[0],
    );
    v.console.draw(
        f,
        rows[1],
        "console",
        "no console yet — the serial console streams here once a VM boots",
        true,
    );
}
