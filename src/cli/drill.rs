//! `bootlab status VM` and `bootlab drill upgrade|rollback|switch|powercut VM`.

use crate::drill::vm_ops::VmGuest;
use crate::drill::{CutPoint, DrillKind, Report, Verdict, Via};
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The running VM.
    pub vm: String,
    /// Print the deployments as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The running VM.
    pub vm: String,
    /// From: a deployment's index in boot order or a checksum prefix (default: the booted one).
    pub from: Option<String>,
    /// To: same forms (default: the first other deployment).
    pub to: Option<String>,
    /// Print the diff as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// The running VM.
    pub vm: String,
    /// Print the report as JSON (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Show every line the guest and the host tools print while the drill runs.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum DrillCmd {
    /// Build and publish the next version, upgrade the guest, reboot, verify.
    Upgrade(Common),
    /// Make the rollback deployment the default, reboot, verify.
    Rollback(Common),
    /// Change the bytes of the object behind a file under /usr, read it before and after a
    /// reboot, put the bytes back: PASS when the change is detected (fs-verity).
    Tamper(Common),
    /// Switch the guest to another recipe's image (on bootc also another version of its own,
    /// or the same image over another transport), reboot, verify.
    Switch {
        #[command(flatten)]
        common: Common,
        /// The recipe to switch to.
        #[arg(long)]
        to: String,
        /// The version to switch to (default: the recipe's default). On bootc the guest then
        /// follows that version's own tag in the OCI layout (`…/<recipe>.oci:<version>`).
        #[arg(long)]
        version: Option<String>,
        /// bootc: switch over the oci-archive transport (a tar file in the update share)
        /// instead of the OCI layout.
        #[arg(long)]
        archive: bool,
    },
    /// Start an upgrade, cut the power during it, boot again, verify a complete deployment boots.
    Powercut {
        #[command(flatten)]
        common: Common,
        /// When to cut: SECONDS after the upgrade starts, `etc-merge`, `finished` or `random`.
        #[arg(long, default_value = "random")]
        at: CutPoint,
    },
}

pub fn run_status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let paths = Paths::from_env();
        let (mut guest, recipe) = VmGuest::connect(&paths, &a.vm, &Emitter::null()).await?;
        let family = recipe
            .as_ref()
            .map(|r| r.file.family)
            .unwrap_or(crate::recipe::Family::DebianOstree);
        let live = crate::deploy::live::read(&mut guest, family).await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&live)?);
        } else {
            println!(
                "VM {} ({})",
                a.vm,
                recipe
                    .as_ref()
                    .map(|r| r.name().to_string())
                    .unwrap_or_else(|| "unknown recipe".into())
            );
            if let Some(b) = &live.bootc {
                println!("\nbootc status --format=json:\n{}", b.table());
            }
            if let Some(o) = &live.ostree {
                println!("\nostree admin status:\n{}", o.table());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run_diff(a: DiffArgs) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let paths = Paths::from_env();
        let (ev, rx) = super::channel();
        let printer = super::print_events(rx, false);
        let (mut guest, recipe) = VmGuest::connect(&paths, &a.vm, &ev).await?;
        let family = recipe
            .as_ref()
            .map(|r| r.file.family)
            .unwrap_or(crate::recipe::Family::DebianOstree);
        let live = crate::deploy::live::read(&mut guest, family).await?;
        let status = live
            .best()
            .ok_or_else(|| anyhow::anyhow!("the guest reported no deployments"))?;
        let (from, to) = crate::deploy::diff::pick(status, a.from.as_deref(), a.to.as_deref())?;
        let d = crate::deploy::diff::between(&mut guest, &ev, &from, &to).await?;
        drop((ev, guest));
        let _ = printer.await;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&d)?);
        } else {
            println!("{} → {}", d.a, d.b);
            println!("\nfiles ({}):", d.files.len());
            for l in d.file_lines() {
                println!("  {l}");
            }
            println!("\npackages ({}):", d.packages.len());
            for l in d.package_lines() {
                println!("  {l}");
            }
            println!("\n{}", d.composefs.line());
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run(c: DrillCmd) -> anyhow::Result<ExitCode> {
    let (common, kind) = match c {
        DrillCmd::Upgrade(c) => (c, None),
        DrillCmd::Rollback(c) => (c, Some(DrillKind::Rollback)),
        DrillCmd::Tamper(c) => (c, Some(DrillKind::Tamper)),
        DrillCmd::Switch {
            common,
            to,
            version,
            archive,
        } => {
            let r = crate::recipe::find(&to)?;
            if let Some(v) = &version {
                r.resolve_version(Some(v))?;
            }
            if archive && r.file.family != crate::recipe::Family::Bootc {
                anyhow::bail!(
                    "--archive is a bootc transport; {} is of the {} family",
                    r.name(),
                    r.file.family
                );
            }
            // A version pins its own tag; without one the guest follows `stable`.
            let via = match (archive, &version) {
                (true, _) => Via::Archive,
                (false, Some(_)) => Via::Tag,
                (false, None) => Via::Stable,
            };
            let kind = DrillKind::Switch {
                to: Box::new(r),
                version,
                via,
            };
            (common, Some(kind))
        }
        DrillCmd::Powercut { common, at } => (common, Some(DrillKind::Powercut { at })),
    };
    let kind = kind.unwrap_or(DrillKind::Upgrade);
    let rt = super::runtime()?;
    rt.block_on(async {
        let paths = Paths::from_env();
        let (ev, rx) = super::channel();
        let printer = super::print_events(rx, common.verbose);
        let cancel = CancellationToken::new();
        {
            let c = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    c.cancel();
                }
            });
        }
        let report = crate::workflow::drill(&paths, &common.vm, |_| Ok(kind), &ev, &cancel).await;
        drop(ev);
        let _ = printer.await;
        let report = report?;
        let saved = save(&paths, &report);
        if common.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.render());
            if let Ok(p) = &saved {
                println!("report saved: {}", p.display());
            }
        }
        Ok(match report.verdict {
            Verdict::Pass => ExitCode::SUCCESS,
            Verdict::Fail => ExitCode::from(1),
            Verdict::Error => ExitCode::from(2),
        })
    })
}

/// Keep every report under the data folder: `reports/<vm>-<drill>-<time>.json`.
fn save(paths: &Paths, r: &Report) -> anyhow::Result<std::path::PathBuf> {
    let stamp = r.started_at.replace(':', "");
    let p = paths
        .data
        .join("reports")
        .join(format!("{}-{}-{stamp}.json", r.vm, r.drill));
    crate::paths::write_atomic(&p, serde_json::to_string_pretty(r)?.as_bytes())?;
    Ok(p)
}
