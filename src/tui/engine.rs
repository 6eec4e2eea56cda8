//! The one place the TUI calls the engine: each [`JobKind`] becomes an engine call that reports
//! events through an [`Emitter`] and stops when its token is cancelled. The TUI never
//! reimplements engine work; where an engine API is not in this build yet, the job fails with
//! a message that says so (no fake data).

use super::action::DrillKind;
use super::app::{App, JobKind, JobOutput};
use super::views::deployments::{DeploymentRow, DiffView};
use super::views::drills::Verdict;
use super::views::labs::LabGuest;
use super::views::vm::VmInfo;
use crate::drill::vm_ops::VmGuest;
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::recipe::Family;
use crate::recipe::Recipe;
use crate::tui::action::VmControl;
use crate::vm::{VmClient, VmRecord};
use crate::workflow::{self, BootPlan, Target};
use std::time::Duration;

/// What a job needs from the app, copied when it starts (jobs never borrow the app).
#[derive(Debug, Clone)]
pub struct JobInput {
    pub kind: JobKind,
    pub recipe: Option<Recipe>,
    /// The version selected in Recipes (what Boot boots).
    pub version: Option<String>,
    /// OSTree commits to diff: (marked, selected).
    pub diff: Option<(String, String)>,
    pub vm: Option<String>,
    /// For a switch drill: the recipe selected in Recipes.
    pub switch_to: Option<Recipe>,
    /// The open lab step (for lab jobs) and the lab's default recipe.
    pub lab_step: Option<(crate::lab::Step, Option<String>)>,
    /// The open lab itself: the lab runner works on it.
    pub lab: Option<crate::lab::Lab>,
    /// The VM the open lab ran in before (its saved progress), in this TUI or `bootlab lab run`.
    pub lab_vm: Option<String>,
    /// The open lab's progress (its step snapshots and where the guest is).
    pub lab_progress: Option<crate::lab::Progress>,
}

impl JobInput {
    pub fn from_app(app: &App, kind: JobKind) -> JobInput {
        let recipe = match &kind {
            JobKind::Build { recipe, .. } | JobKind::Boot { recipe, .. } => app
                .recipes
                .recipes
                .iter()
                .find(|r| r.name() == recipe)
                .cloned(),
            _ => app.recipes.selected().cloned(),
        };
        JobInput {
            recipe,
            version: app.recipes.selected_target().map(|(_, v)| v),
            diff: app
                .deploy
                .diff_pair()
                .map(|(a, b)| (a.checksum.clone(), b.checksum.clone())),
            vm: app.vm.vm.as_ref().map(|v| v.name.clone()),
            switch_to: app.recipes.selected().cloned(),
            lab_step: app.labs.source().and_then(|l| {
                let (_, i) = app.labs.current()?;
                Some((l.steps.get(i)?.clone(), l.requires.recipe.clone()))
            }),
            lab: app.labs.source().cloned(),
            lab_vm: app
                .labs
                .lab()
                .and_then(|l| app.labs.progress.get(&l.id))
                .and_then(|p| p.vm.clone()),
            lab_progress: app.labs.lab().map(|l| app.labs.saved(&l.id)),
            kind,
        }
    }
}

/// Run one job to its end. Errors are learner-facing sentences.
pub async fn run(
    input: JobInput,
    emitter: Emitter,
    cancel: CancellationToken,
    paths: Paths,
) -> Result<JobOutput, String> {
    let r = match &input.kind {
        JobKind::Build { version, .. } => build(&paths, &input, version, &emitter, &cancel).await,
        JobKind::Boot { firmware, .. } => boot(&paths, &input, *firmware, &emitter, &cancel).await,
        JobKind::VmControl(c) => control(&paths, &input, *c).await,
        JobKind::Refresh => refresh(&paths, &input, &emitter).await,
        JobKind::Diff => diff(&paths, &input, &emitter).await,
        JobKind::Drill(k) => drill(&paths, &input, *k, &emitter, &cancel).await,
        JobKind::LabAction { .. } => lab_action(&paths, &input, &emitter, &cancel).await,
        JobKind::LabChecks { .. } => lab_checks(&paths, &input, false, &emitter, &cancel).await,
        JobKind::LabSolve { .. } => lab_checks(&paths, &input, true, &emitter, &cancel).await,
        JobKind::LabSnippet { code, .. } => {
            lab_snippet(&paths, &input, code, &emitter, &cancel).await
        }
        JobKind::LabRewind { step, .. } => {
            lab_rewind(&paths, &input, *step, &emitter, &cancel).await
        }
    };
    r.map_err(|e| format!("{e:#}"))
}

/// The engine's lab runner for the open lab, on the lab's VM: the one its progress names, else
/// the one naming rule's (`lab-<id>`), exactly as `bootlab lab run` picks it.
pub fn lab_runner(
    paths: &Paths,
    input: &JobInput,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<crate::lab::runner::LabRunner> {
    let lab = input
        .lab
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no lab is open"))?;
    Ok(crate::lab::runner::LabRunner::new(
        lab,
        input.lab_vm.clone(),
        paths.clone(),
        ev.clone(),
        cancel.clone(),
    ))
}

/// Run the open step's checks (after its solution, with `solve`) through the lab runner, each
/// with its retry policy; the checklist shows the learner-facing message of each failure.
async fn lab_checks(
    paths: &Paths,
    input: &JobInput,
    solve: bool,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<JobOutput> {
    use super::views::labs::CheckStatus;
    let (step, _) = input
        .lab_step
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no lab step is open"))?;
    let mut runner = lab_runner(paths, input, ev, cancel)?;
    if solve {
        for a in runner.lab.solve_plan(&step) {
            ev.note("lab", format!("solution: {}", a.describe()));
            runner.run_action(&a, "lab").await?;
        }
    }
    let mut out = Vec::new();
    for c in &step.checks {
        let r = crate::lab::runner::run_check(c, &mut runner, cancel, |n, why| {
            ev.note("lab", format!("{}: attempt {n}: {why}", c.title))
        })
        .await;
        out.push(if r.passed {
            CheckStatus::Passed
        } else {
            CheckStatus::Failed(r.message.unwrap_or_default())
        });
    }
    // Passed: the guest as this step leaves it is where the next one starts, as in `lab run`.
    let mut guest = None;
    if !out.is_empty() && out.iter().all(|c| *c == CheckStatus::Passed) {
        let mut p = lab_progress(input, &runner);
        let line = match runner.snapshot_step(&step.id, &mut p).await {
            Ok(Some(s)) => format!(
                "snapshot {} saved: going back to the next step restores it",
                s.tag
            ),
            Ok(None) => "no VM running: no snapshot of this step".to_string(),
            Err(e) => format!("no snapshot of this step: {e:#}"),
        };
        guest = Some(LabGuest::of(&p, line));
    }
    Ok(JobOutput::Checks(out, guest))
}

/// The open lab's progress as the job started (fresh when the lab was never started).
fn lab_progress(input: &JobInput, runner: &crate::lab::LabRunner) -> crate::lab::Progress {
    input
        .lab_progress
        .clone()
        .unwrap_or_else(|| crate::lab::Progress::new(&runner.lab.id))
}

/// One of the step's code blocks in the lab's guest: shown first, its output in the lab's log,
/// its exit status the summary (a command the text expects to fail, like `touch /usr/x`, is no
/// job failure).
async fn lab_snippet(
    paths: &Paths,
    input: &JobInput,
    code: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<JobOutput> {
    let mut runner = lab_runner(paths, input, ev, cancel)?;
    let c = runner.run_in_guest("lab", code).await?;
    Ok(JobOutput::Done(format!(
        "the command exited {} in the guest",
        c.exit
    )))
}

/// Put the lab's guest where step `step` starts, from the snapshot taken when the step before
/// it passed: loaded into the running VM, or the stopped VM started from it (not while another
/// lab's VM runs: one lab VM at a time).
async fn lab_rewind(
    paths: &Paths,
    input: &JobInput,
    step: usize,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<JobOutput> {
    let mut runner = lab_runner(paths, input, ev, cancel)?;
    let mut p = lab_progress(input, &runner);
    let vms = crate::vm::lifecycle::list(paths);
    if let Some(other) = other_lab_vm_running(
        vms.iter()
            .map(|r| (r.name.as_str(), r.state != crate::vm::VmState::Stopped)),
        &runner.vm,
    ) && !vms
        .iter()
        .any(|r| r.name == runner.vm && r.state != crate::vm::VmState::Stopped)
    {
        let line = format!(
            "VM {other} of another lab is running: power it off to have this lab's guest restored"
        );
        return Ok(JobOutput::Rewound(LabGuest::of(&p, line), None));
    }
    let r = runner.rewind_to(step, &mut p).await?;
    ev.note("lab", r.describe());
    let vm = match r {
        crate::lab::Rewind::Restored { .. } => {
            VmRecord::load(paths, &runner.vm).ok().map(|r| vm_info(&r))
        }
        _ => None,
    };
    Ok(JobOutput::Rewound(LabGuest::of(&p, r.describe()), vm))
}

/// A step's action, run by the lab runner exactly as `bootlab lab run` runs it (same image,
/// disk and VM). A boot hands the VM to the VM view.
async fn lab_action(
    paths: &Paths,
    input: &JobInput,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<JobOutput> {
    let (step, _) = input
        .lab_step
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no lab step is open"))?;
    let mut runner = lab_runner(paths, input, ev, cancel)?;
    let action = runner.lab.action_of(&step);
    ev.note("lab", format!("action: {}", action.describe()));
    if action == crate::lab::Action::None {
        return Ok(JobOutput::Done("nothing to run".into()));
    }
    if let crate::lab::Action::Boot { .. } = action
        && let Some(other) = other_lab_vm_running(
            crate::vm::lifecycle::list(paths)
                .iter()
                .map(|r| (r.name.as_str(), r.state != crate::vm::VmState::Stopped)),
            &runner.vm,
        )
    {
        anyhow::bail!(
            "VM {other} of another lab is still running. Lab VMs run one at a time here: power it off first \
             (VM view: 2, then o; or `bootlab vm down {other}`), then press Enter again. Its lab keeps \
             your progress; reopening that lab boots its VM again."
        );
    }
    runner.run_action(&action, "lab").await?;
    if let crate::lab::Action::Boot { .. } = action {
        return Ok(JobOutput::Vm(
            VmRecord::load(paths, &runner.vm).ok().map(|r| vm_info(&r)),
        ));
    }
    Ok(JobOutput::Done(action.describe()))
}

/// A lab VM other than `own` that is not stopped (`(name, running)` pairs): a lab's boot step
/// waits for it to be powered off.
fn other_lab_vm_running<'a>(
    vms: impl IntoIterator<Item = (&'a str, bool)>,
    own: &str,
) -> Option<String> {
    let prefix = workflow::vm_name(workflow::VmFor::Lab(""));
    vms.into_iter()
        .find(|(name, running)| *running && *name != own && name.starts_with(&prefix))
        .map(|(name, _)| name.to_string())
}

fn recipe_of(input: &JobInput) -> anyhow::Result<&Recipe> {
    input
        .recipe
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no recipe selected"))
}

/// Build the image, commit it, and make its golden disk: after this, Boot can boot it.
async fn build(
    paths: &Paths,
    input: &JobInput,
    version: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<JobOutput> {
    let t = Target::new(recipe_of(input)?, Some(version))?;
    let d = workflow::ensure_disk(paths, &t, ev, cancel).await?.disk;
    let summary = format!(
        "{} · commit {} · disk {}",
        t.recipe.image_tag(&t.version.id),
        &d.commit[..d.commit.len().min(12)],
        d.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    // The lint teaches; it never fails a build that worked (its error goes to the log).
    let lint = async {
        let podman = crate::tools::podman::Podman::probe(paths, ev, cancel).await?;
        crate::recipe::lint::lint(&podman, &t.recipe, &t.version, ev, cancel).await
    }
    .await;
    let lint = match lint {
        Ok(r) => {
            for f in &r.findings {
                ev.note("lint", format!("{:?} {}: {}", f.level, f.rule, f.message));
                for d in &f.details {
                    ev.note("lint", format!("    {d}"));
                }
                ev.note("lint", format!("  why: {}", f.why));
            }
            Some(r)
        }
        Err(e) => {
            ev.note("lint", format!("the lint could not run: {e:#}"));
            None
        }
    };
    Ok(JobOutput::Built { summary, lint })
}

/// The name the TUI gives a recipe's VM (the engine's one naming rule).
pub fn vm_name(recipe: &str) -> String {
    workflow::vm_name(workflow::VmFor::Recipe(recipe))
}

/// Boot the selected recipe version: its disk is built when missing (the build shows in the
/// log, as `b` shows it), then a cold boot, kept after it stops so a power-cut drill can boot
/// the same disk again.
async fn boot(
    paths: &Paths,
    input: &JobInput,
    firmware: crate::tools::qemu::Firmware,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<JobOutput> {
    let recipe = recipe_of(input)?;
    let t = Target::new(recipe, input.version.as_deref())?;
    let mut plan = BootPlan::new(t, vm_name(recipe.name()));
    plan.up.keep = true;
    plan.up.firmware = firmware;
    let rec = workflow::boot(paths, plan, ev, cancel).await?;
    Ok(JobOutput::Vm(Some(vm_info(&rec))))
}

async fn control(paths: &Paths, input: &JobInput, c: VmControl) -> anyhow::Result<JobOutput> {
    let name = input
        .vm
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no VM running"))?;
    let client = VmClient::connect(paths, name).await?;
    match c {
        VmControl::Pause => client.pause().await?,
        VmControl::Resume => client.resume().await?,
        VmControl::Reset => client.reset().await?,
        VmControl::PowerDown => {
            client.powerdown(Duration::from_secs(120)).await?;
        }
        VmControl::PowerCut => {
            client.powercut().await?;
        }
    }
    Ok(JobOutput::Vm(
        VmRecord::load(paths, name).ok().map(|r| vm_info(&r)),
    ))
}

fn vm_of(input: &JobInput) -> anyhow::Result<&str> {
    input
        .vm
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no VM running — boot one in the VM view (2, then b)"))
}

/// Read the live deployments of the running guest (`ostree admin status`, `bootc status`).
async fn refresh(paths: &Paths, input: &JobInput, ev: &Emitter) -> anyhow::Result<JobOutput> {
    let name = vm_of(input)?;
    let (mut guest, recipe) = VmGuest::connect(paths, name, ev).await?;
    let family = recipe
        .as_ref()
        .map(|r| r.file.family)
        .unwrap_or(Family::DebianOstree);
    let live = crate::deploy::live::read(&mut guest, family).await?;
    let status = live
        .best()
        .ok_or_else(|| anyhow::anyhow!("the guest reported no deployments"))?;
    Ok(JobOutput::Deployments(
        status.deployments.iter().map(deployment_row).collect(),
    ))
}

/// The Deployments view's model of an engine deployment.
pub fn deployment_row(d: &crate::deploy::Deployment) -> DeploymentRow {
    DeploymentRow {
        booted: d.booted,
        staged: d.staged,
        pending: d.pending,
        rollback: d.rollback,
        pinned: d.pinned,
        version: d.version.clone().unwrap_or_else(|| "-".into()),
        id: d.digest.clone().unwrap_or_else(|| d.checksum.clone()),
        checksum: d.checksum.clone(),
        origin: d
            .image
            .as_ref()
            .map(|i| i.to_string())
            .or_else(|| d.origin_refspec.clone())
            .unwrap_or_default(),
        composefs: d.composefs.as_ref().map(|c| c.short()).unwrap_or_default(),
    }
}

/// Files and packages between two deployments (the engine's diff), asked of the guest.
async fn diff(paths: &Paths, input: &JobInput, ev: &Emitter) -> anyhow::Result<JobOutput> {
    let name = vm_of(input)?;
    let (a, b) = input
        .diff
        .clone()
        .ok_or_else(|| anyhow::anyhow!("mark one deployment (Space), select another"))?;
    let (mut guest, _) = VmGuest::connect(paths, name, ev).await?;
    let d = crate::deploy::diff::between(&mut guest, ev, &a, &b).await?;
    Ok(JobOutput::Diff(DiffView {
        files: d.file_lines(),
        packages: d.package_lines(),
        composefs: d.composefs.line(),
        a: d.a,
        b: d.b,
    }))
}

/// Run a drill on the running VM with the engine's drill runner; its report is the verdict.
async fn drill(
    paths: &Paths,
    input: &JobInput,
    kind: DrillKind,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<JobOutput> {
    let name = vm_of(input)?;
    // The recipe is what the guest runs now (the engine's drill workflow finds it).
    let make = |recipe: &crate::recipe::Recipe| -> anyhow::Result<crate::drill::DrillKind> {
        Ok(match kind {
            DrillKind::Upgrade => crate::drill::DrillKind::Upgrade,
            DrillKind::Rollback => crate::drill::DrillKind::Rollback,
            DrillKind::PowerCut => crate::drill::DrillKind::Powercut {
                at: crate::drill::CutPoint::Random,
            },
            // Another recipe's image; on bootc the VM's own recipe too: its last version, by tag.
            DrillKind::Switch => {
                let bootc = recipe.file.family == crate::recipe::Family::Bootc;
                let to = input
                .switch_to
                .clone()
                .filter(|r| bootc || r.name() != recipe.name())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "select the recipe to switch to in the Recipes view (1) — another one than {}",
                        recipe.name()
                    )
                })?;
                let (version, via) = if to.name() == recipe.name() {
                    let last = to.file.versions.last().map(|v| v.id.clone());
                    (last, crate::drill::Via::Tag)
                } else {
                    (None, crate::drill::Via::Stable)
                };
                crate::drill::DrillKind::Switch {
                    to: Box::new(to),
                    version,
                    via,
                }
            }
        })
    };
    let report = crate::workflow::drill(paths, name, make, ev, cancel).await?;
    Ok(JobOutput::Verdict(verdict_of(&report)))
}

/// The Drills view's verdict from an engine report: the reason, the facts, every check.
pub fn verdict_of(r: &crate::drill::Report) -> Verdict {
    let mut evidence: Vec<String> = r.facts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    for s in &r.steps {
        for c in &s.checks {
            evidence.push(format!(
                "{} {}: expected {}, got {}",
                if c.ok { "✔" } else { "✘" },
                c.name,
                c.expected,
                c.actual
            ));
        }
    }
    Verdict {
        passed: r.verdict == crate::drill::Verdict::Pass,
        // The view prints PASS/FAIL from `passed`; an ERROR verdict says so in the summary.
        summary: match r.verdict {
            crate::drill::Verdict::Error => format!("(error) {} ({:.0} s)", r.reason, r.total_secs),
            _ => format!("{} ({:.0} s)", r.reason, r.total_secs),
        },
        evidence,
    }
}

/// The VM view's model of a VM record.
pub fn vm_info(r: &VmRecord) -> VmInfo {
    let mut access = vec![format!(
        "s hands this terminal to `bootlab vm console {} --interactive` (Ctrl-] comes back)",
        r.name
    )];
    if let Some(p) = r.ssh_port {
        access.push(format!(
            "ssh -p {p} root@127.0.0.1 (forwarded on 127.0.0.1 only)"
        ));
    }
    VmInfo {
        name: r.name.clone(),
        recipe: match (&r.recipe, &r.version) {
            (Some(r), Some(v)) => format!("{r} {v}"),
            (Some(r), None) => r.clone(),
            _ => "no recipe".into(),
        },
        state: r.state.as_str().to_string(),
        accel: match r.firmware {
            crate::tools::qemu::Firmware::Bios => r.accel.as_str().to_uppercase(),
            crate::tools::qemu::Firmware::Uefi => {
                format!("{}, UEFI firmware", r.accel.as_str().to_uppercase())
            }
        },
        accel_reason: r.accel_reason.clone(),
        known_password: r.known_password.clone(),
        access,
    }
}

/// The running VM bootlab already has (started earlier, by this TUI or the CLI), if any.
pub fn running_vm(paths: &Paths) -> Option<VmRecord> {
    crate::vm::list(paths)
        .into_iter()
        .find(|r| r.state.is_running())
}

/// The accelerator verdict of the last KVM probe, if one is cached: (accelerator, why).
pub async fn host_accel(paths: &Paths) -> Option<(String, String)> {
    let p = crate::tools::qemu::kvm_probe::load(paths).await?;
    Some((p.accel.to_uppercase(), p.reason))
}

/// Follow a VM's events (state, console, QMP) into `ev` until it stops or `cancel`.
pub async fn watch_vm(paths: Paths, name: String, ev: Emitter, cancel: CancellationToken) {
    let Ok(client) = VmClient::connect(&paths, &name).await else {
        return;
    };
    if let Ok(h) = client.forward(ev, cancel).await {
        let _ = h.await;
    }
}

/// Stop every VM this bootlab runs (quit after "stop VMs and quit"): ACPI power down, then a
/// power cut if the guest does not go within the time.
pub async fn stop_vms(paths: &Paths, names: &[String]) -> Result<(), String> {
    let mut errs = vec![];
    for n in names {
        if crate::vm::down(paths, n, false, Duration::from_secs(60))
            .await
            .is_err()
            && let Err(e) = crate::vm::down(paths, n, true, Duration::from_secs(10)).await
        {
            errs.push(format!("{n}: {e:#}"));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// The command that gives a shell in `vm` (run with the TUI suspended).
pub fn shell_command(vm: &str) -> std::process::Command {
    let exe = crate::vm::lifecycle::bootlab_exe().unwrap_or_else(|_| "bootlab".into());
    crate::tools::cmd::foreground(exe, &["vm", "console", vm, "--interactive"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_boot_names_the_other_lab_vm_still_running() {
        let vms = [
            ("demo", true),
            ("lab-tour", false),
            ("lab-first-boot", true),
            ("lab-upgrade", true),
        ];
        assert_eq!(
            other_lab_vm_running(vms, "lab-upgrade").as_deref(),
            Some("lab-first-boot")
        );
        // Its own VM, stopped lab VMs and VMs of the VM view do not count.
        assert_eq!(
            other_lab_vm_running(
                [("lab-upgrade", true), ("lab-tour", false), ("demo", true)],
                "lab-upgrade"
            ),
            None
        );
    }
}
