//! `bootlab image …` and `bootlab disk …`: thin faces over [`crate::pipeline`].

use crate::events::{CancellationToken, Emitter, timing_table};
use crate::paths::Paths;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum ImageCmd {
    /// Build (once) or reuse the Debian base image.
    Base {
        #[arg(long)]
        rebuild: bool,
        /// Show every line the tools print.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Build a recipe version and commit it to bootlab's OSTree repo.
    Build {
        recipe: String,
        #[arg(long)]
        version: Option<String>,
        #[arg(short, long)]
        verbose: bool,
    },
    /// Build (cache hit when unchanged) and publish a recipe version to the update share that
    /// guests upgrade from.
    Publish {
        recipe: String,
        #[arg(long)]
        version: Option<String>,
        #[arg(short, long)]
        verbose: bool,
    },
}
#[derive(Debug, clap::Subcommand)]
pub enum DiskCmd {
    /// Make (or reuse) the golden bootable disk of a recipe version.
    Make {
        recipe: String,
        #[arg(long)]
        version: Option<String>,
        /// Also write it as another format: qcow2 (QEMU/libvirt), vmdk (VMware), vhdx
        /// (Hyper-V), vdi (VirtualBox); `bootlab vm up RECIPE --disk FILE` boots any of them.
        #[arg(long, value_parser = ["raw", "qcow2", "vmdk", "vhdx", "vdi"])]
        format: Option<String>,
        #[arg(short, long)]
        verbose: bool,
    },
}

/// Run `f` with an emitter printing to stderr and Ctrl-C cancelling the job.
pub(super) fn with_job<T>(
    verbose: bool,
    f: impl AsyncFnOnce(&Emitter, &CancellationToken) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let (ev, rx) = super::channel();
        let printer = super::print_events(rx, verbose);
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("bootlab: cancelling…");
                c2.cancel();
            }
        });
        let r = f(&ev, &cancel).await;
        drop(ev);
        let _ = printer.await;
        r
    })
}

pub fn run_image(c: ImageCmd) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    paths.ensure()?;
    match c {
        ImageCmd::Base { rebuild, verbose } => {
            let r = with_job(verbose, async |ev, cancel| {
                crate::pipeline::ensure_base(&paths, rebuild, ev, cancel).await
            })?;
            println!("{} {}", r.tag, r.image_id);
            print!("{}", timing_table(&r.timings));
        }
        ImageCmd::Build {
            recipe,
            version,
            verbose,
        } => {
            let recipe = crate::recipe::find(&recipe)?;
            let version = recipe.resolve_version(version.as_deref())?.clone();
            let r = with_job(verbose, async |ev, cancel| {
                crate::pipeline::build_image(&paths, &recipe, &version, ev, cancel).await
            })?;
            println!("image   {} ({})", r.image_tag, short(&r.image_id));
            println!("digest  {}", r.image_digest);
            if r.commit.is_empty() {
                // bootc family: bootc makes the deployment itself at install and upgrade time.
                println!("lint    bootc container lint:");
                for l in &r.lint {
                    println!("          {l}");
                }
            } else {
                println!(
                    "commit  {} on {} in {}",
                    r.commit,
                    r.branch,
                    paths.ostree_repo().display()
                );
            }
            println!("kernel  {}", r.kernel);
            print_table(&r.timings, r.cold_secs);
        }
        ImageCmd::Publish {
            recipe,
            version,
            verbose,
        } => {
            let recipe = crate::recipe::find(&recipe)?;
            let version = recipe.resolve_version(version.as_deref())?.clone();
            let r = with_job(verbose, async |ev, cancel| {
                let b = crate::pipeline::build_image(&paths, &recipe, &version, ev, cancel).await?;
                let p =
                    crate::pipeline::publish(&paths, recipe.name(), &b.commit, ev, cancel).await?;
                let mut t = b.timings;
                t.extend(p.timings.clone());
                Ok((p, t))
            })?;
            println!(
                "published {} as {} in {}",
                r.0.commit,
                r.0.branch,
                r.0.repo.display()
            );
            print_table(&r.1, 0.0);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_disk(c: DiskCmd) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    paths.ensure()?;
    match c {
        DiskCmd::Make {
            recipe,
            version,
            format,
            verbose,
        } => {
            let format = format
                .as_deref()
                .map(crate::tools::qemu::img::Format::parse)
                .transpose()?;
            let t = crate::workflow::Target::find(&recipe, version.as_deref())?;
            let recipe = &t.recipe;
            // The build is normally a cache hit here; it gives the commit to deploy.
            let crate::workflow::Disk { image: b, disk: d } =
                with_job(verbose, async |ev, cancel| {
                    crate::workflow::ensure_disk(&paths, &t, ev, cancel).await
                })?;
            println!("disk    {}", d.path.display());
            if let Some(f) = format.filter(|f| *f != crate::tools::qemu::img::Format::Raw) {
                let p = with_job(verbose, async |ev, cancel| {
                    crate::pipeline::disk::in_format(&d.path, f, ev, cancel).await
                })?;
                println!("{:<7} {} — {}", f.name(), p.display(), f.purpose());
            }
            println!("commit  {} ({} {})", d.commit, d.recipe, d.version);
            if recipe.file.guest.known_password.is_some() {
                println!(
                    "note    lab image: its console login has a known password (see the recipe)"
                );
            }
            let mut t = b.timings;
            t.extend(d.timings);
            print_table(&t, b.cold_secs + d.cold_secs);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// The timing table, how many stages were cache hits and, when some were, what the cold run of
/// the same artifacts took (`cold_secs`, 0 when unknown).
fn print_table(rows: &[crate::events::StageTiming], cold_secs: f64) {
    print!("{}", timing_table(rows));
    let hits = rows.iter().filter(|r| r.cached).count();
    let total: f64 = rows.iter().map(|r| r.secs).sum();
    let mut line = format!("cache   {hits}/{} stages were hits", rows.len());
    if hits > 0 && cold_secs > total && total > 0.0 {
        line.push_str(&format!(
            "; {total:.2} s now vs {cold_secs:.1} s cold ({:.0}x faster)",
            cold_secs / total
        ));
    }
    println!("{line}");
}
