//! skopeo: copies images between podman's storage and OCI layouts (the update share a bootc
//! guest upgrades and switches from, with no registry).

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::HostCmd;
use anyhow::{Context, Result};
use std::path::Path;

/// `skopeo copy containers-storage:<image> oci:<layout>:<tag>`. The layout folder may already
/// hold other tags (versions); blobs they share are stored once.
pub async fn copy_to_oci_layout(
    image: &str,
    layout: &Path,
    tag: &str,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    if let Some(parent) = layout.parent() {
        std::fs::create_dir_all(parent)?;
    }
    HostCmd::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("containers-storage:{image}"))
        .arg(format!("oci:{}:{tag}", layout.display()))
        .run(stage, ev, cancel)
        .await
        .with_context(|| {
            format!(
                "skopeo could not write {image} to {}:{tag}",
                layout.display()
            )
        })?;
    Ok(())
}

/// `skopeo copy containers-storage:IMAGE oci-archive:ARCHIVE`: one tar file holding the image,
/// written under a temp name beside `archive` and renamed when complete.
pub async fn copy_to_oci_archive(
    image: &str,
    archive: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    let parent = archive
        .parent()
        .with_context(|| format!("{} has no folder", archive.display()))?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".{}.partial",
        archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&tmp);
    let r = HostCmd::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("containers-storage:{image}"))
        .arg(format!("oci-archive:{}", tmp.display()))
        .run(stage, ev, cancel)
        .await
        .with_context(|| format!("skopeo could not write {image} to {}", archive.display()));
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, archive)
        .with_context(|| format!("renaming {} to {}", tmp.display(), archive.display()))?;
    Ok(())
}
