//! The one place the TUI calls the engine: each [`JobKind`] becomes an engine call that reports
//! events through an [`Emitter`] and stops when its token is cancelled. The TUI never
//! reimplements engine work; where an engine API is not in this build yet, the job fails with
//! a message that says so (no fake data).

use super::app::{App, JobKind, JobOutput};
use super::views::vm::VmInfo;
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::recipe::Recipe;
use crate::tui::action::VmControl;
use crate::vm::{VmClient, VmRecord, VmState};
use std::time::Duration;

/// What a job needs from the app, copied when it starts (jobs never borrow the app).
#[derive(Debug, Clone)]
pub struct JobInput {
    pub kind: JobKind,
    pub recipe: Option<Recipe>,
    /// The version selected in Recipes (what Boot boots).
    pub version: Option<String>,
    /// Deployment ids (checksums or digests) for a diff: (marked, selected).
    pub diff: Option<(String, String)>,
    pub vm: Option<String>,
}

impl JobInput {
    pub fn from_app(app: &App, kind: JobKind) -> JobInput {
        let recipe = match &kind {
            JobKind::Build { recipe, .. } | JobKind::Boot { recipe } => app
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
                .map(|(a, b)| (a.id.clone(), b.id.clone())),
            vm: app.vm.vm.as_ref().map(|v| v.name.clone()),
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
        JobKind::Boot { .. } => boot(&paths, &input, &emitter, &cancel).await,
        JobKind::VmControl(c) => control(&paths, &input, *c).await,
        JobKind::Refresh | JobKind::Diff => Err(not_yet("reading deployments from a live guest")),
        JobKind::Drill(_) => Err(not_yet("drills on a live VM")),
        JobKind::LabAction { .. } | JobKind::LabChecks { .. } | JobKind::LabSolve { .. } => {
            Err(not_yet("the lab runner"))
        }
    };
    r.map_err(|e| format!("{e:#}"))
}

fn not_yet(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what} is not wired into this build of the TUI yet")
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
    let recipe = recipe_of(input)?;
    let version = recipe.resolve_version(Some(version))?.clone();
    let b = crate::pipeline::build_image(paths, recipe, &version, ev, cancel).await?;
    let d = crate::pipeline::make_disk(paths, recipe.name(), &version.id, &b.commit, ev, cancel)
        .await?;
    Ok(JobOutput::Done(format!(
        "{} · commit {} · disk {}",
        b.image_tag,
        &b.commit[..b.commit.len().min(12)],
        d.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    )))
}

/// The name the TUI gives a recipe's VM (one VM at a time, so the recipe's name will do).
pub fn vm_name(recipe: &str) -> String {
    recipe.to_string()
}

async fn boot(
    paths: &Paths,
    input: &JobInput,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<JobOutput> {
    let recipe = recipe_of(input)?;
    let version = input
        .version
        .clone()
        .unwrap_or_else(|| recipe.default_version().id.clone());
    let name = vm_name(recipe.name());
    // A VM of that name that stopped earlier (power-cut, crash) is cleared first.
    if let Ok(old) = VmRecord::load(paths, &name)
        && old.state == VmState::Stopped
    {
        crate::vm::remove(paths, &name)?;
    }
    let golden = crate::vm::images::golden_for(paths, recipe.name(), &version).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n(press b in the Recipes view to build {} {version})",
            recipe.name()
        )
    })?;
    let mut opts = crate::vm::UpOptions::new(&name).for_recipe(recipe, &version);
    opts.golden = Some(golden);
    let rec = crate::vm::up(paths, opts, ev, cancel).await?;
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
        accel: r.accel.as_str().to_uppercase(),
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
    let mut c = std::process::Command::new(exe);
    c.args(["vm", "console", vm, "--interactive"]);
    c
}
