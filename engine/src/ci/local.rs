//! `bootlab ci run FILE --version V`: the steps of a workflow `bootlab ci export` wrote, run on
//! this machine, in order, the way a GitHub runner runs them (`bash -eo pipefail`, `$GITHUB_ENV`,
//! the job's and the step's `env`, `${{ … }}` filled in for one matrix version).
//!
//! It reads the workflow file, not the recipe, so what runs is what a push would run, edits
//! included. It knows only what [`super::github`] writes, and says so for anything else:
//! - a step with `if: ${{ !env.BOOTLAB_LOCAL }}` prepares a runner (host tools, building
//!   bootlab) or publishes (push to ghcr.io): this machine has bootlab and no registry, so it is
//!   skipped, and shown as skipped;
//! - `actions/checkout`: the workspace folder is the checkout;
//! - `actions/upload-artifact`: the file is copied to `<workspace>/artifacts/<name>/`;
//! - `sudo`: the run is as root already (bootlab needs root for loop devices), so a `sudo` on
//!   the steps' PATH drops its options and runs the command, and `bootlab` on that PATH is this
//!   very executable.

use crate::events::{CancellationToken, Emitter, Event};
use crate::tools::cmd::HostCmd;
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable a local run sets, and the `if` that skips a step when it is set.
pub const LOCAL_ENV: &str = "BOOTLAB_LOCAL";
pub const SKIP_LOCALLY: &str = "${{ !env.BOOTLAB_LOCAL }}";

/// The part of a workflow file a local run reads.
#[derive(Debug, Deserialize)]
struct FileWorkflow {
    #[serde(default)]
    defaults: Option<FileDefaults>,
    jobs: BTreeMap<String, FileJob>,
}

#[derive(Debug, Deserialize)]
struct FileDefaults {
    run: FileRunDefaults,
}

#[derive(Debug, Deserialize)]
struct FileRunDefaults {
    shell: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJob {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "runs-on")]
    #[allow(dead_code)] // the runner's image: here it is this machine
    runs_on: String,
    #[serde(rename = "timeout-minutes", default)]
    timeout_minutes: Option<u64>,
    strategy: FileStrategy,
    #[serde(default)]
    env: BTreeMap<String, String>,
    steps: Vec<FileStep>,
}

#[derive(Debug, Deserialize)]
struct FileStrategy {
    matrix: FileMatrix,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMatrix {
    version: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    name: String,
    #[serde(rename = "if", default)]
    if_: Option<String>,
    #[serde(default)]
    uses: Option<String>,
    #[serde(default)]
    with: BTreeMap<String, String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    run: Option<String>,
}

/// A workflow file, read and checked: one job, a version matrix, steps a local run knows.
#[derive(Debug)]
pub struct LocalWorkflow {
    pub file: PathBuf,
    text: String,
    pub job_name: String,
    pub versions: Vec<String>,
    timeout: Option<Duration>,
    env: BTreeMap<String, String>,
    steps: Vec<FileStep>,
}

/// What a local run does with one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Its `run` script, in bash.
    Run,
    /// Not here; why.
    Skip(String),
    /// A GitHub action, done the local way; what that is.
    Local(String),
}

/// One step as planned (dry run) or done.
#[derive(Debug, Clone)]
pub struct StepDone {
    pub name: String,
    pub plan: Plan,
    pub secs: f64,
}

/// A finished local run.
#[derive(Debug)]
pub struct LocalRun {
    pub steps: Vec<StepDone>,
    /// Uploaded artifacts: name and the file copied for it.
    pub artifacts: Vec<(String, PathBuf)>,
    pub secs: f64,
}

/// `line:col` (1-based) of the first `needle` in `text`, for errors that point into the file.
fn locate(text: &str, needle: &str) -> String {
    match text.find(needle) {
        Some(at) => {
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let col = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{line}:{col}")
        }
        None => "1:1".into(),
    }
}

impl LocalWorkflow {
    pub fn load(file: &Path) -> Result<LocalWorkflow> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let f: FileWorkflow = serde_yaml_ng::from_str(&text).map_err(|e| match e.location() {
            Some(l) => anyhow!("{}:{}:{}: {e}", file.display(), l.line(), l.column()),
            None => anyhow!("{}: {e}", file.display()),
        })?;
        if let Some(d) = &f.defaults
            && d.run.shell != "bash"
        {
            bail!(
                "{}:{}: defaults.run.shell is {:?}: bootlab ci run runs bash scripts only",
                file.display(),
                locate(&text, "shell:"),
                d.run.shell
            );
        }
        let mut jobs = f.jobs.into_iter();
        let (Some((id, job)), None) = (jobs.next(), jobs.next()) else {
            bail!(
                "{}: bootlab ci run runs a workflow of one job (as `bootlab ci export` writes)",
                file.display()
            );
        };
        let wf = LocalWorkflow {
            file: file.to_path_buf(),
            job_name: job.name.unwrap_or(id),
            versions: job.strategy.matrix.version,
            timeout: job.timeout_minutes.map(|m| Duration::from_secs(m * 60)),
            env: job.env,
            steps: job.steps,
            text,
        };
        for s in &wf.steps {
            wf.plan_of(s)?;
        }
        Ok(wf)
    }

    fn at(&self, needle: &str) -> String {
        format!("{}:{}", self.file.display(), locate(&self.text, needle))
    }

    /// What a local run does with `s`, or why it cannot.
    fn plan_of(&self, s: &FileStep) -> Result<Plan> {
        if let Some(cond) = &s.if_ {
            let c = cond.trim();
            if c == SKIP_LOCALLY || c == "!env.BOOTLAB_LOCAL" {
                return Ok(Plan::Skip(format!("if: {SKIP_LOCALLY}")));
            }
            bail!(
                "{}: step {:?}: bootlab ci run knows only `if: {SKIP_LOCALLY}`, not `{c}`",
                self.at(cond),
                s.name
            );
        }
        match (&s.uses, &s.run) {
            (Some(u), None) => {
                let action = u.split('@').next().unwrap_or(u);
                match action {
                    "actions/checkout" => {
                        Ok(Plan::Local("the workspace folder is the checkout".into()))
                    }
                    "actions/upload-artifact" => {
                        let name = s.with.get("name").map(String::as_str).unwrap_or("artifact");
                        Ok(Plan::Local(format!("copied to artifacts/{name}/")))
                    }
                    _ => bail!(
                        "{}: step {:?} uses {u}: bootlab ci run knows actions/checkout and actions/upload-artifact only",
                        self.at(u),
                        s.name
                    ),
                }
            }
            (None, Some(_)) => Ok(Plan::Run),
            _ => bail!(
                "{}: step {:?} needs either `uses` or `run`",
                self.at(&s.name),
                s.name
            ),
        }
    }

    /// The steps and what a local run of `version` does with each (`--dry-run`).
    pub fn plan(&self, version: &str) -> Vec<StepDone> {
        let v = |t: &str| t.replace("${{ matrix.version }}", version);
        self.steps
            .iter()
            .map(|s| StepDone {
                name: v(&s.name),
                plan: match self.plan_of(s).expect("checked by load") {
                    Plan::Local(what) => Plan::Local(v(&what)),
                    p => p,
                },
                secs: 0.0,
            })
            .collect()
    }

    /// The job's name for one matrix version.
    pub fn job_title(&self, version: &str) -> String {
        self.job_name.replace("${{ matrix.version }}", version)
    }

    /// `text` with every `${{ … }}` filled in from `ctx`; an unknown one is an error naming it.
    fn expand(&self, text: &str, ctx: &BTreeMap<&str, String>) -> Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("${{") {
            out.push_str(&rest[..open]);
            let close = rest[open..]
                .find("}}")
                .ok_or_else(|| anyhow!("{}: `${{{{` without `}}}}`", self.at(&rest[open..])))?;
            let expr = rest[open + 3..open + close].trim();
            let value = ctx.get(expr).ok_or_else(|| {
                anyhow!(
                    "{}: `${{{{ {expr} }}}}` is not known to bootlab ci run (it knows {})",
                    self.at(&rest[open..open + close + 2]),
                    ctx.keys().copied().collect::<Vec<_>>().join(", ")
                )
            })?;
            out.push_str(value);
            rest = &rest[open + close + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Options of a local run.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub version: String,
    /// The checkout: scripts run here, `output/` and `artifacts/` are made here.
    pub workspace: PathBuf,
}

/// `KEY=VALUE` lines a step appended to `$GITHUB_ENV` (no multi-line values: bootlab's
/// workflows write none).
fn read_github_env(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("$GITHUB_ENV line {l:?} is not KEY=VALUE"))
        })
        .collect()
}

/// The folder put first on the steps' PATH: `bootlab` (this executable) and a root's `sudo`.
fn tool_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let exe = std::env::current_exe().context("finding this bootlab executable")?;
    std::os::unix::fs::symlink(&exe, dir.join("bootlab"))?;
    let sudo = dir.join("sudo");
    std::fs::write(
        &sudo,
        "#!/bin/sh\n\
         # bootlab ci run: already root; sudo's options (e.g. --preserve-env=…) are dropped.\n\
         while [ $# -gt 0 ]; do case $1 in --) shift; break ;; -*) shift ;; *) break ;; esac; done\n\
         exec \"$@\"\n",
    )?;
    std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Run the job of `wf` for one version. Every script is shown before it runs and streams its
/// output under the stage `ci: <step>`; a failing step stops the run, as on GitHub.
pub async fn run(
    wf: &LocalWorkflow,
    opts: &LocalOptions,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<LocalRun> {
    if !nix::unistd::geteuid().is_root() {
        bail!("bootlab ci run runs the workflow's `sudo` steps as root does: run it as root");
    }
    if !wf.versions.contains(&opts.version) {
        bail!(
            "{}: version {} is not in the matrix ({})",
            wf.at("version:"),
            opts.version,
            wf.versions.join(", ")
        );
    }
    let work = std::path::absolute(&opts.workspace)?;
    std::fs::create_dir_all(&work)
        .with_context(|| format!("cannot make the workspace {}", work.display()))?;
    let temp = tempfile::Builder::new()
        .prefix("bootlab-ci-")
        .tempdir()
        .context("making the runner's temp folder")?;
    let runner_temp = temp.path().join("runner");
    std::fs::create_dir_all(&runner_temp)?;
    let bin = temp.path().join("bin");
    tool_dir(&bin)?;
    let github_env = temp.path().join("github-env");
    std::fs::write(&github_env, "")?;

    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let ctx: BTreeMap<&str, String> = [
        ("matrix.version", opts.version.clone()),
        ("github.repository_owner", "local".to_string()),
        ("github.actor", user),
        // Only the skipped push step reads it: there is no token here.
        ("secrets.GITHUB_TOKEN", String::new()),
        ("runner.temp", runner_temp.display().to_string()),
    ]
    .into_iter()
    .collect();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    );
    let mut job_env: Vec<(String, String)> = Vec::new();
    for (k, v) in &wf.env {
        job_env.push((k.clone(), wf.expand(v, &ctx)?));
    }

    let started = Instant::now();
    let job = async {
        let mut done = Vec::new();
        let mut artifacts = Vec::new();
        let mut from_steps: Vec<(String, String)> = Vec::new();
        for s in &wf.steps {
            let plan = match wf.plan_of(s)? {
                Plan::Local(what) => Plan::Local(wf.expand(&what, &ctx)?),
                p => p,
            };
            let stage = format!("ci: {}", s.name);
            let t = Instant::now();
            match &plan {
                Plan::Skip(why) => {
                    ev.emit(Event::State {
                        object: stage.clone(),
                        state: "skipped".into(),
                        detail: format!("locally ({why})"),
                    });
                    done.push(StepDone {
                        name: s.name.clone(),
                        plan,
                        secs: 0.0,
                    });
                    continue;
                }
                Plan::Local(what) => {
                    ev.emit(Event::Note {
                        stage: stage.clone(),
                        text: what.clone(),
                    });
                    if s.uses
                        .as_deref()
                        .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
                    {
                        artifacts.push(upload(wf, s, &ctx, &work)?);
                    }
                }
                Plan::Run => {
                    ev.stage_started(&stage);
                    let script = wf.expand(s.run.as_deref().unwrap_or_default(), &ctx)?;
                    // As GitHub runs `shell: bash`.
                    let mut c = HostCmd::new("bash")
                        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c"])
                        .arg(script)
                        .cwd(&work)
                        .env("PATH", &path)
                        .env("CI", "true")
                        .env(LOCAL_ENV, "true")
                        .env("GITHUB_ENV", &github_env)
                        .env("GITHUB_WORKSPACE", &work)
                        .env("RUNNER_TEMP", &runner_temp);
                    for (k, v) in job_env.iter().chain(&from_steps) {
                        c = c.env(k, v);
                    }
                    for (k, v) in &s.env {
                        c = c.env(k, wf.expand(v, &ctx)?);
                    }
                    c.run(&stage, ev, cancel)
                        .await
                        .with_context(|| format!("step {:?} failed", s.name))?;
                    from_steps = read_github_env(&github_env)?;
                    ev.stage_finished(&stage, t.elapsed().as_secs_f64(), false);
                }
            }
            done.push(StepDone {
                name: s.name.clone(),
                plan,
                secs: t.elapsed().as_secs_f64(),
            });
        }
        anyhow::Ok((done, artifacts))
    };
    let (steps, artifacts) = match wf.timeout {
        Some(limit) => tokio::time::timeout(limit, job).await.map_err(|_| {
            anyhow!(
                "the job ran past its timeout-minutes ({} min)",
                limit.as_secs() / 60
            )
        })??,
        None => job.await?,
    };
    Ok(LocalRun {
        steps,
        artifacts,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// `actions/upload-artifact`, locally: `with.path` (a file, relative to the workspace) copied to
/// `<workspace>/artifacts/<with.name>/`, through a temp name so a half copy never looks done.
fn upload(
    wf: &LocalWorkflow,
    s: &FileStep,
    ctx: &BTreeMap<&str, String>,
    work: &Path,
) -> Result<(String, PathBuf)> {
    let name = wf.expand(
        s.with.get("name").map(String::as_str).unwrap_or("artifact"),
        ctx,
    )?;
    let rel = s
        .with
        .get("path")
        .ok_or_else(|| anyhow!("{}: step {:?} has no with.path", wf.at(&s.name), s.name))?;
    let src = work.join(wf.expand(rel, ctx)?);
    if !src.is_file() {
        // `if-no-files-found: error` (what bootlab writes) fails the step on GitHub too.
        bail!("step {:?}: no file {} to upload", s.name, src.display());
    }
    if name.contains('/') || name.starts_with('.') {
        bail!(
            "step {:?}: artifact name {name:?} is not a plain name",
            s.name
        );
    }
    let dir = work.join("artifacts").join(&name);
    std::fs::create_dir_all(&dir)?;
    let file_name = src.file_name().expect("a file");
    let dest = dir.join(file_name);
    let tmp = dir.join(format!(".{}.part", file_name.to_string_lossy()));
    if let Err(e) = crate::tools::disk::copy_sparse(&src, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &dest)?;
    Ok((name, dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("wf.yml");
        std::fs::write(&f, text).unwrap();
        (t, f)
    }

    const ONE: &str = "name: x\non:\n  workflow_dispatch: {}\ndefaults:\n  run:\n    shell: bash\njobs:\n  build:\n    runs-on: ubuntu-24.04\n    strategy:\n      matrix:\n        version: [v1, v2]\n    env:\n      VERSION: ${{ matrix.version }}\n    steps:\n    - name: Set up\n      if: ${{ !env.BOOTLAB_LOCAL }}\n      run: exit 1\n    - name: Say\n      run: echo \"$VERSION\"\n";

    #[test]
    fn steps_are_planned_from_the_file() {
        let (_t, f) = write(ONE);
        let wf = LocalWorkflow::load(&f).unwrap();
        assert_eq!(wf.versions, ["v1", "v2"]);
        let plan: Vec<_> = wf
            .plan("v1")
            .into_iter()
            .map(|s| (s.name, s.plan))
            .collect();
        assert_eq!(
            plan,
            [
                (
                    "Set up".to_string(),
                    Plan::Skip(format!("if: {SKIP_LOCALLY}"))
                ),
                ("Say".to_string(), Plan::Run)
            ]
        );
    }

    #[test]
    fn what_a_local_run_cannot_do_is_an_error_pointing_into_the_file() {
        let (_t, f) = write(&ONE.replace("${{ !env.BOOTLAB_LOCAL }}", "github.ref == 'main'"));
        let e = LocalWorkflow::load(&f).unwrap_err().to_string();
        assert!(
            e.contains("wf.yml:17:11") && e.contains("github.ref"),
            "{e}"
        );

        // An action of its own is refused where it would run, not where it is skipped.
        let (_t, f) = write(&ONE.replace(
            "run: echo",
            "uses: docker/login-action@v3\n      with:\n        x: echo",
        ));
        let e = LocalWorkflow::load(&f).unwrap_err().to_string();
        assert!(
            e.contains("wf.yml:20:13") && e.contains("docker/login-action"),
            "{e}"
        );
        let (_t, f) = write(&ONE.replace("run: exit 1", "uses: docker/login-action@v3"));
        assert!(LocalWorkflow::load(&f).is_ok());

        let (_t, f) = write(&ONE.replace("      run: echo", "      shell: sh\n      run: echo"));
        let e = LocalWorkflow::load(&f).unwrap_err().to_string();
        assert!(e.contains("wf.yml:") && e.contains("shell"), "{e}");

        let wf = {
            let (_t, f) = write(ONE);
            LocalWorkflow::load(&f).unwrap()
        };
        let ctx: BTreeMap<&str, String> = [("matrix.version", "v1".to_string())].into();
        assert_eq!(
            wf.expand("a ${{ matrix.version }} b", &ctx).unwrap(),
            "a v1 b"
        );
        let e = wf
            .expand("${{ github.sha }}", &ctx)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("github.sha") && e.contains("matrix.version"),
            "{e}"
        );
    }

    #[test]
    fn github_env_lines_are_read_back() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("env");
        std::fs::write(&f, "A=1\nB=x=y\n\n").unwrap();
        assert_eq!(
            read_github_env(&f).unwrap(),
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        std::fs::write(&f, "oops\n").unwrap();
        assert!(read_github_env(&f).is_err());
    }
}
