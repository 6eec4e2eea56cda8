//! qemu-img: the one place bootlab makes a disk image with it.

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::HostCmd;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// A qcow2 overlay backed by the (read-only) raw disk `backing`: a VM starts clean in
/// milliseconds and never changes the golden disk. The backing path is made absolute (the
/// overlay must find it from anywhere). Made under a temp name, renamed when complete.
pub async fn overlay(
    backing: &Path,
    dest: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    let backing = std::fs::canonicalize(backing)
        .with_context(|| format!("golden disk {}", backing.display()))?;
    let dir = dest.parent().context("overlay path has no folder")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    let r = HostCmd::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&backing)
        .arg(&tmp)
        .run(stage, ev, cancel)
        .await
        .and_then(|_| std::fs::rename(&tmp, dest).map_err(Into::into));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map(|_| dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlay_is_backed_by_the_golden() {
        if std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: no qemu-img");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let golden = t.path().join("g.raw");
        std::fs::File::create(&golden)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let o = overlay(
            &golden,
            &t.path().join("vm/o.qcow2"),
            "overlay",
            &Emitter::null(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let info = std::process::Command::new("qemu-img")
            .args(["info", "-U"])
            .arg(&o)
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(
            info.contains("backing file: ") && info.contains("g.raw"),
            "{info}"
        );
        assert!(info.contains("backing file format: raw"), "{info}");
        // Only the overlay: no temp file left.
        assert_eq!(std::fs::read_dir(t.path().join("vm")).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_missing_golden_is_named() {
        let t = tempfile::tempdir().unwrap();
        let e = overlay(
            &t.path().join("none.raw"),
            &t.path().join("o.qcow2"),
            "overlay",
            &Emitter::null(),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("golden disk "), "{e:#}");
        assert!(!t.path().join("o.qcow2").exists());
    }
}
