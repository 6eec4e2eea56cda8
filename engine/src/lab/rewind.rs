//! Step snapshots: when a step passes, the lab's VM is snapshotted (an internal snapshot in its
//! own disk, tag [`StepSnapshot::tag_for`]); that is the state the next step starts from. Going
//! back, skipping ahead or resuming after bootlab (or the machine) restarted restores it in
//! seconds instead of replaying earlier steps, so no step relies on an earlier one having run in
//! this process. Every face calls these two: the CLI's `lab run`, the TUI's step keys.
//!
//! What a snapshot does not hold: the host's side (images built, updates published). A step
//! that publishes does so again when it runs again.

use super::progress::{Progress, StepSnapshot};
use super::runner::{LabRunner, StepOutcome};
use crate::vm::lifecycle::{self, UpOptions};
use crate::vm::{VmClient, VmRecord, VmState};
use anyhow::{Result, bail};
use std::time::Duration;

/// How long a restored guest may take to answer again (a stopped VM starts from the snapshot).
const RESTORE_WITHIN: Duration = Duration::from_secs(180);

/// What putting the guest at a step's start did.
#[derive(Debug, Clone, PartialEq)]
pub enum Rewind {
    /// The lab's first step: it starts from nothing saved, the guest stays as it is.
    FirstStep,
    /// The guest already is where the step starts (nothing restored, nothing lost).
    AlreadyThere { after: String },
    /// The step before has not passed (or passed without a VM to snapshot): the guest stays as
    /// it is.
    NoSnapshot { after: String },
    /// The snapshot was in a VM that no longer exists or was made again since.
    Gone { after: String, why: String },
    /// The snapshot was loaded (into the running VM, or by starting the stopped one from it).
    Restored {
        after: String,
        secs: f64,
        started: bool,
    },
}

impl Rewind {
    /// One line for the learner.
    pub fn describe(&self) -> String {
        match self {
            Rewind::FirstStep => "the first step: the guest stays as it is".into(),
            Rewind::AlreadyThere { after } => {
                format!("the guest is as step {after} left it: nothing restored")
            }
            Rewind::NoSnapshot { after } => format!(
                "no snapshot of the end of step {after} (it has not passed here): the guest stays as it is"
            ),
            Rewind::Gone { after, why } => format!(
                "the snapshot of the end of step {after} is gone ({why}): the guest stays as it is"
            ),
            Rewind::Restored {
                after,
                secs,
                started,
            } => format!(
                "the guest is back as step {after} left it ({}snapshot restored in {secs:.1}s)",
                if *started { "VM started, " } else { "" }
            ),
        }
    }
}

/// Start `lab` over: stop and remove its VM (the step snapshots live in its disk) and forget its
/// progress (steps passed, hints, snapshots). Returns what was done, one line each.
pub async fn reset(paths: &crate::paths::Paths, lab: &super::Lab) -> Result<Vec<String>> {
    let ids = lab.step_ids();
    let (progress, set_aside) = Progress::load_or_set_aside(paths, &lab.id, &ids)?;
    let vm = progress
        .vm
        .clone()
        .unwrap_or_else(|| super::runner::default_vm(lab));
    let mut done: Vec<String> = set_aside.into_iter().collect();
    if let Ok(rec) = VmRecord::load(paths, &vm) {
        if rec.state != VmState::Stopped {
            lifecycle::stop(paths, &vm, true, Duration::from_secs(20)).await?;
        }
        lifecycle::remove(paths, &vm)?;
        done.push(format!(
            "VM {vm} stopped and removed, with its step snapshots"
        ));
    }
    if Progress::file(paths, &lab.id).exists() {
        Progress::reset(paths, &lab.id)?;
        done.push(format!(
            "progress forgotten ({} of {} steps had passed)",
            progress.passed.len(),
            ids.len()
        ));
    }
    Ok(done)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl LabRunner {
    /// `step` passed: snapshot the lab's VM as the state the next step starts from, and record
    /// it in `progress` (the guest is now at `step`'s end). Without a running guest there is
    /// nothing to keep: `None`, and the guest's place is unknown.
    pub async fn snapshot_step(
        &mut self,
        step: &str,
        progress: &mut Progress,
    ) -> Result<Option<StepSnapshot>> {
        let stage = self.stage(step);
        progress.guest_at = None;
        if self.fresh_boot_follows(step) {
            progress.snapshots.remove(step);
            self.ev().note(
                &stage,
                "no snapshot: a later step boots a fresh VM before the guest is used again",
            );
            return Ok(None);
        }
        let rec = match VmRecord::load(self.paths(), &self.vm) {
            Ok(r) if r.state == VmState::Ready => r,
            _ => {
                progress.snapshots.remove(step);
                self.ev().note(
                    &stage,
                    format!("VM {} is not running: no snapshot", self.vm),
                );
                return Ok(None);
            }
        };
        let tag = StepSnapshot::tag_for(step);
        self.ev().note(
            &stage,
            format!("snapshot {tag}: the guest as this step leaves it"),
        );
        let done = VmClient::connect(self.paths(), &self.vm)
            .await?
            .snapshot_save(&tag)
            .await?;
        self.ev()
            .note(&stage, format!("snapshot {tag} saved in {:.1}s", done.secs));
        let s = StepSnapshot {
            vm: self.vm.clone(),
            tag,
            vm_created_unix: rec.created_unix,
            saved_unix: now_unix(),
        };
        progress.snapshots.insert(step.to_string(), s.clone());
        progress.guest_at = Some(step.to_string());
        Ok(Some(s))
    }

    /// Whether the snapshot recorded for `step` can still be loaded: its VM exists and is the
    /// one it was taken in.
    fn restorable(&self, progress: &Progress, step: &str) -> bool {
        progress.snapshots.get(step).is_some_and(|s| {
            VmRecord::load(self.paths(), &s.vm)
                .is_ok_and(|r| r.created_unix == s.vm_created_unix && s.vm == self.vm)
        })
    }

    /// Bring the guest to where step `i` starts when no snapshot of the step before it can: from
    /// the latest earlier step whose snapshot restores (else from the lab's start), run each
    /// step before `i` with its solution, as `selftest` does, recording it passed and
    /// snapshotting it. Every command is shown as it runs. Returns the steps run; the first that
    /// does not pass stops it with an error naming it.
    pub async fn catch_up(
        &mut self,
        i: usize,
        progress: &mut Progress,
    ) -> Result<Vec<StepOutcome>> {
        let steps = self.lab.steps.clone();
        let from = (0..i.min(steps.len()))
            .rev()
            .find(|&j| self.restorable(progress, &steps[j].id))
            .map_or(0, |j| j + 1);
        if from > 0 {
            let r = self.rewind_to(from, progress).await?;
            self.ev()
                .note(&self.stage(&steps[from - 1].id), r.describe());
        }
        let mut done = Vec::new();
        for (k, step) in steps.iter().enumerate().take(i).skip(from) {
            self.ev().note(
                &self.stage(&step.id),
                format!(
                    "catching up: step {} of {} with its solution, so step {} starts where it should",
                    k + 1,
                    steps.len(),
                    steps[i].id
                ),
            );
            let o = self.run_step(step, true).await;
            if !o.passed {
                let why = o
                    .checks
                    .iter()
                    .find(|c| !c.passed)
                    .and_then(|c| c.reason.clone())
                    .unwrap_or_else(|| "its action failed".into());
                bail!("catching up, step {} did not pass: {why}", step.id);
            }
            progress.mark_passed(&step.id, steps.get(k + 1).map(|s| s.id.as_str()));
            self.snapshot_step(&step.id, progress).await?;
            done.push(o);
        }
        Ok(done)
    }

    /// Whether the steps after `step` boot a fresh VM before any of them uses the guest (only
    /// host work in between: build, disk, publish, host): a snapshot now would never be used.
    fn fresh_boot_follows(&self, step: &str) -> bool {
        use super::model::{Action, Probe};
        let Some(i) = self.lab.steps.iter().position(|s| s.id == step) else {
            return false;
        };
        for s in &self.lab.steps[i + 1..] {
            match &s.action {
                Action::Boot { fresh: true, .. } => return true,
                Action::Build { .. }
                | Action::Disk { .. }
                | Action::Publish { .. }
                | Action::Host { .. }
                    if s.solve.is_empty()
                        && s.checks
                            .iter()
                            .all(|c| matches!(c.probe, Probe::Host { .. })) => {}
                _ => return false,
            }
        }
        false
    }

    /// Put the guest where step `i` starts: the snapshot of the step before it, loaded into the
    /// running VM or (when bootlab or the machine restarted and the VM stopped) by starting the
    /// VM from it. Nothing is restored when the guest already is there, so a learner's work on
    /// step `i` survives running `lab run` again.
    pub async fn rewind_to(&mut self, i: usize, progress: &mut Progress) -> Result<Rewind> {
        let ids = self.lab.step_ids();
        let Some((after, snap)) = progress.start_of(&ids, i) else {
            return Ok(Rewind::FirstStep);
        };
        let after = after.to_string();
        let Some(snap) = snap.cloned() else {
            return Ok(Rewind::NoSnapshot { after });
        };
        let rec = match VmRecord::load(self.paths(), &snap.vm) {
            Ok(r) => r,
            Err(_) => {
                let why = format!("VM {} no longer exists", snap.vm);
                return Ok(Rewind::Gone { after, why });
            }
        };
        if rec.created_unix != snap.vm_created_unix {
            let why = format!("VM {} was made again since", snap.vm);
            return Ok(Rewind::Gone { after, why });
        }
        let running = rec.state != VmState::Stopped;
        if running && progress.guest_at.as_deref() == Some(after.as_str()) {
            return Ok(Rewind::AlreadyThere { after });
        }
        if snap.vm != self.vm {
            bail!(
                "the snapshot of step {after} is in VM {}, and this lab runs in {}",
                snap.vm,
                self.vm
            );
        }
        let stage = self.stage(&ids[i]);
        self.forget_guest();
        let t = std::time::Instant::now();
        if running {
            self.ev().note(
                &stage,
                format!("restoring snapshot {} into VM {}", snap.tag, snap.vm),
            );
            VmClient::connect(self.paths(), &snap.vm)
                .await?
                .snapshot_restore(&snap.tag, RESTORE_WITHIN)
                .await?;
        } else {
            self.ev().note(
                &stage,
                format!("starting VM {} from snapshot {}", snap.vm, snap.tag),
            );
            let mut up = UpOptions::new(&snap.vm);
            up.from_snapshot = Some(snap.tag.clone());
            up.boot_timeout = Some(RESTORE_WITHIN);
            let (paths, ev, cancel) = (self.paths().clone(), self.ev().clone(), self.cancel());
            lifecycle::up(&paths, up, &ev, &cancel).await?;
        }
        let secs = t.elapsed().as_secs_f64();
        // The record says what the guest runs: after a rewind that may be an older version.
        self.follow_guest(&ids[i]).await;
        progress.guest_at = Some(after.clone());
        Ok(Rewind::Restored {
            after,
            secs,
            started: !running,
        })
    }
}
