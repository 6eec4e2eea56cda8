//! UEFI: the loader on every disk's EFI system partition (GRUB, made with `grub-mkstandalone`),
//! the FAT file system it lives in (`mkfs.vfat` and mtools, which write FAT without mounting it:
//! kernels like this host's may have no vfat), and the OVMF firmware QEMU boots it with.
//!
//! The loader reads the syslinux.cfg that ostree rewrites on every deploy (GRUB's
//! `syslinux_configfile`), so a UEFI boot follows upgrades, rollbacks and switches exactly as
//! extlinux does under BIOS: one disk, both firmwares, one boot menu kept by ostree.

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::{HostCmd, find_program};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The GRUB configuration built into the loader: serial console, find /boot by its label, boot
/// what ostree's syslinux.cfg says (its paths are relative to /boot, whose `boot -> .` link
/// ostree keeps).
pub const GRUB_CFG: &str = "\
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --label bootlab-boot --set=root
syslinux_configfile /syslinux/syslinux.cfg
";
/// GRUB modules the loader needs (everything else is left out: it stays under 1 MB).
const GRUB_MODULES: &str = "part_msdos ext2 search search_label syslinuxcfg linux normal serial \
terminal echo configfile test gzio";
/// Where the firmware looks on removable media (no NVRAM boot entry needed).
pub const ESP_LOADER: &str = "::/EFI/BOOT/BOOTX64.EFI";
/// OVMF as one file (code and variables) where the distributions' packages put it: Debian and
/// Ubuntu first, then the paths used by Fedora and Arch.
pub const OVMF_CANDIDATES: &[&str] = &[
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/qemu/OVMF.fd",
    "/usr/share/edk2/ovmf/OVMF.fd",
    "/usr/share/edk2-ovmf/x64/OVMF.fd",
];
const GRUB_EFI_MODULES: &str = "/usr/lib/grub/x86_64-efi";

/// Debian names it grub-mkstandalone, Fedora grub2-mkstandalone.
fn mkstandalone() -> Option<&'static str> {
    ["grub-mkstandalone", "grub2-mkstandalone"]
        .into_iter()
        .find(|p| on_path(p))
}

fn on_path(name: &str) -> bool {
    find_program(name).is_some()
}

/// OVMF for `-bios`: read only, so a VM's booted snapshot holds all of its state.
pub fn find_ovmf() -> Result<PathBuf> {
    OVMF_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no OVMF firmware (looked for {}): install the ovmf package (Fedora: edk2-ovmf), \
                 or boot with BIOS",
                OVMF_CANDIDATES.join(", ")
            )
        })
}

/// Why this host cannot make the UEFI loader, or `None` when it can.
pub fn loader_missing() -> Option<String> {
    let mut miss = Vec::new();
    if mkstandalone().is_none() || !Path::new(GRUB_EFI_MODULES).is_dir() {
        miss.push("grub-mkstandalone with x86_64-efi modules (grub-efi-amd64-bin)");
    }
    if !on_path("mcopy") || !on_path("mmd") {
        miss.push("mtools");
    }
    if !on_path("mkfs.vfat") {
        miss.push("mkfs.vfat (dosfstools)");
    }
    (!miss.is_empty()).then(|| format!("no {}", miss.join(", no ")))
}

/// The UEFI loader, made once per host GRUB and [`GRUB_CFG`] and cached under `cache_dir`
/// (temp name, renamed when complete).
pub async fn loader(
    cache_dir: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    let grub = mkstandalone().context("no grub-mkstandalone on this host")?;
    let version = HostCmd::new(grub)
        .arg("--version")
        .output(stage, ev)
        .await?;
    let mut h = Sha256::new();
    h.update(version.trim().as_bytes());
    h.update(GRUB_CFG.as_bytes());
    h.update(GRUB_MODULES.as_bytes());
    let key = &hex::encode(h.finalize())[..16];
    let dest = cache_dir.join(format!("BOOTX64-{key}.EFI"));
    if dest.is_file() {
        return Ok(dest);
    }
    std::fs::create_dir_all(cache_dir)?;
    let tmp = tempfile::tempdir_in(cache_dir)?;
    let cfg = tmp.path().join("grub.cfg");
    std::fs::write(&cfg, GRUB_CFG)?;
    let out = tmp.path().join("BOOTX64.EFI");
    HostCmd::new(grub)
        .args(["-O", "x86_64-efi", "--locales=", "--fonts=", "--themes="])
        .arg(format!("--install-modules={GRUB_MODULES}"))
        .arg("--modules=part_msdos ext2 search_label serial")
        .arg("-o")
        .arg(&out)
        .arg(format!("boot/grub/grub.cfg={}", cfg.display()))
        .run(stage, ev, cancel)
        .await?;
    std::fs::rename(&out, &dest)?;
    Ok(dest)
}

/// A FAT file system on `dev` (the ESP), with `loader` as the removable-media boot file.
pub async fn write_esp(
    dev: &Path,
    label: &str,
    loader: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    HostCmd::new("mkfs.vfat")
        .args(["-n", label])
        .arg(dev)
        .run(stage, ev, cancel)
        .await?;
    let img = dev.to_string_lossy().to_string();
    // MTOOLS_SKIP_CHECK: the file system sits on a loop device, not a floppy of known geometry.
    HostCmd::new("mmd")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &img, "::/EFI", "::/EFI/BOOT"])
        .run(stage, ev, cancel)
        .await?;
    HostCmd::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &img])
        .arg(loader)
        .arg(ESP_LOADER)
        .run(stage, ev, cancel)
        .await?;
    let dir = HostCmd::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &img, "-b", "::/EFI/BOOT"])
        .output(stage, ev)
        .await?;
    if !dir.contains("BOOTX64.EFI") {
        bail!(
            "the ESP on {} has no BOOTX64.EFI after mcopy: {dir}",
            dev.display()
        );
    }
    Ok(())
}
