//! Running a lab for real: each step's action on the host or in the lab's VM, then its checks,
//! retried by their [`RetryPolicy`] (a window, never a blind sleep). No terminal code: everything
//! a face shows arrives as [`Event`]s, and every step returns a [`StepOutcome`].
//!
//! Events, so a face can render a lab without knowing the runner:
//! - `LabStep` when a step starts;
//! - `Note { stage: lab_stage(lab, step), text: "action: …" }` before each action;
//! - `Command { .. }` before every host and guest command (learners see every command first);
//! - `Check` for each check: passed, failed (with the learner-facing reason) or retrying.
//!
//! Upgrades, rollbacks and switches send the guest the same commands the drills do: `ostree
//! admin` on the offline family (`deploy::admin`), bootc itself on the bootc family
//! (`deploy::bootc`).

use super::check::{Captured, DeploymentsSeen, Observation, Verdict, evaluate_check};
use super::model::{Action, Check, Lab, Probe, RetryPolicy, Step};
use crate::deploy::{Deployment, HostStatus, admin};
use crate::drill::ops::{GuestOps, HostOps, Published, Via};
use crate::drill::vm_ops::{PipelineHost, VmGuest};
use crate::events::{CancellationToken, CheckOutcome, Emitter, Event, Stream};
use crate::paths::Paths;
use crate::recipe::{Family, Recipe};
use crate::tools::cmd::HostCmd;
use crate::vm::lifecycle;
use crate::vm::{VmRecord, VmState};
use crate::workflow::{self, BootPlan, Existing, Start, Target};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long one guest action (`guest = …`, an upgrade) may run.
const GUEST_ACTION_TIMEOUT: Duration = Duration::from_secs(900);

/// The result of one check after all its attempts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub title: String,
    pub passed: bool,
    pub attempts: u32,
    pub secs: f64,
    /// Why it failed and what was seen (`Verdict::Fail`'s reason); `None` when it passed.
    pub reason: Option<String>,
    /// What the learner reads: the reason, then the check's `fail` advice.
    pub message: Option<String>,
}

/// One action of a step as it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionResult {
    pub action: String,
    pub ok: bool,
    pub secs: f64,
    pub error: Option<String>,
}

/// A step: its actions (the step's own, plus the solve when asked) and its checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepOutcome {
    pub step: String,
    pub title: String,
    pub actions: Vec<ActionResult>,
    pub checks: Vec<CheckResult>,
    pub passed: bool,
    pub secs: f64,
    /// For a step that asks the learner to act, run by `selftest`: its checks, once each, after
    /// the step's own action and before its solve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_solve: Option<BeforeSolve>,
}

/// A learner step's checks before the learner acted (the solve): at least one must fail, or the
/// step would pass with nobody doing anything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BeforeSolve {
    /// Checks that failed, with what they saw.
    pub failed: Vec<(String, String)>,
    /// Checks that passed anyway (fine for checks of claims, as long as one check fails).
    pub passed: Vec<String>,
    /// Checks that could not observe anything (guest unreachable): they prove nothing.
    pub unobserved: Vec<(String, String)>,
    pub secs: f64,
}

impl BeforeSolve {
    /// At least one check really observed the guest or host and failed.
    pub fn proves_the_learner_is_needed(&self) -> bool {
        !self.failed.is_empty()
    }
}

/// What a check looks at, as the retry loop sees it: one observation per attempt.
pub trait Prober {
    fn observe(
        &mut self,
        probe: &Probe,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Observation> + Send;
}

/// Run a check until it passes or its window is spent: each attempt bounded by the policy's
/// timeout, attempts `interval` apart while the window since the first one lasts. `on_retry` is
/// told each failed attempt that will be retried (attempt number, reason).
pub async fn run_check<P: Prober>(
    check: &Check,
    prober: &mut P,
    cancel: &CancellationToken,
    mut on_retry: impl FnMut(u32, &str),
) -> CheckResult {
    let RetryPolicy { timeout, .. } = check.retry;
    let start = tokio::time::Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let obs = match tokio::time::timeout(timeout, prober.observe(&check.probe, timeout)).await {
            Ok(o) => o,
            Err(_) => Observation::Unavailable(format!(
                "no answer within {}s (the check's timeout)",
                timeout.as_secs_f64()
            )),
        };
        let verdict = if cancel.is_cancelled() {
            Verdict::Fail("cancelled".into())
        } else {
            evaluate_check(check, &obs)
        };
        let done = |verdict: Verdict| CheckResult {
            title: check.title.clone(),
            passed: verdict.passed(),
            attempts,
            secs: start.elapsed().as_secs_f64(),
            message: verdict.explain(check),
            reason: match verdict {
                Verdict::Pass => None,
                Verdict::Fail(r) => Some(r),
            },
        };
        let Verdict::Fail(why) = &verdict else {
            return done(verdict);
        };
        match check.retry.next_attempt_in(start.elapsed()) {
            Some(wait) if !cancel.is_cancelled() => {
                on_retry(attempts, why);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return done(Verdict::Fail("cancelled".into())),
                }
            }
            _ => return done(verdict),
        }
    }
}

/// Runs one lab against one VM.
pub struct LabRunner {
    pub lab: Lab,
    pub vm: String,
    paths: Paths,
    ev: Emitter,
    cancel: CancellationToken,
    guest: Option<VmGuest>,
}

/// The VM name a lab uses unless told otherwise (the one naming rule, whichever face runs it).
pub fn default_vm(lab: &Lab) -> String {
    crate::workflow::vm_name(crate::workflow::VmFor::Lab(&lab.id))
}

/// One line on where a step's time went: `step reboot passed in 52.3s (reboot 47.9s; checks 4.1s)`.
fn step_timing(
    id: &str,
    passed: bool,
    secs: f64,
    actions: &[ActionResult],
    checks: &[CheckResult],
) -> String {
    let mut parts: Vec<String> = actions
        .iter()
        .map(|a| format!("{} {:.1}s", a.action, a.secs))
        .collect();
    if !checks.is_empty() {
        let c: f64 = checks.iter().map(|c| c.secs).sum();
        parts.push(format!("checks {c:.1}s"));
    }
    format!(
        "step {id} {} in {secs:.1}s{}",
        if passed { "passed" } else { "failed" },
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join("; "))
        }
    )
}

/// `sh -c RUN` as an argv.
fn sh(run: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), run.into()]
}

fn short(c: &str) -> &str {
    c.get(..12).unwrap_or(c)
}

impl LabRunner {
    pub fn new(
        lab: Lab,
        vm: Option<String>,
        paths: Paths,
        ev: Emitter,
        cancel: CancellationToken,
    ) -> LabRunner {
        let vm = vm.unwrap_or_else(|| default_vm(&lab));
        LabRunner {
            lab,
            vm,
            paths,
            ev,
            cancel,
            guest: None,
        }
    }

    pub(super) fn stage(&self, step: &str) -> String {
        crate::events::lab_stage(&self.lab.id, Some(step))
    }
    pub(super) fn paths(&self) -> &Paths {
        &self.paths
    }
    pub(super) fn ev(&self) -> &Emitter {
        &self.ev
    }
    pub(super) fn cancel(&self) -> CancellationToken {
        self.cancel.clone()
    }
    /// The guest connection is stale (the VM was restored or started again): reconnect later.
    pub(super) fn forget_guest(&mut self) {
        self.guest = None;
    }

    /// Run one step: its action (and with `solve`, its solve actions), then its checks. A failed
    /// action skips the checks (they are reported failed with the action's error).
    pub async fn run_step(&mut self, step: &Step, solve: bool) -> StepOutcome {
        let t0 = Instant::now();
        self.begin_step(step);
        let plan = if solve {
            self.lab.solve_plan(step)
        } else {
            self.lab.action_plan(step)
        };
        let mut actions = Vec::new();
        let failed = self.run_actions(step, plan, &mut actions).await;
        self.finish_step(step, actions, failed, None, t0).await
    }

    /// What `selftest` runs for a step: the step's own action; for a step that asks the learner
    /// to act, its checks once each (they must not all pass: nobody has acted yet); then the
    /// solve and the checks as the learner would meet them.
    pub async fn run_step_selftest(&mut self, step: &Step) -> StepOutcome {
        if !step.asks_learner() {
            return self.run_step(step, true).await;
        }
        let t0 = Instant::now();
        self.begin_step(step);
        let mut actions = Vec::new();
        let plan = self.lab.action_plan(step);
        let mut failed = self.run_actions(step, plan, &mut actions).await;
        let mut before = None;
        if failed.is_none() {
            let b = self.checks_before_solve(step).await;
            let stage = self.stage(&step.id);
            self.ev.note(
                &stage,
                if b.proves_the_learner_is_needed() {
                    format!(
                        "before the solve {} of {} checks fail, as they must: {}",
                        b.failed.len(),
                        step.checks.len(),
                        b.failed
                            .iter()
                            .map(|(t, _)| t.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                } else {
                    "before the solve no check fails: this step would pass with nobody acting"
                        .into()
                },
            );
            before = Some(b);
            let solve = self.lab.solve_only(step);
            failed = self.run_actions(step, solve, &mut actions).await;
        }
        self.finish_step(step, actions, failed, before, t0).await
    }

    /// Each check of `step` once, bounded by its own timeout, with no retry window: a check that
    /// fails now fails because of what it saw.
    async fn checks_before_solve(&mut self, step: &Step) -> BeforeSolve {
        let t0 = Instant::now();
        let mut b = BeforeSolve {
            failed: vec![],
            passed: vec![],
            unobserved: vec![],
            secs: 0.0,
        };
        for c in &step.checks {
            let timeout = c.retry.timeout;
            let obs = match tokio::time::timeout(timeout, self.observe(&c.probe, timeout)).await {
                Ok(o) => o,
                Err(_) => Observation::Unavailable(format!("no answer within {timeout:?}")),
            };
            match (&obs, evaluate_check(c, &obs)) {
                (Observation::Unavailable(why), _) => {
                    b.unobserved.push((c.title.clone(), why.clone()))
                }
                (_, Verdict::Pass) => b.passed.push(c.title.clone()),
                (_, Verdict::Fail(why)) => b.failed.push((c.title.clone(), why)),
            }
        }
        b.secs = t0.elapsed().as_secs_f64();
        b
    }

    fn begin_step(&self, step: &Step) {
        self.ev.emit(Event::LabStep {
            lab: self.lab.id.clone(),
            step: step.id.clone(),
        });
    }

    /// Run `plan` in order, recording each action; the first failure stops it and is returned.
    async fn run_actions(
        &mut self,
        step: &Step,
        plan: Vec<Action>,
        actions: &mut Vec<ActionResult>,
    ) -> Option<String> {
        let stage = self.stage(&step.id);
        for a in plan {
            self.ev.note(&stage, format!("action: {}", a.describe()));
            let t = Instant::now();
            let r = self.run_action(&a, &stage).await;
            let error = r.err().map(|e| format!("{e:#}"));
            if let Some(e) = &error {
                self.ev
                    .note(&stage, format!("action failed: {} — {e}", a.describe()));
            }
            actions.push(ActionResult {
                action: a.describe(),
                ok: error.is_none(),
                secs: t.elapsed().as_secs_f64(),
                error: error.clone(),
            });
            if let Some(e) = error {
                return Some(format!("the action `{}` failed: {e}", a.describe()));
            }
        }
        None
    }

    /// The step's checks (or, after a failed action, each reported not checked) and its outcome.
    async fn finish_step(
        &mut self,
        step: &Step,
        actions: Vec<ActionResult>,
        failed: Option<String>,
        before_solve: Option<BeforeSolve>,
        t0: Instant,
    ) -> StepOutcome {
        // Owns its ids, so a copy can go into the retry callback below.
        let check_event = {
            let (lab, step) = (self.lab.id.clone(), step.id.clone());
            move |title: &str, outcome, detail| Event::Check {
                lab: lab.clone(),
                step: step.clone(),
                title: title.to_string(),
                outcome,
                detail,
            }
        };
        let mut checks = Vec::new();
        for c in &step.checks {
            let r = match &failed {
                Some(why) => CheckResult {
                    title: c.title.clone(),
                    passed: false,
                    attempts: 0,
                    secs: 0.0,
                    reason: Some(format!("not checked: {why}")),
                    message: Some(format!("not checked: {why}\n{}", c.fail)),
                },
                None => {
                    let (ev, retrying, title) =
                        (self.ev.clone(), check_event.clone(), c.title.clone());
                    let cancel = self.cancel.clone();
                    run_check(c, self, &cancel, move |n, why| {
                        ev.emit(retrying(
                            &title,
                            CheckOutcome::Retrying,
                            format!("attempt {n}: {why}"),
                        ))
                    })
                    .await
                }
            };
            let outcome = if r.passed {
                CheckOutcome::Passed
            } else {
                CheckOutcome::Failed
            };
            self.ev.emit(check_event(
                &r.title,
                outcome,
                r.message.clone().unwrap_or_default(),
            ));
            checks.push(r);
        }
        if failed.is_none() && step.spans_reboot() {
            self.follow_guest(&step.id).await;
        }
        let passed = failed.is_none()
            && checks.iter().all(|c| c.passed)
            && before_solve
                .as_ref()
                .is_none_or(BeforeSolve::proves_the_learner_is_needed);
        let secs = t0.elapsed().as_secs_f64();
        // Where a step's time went (a presenter plans the dead air; CI logs show what to speed up).
        self.ev.note(
            &self.stage(&step.id),
            step_timing(&step.id, passed, secs, &actions, &checks),
        );
        StepOutcome {
            step: step.id.clone(),
            title: step.title.clone(),
            actions,
            checks,
            passed,
            secs,
            before_solve,
        }
    }

    fn recipe_named(&self, r: &Option<String>) -> Result<Recipe> {
        let name = r
            .as_deref()
            .or(self.lab.default_recipe())
            .ok_or_else(|| anyhow!("the action names no recipe and the lab requires none"))?;
        crate::recipe::find(name)
    }

    /// The recipe and version a build, disk or boot action works on, resolved once.
    pub fn target_of(&self, recipe: &Option<String>, version: &Option<String>) -> Result<Target> {
        Target::new(&self.recipe_named(recipe)?, version.as_deref())
    }

    /// What a boot action boots: the lab's VM (kept, so a power cut can start the same disk
    /// again; `stop_vm` removes it), from the cached booted snapshot of the target's disk, which
    /// is the guest a cold boot gives, in seconds instead of a minute.
    pub fn boot_plan(&self, target: Target, fresh: bool) -> BootPlan {
        let mut plan = BootPlan::new(target, self.vm.clone());
        plan.up.keep = true;
        plan.start = Start::Booted;
        plan.existing = if fresh {
            Existing::Replace
        } else {
            Existing::Reuse
        };
        plan
    }

    /// The recipe the lab's VM was made from (else the lab's).
    fn vm_recipe(&self) -> Result<Recipe> {
        match VmRecord::load(&self.paths, &self.vm)
            .ok()
            .and_then(|r| r.recipe)
        {
            Some(r) => crate::recipe::find(&r),
            None => self.recipe_named(&None),
        }
    }

    /// After a reboot (an action's, or the guest's own: an update timer) the guest may run
    /// another recipe or version than its VM record says; the record follows the booted
    /// deployment, so the next action publishes and upgrades what the guest really is.
    pub(super) async fn follow_guest(&mut self, step: &str) {
        let Ok(family) = self.vm_recipe().map(|r| r.file.family) else {
            return;
        };
        let stage = self.stage(step);
        let r = match self.guest().await {
            Ok(g) => g.follow_booted(family).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            self.ev.note(
                &stage,
                format!("could not read what the guest booted: {e:#}"),
            );
        }
    }

    async fn guest(&mut self) -> Result<&mut VmGuest> {
        if self.guest.is_none() {
            let (g, _) = VmGuest::connect(&self.paths, &self.vm, &self.ev)
                .await
                .with_context(|| {
                    format!(
                        "no running VM {} (a boot step starts it; `bootlab vm list` shows what runs)",
                        self.vm
                    )
                })?;
            self.guest = Some(g);
        }
        Ok(self.guest.as_mut().expect("set above"))
    }

    /// A guest command, shown first, its output streamed as log lines.
    async fn guest_cmd(&mut self, stage: &str, argv: Vec<String>) -> Result<Captured> {
        self.ev.emit(Event::Command {
            stage: format!("{stage} guest"),
            argv: argv.clone(),
        });
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let g = self.guest().await?;
        let o = g.client().exec_with(&a, None, GUEST_ACTION_TIMEOUT).await?;
        let got = Captured {
            exit: o.status(),
            stdout: o.stdout,
            stderr: o.stderr,
        };
        for l in got.stdout.lines() {
            self.ev.log(stage, Stream::Stdout, l);
        }
        for l in got.stderr.lines() {
            self.ev.log(stage, Stream::Stderr, l);
        }
        Ok(got)
    }

    /// `sh -c RUN` in the lab's guest, shown first and its output streamed; any exit status is
    /// an answer (a step's text may show a command that fails on purpose).
    pub async fn run_in_guest(&mut self, stage: &str, run: &str) -> Result<Captured> {
        self.guest_cmd(stage, sh(run)).await
    }

    async fn guest_ok(&mut self, stage: &str, argv: Vec<String>) -> Result<Captured> {
        let c = self.guest_cmd(stage, argv.clone()).await?;
        if c.exit != 0 {
            let out = if c.stderr.trim().is_empty() {
                &c.stdout
            } else {
                &c.stderr
            };
            bail!(
                "`{}` exited {} in the guest: {}",
                argv.join(" "),
                c.exit,
                super::check::quote(out)
            );
        }
        Ok(c)
    }

    /// The guest's deployments as `ostree admin status` (or, for `family` bootc, bootc) shows
    /// them.
    async fn status(&mut self, family: Family) -> Result<HostStatus> {
        let g = self.guest().await?;
        // A lab's checks read deployments often; composefs facts are for people (status, TUI).
        let live = crate::deploy::live::read_deployments(g, family).await?;
        live.best()
            .cloned()
            .ok_or_else(|| anyhow!("the guest reported no deployments"))
    }

    /// Run one action. Errors are learner-facing.
    pub async fn run_action(&mut self, a: &Action, stage: &str) -> Result<()> {
        if self.cancel.is_cancelled() {
            bail!("cancelled");
        }
        match a {
            Action::None => Ok(()),
            Action::Build { recipe, version } => {
                let t = self.target_of(recipe, version)?;
                workflow::ensure_image(&self.paths, &t, &self.ev, &self.cancel)
                    .await
                    .map(drop)
            }
            Action::Disk { recipe, version } => {
                let t = self.target_of(recipe, version)?;
                workflow::ensure_disk(&self.paths, &t, &self.ev, &self.cancel)
                    .await
                    .map(drop)
            }
            Action::Boot {
                recipe,
                version,
                fresh,
            } => {
                let plan = self.boot_plan(self.target_of(recipe, version)?, *fresh);
                self.guest = None;
                workflow::boot(&self.paths, plan, &self.ev, &self.cancel).await?;
                self.guest().await.map(drop)
            }
            Action::Reboot => {
                self.ev.note(stage, "rebooting the guest (clean reboot)");
                self.guest().await?.reboot().await
            }
            Action::PowerCut => {
                self.ev
                    .note(stage, "cutting the power (no shutdown), then booting again");
                let g = self.guest().await?;
                g.powercut().await?;
                g.power_on().await
            }
            Action::Guest { run } => self.guest_ok(stage, sh(run)).await.map(drop),
            Action::Host { run } => {
                let c = self.host_cmd(run)?;
                c.run(stage, &self.ev, &self.cancel).await.map(drop)
            }
            Action::Publish { recipe, to } => {
                self.publish(stage, recipe.as_deref(), to.as_deref()).await
            }
            Action::Upgrade { to, apply } => self.upgrade(stage, to.as_deref(), *apply).await,
            Action::Switch {
                recipe,
                version,
                apply,
            } => self.switch(stage, recipe, version.as_deref(), *apply).await,
            Action::Rollback { apply } => self.rollback(stage, *apply).await,
        }
    }

    /// `sh -c RUN` on the host, refused for a lab file nobody trusted (see [`super::trust`]).
    fn host_cmd(&self, run: &str) -> Result<HostCmd> {
        super::trust::require_host_allowed(&self.paths, &self.lab)?;
        let mut c = HostCmd::new("sh").arg("-c").arg(run);
        for (k, v) in super::host_env(&self.paths) {
            c = c.env(k, v);
        }
        // The lab's VM, whatever the face named it (`lab-<id>`, `--vm NAME`).
        Ok(c.env("BOOTLAB_VM", &self.vm))
    }

    /// Stop and remove the lab's VM if there is one (nothing left running).
    pub async fn stop_vm(&mut self) -> Result<()> {
        self.guest = None;
        let Ok(rec) = VmRecord::load(&self.paths, &self.vm) else {
            return Ok(());
        };
        if rec.state != VmState::Stopped {
            lifecycle::stop(&self.paths, &self.vm, true, Duration::from_secs(20)).await?;
        }
        lifecycle::remove(&self.paths, &self.vm)
    }

    /// Build + publish `version` of `recipe` where the guest sees it (the update share, mounted
    /// first): the offline family's branch in the update repo, a bootc recipe's OCI layout as
    /// `via` says. Returns what the guest is told to follow: the branch, or the bootc target
    /// (`oci:/var/mnt/share/…:tag`).
    async fn publish_to_guest(
        &mut self,
        stage: &str,
        recipe: &Recipe,
        version: &str,
        via: Via,
    ) -> Result<String> {
        let p = self.publish_on_host(stage, recipe, version, via).await?;
        if p.requires_verity {
            let c = self
                .guest_cmd(stage, crate::deploy::composefs::verity_ready_argv())
                .await?;
            if c.exit != 0 {
                bail!(crate::deploy::composefs::verity_refusal(
                    &p.recipe, &p.version
                ));
            }
        }
        let target = match recipe.file.family {
            Family::Bootc => p
                .image
                .ok_or_else(|| anyhow!("no image reference was published for {}", recipe.name()))?,
            Family::DebianOstree => p.branch,
        };
        let line = self.guest().await?.mount_updates().await?;
        self.ev.note(stage, line);
        Ok(target)
    }

    /// `to`, or the version after the booted one (the recipe's default when the guest's is not
    /// one of the recipe's).
    async fn version_to_publish(
        &mut self,
        stage: &str,
        r: &Recipe,
        to: Option<&str>,
    ) -> Result<String> {
        if let Some(t) = to {
            return Ok(t.to_string());
        }
        let cur = self
            .booted_version(stage)
            .await?
            .filter(|c| r.version(c).is_some())
            .unwrap_or_else(|| r.default_version().id.clone());
        Ok(r.next_version(&cur)
            .ok_or_else(|| anyhow!("{cur} is the last version of {}", r.name()))?
            .id
            .clone())
    }

    /// Publish `to` (or the guest's next version) where the guest's updates come from (the
    /// update repo's branch, or the layout's `stable` tag on bootc) and touch nothing in the
    /// guest. `recipe` is the action's (the lab's when it names none); without one, the guest's.
    async fn publish(&mut self, stage: &str, recipe: Option<&str>, to: Option<&str>) -> Result<()> {
        let r = match recipe {
            Some(name) => crate::recipe::find(name)?,
            None => self.vm_recipe()?,
        };
        let to = self.version_to_publish(stage, &r, to).await?;
        self.publish_on_host(stage, &r, &to, Via::Stable)
            .await
            .map(drop)
    }

    /// Build (if needed) and publish one version on the host; the summary goes to the log.
    async fn publish_on_host(
        &mut self,
        stage: &str,
        recipe: &Recipe,
        version: &str,
        via: Via,
    ) -> Result<Published> {
        let mut host = PipelineHost::new(self.paths.clone(), self.ev.clone(), self.cancel.clone());
        let p = host.publish(recipe.name(), version, via).await?;
        self.ev.note(stage, p.summary.clone());
        Ok(p)
    }

    async fn booted_version(&mut self, stage: &str) -> Result<Option<String>> {
        let c = self
            .guest_cmd(
                stage,
                vec!["cat".into(), "/usr/share/bootlab/version".into()],
            )
            .await?;
        Ok((c.exit == 0).then(|| c.stdout.trim().to_string()))
    }

    async fn reboot_if(&mut self, stage: &str, apply: bool) -> Result<()> {
        if apply {
            self.ev.note(stage, "rebooting into the new default");
            self.guest().await?.reboot().await?;
        }
        Ok(())
    }

    /// Publish the next version (or `to`) and upgrade the guest to it: `ostree admin upgrade`
    /// (pending) on the offline family, `bootc upgrade` (staged) on bootc, which fetches what
    /// the guest's `spec.image` names (`stable`, unless a switch pinned another tag).
    async fn upgrade(&mut self, stage: &str, to: Option<&str>, apply: bool) -> Result<()> {
        let r = self.vm_recipe()?;
        let to = self.version_to_publish(stage, &r, to).await?;
        let target = self.publish_to_guest(stage, &r, &to, Via::Stable).await?;
        let cmds = match r.file.family {
            Family::Bootc => vec![crate::deploy::bootc::upgrade_argv()],
            Family::DebianOstree => {
                let st = self.status(Family::DebianOstree).await?;
                admin::upgrade(st.booted(), &target)
            }
        };
        for cmd in cmds {
            self.guest_ok(stage, cmd).await?;
        }
        self.reboot_if(stage, apply).await
    }

    /// Switch the guest to `recipe` at `version`: `ostree admin switch` to its branch, or
    /// `bootc switch --transport oci` to the version's own tag in its layout (so a bootc guest
    /// can switch between versions of one recipe, and later upgrades follow that tag).
    async fn switch(
        &mut self,
        stage: &str,
        recipe: &str,
        version: Option<&str>,
        apply: bool,
    ) -> Result<()> {
        let from = self.vm_recipe()?;
        let to = crate::recipe::find(recipe)?;
        if to.file.family != from.file.family {
            bail!(
                "{} is of the {} family and the guest runs {} ({} family): a switch stays within a family",
                to.name(),
                to.file.family,
                from.name(),
                from.file.family
            );
        }
        let v = to.resolve_version(version)?.id.clone();
        let target = self.publish_to_guest(stage, &to, &v, Via::Tag).await?;
        let cmds = match to.file.family {
            Family::Bootc => vec![crate::deploy::bootc::switch_argv(&target)],
            Family::DebianOstree => admin::switch(&target),
        };
        for cmd in cmds {
            self.guest_ok(stage, cmd).await?;
        }
        self.reboot_if(stage, apply).await
    }

    /// Make the rollback deployment the next boot: `bootc rollback`, or on the offline family
    /// `ostree admin set-default` (the redeploy on an ostree before 2023.6).
    async fn rollback(&mut self, stage: &str, apply: bool) -> Result<()> {
        let cmds = match self.vm_recipe()?.file.family {
            Family::Bootc => vec![crate::deploy::bootc::rollback_argv()],
            Family::DebianOstree => {
                let st = self.status(Family::DebianOstree).await?;
                let v = self.guest_ok(stage, admin::version_argv()).await?;
                admin::rollback(&st, &v.stdout)?.1
            }
        };
        for cmd in cmds {
            self.guest_ok(stage, cmd).await?;
        }
        self.reboot_if(stage, apply).await
    }

    /// What a deployment is called in checks: its recipe version id when its `version` metadata
    /// names one, else the metadata, else its short checksum.
    fn slot_name(recipe: &Recipe, d: &Deployment) -> String {
        match &d.version {
            Some(meta) => recipe
                .version_named_by(meta)
                .map_or_else(|| meta.clone(), str::to_string),
            None => short(&d.checksum).to_string(),
        }
    }

    async fn observe_deployments(&mut self, recipe: &Recipe) -> Result<DeploymentsSeen> {
        let st = self.status(recipe.file.family).await?;
        let name = |d: Option<&Deployment>| d.map(|d| Self::slot_name(recipe, d));
        Ok(DeploymentsSeen {
            booted: name(st.booted()),
            staged: name(st.staged().or(st.pending())),
            rollback: name(st.rollback()),
        })
    }
}

impl Prober for LabRunner {
    async fn observe(&mut self, probe: &Probe, timeout: Duration) -> Observation {
        let r: Result<Observation> = async {
            match probe {
                Probe::Guest { run } => {
                    self.ev.emit(Event::Command {
                        stage: "check guest".into(),
                        argv: sh(run),
                    });
                    let argv = sh(run);
                    let a: Vec<&str> = argv.iter().map(String::as_str).collect();
                    let o = self
                        .guest()
                        .await?
                        .client()
                        .exec_with(&a, None, timeout)
                        .await?;
                    Ok(Observation::Command(Captured {
                        exit: o.status(),
                        stdout: o.stdout,
                        stderr: o.stderr,
                    }))
                }
                Probe::Host { run } => {
                    // Our own channel: HostCmd keeps stdout, and its stderr lines arrive as
                    // events; everything is forwarded to the face as well.
                    let (ev, mut rx) = Emitter::channel();
                    let out = self
                        .host_cmd(run)?
                        .capture()
                        .run_unchecked("check host", &ev, &self.cancel)
                        .await;
                    drop(ev);
                    let mut stderr = String::new();
                    while let Some(s) = rx.recv().await {
                        if let Event::Log {
                            stream: Stream::Stderr,
                            line,
                            ..
                        } = &s.event
                        {
                            stderr.push_str(line);
                            stderr.push('\n');
                        }
                        self.ev.emit(s.event);
                    }
                    let out = out?;
                    Ok(Observation::Command(Captured {
                        exit: out.status.code().unwrap_or(-1),
                        stdout: out.stdout,
                        stderr,
                    }))
                }
                Probe::Deployments(_) => {
                    let recipe = self.vm_recipe()?;
                    self.ev.emit(Event::Command {
                        stage: "check guest".into(),
                        argv: crate::drill::Tooling::of(recipe.file.family).status_argv(),
                    });
                    Ok(Observation::Deployments(
                        self.observe_deployments(&recipe).await?,
                    ))
                }
            }
        }
        .await;
        r.unwrap_or_else(|e| {
            // A reboot or power cut may have closed the connection: reconnect next attempt.
            self.guest = None;
            Observation::Unavailable(format!("{e:#}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::model::Expect;

    /// Answers from a script, one per attempt, counting the attempts; `slow` attempts never
    /// answer (the per-attempt timeout must cut them).
    struct Script {
        answers: Vec<Option<Captured>>,
        n: usize,
    }
    impl Prober for Script {
        async fn observe(&mut self, _p: &Probe, _t: Duration) -> Observation {
            let a = self.answers.get(self.n).cloned().flatten();
            self.n += 1;
            match a {
                Some(c) => Observation::Command(c),
                None => std::future::pending().await,
            }
        }
    }

    #[test]
    fn a_step_says_where_its_time_went() {
        let actions = vec![ActionResult {
            action: "reboot".into(),
            ok: true,
            secs: 47.94,
            error: None,
        }];
        let checks = vec![
            CheckResult {
                title: "a".into(),
                passed: true,
                attempts: 1,
                secs: 1.5,
                reason: None,
                message: None,
            },
            CheckResult {
                title: "b".into(),
                passed: false,
                attempts: 3,
                secs: 2.6,
                reason: Some("no".into()),
                message: None,
            },
        ];
        assert_eq!(
            step_timing("reboot", false, 52.3, &actions, &checks),
            "step reboot failed in 52.3s (reboot 47.9s; checks 4.1s)"
        );
        assert_eq!(
            step_timing("read", true, 0.04, &[], &[]),
            "step read passed in 0.0s"
        );
    }

    fn check(window: u64) -> Check {
        Check {
            title: "ready".into(),
            probe: Probe::Host { run: "x".into() },
            expect: Expect {
                stdout_contains: vec!["ready".into()],
                ..Default::default()
            },
            // Milliseconds standing for seconds: the loop is the same, the test fast.
            retry: RetryPolicy {
                timeout: Duration::from_millis(100),
                window: Duration::from_millis(window),
                interval: Duration::from_millis(50),
            },
            fail: "Start the service.".into(),
        }
    }

    fn out(s: &str) -> Option<Captured> {
        Some(Captured {
            exit: 0,
            stdout: s.into(),
            stderr: String::new(),
        })
    }

    #[tokio::test]
    async fn a_check_is_retried_within_its_window_until_it_passes() {
        let mut p = Script {
            answers: vec![out("starting"), None, out("ready")],
            n: 0,
        };
        let mut retries = vec![];
        let r = run_check(&check(600), &mut p, &CancellationToken::new(), |n, why| {
            retries.push((n, why.to_string()))
        })
        .await;
        assert!(r.passed, "{r:?}");
        assert_eq!(r.attempts, 3);
        assert_eq!(retries.len(), 2);
        assert!(
            retries[1].1.contains("no answer within 0.1s"),
            "{retries:?}"
        );
        // A pause, an attempt cut by its timeout, a pause: 200 ms, never the whole window.
        assert!((0.19..0.5).contains(&r.secs), "{}", r.secs);
    }

    #[tokio::test]
    async fn a_failing_check_stops_at_its_window_with_the_learner_message() {
        let mut p = Script {
            answers: vec![out("starting"); 100],
            n: 0,
        };
        let r = run_check(&check(120), &mut p, &CancellationToken::new(), |_, _| {}).await;
        assert!(!r.passed);
        // Attempts at 0, 50 and 100 ms; 100 + 50 > 120 ends it.
        assert_eq!(r.attempts, 3);
        assert_eq!(
            r.message.as_deref(),
            Some("expected stdout to contain \"ready\"; it was \"starting\"\nStart the service.")
        );
        let once = run_check(&check(0), &mut p, &CancellationToken::new(), |_, _| {}).await;
        assert_eq!(once.attempts, 1);
    }
}
