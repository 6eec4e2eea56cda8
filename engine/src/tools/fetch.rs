//! Downloads (`curl`) and source archives (`tar`): bootc's pinned release when no local copy of
//! it is configured.

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::HostCmd;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Download `url` to `dest` (through a temp file beside it: a cut download never looks done).
pub async fn download(
    url: &str,
    dest: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(dir)?;
    HostCmd::new("curl")
        .args(["--fail", "--location", "--silent", "--show-error"])
        .args(["--connect-timeout", "20", "--retry", "2", "--output"])
        .arg(tmp.path())
        .arg(url)
        .run(stage, ev, cancel)
        .await
        .with_context(|| format!("could not download {url}"))?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Unpack a `.tar.gz` holding one top folder into `into`; returns that folder.
pub async fn unpack_one_folder(
    archive: &Path,
    into: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    std::fs::create_dir_all(into)?;
    let before: Vec<_> = std::fs::read_dir(into)?
        .flatten()
        .map(|e| e.path())
        .collect();
    HostCmd::new("tar")
        .args(["--no-same-owner", "-xzf"])
        .arg(archive)
        .arg("-C")
        .arg(into)
        .run(stage, ev, cancel)
        .await
        .with_context(|| format!("could not unpack {}", archive.display()))?;
    let new: Vec<_> = std::fs::read_dir(into)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| !before.contains(p) && p.is_dir())
        .collect();
    match new.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "{} does not hold exactly one top folder ({} new entries)",
            archive.display(),
            new.len()
        ),
    }
}

/// Copy a folder tree (symlinks kept as links, modes kept) with `cp -a`.
pub async fn copy_tree(
    from: &Path,
    to: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    HostCmd::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .run(stage, ev, cancel)
        .await
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}
