//! Verified drills: upgrade, rollback, switch and power-cut, for both families.
//!
//! A drill is a sequence of states (read deployments → prepare → act → reboot → verify) that
//! reports typed events while it runs and ends with a [`report::Report`]: a verdict and a timeline
//! whose every step carries its duration and its evidence. The drills only talk to
//! [`ops::GuestOps`] and [`ops::HostOps`], so the same code runs against a real VM and against a
//! replay of recorded guest documents ([`replay`]).
//!
//! Family differences are small and live in [`Tooling`]: the offline family uses
//! `ostree admin upgrade|deploy|switch` and reads `ostree admin status`; the bootc family uses
//! `bootc upgrade|rollback|switch` and reads `bootc status --format=json`.

pub mod bootc;
mod flows;
pub mod ops;
pub mod replay;
pub mod report;
pub mod run;
pub mod tamper;
pub mod vm_ops;

use crate::deploy::{Deployment, HostStatus};
use crate::events::{CancellationToken, Emitter};
use crate::recipe::{Family, Recipe};
pub use flows::{background_upgrade_argv, marker_argv, poll_argv, verify_argvs, version_matches};
pub use ops::{ExecOutput, GuestOps, HostOps, Published, Via};
pub use report::{Report, Verdict};

/// Which drill.
#[derive(Debug, Clone, PartialEq)]
pub enum DrillKind {
    Upgrade,
    Rollback,
    /// Switch the guest to a recipe's image: another recipe, or on bootc another version of
    /// the same one (its own tag) or another transport (an oci-archive).
    Switch {
        to: Box<Recipe>,
        /// The version to switch to; the recipe's default when None.
        version: Option<String>,
        via: Via,
    },
    /// Start an upgrade and cut the power at `at`.
    Powercut {
        at: CutPoint,
    },
    /// Change the bytes behind a file under /usr, read it before and after a reboot, repair.
    Tamper,
}

impl DrillKind {
    pub fn name(&self) -> &'static str {
        match self {
            DrillKind::Upgrade => "upgrade",
            DrillKind::Rollback => "rollback",
            DrillKind::Switch { .. } => "switch",
            DrillKind::Powercut { .. } => "powercut",
            DrillKind::Tamper => "tamper",
        }
    }
}

/// When a power-cut drill pulls the plug, counted from the start of the upgrade command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CutPoint {
    /// This many seconds after the upgrade started (or when it ends, if sooner).
    Secs(f64),
    /// As soon as the upgrade log shows the /etc merge: the new deployment is being written.
    EtcMerge,
    /// Right after the upgrade command exits, before anything syncs or reboots.
    Finished,
    /// A random number of seconds between 1 and 40 (an upgrade takes ~32 s under TCG).
    Random,
}

impl std::str::FromStr for CutPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "etc-merge" => Ok(CutPoint::EtcMerge),
            "finished" => Ok(CutPoint::Finished),
            "random" => Ok(CutPoint::Random),
            other => other
                .trim_end_matches('s')
                .parse::<f64>()
                .ok()
                .filter(|v| *v >= 0.0)
                .map(CutPoint::Secs)
                .ok_or_else(|| {
                    format!(
                        "cut point {other:?}: use SECONDS (e.g. 12 or 12s), etc-merge, finished or random"
                    )
                }),
        }
    }
}

impl std::fmt::Display for CutPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CutPoint::Secs(s) => write!(f, "{s:.1}s"),
            CutPoint::EtcMerge => f.write_str("etc-merge"),
            CutPoint::Finished => f.write_str("finished"),
            CutPoint::Random => f.write_str("random"),
        }
    }
}

/// Everything a drill needs to know besides the guest and the host.
#[derive(Debug, Clone)]
pub struct DrillSpec {
    pub kind: DrillKind,
    /// The VM's name (for the report).
    pub vm: String,
    /// The recipe the VM was made from.
    pub recipe: Recipe,
    /// Written to /etc and /var markers before the drill acts, read back after.
    pub token: String,
}

impl DrillSpec {
    pub fn new(kind: DrillKind, vm: &str, recipe: Recipe) -> DrillSpec {
        DrillSpec {
            kind,
            vm: vm.to_string(),
            recipe,
            token: format!("bootlab-{:016x}", fastrand::u64(..)),
        }
    }
}

/// How a family's tools are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tooling {
    Ostree,
    Bootc,
}

impl Tooling {
    pub fn of(f: Family) -> Tooling {
        match f {
            Family::DebianOstree => Tooling::Ostree,
            Family::Bootc => Tooling::Bootc,
        }
    }
    pub fn status_argv(self) -> Vec<String> {
        match self {
            Tooling::Ostree => crate::deploy::ostree::status_argv(),
            Tooling::Bootc => crate::deploy::bootc::status_argv(),
        }
    }
    pub fn parse_status(self, text: &str) -> Result<HostStatus, crate::deploy::StatusParseError> {
        match self {
            Tooling::Ostree => crate::deploy::ostree::parse_text(text),
            Tooling::Bootc => crate::deploy::bootc::parse(text),
        }
    }
    pub fn upgrade_argv(self) -> Vec<String> {
        match self {
            Tooling::Ostree => crate::deploy::admin::upgrade_argv(),
            Tooling::Bootc => crate::deploy::bootc::upgrade_argv(),
        }
    }
    /// What identifies a deployment's content: the image digest for bootc, the commit for ostree.
    pub fn ident(self, d: &Deployment) -> String {
        match self {
            Tooling::Bootc => d.digest.clone().unwrap_or_else(|| d.checksum.clone()),
            Tooling::Ostree => d.checksum.clone(),
        }
    }
}

/// Run one drill to its verdict. Never panics on guest trouble: errors become an `error`
/// verdict with the timeline up to that point.
pub async fn run_drill<G: GuestOps, H: HostOps>(
    spec: &DrillSpec,
    guest: &mut G,
    host: &mut H,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Report {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let tooling = Tooling::of(spec.recipe.file.family);
    let mut run = run::Run::new(guest, host, ev.clone(), cancel.clone());
    let result = match &spec.kind {
        DrillKind::Upgrade => flows::upgrade(&mut run, spec, tooling).await,
        DrillKind::Rollback => flows::rollback(&mut run, spec, tooling).await,
        DrillKind::Switch { to, version, via } => {
            flows::switch(&mut run, spec, tooling, to, version.as_deref(), *via).await
        }
        DrillKind::Powercut { at } => flows::powercut(&mut run, spec, tooling, *at).await,
        DrillKind::Tamper => tamper::tamper(&mut run).await,
    };
    run.finish(
        spec.kind.name(),
        &spec.vm,
        spec.recipe.file.family.as_str(),
        started_at,
        result,
    )
}
