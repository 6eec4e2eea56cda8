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
