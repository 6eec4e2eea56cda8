//! The Debian base image: a rootfs made with mmdebstrap (everything an OSTree-booted guest needs),
//! imported into podman as [`BASE_TAG`]. Recipes of the offline family build `FROM` it.
//!
//! Cache: the image carries a label with the hash of the package list and the hook script; when
//! the tagged image has the same hash, it is reused (across bootlab homes: podman's storage is
//! shared by all of them).

use super::{GIB, check_free_space};
use crate::events::{CancellationToken, Emitter, StageTimer, StageTiming};
use crate::paths::Paths;
use crate::tools::cmd::HostCmd;
use crate::tools::podman::Podman;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The podman tag of the base image.
pub const BASE_TAG: &str = "localhost/bootlab/debian-base:bookworm";
/// Label on the base image holding its cache key.
pub const KEY_LABEL: &str = "bootlab.base-key";
pub const SUITE: &str = "bookworm";

/// Packages on top of minbase. dracut (not initramfs-tools) because ostree-boot ships the dracut
/// module that runs ostree-prepare-root in the initramfs.
pub const PACKAGES: &[&str] = &[
    "dracut",
    "linux-image-amd64",
    "systemd-sysv",
    "udev",
    "dbus",
    "ostree",
    "ostree-boot",
    "qemu-guest-agent",
    "openssh-server",
    "e2fsprogs",
    "iproute2",
    "procps",
    "less",
    "kmod",
];

/// Runs inside mmdebstrap's customize phase with the rootfs as `$1`.
/// - initramfs again now that ostree-boot is installed (its dracut module must be in it);
///   generic (not host-only): it boots in QEMU, not on this host.
/// - a hostname, root's known password "bootlab" (recipes label it), autologin on the serial
///   console so a lab starts at a shell.
/// - no 9p mount here: the vm module mounts the update share through the guest agent.
pub const CUSTOMIZE_HOOK: &str = r#"set -eu
root="$1"
for kver in $(ls "$root/lib/modules"); do
  chroot "$root" dracut --force --no-hostonly --add ostree --kver "$kver" "/boot/initrd.img-$kver"
done
echo bootlab > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tbootlab\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
echo 'root:bootlab' | chroot "$root" chpasswd
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
printf '[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %%I $TERM\n' \
  > "$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin
"#;

/// What `ensure_base` found or made.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BaseResult {
    pub tag: String,
    pub image_id: String,
    pub key: String,
    pub cached: bool,
    pub timings: Vec<StageTiming>,
}

/// The cache key of the base: suite, package list and hook script.
pub fn base_key() -> String {
    let mut h = Sha256::new();
    h.update(SUITE);
    h.update("\0");
    h.update(PACKAGES.join(","));
    h.update("\0");
    h.update(CUSTOMIZE_HOOK);
    hex::encode(h.finalize())[..16].to_string()
}

/// Build the base once, or reuse it. `rebuild` forces a new one.
pub async fn ensure_base(
    paths: &Paths,
    rebuild: bool,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<BaseResult> {
    let timer = StageTimer::start(ev, "base");
    let podman = Podman::probe(paths, ev, cancel).await?;
    let key = base_key();
    // One base build at a time on this host (podman's storage is host-wide).
    let _lock = super::HostLock::acquire("base", ev, cancel).await?;
    if !rebuild && let Some(found) = podman.image_label(BASE_TAG, KEY_LABEL, cancel).await? {
        if found == key {
            let image_id = podman.image_id(BASE_TAG, cancel).await?.unwrap_or_default();
            ev.note("base", format!("reusing {BASE_TAG} (key {key})"));
            return Ok(BaseResult {
                tag: BASE_TAG.into(),
                image_id,
                key,
                cached: true,
                timings: vec![timer.finish(true)],
            });
        }
        ev.note(
            "base",
            format!(
                "{BASE_TAG} has key {found:?}, want {key}: package list or hook changed, rebuilding"
            ),
        );
    }

    let dir = paths.base();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    // The rootfs tarball (~750 MB) and podman's copy of it (same again) must fit.
    check_free_space(&dir, 2 * GIB, "the Debian base rootfs")?;
    check_free_space(
        &podman_storage_root(),
        2 * GIB,
        "podman's copy of the base image",
    )?;

    let work = tempfile::Builder::new().prefix(".base-").tempdir_in(&dir)?;
    let tar = work.path().join("rootfs.tar");
    // No mirror argument: mmdebstrap's default for bookworm adds -updates and -security.
    let mut cmd = HostCmd::new("mmdebstrap")
        .args([
            "--variant=minbase",
            "--mode=root",
            "--format=tar",
            "--verbose",
        ])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(format!("--customize-hook={CUSTOMIZE_HOOK}"))
        .arg(SUITE)
        .arg(&tar);
    if let Some(v) = std::env::var_os("BOOTLAB_MMDEBSTRAP_MIRROR") {
        // For hosts whose default mirror is unreachable; the default is better (see notes).
        cmd = cmd.arg(v);
    }
    let r = run_mmdebstrap(cmd, "base", ev, cancel).await;
    r.context("mmdebstrap could not make the Debian base rootfs")?;

    let changes = vec![
        "CMD [\"/bin/bash\"]".to_string(),
        format!("LABEL {KEY_LABEL}={key}"),
        "LABEL bootlab.known-password=root:bootlab".to_string(),
    ];
    podman
        .import(&tar, BASE_TAG, &changes, "base", ev, cancel)
        .await
        .context("podman could not import the Debian base rootfs")?;
    drop(work);
    let image_id = podman
        .image_id(BASE_TAG, cancel)
        .await?
        .context("the base image vanished right after import")?;
    Ok(BaseResult {
        tag: BASE_TAG.into(),
        image_id,
        key,
        cached: false,
        timings: vec![timer.finish(false)],
    })
}

/// Runs an mmdebstrap command line (given `--verbose`, so apt's and dpkg's lines are there to
/// count) through a relay that turns its lines into progress for `stage`: the phase, packages
/// set up of the total apt announced, and the elapsed time — a base build is minutes of
/// otherwise silence.
pub async fn run_mmdebstrap(
    cmd: HostCmd,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<crate::tools::cmd::CmdOutput> {
    let mut p = MmdebstrapProgress::new();
    let (relay, forward) = ev.progress_relay(stage, move |line| p.observe(line));
    let r = cmd.run(stage, &relay, cancel).await;
    drop(relay);
    let _ = forward.await;
    r
}

/// What mmdebstrap is doing, read from its output: its `I:` phase lines, apt's "N newly
/// installed" (the total) and dpkg's "Setting up" lines (packages done), dracut's lines.
pub struct MmdebstrapProgress {
    phase: String,
    done: u64,
    total: u64,
    started: std::time::Instant,
}

impl Default for MmdebstrapProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl MmdebstrapProgress {
    pub fn new() -> Self {
        MmdebstrapProgress {
            phase: "start".into(),
            done: 0,
            total: 0,
            started: std::time::Instant::now(),
        }
    }

    /// The progress after `line`, when the line changed it: (done, total, label).
    pub fn observe(&mut self, line: &str) -> Option<(u64, u64, String)> {
        let l = line.trim();
        if let Some(i) = l.strip_prefix("I: ") {
            let phase = if i.contains("downloading") {
                "download"
            } else if i.contains("extracting") {
                "extract"
            } else if i.contains("installing") {
                "install"
            } else if i.contains("customize-hook") {
                "customize"
            } else if i.contains("cleaning") || i.contains("creating tarball") {
                "pack"
            } else {
                return None;
            };
            self.phase = phase.into();
        } else if let Some(n) = l
            .split(" newly installed")
            .next()
            .filter(|_| l.contains(" newly installed"))
            .and_then(|head| head.rsplit([' ', ',']).next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            self.total += n;
        } else if l.starts_with("Setting up ") {
            self.done += 1;
        } else if l.starts_with("dracut:") && self.phase != "initramfs" {
            // The base's customize hook (or the kernel's postinst) running dracut.
            self.phase = "initramfs".into();
        } else {
            return None;
        }
        let total = self.total.max(self.done);
        let secs = self.started.elapsed().as_secs();
        Some((
            self.done,
            total,
            format!(
                "{}: {} of {} packages set up, {}m{:02}s",
                self.phase,
                self.done,
                total,
                secs / 60,
                secs % 60
            ),
        ))
    }
}

/// Where podman keeps images (root's default graph root).
pub fn podman_storage_root() -> std::path::PathBuf {
    let p = std::path::PathBuf::from("/var/lib/containers");
    if p.exists() {
        p
    } else {
        std::path::PathBuf::from("/var/lib")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_stable_and_short() {
        assert_eq!(base_key(), base_key());
        assert_eq!(base_key().len(), 16);
    }

    #[test]
    fn mmdebstrap_lines_become_phase_and_package_counts() {
        let mut p = MmdebstrapProgress::new();
        assert_eq!(p.observe("Get:1 http://deb.debian.org x"), None);
        let (d, t, l) = p.observe("I: downloading packages with apt...").unwrap();
        assert_eq!((d, t), (0, 0));
        assert!(l.starts_with("download: 0 of 0 packages"), "{l}");
        p.observe("I: extracting archives...").unwrap();
        p.observe("0 upgraded, 120 newly installed, 0 to remove and 0 not upgraded.")
            .unwrap();
        p.observe("I: installing remaining packages inside the chroot...")
            .unwrap();
        p.observe("Setting up libc6:amd64 (2.36-9) ...").unwrap();
        let (d, t, l) = p.observe("Setting up dracut (059-4) ...").unwrap();
        assert_eq!((d, t), (2, 120));
        assert!(
            l.starts_with("install: 2 of 120 packages set up, 0m0"),
            "{l}"
        );
        let (_, _, l) = p
            .observe("I: running --customize-hook in shell: sh -c 'x'")
            .unwrap();
        assert!(l.starts_with("customize: 2 of 120"), "{l}");
        let (_, _, l) = p
            .observe("dracut: Executing: /usr/bin/dracut --force")
            .unwrap();
        assert!(l.starts_with("initramfs: 2 of 120"), "{l}");
        assert_eq!(p.observe("dracut: *** Including module: base ***"), None);
    }

    #[test]
    fn hook_regenerates_initramfs_with_ostree() {
        assert!(CUSTOMIZE_HOOK.contains("dracut --force"));
        assert!(CUSTOMIZE_HOOK.contains("--add ostree"));
        assert!(PACKAGES.contains(&"ostree-boot"));
    }
}
