//! qemu-img: the one place bootlab makes a disk image with it.

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::HostCmd;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The disk formats a golden disk can be turned into, each for the hypervisor a learner may
/// take it to. QEMU boots every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Raw,
    Qcow2,
    Vmdk,
    Vhdx,
    Vdi,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Raw,
        Format::Qcow2,
        Format::Vmdk,
        Format::Vhdx,
        Format::Vdi,
    ];
    /// The name qemu-img uses (and the file extension bootlab gives it).
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
            Format::Vdi => "vdi",
        }
    }
    /// One line for a learner: where this format goes.
    pub fn purpose(self) -> &'static str {
        match self {
            Format::Raw => {
                "every byte of the disk: `dd` it to a USB stick or a cloud's image import"
            }
            Format::Qcow2 => {
                "QEMU/libvirt's own: sparse, snapshots, backing files (bootlab's overlays)"
            }
            Format::Vmdk => "VMware (Workstation, ESXi)",
            Format::Vhdx => "Hyper-V",
            Format::Vdi => "VirtualBox",
        }
    }
    pub fn parse(s: &str) -> Result<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown disk format {s:?}: one of {}",
                    Format::ALL.map(Format::name).join(", ")
                )
            })
    }
}

/// `qemu-img info` of `path` as JSON, read into `T` (`-U`: a running VM's disk may be read).
async fn info<T: serde::de::DeserializeOwned>(path: &Path, stage: &str, ev: &Emitter) -> Result<T> {
    let out = HostCmd::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(path)
        .output(stage, ev)
        .await?;
    serde_json::from_str(&out).with_context(|| format!("qemu-img info of {}", path.display()))
}

/// The format of a disk image. A `.raw` file is raw without probing (a probed raw disk whose
/// first bytes look like another format's header would be misread: QEMU's own warning);
/// anything else as qemu-img reads it.
pub async fn format_of(path: &Path, stage: &str, ev: &Emitter) -> Result<Format> {
    if path.extension().is_some_and(|e| e == "raw") {
        return Ok(Format::Raw);
    }
    #[derive(serde::Deserialize)]
    struct Info {
        format: String,
    }
    let i: Info = info(path, stage, ev).await?;
    Format::parse(&i.format).with_context(|| format!("disk image {}", path.display()))
}

/// The tags of the internal snapshots in a qcow2 disk (its VM may run).
pub async fn snapshot_tags(path: &Path, stage: &str, ev: &Emitter) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Snapshot {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(default)]
        snapshots: Vec<Snapshot>,
    }
    let i: Info = info(path, stage, ev).await?;
    Ok(i.snapshots.into_iter().map(|s| s.name).collect())
}

/// `src` (a golden disk) written as `format` to `dest`, under a temp name renamed when
/// complete, so a cancelled or failed conversion never leaves a file that looks whole.
pub async fn convert(
    src: &Path,
    format: Format,
    dest: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    let src_format = format_of(src, stage, ev).await?;
    let mut cmd = HostCmd::new("qemu-img")
        .args(["convert", "-f", src_format.name(), "-O", format.name()])
        .arg(src);
    // Hyper-V and VMware read only some subformats: the defaults are the widely read ones,
    // except VHDX, whose default 32 MiB blocks waste space on a sparse disk.
    if format == Format::Vhdx {
        cmd = cmd.args(["-o", "subformat=dynamic"]);
    }
    write_then_rename(cmd, dest, stage, ev, cancel).await
}

/// Runs `cmd` with a temp path beside `dest` as its last argument (the file it writes), then
/// renames it to `dest`; on failure or cancel the temp file goes, so `dest` is whole or absent.
async fn write_then_rename(
    cmd: HostCmd,
    dest: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    let dir = dest
        .parent()
        .with_context(|| format!("{} has no folder", dest.display()))?;
    let tmp = dir.join(format!(
        ".tmp-{}",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    let r = cmd
        .arg(&tmp)
        .run(stage, ev, cancel)
        .await
        .and_then(|_| std::fs::rename(&tmp, dest).map_err(Into::into));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map(|_| dest.to_path_buf())
}

/// A qcow2 overlay backed by the (read-only) golden disk `backing` (raw as bootlab makes it, or
/// any format qemu-img reads, e.g. a converted one): a VM starts clean in milliseconds and never
/// changes the golden disk. The backing path is made absolute (the overlay must find it from
/// anywhere). Made under a temp name, renamed when complete.
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
    let fmt = format_of(&backing, stage, ev).await?;
    let cmd = HostCmd::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", fmt.name(), "-b"])
        .arg(&backing);
    write_then_rename(cmd, dest, stage, ev, cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether qemu-img is missing here (the test is then skipped, and says so).
    fn no_qemu_img() -> bool {
        let missing = std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_err();
        if missing {
            eprintln!("SKIPPED: no qemu-img");
        }
        missing
    }

    #[tokio::test]
    async fn overlay_is_backed_by_the_golden() {
        if no_qemu_img() {
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
    async fn snapshot_tags_lists_the_internal_snapshots() {
        if no_qemu_img() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d.qcow2");
        let qemu_img = |args: &[&str]| {
            let st = std::process::Command::new("qemu-img")
                .args(args)
                .arg(&d)
                .status()
                .unwrap();
            assert!(st.success(), "qemu-img {args:?}");
        };
        // `create` takes the size after the file name.
        let st = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&d)
            .arg("1M")
            .status()
            .unwrap();
        assert!(st.success());
        let ev = Emitter::null();
        assert!(snapshot_tags(&d, "t", &ev).await.unwrap().is_empty());
        qemu_img(&["snapshot", "-c", "lab-step-2"]);
        qemu_img(&["snapshot", "-c", "booted"]);
        assert_eq!(
            snapshot_tags(&d, "t", &ev).await.unwrap(),
            ["lab-step-2", "booted"]
        );
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
