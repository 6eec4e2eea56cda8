//! bootc images → OCI layouts in the update share, and golden disks the bootc way.
//!
//! Updates travel with no registry: the host writes each version of a recipe with skopeo into
//! one OCI layout, `<update share>/<recipe>.oci`, tagged with the version id (`v1`, `v2`, …) and
//! [`STABLE_TAG`] (what the guests follow). The guest sees the share at [`BOOTC_SHARE_DIR`]
//! (a plain 9p mount: under an automount bootc fails "too many levels of symbolic links").
//!
//! A disk: bootlab's own MBR disk (as the offline family's: /boot ext4 without 64bit for
//! extlinux, root ext4), its partitions on offset loop devices (this host's kernel parses no
//! partition tables, so `bootc install to-disk --via-loopback` fails here), and
//! `bootc install to-filesystem` run from the image itself in privileged podman (no
//! `--pid=host`: re-exec into the host's mount namespace is refused in this sandbox), its
//! deployment following `oci:/var/mnt/share/<recipe>.oci:stable`. bootc installs no bootloader
//! (`--bootloader none`): bootlab writes a syslinux.cfg from the boot entry it made, sets
//! `sysroot.bootloader=syslinux` so later deployments update it, and installs extlinux.
//!
//! Made under a temp name, renamed when complete; reused while the image is the same.

use crate::events::{CancellationToken, Cancelled, Emitter, StageTimer};
use crate::paths::Paths;
use crate::pipeline::build::BuildResult;
use crate::pipeline::disk::{
    BOOT_SIZE, DISK_SIZE, DiskMeta, DiskResult, KARGS, SYSLINUX_HEAD, golden_path, reap_leftovers,
};
use crate::pipeline::{BOOT_LABEL, GIB, HostLock, ROOT_LABEL, check_free_space};
use crate::tools::cmd::HostCmd;
use crate::tools::disk::{self, LoopDevice, MbrLayout, Mount};
use crate::tools::podman::Podman;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a bootc guest mounts the update share (and where bootc looks for its image).
pub const BOOTC_SHARE_DIR: &str = "/var/mnt/share";
/// The tag bootc guests follow (`bootc upgrade` looks here).
pub const STABLE_TAG: &str = "stable";
/// bootc's default stateroot.
pub const STATEROOT: &str = "default";

/// The recipe's OCI layout on the host.
pub fn layout_path(paths: &Paths, recipe: &str) -> PathBuf {
    paths.update_share().join(format!("{recipe}.oci"))
}

/// The same layout as the guest sees it, with a tag: `/var/mnt/share/<recipe>.oci:<tag>`.
pub fn guest_imgref(recipe: &str, tag: &str) -> String {
    format!("{BOOTC_SHARE_DIR}/{recipe}.oci:{tag}")
}

/// The manifest digest of `tag` in an OCI layout (what `bootc status` calls `imageDigest`).
pub fn layout_digest(layout: &Path, tag: &str) -> Result<Option<String>> {
    let p = layout.join("index.json");
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    index_digest(&text, tag).with_context(|| format!("parsing {}", p.display()))
}

/// The manifest digest of `tag` in the text of an OCI layout's `index.json` (the host reads the
/// file; a drill reads it as the guest sees it through the share).
pub fn index_digest(index_json: &str, tag: &str) -> Result<Option<String>> {
    let v: serde_json::Value = serde_json::from_str(index_json)?;
    Ok(v["manifests"].as_array().and_then(|ms| {
        ms.iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .and_then(|m| m["digest"].as_str().map(str::to_string))
    }))
}

/// A version written to the recipe's OCI layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OciPublished {
    pub layout: PathBuf,
    pub tag: String,
    /// Manifest digest of the version in the layout.
    pub digest: String,
    /// [`STABLE_TAG`] now points at it.
    pub stable: bool,
    /// What `stable` pointed at before (a manifest digest), if anything.
    pub previous_stable: Option<String>,
}

/// Write `build` into the recipe's OCI layout under its version tag (skipped when the tag
/// already holds this image), and point [`STABLE_TAG`] at it when `make_stable`.
pub async fn publish_oci(
    paths: &Paths,
    build: &BuildResult,
    make_stable: bool,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<OciPublished> {
    let stage = "publish";
    let layout = layout_path(paths, &build.recipe);
    let _lock = HostLock::acquire(&format!("oci-{}", build.recipe), ev, cancel).await?;
    // The image id is recorded beside the layout per tag: skopeo's manifest digest in the layout
    // differs from podman's, so this is how an unchanged version is recognised.
    let ids = layout.with_extension("oci.ids.json");
    let mut known: std::collections::BTreeMap<String, String> = std::fs::read_to_string(&ids)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let have = layout_digest(&layout, &build.version)?;
    if have.is_some() && known.get(&build.version) == Some(&build.image_id) {
        ev.note(
            stage,
            format!(
                "{}:{} already holds this image",
                layout.display(),
                build.version
            ),
        );
    } else {
        crate::tools::skopeo::copy_to_oci_layout(
            &build.image_tag,
            &layout,
            &build.version,
            stage,
            ev,
            cancel,
        )
        .await?;
        known.insert(build.version.clone(), build.image_id.clone());
        crate::paths::write_atomic(&ids, serde_json::to_string_pretty(&known)?.as_bytes())?;
    }
    let digest = layout_digest(&layout, &build.version)?.with_context(|| {
        format!(
            "skopeo wrote no tag {} into {}",
            build.version,
            layout.display()
        )
    })?;
    let previous_stable = layout_digest(&layout, STABLE_TAG)?;
    if make_stable && previous_stable.as_deref() != Some(digest.as_str()) {
        // Within one layout the blobs are shared: this only writes a tag.
        HostCmd::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:{}", layout.display(), build.version))
            .arg(format!("oci:{}:{STABLE_TAG}", layout.display()))
            .run(stage, ev, cancel)
            .await
            .context("skopeo could not move the stable tag")?;
        ev.note(
            stage,
            format!("{STABLE_TAG} → {} ({})", build.version, short(&digest)),
        );
    }
    Ok(OciPublished {
        layout,
        tag: build.version.clone(),
        stable: make_stable || previous_stable.as_deref() == Some(digest.as_str()),
        digest,
        previous_stable,
    })
}

/// The file name of one version's oci-archive in the update share.
fn archive_name(recipe: &str, version: &str) -> String {
    format!("{recipe}-{version}.oci-archive")
}

/// The oci-archive of one version on the host: `<update share>/<recipe>-<version>.oci-archive`.
pub fn archive_path(paths: &Paths, recipe: &str, version: &str) -> PathBuf {
    paths.update_share().join(archive_name(recipe, version))
}

/// The same archive as the guest sees it.
pub fn guest_archive(recipe: &str, version: &str) -> String {
    format!("{BOOTC_SHARE_DIR}/{}", archive_name(recipe, version))
}

/// Write `build` as an oci-archive in the update share (the other transport `bootc switch`
/// takes), unless the archive there already holds this image (its image id is kept beside it).
/// Returns the host path and whether it was written now.
pub async fn publish_archive(
    paths: &Paths,
    build: &BuildResult,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<(PathBuf, bool)> {
    let stage = "publish";
    let archive = archive_path(paths, &build.recipe, &build.version);
    let _lock = HostLock::acquire(&format!("oci-{}", build.recipe), ev, cancel).await?;
    let id_file = archive.with_extension("oci-archive.image-id");
    let known = std::fs::read_to_string(&id_file).ok();
    if archive.is_file() && known.as_deref().map(str::trim) == Some(build.image_id.as_str()) {
        ev.note(
            stage,
            format!("{} already holds this image", archive.display()),
        );
        return Ok((archive, false));
    }
    // The old id goes before the archive is rewritten: a half-written archive is never left
    // beside an id that vouches for it.
    let _ = std::fs::remove_file(&id_file);
    crate::tools::skopeo::copy_to_oci_archive(&build.image_tag, &archive, stage, ev, cancel)
        .await?;
    crate::paths::write_atomic(&id_file, build.image_id.as_bytes())?;
    Ok((archive, true))
}

fn short(d: &str) -> &str {
    let d = d.strip_prefix("sha256:").unwrap_or(d);
    &d[..d.len().min(12)]
}

/// Kernel arguments bootc puts on the deployment (bootc adds `root=` from the mount spec).
pub fn kargs() -> Vec<String> {
    KARGS.iter().map(|k| k.to_string()).collect()
}

fn meta_path(golden: &Path) -> PathBuf {
    golden.with_extension("json")
}

/// The golden disk of this image, if one was completed.
pub fn find_golden(
    paths: &Paths,
    recipe: &str,
    version: &str,
    image_id: &str,
) -> Option<(PathBuf, DiskMeta)> {
    let p = golden_path(paths, recipe, version, image_id);
    let meta: DiskMeta =
        serde_json::from_str(&std::fs::read_to_string(meta_path(&p)).ok()?).ok()?;
    (super::super::disk::whole_disk(&p)
        && meta.image_id.as_deref() == Some(image_id)
        && meta.kargs == kargs()
        && meta.format == super::super::disk::DISK_FORMAT)
        .then_some((p, meta))
}

/// A boot entry (Boot Loader Specification) as ostree writes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlsEntry {
    pub title: String,
    pub linux: String,
    pub initrd: String,
    pub options: String,
}

pub fn parse_bls(text: &str) -> BlsEntry {
    let mut e = BlsEntry::default();
    for l in text.lines() {
        let (k, v) = l.trim().split_once(char::is_whitespace).unwrap_or((l, ""));
        let v = v.trim().to_string();
        match k {
            "title" => e.title = v,
            "linux" => e.linux = v,
            "initrd" => e.initrd = v,
            "options" => e.options = v,
            _ => {}
        }
    }
    e
}

/// The syslinux.cfg of one entry (ostree's syslinux backend keeps the head and rewrites the
/// LABEL blocks on each later deployment).
pub fn syslinux_cfg(e: &BlsEntry) -> String {
    format!(
        "{SYSLINUX_HEAD}DEFAULT {}\nLABEL {}\n\tKERNEL {}\n\tINITRD {}\n\tAPPEND {}\n",
        e.title, e.title, e.linux, e.initrd, e.options
    )
}

/// Make (or reuse) the golden disk of a bootc image (see the module docs).
pub async fn make_bootc_disk(
    paths: &Paths,
    build: &BuildResult,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<DiskResult> {
    let (recipe, version) = (build.recipe.as_str(), build.version.as_str());
    let t = StageTimer::start(&ev.about(recipe), "disk");
    let started = std::time::Instant::now();
    let done = |path: PathBuf, commit: String, cached: bool, t: StageTimer, cold: Option<f64>| {
        let timing = t.finish(cached);
        DiskResult {
            path,
            recipe: recipe.into(),
            version: version.into(),
            commit,
            cached,
            cold_secs: cold.unwrap_or(timing.secs),
            timings: vec![timing],
        }
    };
    if let Some((p, meta)) = find_golden(paths, recipe, version, &build.image_id) {
        ev.note("disk", format!("reusing {} (image unchanged)", p.display()));
        return Ok(done(p, meta.commit, true, t, Some(meta.make_secs)));
    }
    // The version in the layout is the install's source; `stable` is set only where none is
    // yet (a drill moves it; a new disk does not undo that).
    let has_stable = layout_digest(&layout_path(paths, recipe), STABLE_TAG)?.is_some();
    publish_oci(paths, build, !has_stable, ev, cancel).await?;

    let dir = paths.disks();
    std::fs::create_dir_all(&dir)?;
    let _lock = HostLock::acquire("disk", ev, cancel).await?;
    reap_leftovers(&dir, ev).await;
    check_free_space(&dir, 3 * GIB, "a golden disk")?;
    let dest = golden_path(paths, recipe, version, &build.image_id);
    let name = dest
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let tmp_path = dir.join(format!(".tmp-{name}-{}.raw", fastrand::u32(..)));
    let mut tmp = TempFile(Some(tmp_path.clone()));
    let mnt = tempfile::Builder::new().prefix(".mnt-").tempdir_in(&dir)?;
    let full = |e| crate::pipeline::explain_full_disk(e, &dir, "a golden disk");
    let podman = Podman::probe(paths, ev, cancel).await?;
    let choice = probe_install(&podman, &build.image_tag, "disk", ev, cancel).await?;
    let method = match choice.method {
        InstallMethod::ToDisk => "bootc install to-disk --via-loopback",
        InstallMethod::ToFilesystem => "bootc install to-filesystem",
    };
    ev.note("disk", format!("{method}: {}", choice.why));
    let mut made = Err(anyhow::anyhow!("not installed"));
    if choice.method == InstallMethod::ToDisk {
        made = install_to_disk(paths, &podman, &tmp_path, build, "disk", ev, cancel).await;
        if let Err(e) = &made {
            // A host that parses partitions may still refuse the rest (`--pid=host` re-exec
            // into the host's mount namespace is refused in sandboxes): to-filesystem works.
            ev.note(
                "disk",
                format!("{e:#}; making the disk with bootc install to-filesystem instead"),
            );
            let _ = std::fs::remove_file(&tmp_path);
        }
    }
    if made.is_err() {
        made = fill(paths, &podman, &tmp_path, mnt.path(), build, ev, cancel).await;
    }
    let mut meta = made.map_err(full)?;
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
    let commit = meta.commit.clone();
    Ok(done(dest, commit, false, t, None))
}

/// How `bootc install` puts an image on a golden disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallMethod {
    /// `bootc install to-disk --via-loopback`: bootc partitions the disk file itself and
    /// installs its bootloader with bootupd (members' laptops with Fedora/CentOS images).
    ToDisk,
    /// `bootc install to-filesystem` onto bootlab's own partitioned disk, with syslinux and
    /// the GRUB ESP bootlab writes (works on every host bootlab runs on).
    ToFilesystem,
}

/// The method for this host and image, and why (shown before the install).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallChoice {
    pub method: InstallMethod,
    pub why: String,
}

/// What the two probes found → the method. `to-disk` needs a kernel that finds partitions on
/// a loop device (its `--via-loopback` partitions a file and mounts them) and bootupd in the
/// image (it installs the bootloader with it); anything less gets `to-filesystem`.
pub fn choose_install(loop_partitions: bool, image_has_bootupd: Option<bool>) -> InstallChoice {
    let (method, why) = match (loop_partitions, image_has_bootupd) {
        (false, _) => (
            InstallMethod::ToFilesystem,
            "this host's kernel finds no partitions on loop devices (`losetup --partscan` probe), \
             and `bootc install to-disk --via-loopback` mounts the partitions it makes"
                .to_string(),
        ),
        (true, Some(false)) | (true, None) => (
            InstallMethod::ToFilesystem,
            "the image has no bootupd (`bootupctl`), which `bootc install to-disk` uses to \
             install its bootloader"
                .to_string(),
        ),
        (true, Some(true)) => (
            InstallMethod::ToDisk,
            "this host's kernel finds loop partitions and the image has bootupd".to_string(),
        ),
    };
    InstallChoice { method, why }
}

/// Probe this host and `image`, then [`choose_install`]. The image is only asked when the
/// host probe passes (a throw-away container, a second).
pub async fn probe_install(
    podman: &Podman,
    image: &str,
    s: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<InstallChoice> {
    if !disk::loop_parses_partitions(s, ev).await? {
        return Ok(choose_install(false, None));
    }
    let out = podman
        .run_capture(image, &["sh", "-c", "command -v bootupctl"], s, ev, cancel)
        .await?;
    Ok(choose_install(true, Some(out.status.success())))
}

/// `bootc install to-disk --via-loopback` of `build` onto the disk file `/output/<file name>`
/// (the file's folder is mounted at `/output`), following the recipe's OCI layout like the
/// to-filesystem disks do. `--pid=host` and the host's container storage, as upstream documents.
pub fn to_disk_args(build: &BuildResult, share: &Path, file: &Path) -> Vec<String> {
    let recipe = build.recipe.as_str();
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let mut a: Vec<String> = [
        "--privileged",
        "--pid=host",
        "--security-opt",
        "label=type:unconfined_t",
        "-v",
        "/dev:/dev",
        "-v",
        "/var/lib/containers:/var/lib/containers",
    ]
    .map(String::from)
    .to_vec();
    a.push("-v".into());
    a.push(format!("{}:{BOOTC_SHARE_DIR}", share.display()));
    a.push("-v".into());
    a.push(format!("{}:/output", dir.display()));
    a.push(build.image_tag.clone());
    a.extend(
        [
            "bootc",
            "install",
            "to-disk",
            "--via-loopback",
            "--generic-image",
            "--filesystem",
            "ext4",
            "--source-imgref",
        ]
        .map(String::from),
    );
    a.push(format!("oci:{}", guest_imgref(recipe, &build.version)));
    a.extend(["--target-transport", "oci", "--target-imgref"].map(String::from));
    a.push(guest_imgref(recipe, STABLE_TAG));
    a.extend(KARGS.iter().map(|k| format!("--karg={k}")));
    a.push(format!("/output/{name}"));
    a
}

/// The to-disk install and what it made. bootc's own layout: the root file system is labelled
/// `root`, the bootloader is bootupd's GRUB (BIOS and UEFI).
async fn install_to_disk(
    paths: &Paths,
    podman: &Podman,
    file: &Path,
    build: &BuildResult,
    s: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<DiskMeta> {
    std::fs::File::create(file)?.set_len(DISK_SIZE)?;
    let cname = format!("bootlab-install-{}", fastrand::u64(..));
    let r = podman
        .run_rm_cmd(&cname)
        .args(to_disk_args(build, &paths.update_share(), file))
        .run(s, ev, cancel)
        .await;
    if r.is_err() {
        podman.remove_left_behind(&cname, s, ev).await;
    }
    r.context("bootc install to-disk failed")?;
    // The deployment: read from the root partition, which this kernel shows (the probe).
    let whole = disk::LoopDevice::attach_partscan_read_only(file, s, ev).await?;
    let mut commit = None;
    for part in disk::partitions_of(&whole.dev) {
        let mnt = tempfile::tempdir()?;
        let Ok(m) = Mount::mount(&part, mnt.path(), Some("ro"), s, ev).await else {
            continue;
        };
        let deploy = mnt.path().join(format!("ostree/deploy/{STATEROOT}/deploy"));
        commit = std::fs::read_dir(&deploy).ok().and_then(|d| {
            d.flatten().find_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".0").map(str::to_string)
            })
        });
        m.unmount(s, ev).await?;
        if commit.is_some() {
            break;
        }
    }
    whole.detach(s, ev).await?;
    let commit = commit.context("bootc install to-disk made no deployment bootlab can find")?;
    Ok(DiskMeta {
        recipe: build.recipe.clone(),
        version: build.version.clone(),
        commit,
        stateroot: STATEROOT.into(),
        root_label: "root".into(),
        boot_label: "boot".into(),
        remote: "oci".into(),
        remote_url: guest_imgref(&build.recipe, STABLE_TAG),
        branch: String::new(),
        kargs: KARGS.iter().map(|k| k.to_string()).collect(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        make_secs: 0.0,
        image_id: Some(build.image_id.clone()),
        format: super::super::disk::DISK_FORMAT,
        // bootupd installs GRUB for both firmwares on x86_64.
        uefi: true,
    })
}

struct TempFile(Option<PathBuf>);
impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn fill(
    paths: &Paths,
    podman: &Podman,
    file: &Path,
    mnt: &Path,
    build: &BuildResult,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<DiskMeta> {
    let s = "disk";
    let recipe = build.recipe.as_str();
    let layout_ = MbrLayout::new(DISK_SIZE, BOOT_SIZE);
    disk::create_partitioned(file, &layout_, s, ev, cancel).await?;
    disk::write_mbr(file, &disk::find_mbr_bin()?)?;
    let boot_loop = LoopDevice::attach(file, layout_.boot, s, ev).await?;
    let root_loop = LoopDevice::attach(file, layout_.root, s, ev).await?;
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
    let boot_uuid = disk::fs_uuid(&boot_loop.dev, s, ev, cancel).await?;
    let root_mnt = Mount::mount(&root_loop.dev, mnt, None, s, ev).await?;
    let boot_dir = mnt.join("boot");
    let boot_mnt = Mount::mount(&boot_loop.dev, &boot_dir, None, s, ev).await?;
    if cancel.is_cancelled() {
        return Err(Cancelled.into());
    }

    // bootc installs itself, from the image itself, reading the version from the layout.
    let share = paths.update_share();
    let source = format!("oci:{}", guest_imgref(recipe, &build.version));
    let target = guest_imgref(recipe, STABLE_TAG);
    let cname = format!("bootlab-install-{}", fastrand::u64(..));
    let mut c = podman
        .cmd()
        .args([
            "run",
            "--rm",
            "--privileged",
            "--network=none",
            "--name",
            &cname,
        ])
        .args(podman.choice.ulimit_args())
        .args(["--security-opt", "label=disable", "-v", "/dev:/dev"])
        .arg("-v")
        .arg(format!("{}:{BOOTC_SHARE_DIR}", share.display()))
        .arg("-v")
        .arg(format!("{}:/target", mnt.display()))
        .arg(&build.image_tag)
        .args(["bootc", "install", "to-filesystem", "--source-imgref"])
        .arg(&source)
        .args(["--target-transport", "oci", "--target-imgref"])
        .arg(&target)
        .args(["--bootloader", "none", "--skip-finalize"])
        .arg(format!("--root-mount-spec=LABEL={ROOT_LABEL}"))
        .arg(format!("--boot-mount-spec=UUID={boot_uuid}"));
    for k in KARGS {
        c = c.arg(format!("--karg={k}"));
    }
    let r = c.arg("/target").run(s, ev, cancel).await;
    if r.is_err() {
        let _ = podman
            .cmd()
            .args(["rm", "-f", "--ignore", &cname])
            .run_unchecked(s, ev, &CancellationToken::new())
            .await;
    }
    if let Err(e) = &r
        && format!("{e:#}").contains("does not support fs-verity")
    {
        // bootc turns fs-verity on for the repository while it installs an image whose
        // prepare-root.conf says `enabled = verity`; that runs in this host's kernel.
        bail!(
            "bootc install to-filesystem failed: {e:#}\n{recipe} {} requires fs-verity \
             (prepare-root.conf `[composefs] enabled = verity`) and bootc enables it on every \
             object while it installs, in this host's kernel, which has no fs-verity{}. Make the \
             disk from a version without it and upgrade the guest, whose kernel has fs-verity, \
             after turning it on for the guest's repository (lab 12-composefs shows how).",
            build.version,
            if std::path::Path::new("/sys/fs/ext4/features/verity").exists() {
                " for this file system"
            } else {
                " (no /sys/fs/ext4/features/verity)"
            }
        );
    }
    r.context("bootc install to-filesystem failed")?;

    // The deployment bootc made, and its boot entry → syslinux.
    let deploy_dir = mnt.join(format!("ostree/deploy/{STATEROOT}/deploy"));
    let commit = std::fs::read_dir(&deploy_dir)
        .with_context(|| format!("bootc left no {}", deploy_dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".0").map(str::to_string)
        })
        .next()
        .context("bootc made no deployment")?;
    // /boot and the /var bind are mounted by bootlab's initramfs, as in the offline family
    // (layout::BOOT_FSTAB_OPTIONS, layout::var_fstab_line).
    let deployment = deploy_dir.join(format!("{commit}.0"));
    let fstab = deployment.join("etc/fstab");
    let text = std::fs::read_to_string(&fstab)
        .with_context(|| format!("bootc wrote no {}", fstab.display()))?;
    let marked =
        crate::pipeline::layout::mark_boot_for_initramfs(&text, &fstab.display().to_string())?;
    let marked = crate::pipeline::layout::with_var_line(&marked, STATEROOT);
    std::fs::write(&fstab, marked).with_context(|| format!("write {}", fstab.display()))?;
    // The first boot does not redo what the image's package installs did (ldconfig ~2 s under
    // TCG on the way to the agent), as on the offline family's disks (layout::UPDATED).
    crate::pipeline::layout::write_updated(&deployment.join("etc"))?;
    crate::pipeline::layout::write_updated(&mnt.join(format!("ostree/deploy/{STATEROOT}/var")))?;
    let entries = boot_dir.join("loader/entries");
    let entry = std::fs::read_dir(&entries)
        .with_context(|| format!("bootc wrote no {}", entries.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "conf"))
        .context("bootc wrote no boot entry")?;
    let bls = parse_bls(&std::fs::read_to_string(&entry)?);
    if bls.linux.is_empty() || bls.initrd.is_empty() || !bls.options.contains("ostree=") {
        bail!("unexpected boot entry {}: {bls:?}", entry.display());
    }
    ev.note(
        s,
        format!("boot entry {}: {}", entry.display(), bls.options),
    );
    // boot/loader is ostree's symlink to loader.N: the config goes beside the entries, as the
    // syslinux backend expects, and boot/syslinux/syslinux.cfg points at it.
    std::fs::write(boot_dir.join("loader/syslinux.cfg"), syslinux_cfg(&bls))?;
    std::fs::create_dir_all(boot_dir.join("syslinux"))?;
    std::os::unix::fs::symlink(
        "../loader/syslinux.cfg",
        boot_dir.join("syslinux/syslinux.cfg"),
    )?;
    HostCmd::new("ostree")
        .arg(format!("--repo={}", mnt.join("ostree/repo").display()))
        .args(["config", "set", "sysroot.bootloader", "syslinux"])
        .run(s, ev, cancel)
        .await?;
    disk::extlinux_install(&boot_dir.join("syslinux"), s, ev, cancel).await?;

    HostCmd::new("sync")
        .arg("-f")
        .arg(mnt)
        .run(s, ev, cancel)
        .await?;
    boot_mnt.unmount(s, ev).await?;
    root_mnt.unmount(s, ev).await?;
    disk::tune_ext4_features(&root_loop.dev, disk::ROOT_LATE_FEATURES, s, ev, cancel).await?;
    root_loop.detach(s, ev).await?;
    boot_loop.detach(s, ev).await?;
    let uefi = super::super::disk::fill_esp(file, &layout_, s, ev, cancel).await?;
    Ok(DiskMeta {
        recipe: recipe.into(),
        version: build.version.clone(),
        commit,
        stateroot: STATEROOT.into(),
        root_label: ROOT_LABEL.into(),
        boot_label: BOOT_LABEL.into(),
        remote: "oci".into(),
        remote_url: target,
        branch: String::new(),
        kargs: kargs(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        make_secs: 0.0,
        image_id: Some(build.image_id.clone()),
        format: super::super::disk::DISK_FORMAT,
        uefi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_disk_only_with_loop_partitions_and_bootupd() {
        let c = choose_install(false, Some(true));
        assert_eq!(c.method, InstallMethod::ToFilesystem);
        assert!(c.why.contains("partitions on loop devices"), "{}", c.why);
        let c = choose_install(true, Some(false));
        assert_eq!(c.method, InstallMethod::ToFilesystem);
        assert!(c.why.contains("bootupd"), "{}", c.why);
        assert_eq!(
            choose_install(true, None).method,
            InstallMethod::ToFilesystem
        );
        assert_eq!(
            choose_install(true, Some(true)).method,
            InstallMethod::ToDisk
        );
    }

    /// The to-disk command as upstream documents it (`--via-loopback`, `--pid=host`, the
    /// host's container storage), reading the version from the recipe's layout and following
    /// `stable`, with bootlab's kernel arguments, onto the file in the mounted folder.
    #[test]
    fn the_to_disk_command() {
        let b = BuildResult {
            recipe: "fedora-bootc-core".into(),
            version: "v2".into(),
            image_tag: "localhost/bootlab/fedora-bootc-core:v2".into(),
            ..Default::default()
        };
        let a = to_disk_args(
            &b,
            Path::new("/h/updates"),
            Path::new("/h/disks/.tmp-x.raw"),
        );
        let j = a.join(" ");
        assert!(j.starts_with("--privileged --pid=host"), "{j}");
        assert!(j.contains("-v /h/updates:/var/mnt/share -v /h/disks:/output localhost/bootlab/fedora-bootc-core:v2 bootc install to-disk --via-loopback"), "{j}");
        assert!(
            j.contains("--source-imgref oci:/var/mnt/share/fedora-bootc-core.oci:v2"),
            "{j}"
        );
        assert!(
            j.contains(
                "--target-transport oci --target-imgref /var/mnt/share/fedora-bootc-core.oci:stable"
            ),
            "{j}"
        );
        assert!(j.contains("--karg=console=ttyS0,115200"), "{j}");
        assert_eq!(a.last().unwrap(), "/output/.tmp-x.raw");
    }

    #[test]
    fn index_digest_finds_a_tag() {
        // As skopeo writes a layout's index.json: one manifest per tag.
        let idx = r#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"annotations":{"org.opencontainers.image.ref.name":"v1"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"annotations":{"org.opencontainers.image.ref.name":"stable"}}]}"#;
        assert_eq!(
            index_digest(idx, "stable").unwrap().as_deref(),
            Some("sha256:bb")
        );
        assert_eq!(
            index_digest(idx, "v1").unwrap().as_deref(),
            Some("sha256:aa")
        );
        assert_eq!(index_digest(idx, "v2").unwrap(), None);
        assert!(index_digest("cat: no such file", "v1").is_err());
    }

    #[test]
    fn bls_entry_to_syslinux() {
        let e = parse_bls(
            "title Debian GNU/Linux 13 (trixie) (ostree:0)\nversion 1\noptions root=LABEL=bootlab-root rw ostree=/ostree/boot.1/default/abc/0\nlinux /ostree/default-abc/vmlinuz-6.12\ninitrd /ostree/default-abc/initramfs-6.12.img\n",
        );
        assert_eq!(e.linux, "/ostree/default-abc/vmlinuz-6.12");
        let cfg = syslinux_cfg(&e);
        assert!(cfg.starts_with(SYSLINUX_HEAD), "{cfg}");
        // As ostree's syslinux backend writes it: DEFAULT names the first LABEL.
        assert!(cfg.contains(
            "DEFAULT Debian GNU/Linux 13 (trixie) (ostree:0)\nLABEL Debian GNU/Linux 13 (trixie) (ostree:0)\n"
        ));
        assert!(
            cfg.contains(
                "\tAPPEND root=LABEL=bootlab-root rw ostree=/ostree/boot.1/default/abc/0\n"
            )
        );
    }

    #[test]
    fn layout_digest_by_tag() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(layout_digest(t.path(), "v1").unwrap(), None);
        std::fs::write(
            t.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:aa","annotations":{"org.opencontainers.image.ref.name":"v1"}},{"digest":"sha256:bb","annotations":{"org.opencontainers.image.ref.name":"stable"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            layout_digest(t.path(), "v1").unwrap().as_deref(),
            Some("sha256:aa")
        );
        assert_eq!(
            layout_digest(t.path(), "stable").unwrap().as_deref(),
            Some("sha256:bb")
        );
        assert_eq!(layout_digest(t.path(), "v2").unwrap(), None);
        assert_eq!(guest_imgref("d", "stable"), "/var/mnt/share/d.oci:stable");
    }
}
