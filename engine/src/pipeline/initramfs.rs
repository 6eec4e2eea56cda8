//! A small, uncompressed initramfs for offline-family guests, made once per kernel and package set.
//!
//! The base's initramfs is dracut's generic one: 135 MB of cpio (every storage, network and
//! crypto module), gzip -9 to 40 MB. Under TCG the firmware reads 40 MB through BIOS calls and
//! the kernel spends seconds inflating it, then udev and dracut's hooks work through all of it.
//! A guest of bootlab's always boots the same way (virtio disk, ext4, OSTree root), so the
//! initramfs needs only systemd, udev, the ostree module (ostree-prepare-root) and the virtio and
//! ext4 drivers; left uncompressed, the kernel just copies it.
//!
//! dracut runs inside the recipe's own image (its kernel, its systemd, its ostree) in a
//! throw-away container. The result is cached under `<cache>/initramfs/` by the kernel version,
//! the image's package database and the dracut arguments, so the versions of one recipe (same
//! packages) share one; a recipe that installs packages gets its own.

use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::tools::podman::Podman;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bumped when the way the initramfs is made changes in a way the arguments do not show.
const FORMAT: u32 = 3;

/// dracut modules of the initramfs (`-m` replaces dracut's default list).
pub const DRACUT_MODULES: &[&str] = &[
    "systemd",
    "systemd-initrd",
    "dracut-systemd",
    "base",
    "rootfs-block",
    "kernel-modules",
    "udev-rules",
    "fs-lib",
    "ostree",
];

/// The only kernel modules in it (`--drivers`, dependencies follow): the virtio disk and ext4
/// (crc32c is loaded by name, not as a dependency, so it is listed).
pub const DRIVERS: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "ext4",
    "crc32c_generic",
    "crc32c_intel",
];
/// Added when the image requires composefs (the trixie base): ostree-prepare-root mounts the
/// deployment's `.ostree.cfs` (erofs, through a loop device) under an overlay.
pub const COMPOSEFS_DRIVERS: &[&str] = &["erofs", "loop", "overlay"];

/// A unit's `ExecStartPre` that writes the boot-phase mark `bootlab-phase <phase> <uptime>` on
/// the console, as [`crate::vm::boot_phase`] reads it. (`$$` is systemd's `$`.)
macro_rules! phase_mark {
    ($phase:literal) => {
        concat!(
            "ExecStartPre=-/bin/sh -c \"read u r < /proc/uptime; echo bootlab-phase ",
            $phase,
            " $$u > /dev/console\"\n"
        )
    };
}

/// The initramfs's udev coldplug, narrowed to what finds the root disk: the PCI bus (virtio_pci),
/// the virtio devices (virtio_blk) and the block devices. The stock trigger replays every CPU,
/// memory block, tty, input and ACPI device; measured on the trixie guest, its udevd spent 7 s of
/// TCG CPU in the initramfs and found the root disk 3.4 s after the trigger. The real root's
/// udev coldplugs everything again (consoles, the power button, the agent's port).
/// Before the trigger it writes the `initramfs` [boot phase mark](crate::vm::boot_phase).
pub const INITRD_TRIGGER: &str = concat!(
    "[Service]\n",
    phase_mark!("initramfs"),
    "ExecStart=\nExecStart=-udevadm trigger --type=devices --action=add --subsystem-match=pci --subsystem-match=virtio --subsystem-match=block\n"
);
/// The initramfs's last act, switching to the real root, writes the `systemd` boot phase mark.
pub const INITRD_SWITCH_ROOT: &str = concat!("[Service]\n", phase_mark!("systemd"));

/// A systemd drop-in dracut puts into the initramfs (`--include`): written to `/out/<file>` in
/// the container that runs dracut, found in the initramfs at `dest`. (`$$` is systemd's `$`.)
pub struct InitrdDropIn {
    pub file: &'static str,
    pub dest: &'static str,
    pub text: &'static str,
}

impl InitrdDropIn {
    /// Where dracut reads it: under the `/out` its results leave by.
    pub fn src(&self) -> String {
        format!("/out/{}", self.file)
    }
    /// Its file name in the initramfs: dracut skips a missing `--include` source without a
    /// word, so the result is checked for this name.
    pub fn name(&self) -> &'static str {
        self.dest.rsplit('/').next().unwrap_or(self.dest)
    }
}

/// Every drop-in of the small initramfs.
pub const INITRD_DROPINS: &[InitrdDropIn] = &[
    InitrdDropIn {
        file: "udev-trigger.conf",
        dest: "/etc/systemd/system/systemd-udev-trigger.service.d/bootlab-initrd.conf",
        text: INITRD_TRIGGER,
    },
    InitrdDropIn {
        file: "switch-root.conf",
        dest: "/etc/systemd/system/initrd-switch-root.service.d/bootlab-phase.conf",
        text: INITRD_SWITCH_ROOT,
    },
];

/// dracut's arguments, without the kernel version and output path. Each of [`INITRD_DROPINS`]
/// must be at its `src()` when dracut runs.
pub fn dracut_args(composefs: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "--force",
        // Generic in the sense of "not this build host's hardware": the module list is explicit.
        "--no-hostonly",
        "--no-hostonly-cmdline",
        "--reproducible",
        "--no-early-microcode",
        // TCG: copying 32 MB is cheaper than inflating it.
        "--no-compress",
    ]
    .map(String::from)
    .to_vec();
    a.extend(["-m".into(), DRACUT_MODULES.join(" ")]);
    let mut drivers = DRIVERS.to_vec();
    if composefs {
        drivers.extend(COMPOSEFS_DRIVERS);
    }
    a.extend(["--drivers".into(), drivers.join(" ")]);
    for d in INITRD_DROPINS {
        a.extend(["--include".into(), d.src(), d.dest.into()]);
    }
    a
}

/// What [`replace_initramfs`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct InitramfsReport {
    pub kernel: String,
    pub bytes: u64,
    pub cached: bool,
}

/// How the small initramfs is made, for both families (format, dracut's arguments, the initrd's
/// udev trigger): part of the offline builds' cache key and of the bootc base's, so a change
/// makes them again.
pub fn method_id() -> String {
    let mut h = Sha256::new();
    h.update(format!("format {FORMAT}\0"));
    for composefs in [false, true] {
        h.update(dracut_args(composefs).join(" "));
        h.update("\0");
    }
    for d in INITRD_DROPINS {
        h.update(d.text);
        h.update("\0");
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// The cache key: how it is made ([`method_id`]), the kernel version, composefs or not, the
/// image's package database.
pub fn cache_key(kver: &str, dpkg_status: &[u8], composefs: bool) -> String {
    let mut h = Sha256::new();
    h.update(format!("{}\0{kver}\0composefs {composefs}\0", method_id()));
    h.update(dpkg_status);
    hex::encode(h.finalize())[..24].to_string()
}

/// The kernel version of an exported rootfs: the one `boot/vmlinuz-<kver>` with an initramfs
/// beside it. None when there is not exactly one (the layout conversion reports that case).
pub fn kernel_in(tree: &Path) -> Option<String> {
    let mut found: Vec<String> = std::fs::read_dir(tree.join("boot"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .collect();
    found.sort();
    found.dedup();
    match found.as_slice() {
        [k] if tree.join(format!("boot/initrd.img-{k}")).is_file() => Some(k.clone()),
        _ => None,
    }
}

/// The kernel version and the initramfs path of an exported rootfs: [`kernel_in`]'s
/// `boot/initrd.img-<kver>`, or, for an image laid out as ostree boots it (the trixie base),
/// the one `usr/lib/modules/<kver>/initramfs.img` beside a `vmlinuz`.
pub fn initramfs_in(tree: &Path) -> Option<(String, PathBuf)> {
    if let Some(k) = kernel_in(tree) {
        let p = tree.join(format!("boot/initrd.img-{k}"));
        return Some((k, p));
    }
    let modules = tree.join("usr/lib/modules");
    let found: Vec<String> = std::fs::read_dir(&modules)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|k| {
            modules.join(k).join("vmlinuz").is_file()
                && modules.join(k).join("initramfs.img").is_file()
        })
        .collect();
    match found.as_slice() {
        [k] => Some((k.clone(), modules.join(k).join("initramfs.img"))),
        _ => None,
    }
}

/// Replace `boot/initrd.img-<kver>` (or `usr/lib/modules/<kver>/initramfs.img`) of the exported `tree` (of image `image`) with the small one,
/// made with dracut in `image` or taken from the cache. Leaves the tree alone (and says so) when
/// it has no single kernel in `boot/` or no dracut.
pub async fn replace_initramfs(
    paths: &Paths,
    podman: &Podman,
    image: &str,
    tree: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<Option<InitramfsReport>> {
    let Some((kver, dest)) = initramfs_in(tree) else {
        ev.note(
            stage,
            "no single kernel with its initramfs (boot/ or usr/lib/modules/): keeping the image's",
        );
        return Ok(None);
    };
    if !tree.join("usr/bin/dracut").exists() {
        ev.note(stage, "no dracut in the image: keeping its initramfs");
        return Ok(None);
    }
    let status = std::fs::read(tree.join("var/lib/dpkg/status")).unwrap_or_default();
    let composefs = std::fs::read_to_string(tree.join(super::PREPARE_ROOT_CONF))
        .is_ok_and(|c| super::composefs_required(&c));
    let key = cache_key(&kver, &status, composefs);
    let dir = paths.cache.join("initramfs");
    std::fs::create_dir_all(&dir)?;
    let cached_path = dir.join(format!("{key}.img"));
    let cached = cached_path.is_file();
    if cached {
        ev.note(
            stage,
            format!(
                "small initramfs for {kver}: reusing {}",
                cached_path.display()
            ),
        );
    } else {
        make(
            podman,
            image,
            &kver,
            composefs,
            &dir,
            &cached_path,
            stage,
            ev,
            cancel,
        )
        .await?;
    }
    let tmp = dest.with_extension("bootlab-tmp");
    std::fs::copy(&cached_path, &tmp).context("copy the small initramfs into the tree")?;
    // ostree checks the file into the commit with this mode; the bootloader reads it as root.
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    std::fs::rename(&tmp, &dest)?;
    let bytes = std::fs::metadata(&dest)?.len();
    ev.note(
        stage,
        format!(
            "initramfs: {:.1} MB uncompressed (virtio, ext4, systemd, ostree-prepare-root)",
            bytes as f64 / 1e6
        ),
    );
    Ok(Some(InitramfsReport {
        kernel: kver,
        bytes,
        cached,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn make(
    podman: &Podman,
    image: &str,
    kver: &str,
    composefs: bool,
    dir: &Path,
    dest: &PathBuf,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    let work = tempfile::Builder::new().prefix(".tmp-").tempdir_in(dir)?;
    for d in INITRD_DROPINS {
        std::fs::write(work.path().join(d.file), d.text)?;
    }
    let mut argv = vec!["dracut".to_string()];
    argv.extend(dracut_args(composefs));
    argv.extend(["--kver".into(), kver.into(), "/out/initramfs.img".into()]);
    podman
        .run_rm(image, work.path(), &argv, stage, ev, cancel)
        .await
        .with_context(|| format!("dracut could not make the small initramfs for {kver}"))?;
    let made = work.path().join("initramfs.img");
    let len = std::fs::metadata(&made)
        .with_context(|| format!("dracut wrote no {}", made.display()))?
        .len();
    anyhow::ensure!(len > 1024 * 1024, "dracut's initramfs is only {len} bytes");
    // Uncompressed cpio: the member names are plain bytes.
    let cpio = std::fs::read(&made)?;
    for d in INITRD_DROPINS {
        anyhow::ensure!(
            cpio.windows(d.name().len())
                .any(|w| w == d.name().as_bytes()),
            "dracut left the drop-in {} ({}) out of the initramfs",
            d.dest,
            d.src()
        );
    }
    std::fs::rename(&made, dest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_name_the_ostree_module_and_the_virtio_disk_uncompressed() {
        let a = dracut_args(false).join(" ");
        assert!(a.contains("-m systemd systemd-initrd"), "{a}");
        assert!(a.contains(" ostree"), "{a}");
        assert!(a.contains("--drivers virtio_pci virtio_blk ext4"), "{a}");
        assert!(a.contains("--no-compress"), "{a}");
        assert!(!a.contains("erofs"), "{a}");
        for d in INITRD_DROPINS {
            assert!(
                a.contains(&format!("--include {} {}", d.src(), d.dest)),
                "{a}"
            );
        }
        let c = dracut_args(true).join(" ");
        assert!(
            c.contains("ext4 crc32c_generic crc32c_intel erofs loop overlay"),
            "{c}"
        );
    }

    /// The bootc layer puts the arguments and the drop-in in single quotes (and the drop-in
    /// through `printf %b`): neither may hold a quote or a backslash.
    /// The marks the drop-ins write are the ones the boot-phase line reads.
    #[test]
    fn the_drop_ins_write_the_marks_the_boot_phase_line_reads() {
        use crate::vm::boot_phase::{BootPhase, MARK};
        for (text, phase) in [
            (INITRD_TRIGGER, BootPhase::Initramfs),
            (INITRD_SWITCH_ROOT, BootPhase::Systemd),
        ] {
            let echo = format!("echo {MARK}{} $$u > /dev/console", phase.name());
            assert!(text.contains(&echo), "{text}");
        }
    }

    #[test]
    fn args_and_trigger_need_no_shell_escaping() {
        for a in dracut_args(true)
            .iter()
            .cloned()
            .chain(INITRD_DROPINS.iter().map(|d| d.text.to_string()))
        {
            assert!(!a.contains('\'') && !a.contains('\\'), "{a}");
        }
        let names: Vec<&str> = INITRD_DROPINS.iter().map(|d| d.name()).collect();
        assert_eq!(names, ["bootlab-initrd.conf", "bootlab-phase.conf"]);
    }

    #[test]
    fn key_changes_with_kernel_and_packages() {
        let k = cache_key("6.1.0-1-amd64", b"Package: a", false);
        assert_eq!(k, cache_key("6.1.0-1-amd64", b"Package: a", false));
        assert_ne!(k, cache_key("6.1.0-2-amd64", b"Package: a", false));
        assert_ne!(k, cache_key("6.1.0-1-amd64", b"Package: b", false));
        assert_ne!(k, cache_key("6.1.0-1-amd64", b"Package: a", true));
    }

    #[test]
    fn an_ostree_laid_out_kernel_is_found_in_usr_lib_modules() {
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("usr/lib/modules/6.12.1-amd64");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("vmlinuz"), "k").unwrap();
        assert_eq!(initramfs_in(t.path()), None);
        std::fs::write(m.join("initramfs.img"), "i").unwrap();
        assert_eq!(
            initramfs_in(t.path()),
            Some(("6.12.1-amd64".into(), m.join("initramfs.img")))
        );
    }

    #[test]
    fn kernel_is_found_only_with_its_initrd() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("boot")).unwrap();
        std::fs::write(t.path().join("boot/vmlinuz-6.1.0-9-amd64"), "k").unwrap();
        assert_eq!(kernel_in(t.path()), None);
        std::fs::write(t.path().join("boot/initrd.img-6.1.0-9-amd64"), "i").unwrap();
        assert_eq!(kernel_in(t.path()).as_deref(), Some("6.1.0-9-amd64"));
        std::fs::write(t.path().join("boot/vmlinuz-6.1.0-8-amd64"), "k").unwrap();
        assert_eq!(kernel_in(t.path()), None);
    }
}
