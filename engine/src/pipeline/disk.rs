//! OSTree commit → golden bootable disk (BIOS, MBR, extlinux), and per-VM qcow2 overlays.
//!
//! The golden disk is a 6 GiB sparse raw file: p1 512 MiB `/boot` ext4 (no 64bit/metadata_csum:
//! extlinux 6.04 cannot read those), bootable; p2 root ext4. On it an OSTree sysroot with the
//! stateroot [`STATEROOT`], one deployment of the commit (origin `bootlab:bootlab/<recipe>`), the
//! remote [`REMOTE`] pointing at the update share as the guest sees it, /var seeded from the
//! image, and extlinux reading the syslinux.cfg ostree writes.
//!
//! A commit whose `/usr/lib/ostree/prepare-root.conf` requires composefs (the trixie base's,
//! ostree 2026.4) is deployed by the image's own ostree (`ostree admin deploy` run from the
//! recipe's image mounted on the host, in a mount namespace of its own holding the disk, see
//! [`crate::tools::podman::ImageMount`]): its ostree-prepare-root refuses a deployment without
//! the `.ostree.cfs` that only a composefs-aware ostree writes, and the host's 2022.7 writes
//! none. Making composefs `maybe` instead would boot the disk's first deployment without
//! composefs and every later one (deployed by the guest) with it — two different roots to teach
//! from one lab. Other commits (an older ostree with no such file, as the retired bookworm base)
//! are deployed by the host's ostree. Everything around the deploy (repo, remote, pull) stays
//! with the host's ostree: the repository format is shared.
//!
//! It is named by recipe, version and commit, made under a temp name and renamed when complete;
//! its metadata file (`<name>.json`) records the commit, and while the commit is the same the
//! disk is reused. VMs never write to it: they run on [`overlay`]s.

use super::{
    BOOT_LABEL, GIB, REMOTE, ROOT_LABEL, STATEROOT, branch, check_free_space, guest_remote_url,
    layout,
};
use crate::events::{CancellationToken, Cancelled, Emitter, StageTimer, StageTiming};
use crate::paths::Paths;
use crate::tools::cmd::HostCmd;
use crate::tools::disk::{self, LoopDevice, MIB, MbrLayout, Mount};
use crate::tools::ostree::{self, Repo};
use crate::tools::qemu::img::Format;
use crate::tools::uefi;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DISK_SIZE: u64 = 6 * GIB;
pub const BOOT_SIZE: u64 = 512 * MIB;
/// Kernel arguments of the deployment, each for boot time under TCG (measured, see README):
/// - `quiet` saves ~9 s of serial output; systemd still reports failures and the login prompt
///   appears on ttyS0.
/// - `fsck.mode=skip`: fsck of /boot and / took 11 s in the initramfs; ext4's journal still
///   replays on mount (the power-cut drill checks that).
/// - `mitigations=off`: a lab guest is no security boundary, and the speculation barriers are
///   emulated instruction by instruction.
/// - `8250.nr_uarts=1` and `module_blacklist=…`: udev's coldplug loaded ~30 modules for devices
///   a lab never uses (legacy ports, floppy, IDE, VGA, nested KVM); each costs a second of TCG.
/// - `systemd.show_status=auto`: under `quiet` systemd shows only errors, so a shutdown or boot
///   waiting for a job (up to 90 s) printed nothing (measured); with `auto` it prints the job
///   once it is slow ("Job x.service/stop running (28s / 1min 30s)" on trixie), and the VM's
///   state shows that ([`crate::vm::boot_phase::job_wait`]).
pub const KARGS: &[&str] = &[
    "rw",
    "console=ttyS0,115200",
    "quiet",
    "systemd.show_status=auto",
    "fsck.mode=skip",
    "mitigations=off",
    "8250.nr_uarts=1",
    "module_blacklist=floppy,pcspkr,parport_pc,ppdev,psmouse,serio_raw,kvm_amd,kvm_intel,kvm,\
ata_piix,ata_generic,bochs,i2c_piix4",
];
/// Kernel arguments of the offline Debian families only, not of the online Fedora/CentOS images
/// (other kernels, SELinux among their LSMs): the ostree family deploys with them, the bootc
/// base carries them in `/usr/lib/bootc/kargs.d` (`pipeline::bootc::guest`).
/// - `lsm=`: Debian 6.12's list without `bpf`. With it, the real root's systemd loads and
///   attaches its restrict-filesystems BPF program at every boot, ~0.9 s under TCG (its start
///   before the generators: 2.3-2.5 s with, 1.4-1.9 s without; six reboots each, 2026-12-05).
///   No unit of the guests uses `RestrictFileSystems=`.
pub const DEBIAN_KARGS: &[&str] =
    &["lsm=lockdown,capability,landlock,yama,apparmor,tomoyo,ipe,ima,evm"];

/// [`KARGS`] and [`DEBIAN_KARGS`]: what the ostree family's deployments boot with (after
/// `root=`).
fn ostree_family_kargs() -> impl Iterator<Item = &'static str> {
    KARGS.iter().chain(DEBIAN_KARGS).copied()
}

/// Bumped when the way a disk is made changes in a way the commit and kargs do not show (2: the
/// deployment is written by the image's own ostree; 3: the root ext4 has the `verity` feature;
/// 4: an EFI system partition with the UEFI loader; 5: `/etc/.updated` in the first
/// deployment; 6: the bootc deployment's /boot line marked for bootlab's initramfs; 7: the
/// bootc deployment's fstab binds /var too, its etc and var have `.updated`); older golden
/// disks are made again.
pub const DISK_FORMAT: u32 = 7;
/// Non-LABEL lines of syslinux.cfg (ostree keeps them across deploys and rewrites the LABELs).
pub const SYSLINUX_HEAD: &str = "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 1\n";

/// What [`make_disk`] made or found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskResult {
    /// The golden raw disk (never boot it directly: make an [`overlay`]).
    pub path: PathBuf,
    pub recipe: String,
    pub version: String,
    pub commit: String,
    pub cached: bool,
    pub timings: Vec<StageTiming>,
    /// Seconds making this disk took when it was made.
    pub cold_secs: f64,
}

/// The metadata file beside a golden disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskMeta {
    pub recipe: String,
    pub version: String,
    pub commit: String,
    pub stateroot: String,
    pub root_label: String,
    pub boot_label: String,
    pub remote: String,
    pub remote_url: String,
    pub branch: String,
    pub kargs: Vec<String>,
    pub created: String,
    #[serde(default)]
    pub make_secs: f64,
    /// The podman image a bootc disk was installed from (bootc family).
    #[serde(default)]
    pub image_id: Option<String>,
    /// [`DISK_FORMAT`] when made (0: before formats were recorded).
    #[serde(default)]
    pub format: u32,
    /// The EFI system partition holds the UEFI loader (`vm up --firmware uefi` boots it).
    #[serde(default)]
    pub uefi: bool,
}

/// Every kernel argument of a golden disk's deployment (ostree adds `ostree=`).
pub fn kargs() -> Vec<String> {
    let mut k = vec![format!("root=LABEL={ROOT_LABEL}")];
    k.extend(ostree_family_kargs().map(str::to_string));
    k
}

/// File name (without extension) of the golden disk of a commit.
pub fn golden_name(recipe: &str, version: &str, commit: &str) -> String {
    format!("{recipe}-{version}-{}", &commit[..commit.len().min(12)])
}

pub fn golden_path(paths: &Paths, recipe: &str, version: &str, commit: &str) -> PathBuf {
    paths
        .disks()
        .join(format!("{}.raw", golden_name(recipe, version, commit)))
}

fn meta_path(golden: &Path) -> PathBuf {
    golden.with_extension("json")
}

/// Whether a golden disk can boot with UEFI: `Some(false)` when its record says its ESP has no
/// loader (made before DISK_FORMAT 4, or on a host without GRUB's EFI modules); `None` when
/// there is no record (a converted or foreign disk: the firmware will tell).
pub fn golden_has_uefi(golden: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(meta_path(golden)).ok()?;
    serde_json::from_str::<DiskMeta>(&text).ok().map(|m| m.uefi)
}

/// The golden disk of `commit`, if one was completed.
pub fn find_golden(
    paths: &Paths,
    recipe: &str,
    version: &str,
    commit: &str,
) -> Option<(PathBuf, DiskMeta)> {
    let p = golden_path(paths, recipe, version, commit);
    let meta: DiskMeta =
        serde_json::from_str(&std::fs::read_to_string(meta_path(&p)).ok()?).ok()?;
    // Kernel arguments are part of the disk: a change of them makes a new one.
    (whole_disk(&p) && meta.commit == commit && meta.kargs == kargs() && meta.format == DISK_FORMAT)
        .then_some((p, meta))
}

/// The golden file is there at its full length: a disk cut short (a crash of the file system
/// under it, a copy that stopped) is made again rather than booted.
pub fn whole_disk(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == DISK_SIZE)
}

/// Removes a temp file on drop unless it was kept.
struct TempFile(Option<PathBuf>);
impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Make (or reuse) the golden disk of `commit` (a commit of `recipe`'s branch in the host repo).
pub async fn make_disk(
    paths: &Paths,
    recipe: &str,
    version: &str,
    commit: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<DiskResult> {
    let t = StageTimer::start(&ev.about(recipe), "disk");
    let started = std::time::Instant::now();
    let result = |path: PathBuf, cached: bool, t: StageTimer, cold: Option<f64>| {
        let timing = t.finish(cached);
        DiskResult {
            path,
            recipe: recipe.into(),
            version: version.into(),
            commit: commit.into(),
            cached,
            cold_secs: cold.unwrap_or(timing.secs),
            timings: vec![timing],
        }
    };
    if let Some((p, meta)) = find_golden(paths, recipe, version, commit) {
        ev.note(
            "disk",
            format!("reusing {} (commit unchanged)", p.display()),
        );
        return Ok(result(p, true, t, Some(meta.make_secs)));
    }
    let host = Repo::at(paths.ostree_repo());
    if !host.has_commit(commit, cancel).await? {
        anyhow::bail!(
            "commit {commit} is not in bootlab's repo {} (build the recipe first)",
            host.path.display()
        );
    }
    let dir = paths.disks();
    std::fs::create_dir_all(&dir)?;
    // One disk maker at a time; under the lock, temp files and mounts left by a killed one are
    // ours to reap.
    let _lock = super::HostLock::acquire("disk", ev, cancel).await?;
    reap_leftovers(&dir, ev).await;
    // ~1 GB is really written into the sparse 6 GiB file.
    check_free_space(&dir, 2 * GIB, "a golden disk")?;
    let dest = golden_path(paths, recipe, version, commit);
    let tmp_path = dir.join(format!(
        ".tmp-{}-{}.raw",
        golden_name(recipe, version, commit),
        fastrand::u32(..)
    ));
    let mut tmp = TempFile(Some(tmp_path.clone()));
    let mnt = tempfile::Builder::new().prefix(".mnt-").tempdir_in(&dir)?;

    let full = |e| super::explain_full_disk(e, &dir, "a golden disk");
    let meta = fill_disk(
        paths,
        &tmp_path,
        mnt.path(),
        &host,
        recipe,
        version,
        commit,
        ev,
        cancel,
    )
    .await;
    let mut meta = match meta {
        Ok(m) => m,
        Err(e) if super::is_damaged_object(&e) => {
            return Err(super::remove_damaged(paths, e, "disk", ev, cancel).await);
        }
        Err(e) => return Err(full(e)),
    };
    meta.make_secs = started.elapsed().as_secs_f64();

    std::fs::File::open(&tmp_path)?
        .sync_all()
        .map_err(|e| full(e.into()))?;
    std::fs::rename(&tmp_path, &dest).with_context(|| format!("rename to {}", dest.display()))?;
    tmp.0 = None;
    crate::paths::write_atomic(
        &meta_path(&dest),
        serde_json::to_string_pretty(&meta)?.as_bytes(),
    )?;
    Ok(result(dest, false, t, None))
}

/// The golden disk `golden` in another format (for VMware, Hyper-V, VirtualBox, libvirt),
/// beside it with the format's extension. Made once per golden disk: reused while it is newer
/// than the golden (a golden made again is newer, and the conversion is made again).
pub async fn in_format(
    golden: &Path,
    format: Format,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    if format == Format::Raw {
        return Ok(golden.to_path_buf());
    }
    let dest = golden.with_extension(format.name());
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified());
    let golden_t = modified(golden).with_context(|| format!("golden disk {}", golden.display()))?;
    if modified(&dest).is_ok_and(|t| t >= golden_t) {
        ev.note(
            "disk",
            format!("reusing {} (made from this golden disk)", dest.display()),
        );
        return Ok(dest);
    }
    let t = StageTimer::start(&ev.about(format.name()), "convert");
    let r = crate::tools::qemu::img::convert(golden, format, &dest, "convert", ev, cancel).await;
    match r {
        Ok(_) => {
            t.finish(false);
        }
        Err(_) => t.failed(),
    }
    r
}

/// Undo what a killed disk maker left in `dir`: mounts under `.mnt-*`, loop devices over
/// `.tmp-*.raw`, the files themselves, and images it had mounted to deploy with
/// ([`crate::tools::podman::reap_image_mounts`]). The caller holds the disk lock.
pub async fn reap_leftovers(dir: &Path, ev: &Emitter) {
    crate::tools::podman::reap_image_mounts(dir, ev).await;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // Mount dirs first (they hold the loop devices busy).
    names.sort_by_key(|p| {
        !p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .starts_with(".mnt-")
    });
    for p in names {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(".mnt-") {
            use nix::mount::{MntFlags, umount2};
            let _ = umount2(&p.join("boot"), MntFlags::MNT_DETACH);
            let _ = umount2(&p, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir_all(&p);
            ev.note("disk", format!("reaped {}", p.display()));
        } else if name.starts_with(".tmp-") {
            if let Ok(out) = HostCmd::new("losetup")
                .arg("-j")
                .arg(&p)
                .capture()
                .run("disk", &Emitter::null(), &CancellationToken::new())
                .await
            {
                for dev in out.stdout.lines().filter_map(|l| l.split(':').next()) {
                    let _ = HostCmd::new("losetup")
                        .args(["--detach", dev])
                        .run_unchecked("disk", ev, &CancellationToken::new())
                        .await;
                }
            }
            let _ = std::fs::remove_file(&p);
            ev.note("disk", format!("reaped {}", p.display()));
        }
    }
}

/// The EFI system partition of a disk being made: FAT with the UEFI loader, which boots the
/// same syslinux.cfg as extlinux (see [`crate::tools::uefi`]). Where this host cannot make the
/// loader the partition stays empty, the disk boots with BIOS only, and the reason is shown.
pub(crate) async fn fill_esp(
    file: &Path,
    layout: &MbrLayout,
    s: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<bool> {
    if let Some(why) = uefi::loader_missing() {
        ev.note(s, format!("UEFI: {why}; this disk boots with BIOS only"));
        return Ok(false);
    }
    let dir = file.parent().unwrap_or(Path::new(".")).join("uefi");
    let loader = uefi::loader(&dir, s, ev, cancel).await?;
    let esp = LoopDevice::attach(file, layout.esp, s, ev).await?;
    uefi::write_esp(&esp.dev, disk::ESP_LABEL, &loader, s, ev, cancel).await?;
    esp.detach(s, ev).await?;
    Ok(true)
}

/// Everything between an empty file and a complete disk. Loop devices and mounts are guards:
/// whatever fails, they are undone in reverse order.
#[allow(clippy::too_many_arguments)]
async fn fill_disk(
    paths: &Paths,
    file: &Path,
    mnt: &Path,
    host: &Repo,
    recipe: &str,
    version: &str,
    commit: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<DiskMeta> {
    let s = "disk";
    let check = || {
        if cancel.is_cancelled() {
            Err(anyhow::Error::from(Cancelled))
        } else {
            Ok(())
        }
    };
    let layout_ = MbrLayout::new(DISK_SIZE, BOOT_SIZE);
    disk::create_partitioned(file, &layout_, s, ev, cancel).await?;
    disk::write_mbr(file, &disk::find_mbr_bin()?)?;

    let boot_loop = LoopDevice::attach(file, layout_.boot, s, ev).await?;
    let root_loop = LoopDevice::attach_direct_io(file, layout_.root, s, ev).await?;
    disk::mkfs_ext4(
        &boot_loop.dev,
        BOOT_LABEL,
        Some("^64bit,^metadata_csum"),
        s,
        ev,
        cancel,
    )
    .await?;
    disk::mkfs_ext4(&root_loop.dev, ROOT_LABEL, None, s, ev, cancel).await?;
    check()?;

    let root_mnt = Mount::mount(&root_loop.dev, mnt, None, s, ev).await?;
    HostCmd::new("ostree")
        .args(["admin", "init-fs"])
        .arg(mnt)
        .run(s, ev, cancel)
        .await?;
    let boot_dir = mnt.join("boot");
    let boot_mnt = Mount::mount(&boot_loop.dev, &boot_dir, None, s, ev).await?;
    ostree::admin_sub("os-init", mnt)
        .arg(STATEROOT)
        .run(s, ev, cancel)
        .await?;
    let sysrepo = Repo::at(mnt.join("ostree/repo"));
    // The copy and the deploy write without an fsync of their own (`core.fsync=false`, which the
    // image's ostree reads too): the copy's closing syncfs waited ~0.45 s for its writeback
    // with both cores idle (`pull-local` 0.93 s → 0.47 s). The writeback now runs in the
    // background from the moment the copy is whole, beside the deploy: the disk 0.2 s faster in
    // six runs each, alternating (2026-12-06). The setting is removed again before the disk is
    // finished, and the `sync -f` below waits for what is left.
    sysrepo
        .cmd()
        .args(["config", "set", "core.fsync", "false"])
        .run(s, ev, cancel)
        .await?;

    // While the copy runs (on ~1.7 cores), what does not need it: the rest of the repo's
    // config (the copy read the config when it started, and every write of it is a rename),
    // /boot's loader, the EFI system partition, how to deploy and the image that deploys.
    // Eight alternating runs each: medians 1.60 s beside the copy, 1.76 s after it
    // (2026-12-06; in six earlier runs no difference).
    let br = branch(recipe);
    let url = guest_remote_url();
    let config = async {
        sysrepo
            .cmd()
            .args(["config", "set", "sysroot.bootloader", "syslinux"])
            .run(s, ev, cancel)
            .await?;
        sysrepo
            .cmd()
            .args(["remote", "add", "--no-gpg-verify", REMOTE, &url, &br])
            .run(s, ev, cancel)
            .await?;
        anyhow::Ok(())
    };
    let boot = async {
        // The syslinux config ostree maintains: boot/loader -> loader.0, syslinux.cfg inside it.
        std::fs::create_dir_all(boot_dir.join("loader.0"))?;
        std::os::unix::fs::symlink("loader.0", boot_dir.join("loader"))?;
        std::fs::write(boot_dir.join("loader.0/syslinux.cfg"), SYSLINUX_HEAD)?;
        std::fs::create_dir_all(boot_dir.join("syslinux"))?;
        std::os::unix::fs::symlink(
            "../loader/syslinux.cfg",
            boot_dir.join("syslinux/syslinux.cfg"),
        )?;
        disk::extlinux_install(&boot_dir.join("syslinux"), s, ev, cancel).await
    };
    let image = crate::recipe::image_tag_of(recipe, version);
    let deployer = async {
        let conf = host
            .cat(commit, &format!("/{}", super::PREPARE_ROOT_CONF), cancel)
            .await?;
        if !conf.as_deref().is_some_and(super::composefs_required) {
            return Ok(None);
        }
        ev.note(
            s,
            format!("composefs required: deploying with the ostree of {image}"),
        );
        let dir = file.parent().unwrap_or(Path::new("."));
        crate::tools::podman::Podman::probe(paths, ev, cancel)
            .await?
            .mount_image(&image, dir, s, ev, cancel)
            .await
            .map(Some)
    };
    // The copy is checked beside the deploy (on cores the deploy leaves idle); nothing made
    // from it is kept unless every object matches (`copied.finish` below; dropped early, the
    // check stops first).
    let (copied, config, boot, esp, deployer) = tokio::join!(
        sysrepo.pull_local_checking(&host.path, commit, s, ev, cancel),
        config,
        boot,
        fill_esp(file, &layout_, s, ev, cancel),
        deployer
    );
    let (copied, uefi, deployer) = (copied?, esp?, deployer?);
    config?;
    boot?;
    let writeback = disk::Writeback::start(mnt)?;
    let refspec = format!("{REMOTE}:{br}");
    sysrepo.create_ref(&refspec, commit, s, ev, cancel).await?;
    check()?;

    let deployment = mnt.join(format!("ostree/deploy/{STATEROOT}/deploy/{commit}.0"));
    let deployer = if let Some(deployer) = deployer {
        // The image's own ostree writes the deployment (see the module docs), run from the
        // image's root mounted on the host.
        let mut deploy: Vec<String> = [
            "ostree",
            "admin",
            "deploy",
            // The repo holds this commit alone: a prune finds nothing (0.15 s, measured).
            "--no-prune",
            &format!("--sysroot={}", crate::tools::podman::IMAGE_MOUNT_DIR),
            &format!("--os={STATEROOT}"),
            &format!("--karg=root=LABEL={ROOT_LABEL}"),
        ]
        .map(String::from)
        .to_vec();
        deploy.extend(ostree_family_kargs().map(|k| format!("--karg={k}")));
        deploy.push(refspec.clone());
        deployer
            .run(mnt, &deploy, s, ev, cancel)
            .await
            .with_context(|| format!("deploying {commit} with the ostree of {image}"))?;
        let cfs = deployment.join(".ostree.cfs");
        anyhow::ensure!(
            cfs.is_file(),
            "the image's ostree wrote no {} (composefs is required by the image)",
            cfs.display()
        );
        Some(deployer)
    } else {
        let mut deploy = ostree::admin_sub("deploy", mnt)
            .arg("--no-prune")
            .arg(format!("--os={STATEROOT}"))
            .arg(format!("--karg=root=LABEL={ROOT_LABEL}"));
        for k in ostree_family_kargs() {
            deploy = deploy.arg(format!("--karg={k}"));
        }
        deploy.arg(&refspec).run(s, ev, cancel).await?;
        None
    };

    // What is left to write, and the image unmounted beside it: podman takes ~0.1 s to unmount,
    // longer than /var's seed, the repo's config and the writeback's end.
    let finish = async {
        let unset = sysrepo.cmd().args(["config", "unset", "core.fsync"]);
        let (seeded, unset) = tokio::join!(
            seed_var(&deployment, mnt, s, ev, cancel),
            unset.run(s, ev, cancel)
        );
        seeded?;
        unset?;
        // ostree removes etc/.updated from each deployment it writes (so that systemd's update
        // units run once on its first boot); this first one is the image's /etc as the image
        // made it.
        layout::write_updated(&deployment.join("etc"))?;
        let cfg = std::fs::read_to_string(boot_dir.join("syslinux/syslinux.cfg"))
            .context("read syslinux.cfg")?;
        anyhow::ensure!(
            cfg.contains("LABEL") && cfg.contains("/ostree/"),
            "ostree wrote no boot entry into syslinux.cfg:\n{cfg}"
        );
        copied.finish(s, ev, cancel).await?;
        writeback.finish().await?;
        HostCmd::new("sync")
            .arg("-f")
            .arg(mnt)
            .run(s, ev, cancel)
            .await?;
        anyhow::Ok(())
    };
    let unmount = async {
        match deployer {
            Some(d) => d.unmount(s, ev).await,
            None => Ok(()),
        }
    };
    let (finished, unmounted) = tokio::join!(finish, unmount);
    finished?;
    unmounted?;
    boot_mnt.unmount(s, ev).await?;
    root_mnt.unmount(s, ev).await?;
    disk::tune_ext4_features(&root_loop.dev, disk::ROOT_LATE_FEATURES, s, ev, cancel).await?;
    root_loop.detach(s, ev).await?;
    boot_loop.detach(s, ev).await?;

    Ok(DiskMeta {
        recipe: recipe.into(),
        version: version.into(),
        commit: commit.into(),
        stateroot: STATEROOT.into(),
        root_label: ROOT_LABEL.into(),
        boot_label: BOOT_LABEL.into(),
        remote: REMOTE.into(),
        remote_url: url,
        branch: br,
        kargs: kargs(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        make_secs: 0.0,
        image_id: None,
        format: DISK_FORMAT,
        uefi,
    })
}

/// /var of the stateroot from the image's seed in `deployment` (ostree 2022.7 leaves it empty).
async fn seed_var(
    deployment: &Path,
    mnt: &Path,
    s: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    let seed = layout::var_seed_in(deployment);
    let var = mnt.join(format!("ostree/deploy/{STATEROOT}/var"));
    if seed.is_dir() {
        HostCmd::new("cp")
            .arg("-a")
            .arg(format!("{}/.", seed.display()))
            .arg(&var)
            .run(s, ev, cancel)
            .await?;
        unpack_dpkg_info(&var, s, ev, cancel).await?;
    } else {
        ev.note(
            s,
            format!(
                "{} has no var seed; /var starts empty",
                deployment.display()
            ),
        );
    }
    Ok(())
}

/// dpkg's per-package files, packed into one tar in the image's var seed
/// ([`layout::DPKG_INFO_TAR`]), back into /var/lib/dpkg/info of the new disk's /var (`var`),
/// as they were in the image: `dpkg -L` and upgrades in the guest read them.
async fn unpack_dpkg_info(
    var: &Path,
    s: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    let tar = var.join(layout::DPKG_INFO_TAR);
    if !tar.is_file() {
        return Ok(());
    }
    let dir = var.join(layout::DPKG_INFO_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    HostCmd::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .run(s, ev, cancel)
        .await?;
    std::fs::remove_file(&tar).with_context(|| format!("remove {}", tar.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_disk_cut_short_is_not_whole() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d.raw");
        assert!(!whole_disk(&p));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(DISK_SIZE).unwrap(); // sparse: costs nothing
        assert!(whole_disk(&p));
        f.set_len(DISK_SIZE / 3).unwrap();
        assert!(!whole_disk(&p));
    }

    use super::*;

    #[test]
    fn golden_names_carry_recipe_version_commit() {
        let c = "a".repeat(64);
        assert_eq!(
            golden_name("debian-minimal", "v1", &c),
            "debian-minimal-v1-aaaaaaaaaaaa"
        );
        let p = golden_path(&Paths::under(Path::new("/h")), "r", "v2", &c);
        assert_eq!(p, PathBuf::from("/h/cache/disks/r-v2-aaaaaaaaaaaa.raw"));
        assert_eq!(
            meta_path(&p),
            PathBuf::from("/h/cache/disks/r-v2-aaaaaaaaaaaa.json")
        );
    }

    #[test]
    fn syslinux_head_has_serial_and_no_prompt() {
        assert!(SYSLINUX_HEAD.starts_with("SERIAL 0 115200"));
        assert!(SYSLINUX_HEAD.contains("PROMPT 0"));
    }
}
