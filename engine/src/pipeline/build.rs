//! Recipe version → podman image → OSTree commit on the recipe's branch.
//!
//! Stages (each a row of the timing table): `base` (ensure the Debian base), `build`
//! (`podman build`), `export` (rootfs out of the image), `convert+commit` (OSTree layout, commit).
//!
//! Cache: a record per recipe version (`<cache>/builds/<recipe>/<version>.json`) keyed by the hash
//! of the recipe folder, the base image id, the version's build settings and the conversion's
//! own version. When the key matches, the tag still names the recorded image and the repo still
//! has the commit, nothing runs. When podman's layer cache rebuilds the very same image, export
//! and conversion are skipped too.
//!
//! Nothing half-made is registered: podman builds untagged; the tag and the record are written
//! only once the commit exists; the temp container goes whatever happens.

use super::{GIB, branch, check_free_space, layout};
use crate::events::{CancellationToken, Cancelled, Emitter, StageTimer, StageTiming};
use crate::paths::Paths;
use crate::recipe::{Family, Recipe, Version};
use crate::tools::cmd::HostCmd;
use crate::tools::ostree::{CommitSpec, Mode, Repo};
use crate::tools::podman::{BuildSpec, Podman};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped whenever [`layout::convert`] (or the initramfs it is given) changes what it produces
/// (invalidates build records). 3: the small initramfs also for a kernel already in
/// usr/lib/modules (the trixie base), with composefs drivers. 4: no fstab line for / (a
/// composefs root that systemd-remount-fs cannot remount). 5: udev's coldplug handles the guest
/// agent's port first ([`layout::UDEV_TRIGGER_DROPIN`]). 6: `/var/.updated` in the var seed
/// ([`layout::UPDATED`]) and the static device nodes a tmpfiles.d file
/// ([`layout::STATIC_NODES`]), kmod-static-nodes masked. 7: /boot mounted by the initramfs
/// (its fstab line `noauto,x-initrd.mount`, [`layout::BOOT_FSTAB_OPTIONS`]). 8: /var too
/// ([`layout::var_fstab_line`]) and the guest agent's own unit ([`layout::AGENT_UNIT`]). 9: the
/// drivers udev does not load ([`layout::UNUSED_MODULES`]). 10: seven more units masked
/// ([`layout::MASKED_UNITS`]). 11: dpkg's info files one tar in the var seed
/// ([`layout::DPKG_INFO_TAR`]). 12: the random seed's unit and five generators masked
/// ([`layout::MASKED_GENERATORS`]), the journal's flush only into a persistent journal
/// ([`layout::JOURNAL_FLUSH_DROPIN`]). 13: udev's coldplug without the subsystems and the
/// virtual consoles ([`layout::UDEV_TRIGGER_DROPIN`]).
pub const CONVERSION_VERSION: u32 = 13;

/// What [`build_image`] made or found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildResult {
    pub recipe: String,
    pub version: String,
    /// `localhost/bootlab/<recipe>:<version>`.
    pub image_tag: String,
    /// podman's image id (hex, no `sha256:`).
    pub image_id: String,
    /// podman's digest of the image (`sha256:…`), also in the commit's metadata.
    pub image_digest: String,
    /// OSTree branch in the host repo.
    pub branch: String,
    /// The commit of this version.
    pub commit: String,
    /// Kernel version inside the commit.
    pub kernel: String,
    /// The whole build was a cache hit.
    pub cached: bool,
    pub timings: Vec<StageTiming>,
    /// Seconds the cold build of this image took (build, export, convert+commit), to show what
    /// a cache hit saved.
    pub cold_secs: f64,
    /// What `bootc container lint` found (bootc family; empty for the offline family).
    #[serde(default)]
    pub lint: Vec<String>,
    /// The image's `[composefs] enabled` (prepare-root.conf), as read after the build (bootc
    /// family; "" when not read).
    #[serde(default)]
    pub composefs: String,
}

/// The record a build leaves for the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub key: String,
    pub image_id: String,
    pub image_digest: String,
    pub commit: String,
    pub kernel: String,
    pub built_at: String,
    #[serde(default)]
    pub cold_secs: f64,
    /// [`CONVERSION_VERSION`] the commit was made with (0: before it was recorded).
    #[serde(default)]
    pub conversion: u32,
    /// `bootc container lint`'s findings (bootc family).
    #[serde(default)]
    pub lint: Vec<String>,
    /// The image's `[composefs] enabled` (bootc family; "" when not read).
    #[serde(default)]
    pub composefs: String,
    /// [`super::initramfs::method_id`] of the small initramfs in the commit ("" before it was
    /// recorded): a change in how it is made makes the commit again.
    #[serde(default, alias = "initramfs")]
    pub initramfs_method: String,
}

impl BuildRecord {
    /// Made the way this bootlab converts (layout and initramfs): its commit can be reused.
    fn converted_as_now(&self) -> bool {
        self.conversion == CONVERSION_VERSION
            && self.initramfs_method == super::initramfs::method_id()
    }
}

pub fn record_path(paths: &Paths, recipe: &str, version: &str) -> PathBuf {
    paths
        .cache
        .join("builds")
        .join(recipe)
        .join(format!("{version}.json"))
}

/// The last successful build of a recipe version in this home, if any.
pub fn last_build(paths: &Paths, recipe: &str, version: &str) -> Option<BuildRecord> {
    let text = std::fs::read_to_string(record_path(paths, recipe, version)).ok()?;
    serde_json::from_str(&text).ok()
}

/// All build args bootlab passes for a version: `BOOTLAB_VERSION` first, then the recipe's.
pub fn build_args(version: &Version) -> Vec<(String, String)> {
    let mut v = vec![("BOOTLAB_VERSION".to_string(), version.id.clone())];
    v.extend(
        version
            .build_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    v
}

fn cache_key(recipe: &Recipe, version: &Version, base_id: &str) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(super::hash_dir(&recipe.dir)?);
    h.update("\0");
    h.update(base_id);
    h.update("\0");
    h.update(serde_json::to_string(version)?);
    h.update(format!("\0conversion {CONVERSION_VERSION}\0"));
    h.update(super::initramfs::method_id());
    Ok(hex::encode(h.finalize())[..24].to_string())
}

/// Build `version` of `recipe` and commit it to the host repo (see the module docs).
pub async fn build_image(
    paths: &Paths,
    recipe: &Recipe,
    version: &Version,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<BuildResult> {
    if recipe.file.family == Family::Bootc {
        std::fs::create_dir_all(paths.cache.join("builds"))?;
        return super::bootc::image::build_bootc_image(paths, recipe, version, ev, cancel).await;
    }
    let mut timings = Vec::new();
    let podman = Podman::probe(paths, ev, cancel).await?;

    // base
    let base_id = if recipe.file.base == super::BASE_TAG {
        // trixie with ostree from testing (set-default, staged deployments, composefs).
        let b = super::ensure_base(paths, false, ev, cancel).await?;
        timings.extend(b.timings);
        b.image_id
    } else {
        let t = StageTimer::start(ev, "base");
        let id = podman.image_id(&recipe.file.base, cancel).await?.with_context(|| {
            format!(
                "recipe {} builds FROM {}, which podman does not have (no registry is used: build or import it first)",
                recipe.name(),
                recipe.file.base
            )
        })?;
        timings.push(t.finish(true));
        id
    };

    let key = cache_key(recipe, version, &base_id)?;
    let tag = recipe.image_tag(&version.id);
    let repo = Repo::at(paths.ostree_repo());
    let br = branch(recipe.name());
    let result = |rec: &BuildRecord, cached: bool, timings: Vec<StageTiming>| BuildResult {
        recipe: recipe.name().into(),
        version: version.id.clone(),
        image_tag: tag.clone(),
        image_id: rec.image_id.clone(),
        image_digest: rec.image_digest.clone(),
        branch: br.clone(),
        commit: rec.commit.clone(),
        kernel: rec.kernel.clone(),
        cached,
        timings,
        cold_secs: rec.cold_secs,
        lint: rec.lint.clone(),
        composefs: rec.composefs.clone(),
    };

    let work_root = paths.cache.join("builds");
    std::fs::create_dir_all(&work_root)?;
    // One build at a time on this host (2 cores; podman's store is shared). A hit needs no lock;
    // after waiting for it, check again: another bootlab may just have built this very version.
    let mut lock = None;
    let previous = loop {
        let previous = last_build(paths, recipe.name(), &version.id);
        if let Some(rec) = &previous
            && rec.key == key
            && rec.converted_as_now()
            && podman.image_id(&tag, cancel).await?.as_deref() == Some(rec.image_id.as_str())
            && repo.has_commit(&rec.commit, cancel).await?
        {
            ev.note(
                "build",
                format!(
                    "{tag} unchanged: reusing image {} and commit {}",
                    short(&rec.image_id),
                    short(&rec.commit)
                ),
            );
            for s in ["build", "export", "convert+commit"] {
                timings.push(StageTimer::start(ev, s).finish(true));
            }
            return Ok(result(rec, true, timings));
        }
        if lock.is_some() {
            break previous;
        }
        lock = Some(super::HostLock::acquire("build", ev, cancel).await?);
    };
    // Under the lock, a staging folder left by a killed build is ours to remove.
    for e in std::fs::read_dir(&work_root)?.flatten() {
        if e.file_name().to_string_lossy().starts_with(".work-") {
            ev.note("build", format!("removing leftover {}", e.path().display()));
            let p = e.path();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(p)).await;
        }
    }
    // So is an export container of a killed bootlab (its owner label names a process now gone).
    podman.reap_orphans("build", ev).await?;
    // The exported tar and its unpacked tree (~800 MB each, briefly both).
    check_free_space(&work_root, 2 * GIB, "exporting and committing an image")?;
    let work = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(&work_root)?;

    // build
    // Timed as this recipe's (crate::timings): images differ in what they take.
    let rev = ev.about(recipe.name());
    let t = StageTimer::start(&rev, "build");
    let iidfile = work.path().join("iid");
    let image_id = podman
        .build(
            &BuildSpec {
                context_dir: &recipe.dir,
                containerfile: &recipe.containerfile_path(),
                build_args: build_args(version),
                target: version.target.clone(),
                iidfile: &iidfile,
            },
            "build",
            ev,
            cancel,
        )
        .await
        .with_context(|| format!("building {} {}", recipe.name(), version.id))?;
    timings.push(t.finish(false));
    let image_digest = podman.image_digest(&image_id, cancel).await?;

    // Same image as last time (podman's layer cache), converted the same way: the commit is
    // still right.
    if let Some(rec) = &previous
        && rec.image_id == image_id
        && rec.converted_as_now()
        && repo.has_commit(&rec.commit, cancel).await?
    {
        ev.note(
            "build",
            format!(
                "podman rebuilt the same image {}: reusing commit {}",
                short(&image_id),
                short(&rec.commit)
            ),
        );
        for s in ["export", "convert+commit"] {
            timings.push(StageTimer::start(ev, s).finish(true));
        }
        let rec = BuildRecord { key, ..rec.clone() };
        podman.tag(&image_id, &tag, ev, cancel).await?;
        crate::paths::write_atomic(
            &record_path(paths, recipe.name(), &version.id),
            serde_json::to_string_pretty(&rec)?.as_bytes(),
        )?;
        return Ok(result(&rec, false, timings));
    }

    // export
    let t = StageTimer::start(&rev, "export");
    let tree = work.path().join("tree");
    export_rootfs(&podman, &image_id, work.path(), &tree, ev, cancel)
        .await
        .map_err(|e| super::explain_full_disk(e, &work_root, "the image's exported rootfs"))?;
    timings.push(t.finish(false));

    // convert+commit
    let t = StageTimer::start(&rev, "convert+commit");
    // The small initramfs first: the conversion moves the kernel and its initramfs.
    super::initramfs::replace_initramfs(
        paths,
        &podman,
        &image_id,
        &tree,
        "convert+commit",
        ev,
        cancel,
    )
    .await?;
    let tree2 = tree.clone();
    let report = tokio::task::spawn_blocking(move || {
        layout::convert(&tree2, &layout::LayoutOptions::default())
    })
    .await?
    .with_context(|| {
        format!(
            "converting {} {} to the OSTree layout",
            recipe.name(),
            version.id
        )
    })?;
    if cancel.is_cancelled() {
        return Err(Cancelled.into());
    }
    repo.ensure(Mode::Bare, ev, cancel).await?;
    let built_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let commit = repo
        .commit(
            &CommitSpec {
                branch: &br,
                tree: &tree,
                subject: format!("{} {}: {}", recipe.name(), version.id, version.changes),
                metadata: vec![
                    ("version".into(), version.id.clone()),
                    ("bootlab.recipe".into(), recipe.name().into()),
                    ("bootlab.image-digest".into(), image_digest.clone()),
                    ("bootlab.image-id".into(), image_id.clone()),
                    ("bootlab.build-time".into(), built_at.clone()),
                    ("bootlab.kernel".into(), report.kernel_version.clone()),
                ],
            },
            "convert+commit",
            ev,
            cancel,
        )
        .await
        .map_err(|e| super::explain_full_disk(e, &paths.ostree_repo(), "the OSTree commit"))?;
    timings.push(t.finish(false));

    // Register: tag, then the record.
    podman.tag(&image_id, &tag, ev, cancel).await?;
    let rec = BuildRecord {
        key,
        image_id,
        image_digest,
        commit,
        kernel: report.kernel_version,
        built_at,
        cold_secs: timings
            .iter()
            .filter(|t| t.stage != "base")
            .map(|t| t.secs)
            .sum(),
        conversion: CONVERSION_VERSION,
        lint: Vec::new(),
        composefs: String::new(),
        initramfs_method: super::initramfs::method_id(),
    };
    crate::paths::write_atomic(
        &record_path(paths, recipe.name(), &version.id),
        serde_json::to_string_pretty(&rec)?.as_bytes(),
    )?;
    // The staging tree is large; remove it off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(work)).await;
    Ok(result(&rec, false, timings))
}

/// The image's rootfs, unpacked into `tree` (a temp container, `podman export`, `tar -x`).
async fn export_rootfs(
    podman: &Podman,
    image_id: &str,
    work: &Path,
    tree: &Path,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    let tar = work.join("rootfs.tar");
    let container = podman.create_temp(image_id, "export", ev, cancel).await?;
    podman
        .export(&container.name, &tar, "export", ev, cancel)
        .await?;
    container.remove("export", ev).await?;
    std::fs::create_dir_all(tree)?;
    HostCmd::new("tar")
        .args([
            "--numeric-owner",
            "--same-owner",
            "--same-permissions",
            "--xattrs",
            "--xattrs-include=*",
            "-xf",
        ])
        .arg(&tar)
        .arg("-C")
        .arg(tree)
        .run("export", ev, cancel)
        .await?;
    std::fs::remove_file(&tar)?;
    Ok(())
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}
