//! The one place the TUI calls the engine: each [`JobKind`] becomes an engine call that reports
//! events through an [`Emitter`] and stops when its token is cancelled. The TUI never
//! reimplements engine work; where an engine API is not in this build yet, the job fails with
//! a message that says so (no fake data).

use super::app::{App, JobKind, JobOutput};
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::recipe::Recipe;

/// What a job needs from the app, copied when it starts (jobs never borrow the app).
#[derive(Debug, Clone)]
pub struct JobInput {
    pub kind: JobKind,
    pub recipe: Option<Recipe>,
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
    _emitter: Emitter,
    _cancel: CancellationToken,
    _paths: Paths,
) -> Result<JobOutput, String> {
    match &input.kind {
        JobKind::Build { .. } => Err(not_yet("building images", "pipeline")),
        JobKind::Boot { .. } => Err(not_yet("booting VMs", "vm")),
        JobKind::VmControl(_) => Err(not_yet("VM controls", "vm")),
        JobKind::Refresh | JobKind::Diff => Err(not_yet("reading deployments", "deploy")),
        JobKind::Drill(_) => Err(not_yet("drills", "deploy")),
        JobKind::LabAction { .. } | JobKind::LabChecks { .. } | JobKind::LabSolve { .. } => {
            Err(not_yet("running lab steps", "formats"))
        }
    }
}

fn not_yet(what: &str, branch: &str) -> String {
    format!("{what} is not wired into this build of the TUI yet (engine branch h/{branch})")
}

/// Stop every VM this bootlab runs (quit after "stop VMs and quit").
pub async fn stop_vms(_paths: &Paths, _names: &[String]) -> Result<(), String> {
    Ok(())
}

/// The command that gives a shell in `vm` (run with the TUI suspended).
pub fn shell_command(vm: &str) -> std::process::Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "bootlab".into());
    let mut c = std::process::Command::new(exe);
    c.args(["vm", "console", vm]);
    c
}
