//! The workflows every face calls (CLI, TUI, lab runner, drills, benchmark), so a build, a disk
//! or a boot means the same thing wherever it starts: ensure an image (built when missing or
//! changed; the pipeline's caches make an unchanged one a hit), ensure a disk, boot a VM from a
//! typed [`BootPlan`]. Values travel resolved: a [`Target`] holds the recipe and version, a boot
//! gets the disk it was handed. VM names follow one rule: [`vm_name`].

use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::pipeline::{BuildResult, DiskResult};
use crate::recipe::{Family, Recipe, Version};
use crate::vm::lifecycle::{self, UpOptions};
use crate::vm::{VmRecord, VmState};
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::time::Duration;

/// A recipe at one version, both resolved (no name is looked up again downstream).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub recipe: Recipe,
    pub version: Version,
}

impl Target {
    /// `version` `None`: the recipe's default version.
    pub fn new(recipe: &Recipe, version: Option<&str>) -> Result<Target> {
        Ok(Target {
            version: recipe.resolve_version(version)?.clone(),
            recipe: recipe.clone(),
        })
    }
    /// By recipe name (what a user typed, a step file's field).
    pub fn find(recipe: &str, version: Option<&str>) -> Result<Target> {
        Target::new(&crate::recipe::find(recipe)?, version)
    }
    pub fn name(&self) -> &str {
        self.recipe.name()
    }
}

/// What a VM is for; its name follows from it unless the user gives one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmFor<'a> {
    /// Booted from the Recipes/VM view or `bootlab vm up RECIPE`: named after the recipe.
    Recipe(&'a str),
    /// A lab's VM, whichever face runs the lab: `lab-<lab id>`.
    Lab(&'a str),
}

/// The one VM naming rule.
pub fn vm_name(what: VmFor) -> String {
    match what {
        VmFor::Recipe(r) => r.to_string(),
        VmFor::Lab(id) => format!("lab-{id}"),
    }
}

/// The image of `t`: built when missing or changed (a cache hit otherwise), committed to OSTree.
pub async fn ensure_image(
    paths: &Paths,
    t: &Target,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<BuildResult> {
    crate::pipeline::build_image(paths, &t.recipe, &t.version, ev, cancel).await
}

/// A disk and the image it was made from.
#[derive(Debug, Clone)]
pub struct Disk {
    pub image: BuildResult,
    pub disk: DiskResult,
}

/// The golden disk of `t`, with its image ensured first; reused while the commit is unchanged.
pub async fn ensure_disk(
    paths: &Paths,
    t: &Target,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<Disk> {
    let (image, disk) = match t.recipe.file.family {
        Family::DebianOstree => {
            crate::pipeline::with_image_commit(
                paths,
                &t.recipe,
                &t.version,
                "disk",
                ev,
                cancel,
                |commit| async move {
                    crate::pipeline::make_disk(paths, t.name(), &t.version.id, &commit, ev, cancel)
                        .await
                },
            )
            .await?
        }
        // bootc installs the image itself (`bootc install to-filesystem`).
        Family::Bootc => {
            let image = ensure_image(paths, t, ev, cancel).await?;
            let disk =
                crate::pipeline::bootc::install::make_bootc_disk(paths, &image, ev, cancel).await?;
            (image, disk)
        }
    };
    Ok(Disk { image, disk })
}

/// How a new VM starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A cold boot of the disk (the console shows the whole boot).
    Cold,
    /// From the cached booted snapshot of the disk (made once by one cold boot): a ready guest
    /// in seconds. Falls back to a cold boot when no snapshot can be made.
    Booted,
}

/// What an existing VM of the plan's name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse while it runs (a stopped one is cleared).
    Refuse,
    /// Stop and remove it: a fresh VM replaces it.
    Replace,
    /// Use it: start it again when it stopped (a kept VM keeps its disk).
    Reuse,
}

/// A boot, fully resolved.
#[derive(Debug, Clone)]
pub struct BootPlan {
    pub target: Target,
    /// The golden disk to boot; `None`: the target's, made when missing ([`ensure_disk`]).
    pub disk: Option<PathBuf>,
    pub start: Start,
    pub existing: Existing,
    /// Name, machine shape, keep, share…: the VM's options (recipe fields already filled).
    pub up: UpOptions,
}

impl BootPlan {
    pub fn new(target: Target, name: impl Into<String>) -> BootPlan {
        let up = UpOptions::new(name).for_recipe(&target.recipe, &target.version.id);
        BootPlan {
            target,
            disk: None,
            start: Start::Cold,
            existing: Existing::Refuse,
            up,
        }
    }
    pub fn name(&self) -> &str {
        &self.up.name
    }
}

/// Boot `plan`: clear or reuse what has its name, ensure the disk (unless handed one), start it
/// cold or from the booted snapshot. Returns when the guest agent answers.
pub async fn boot(
    paths: &Paths,
    plan: BootPlan,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<VmRecord> {
    let name = plan.name().to_string();
    if let Ok(rec) = VmRecord::load(paths, &name) {
        let stopped = rec.state == VmState::Stopped;
        match plan.existing {
            Existing::Reuse if stopped => {
                return lifecycle::up(paths, UpOptions::new(&name), ev, cancel).await;
            }
            Existing::Reuse => return Ok(rec),
            Existing::Refuse if !stopped => bail!(
                "VM {name} is running: stop it first (`bootlab vm down {name}`) or boot under another name"
            ),
            Existing::Replace if !stopped => {
                lifecycle::stop(paths, &name, true, Duration::from_secs(20)).await?;
                lifecycle::remove(paths, &name)?;
            }
            // A VM of that name that stopped earlier (power cut, crash) is cleared first.
            _ => lifecycle::remove(paths, &name)?,
        }
    }
    let golden = match plan.disk {
        Some(d) => d,
        None => {
            ensure_disk(paths, &plan.target, ev, cancel)
                .await?
                .disk
                .path
        }
    };
    let mut opts = plan.up;
    match plan.start {
        Start::Cold => opts.golden = Some(golden),
        Start::Booted => {
            match crate::vm::images::booted_image(paths, &golden, &opts, ev, cancel).await {
                Ok(img) => {
                    opts.image = Some(img);
                    opts.from_snapshot = Some(crate::vm::images::BOOTED_TAG.to_string());
                }
                Err(e) => {
                    if cancel.is_cancelled() {
                        return Err(e);
                    }
                    ev.note(
                        &crate::events::vm_stage(&name),
                        format!("no booted snapshot ({e:#}); cold boot"),
                    );
                    opts.golden = Some(golden);
                }
            }
        }
    }
    lifecycle::up(paths, opts, ev, cancel).await
}

/// A drill on a running VM, the way every face runs it: the recipe is the one the guest runs
/// (the record, corrected first from the booted deployment's origin), `kind` is made for it,
/// the drill runs to its report, and afterwards the VM record follows what the guest booted (a
/// switch changes the recipe; a later drill must not point the guest back unasked).
pub async fn drill(
    paths: &Paths,
    vm: &str,
    kind: impl FnOnce(&Recipe) -> Result<crate::drill::DrillKind>,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<crate::drill::Report> {
    use crate::drill::vm_ops::{PipelineHost, VmGuest};
    let (mut guest, recorded) = VmGuest::connect(paths, vm, ev).await?;
    let recorded = recorded.ok_or_else(|| {
        anyhow::anyhow!("VM {vm} records no recipe: a drill needs to know what to build next")
    })?;
    let recipe = match guest.follow_booted(recorded.file.family).await {
        Ok(Some(now)) => now,
        Ok(None) => recorded,
        Err(e) => {
            ev.note(
                "drill",
                format!("could not read what the guest booted: {e:#}"),
            );
            recorded
        }
    };
    let spec = crate::drill::DrillSpec::new(kind(&recipe)?, vm, recipe.clone());
    let mut host = PipelineHost::new(paths.clone(), ev.clone(), cancel.clone());
    // Its steps are timed as this recipe's (crate::timings).
    let report = crate::drill::run_drill(
        &spec,
        &mut guest,
        &mut host,
        &ev.about(recipe.name()),
        cancel,
    )
    .await;
    if !cancel.is_cancelled()
        && let Err(e) = guest.follow_booted(recipe.file.family).await
    {
        ev.note(
            "drill",
            format!("could not read what the guest booted: {e:#}"),
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_naming_rule() {
        assert_eq!(vm_name(VmFor::Recipe("debian-minimal")), "debian-minimal");
        assert_eq!(vm_name(VmFor::Lab("first-boot")), "lab-first-boot");
    }
}
