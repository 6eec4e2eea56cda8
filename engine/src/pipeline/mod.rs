//! The offline image pipeline: Debian trixie base → recipe build → OSTree commit → bootable disk, and
//! publishing a commit to the update share the guests pull from.
//!
//! The API the CLI, the TUI and the drills use (every call takes an [`Emitter`] for progress and
//! a [`CancellationToken`]; every stage reports a [`StageTiming`]):
//!
//! - [`ensure_base`]`(paths, rebuild, ev, cancel) -> BaseResult` — the Debian trixie base image.
//! - [`build_image`]`(paths, recipe, version, ev, cancel) -> BuildResult` — podman build, export,
//!   OSTree layout, commit on branch [`branch`]`(recipe)` in [`Paths::ostree_repo`]. An unchanged
//!   recipe version is a cache hit (same commit back, nothing rebuilt).
//! - [`make_disk`]`(paths, recipe, version, commit, ev, cancel) -> DiskResult` — the golden raw
//!   disk of that commit in [`Paths::disks`], reused while the commit is the same.
//! - [`publish`]`(paths, recipe, commit, ev, cancel) -> PublishResult` — puts that commit on
//!   the recipe's branch in the update share's archive repo, where a guest's
//!   `ostree admin upgrade` (remote [`REMOTE`]) finds it.
//! - [`crate::tools::qemu::img::overlay`] — a qcow2 overlay of a golden disk for one VM.
//!
//! Nothing half-made is ever registered: builds are tagged and recorded only after the commit
//! exists, disks are made under a temp name and renamed when complete.

pub mod base;
pub mod bootc;
pub mod build;
pub mod disk;
pub mod initramfs;
pub mod layout;
pub mod publish;

/// The offline family's base: trixie with ostree from testing (see [`bootc::guest`]).
pub use bootc::guest::{
    GuestBase as BaseResult, OSTREE_BASE_TAG as BASE_TAG, ensure_ostree_base as ensure_base,
};
pub use build::{BuildResult, build_image};
pub use disk::{DiskResult, make_disk};
pub use publish::{PublishResult, publish};

use crate::events::{CancellationToken, Cancelled, Emitter};
use anyhow::Result;
use std::path::Path;

pub const GIB: u64 = 1024 * 1024 * 1024;

/// Name of the remote every golden disk's repo has, pointing at the update share in the guest.
pub const REMOTE: &str = "bootlab";
/// The stateroot (`ostree admin os-init`) of every offline disk.
pub const STATEROOT: &str = "debian";
/// Filesystem labels of the golden disk's partitions (the fstab and `root=` use them).
pub const BOOT_LABEL: &str = "bootlab-boot";
pub const ROOT_LABEL: &str = "bootlab-root";

/// The OSTree branch of a recipe, in the host repo, the update share and the guest's remote.
pub fn branch(recipe: &str) -> String {
    format!("bootlab/{recipe}")
}

/// The URL of the update repo as the guest sees it.
pub fn guest_remote_url() -> String {
    format!("file://{}/repo", crate::tools::qemu::GUEST_SHARE_DIR)
}

pub use crate::paths::Paths;

/// Fail early, with a clear message, when `path`'s filesystem has less than `need` bytes free.
pub fn check_free_space(path: &Path, need: u64, what: &str) -> Result<()> {
    let (probe, free) = free_space_at(path)?;
    if free < need {
        anyhow::bail!(
            "not enough free disk space for {what}: {} has {:.1} GiB free, {:.1} GiB needed (free some space or point BOOTLAB_HOME elsewhere)",
            probe.display(),
            free as f64 / GIB as f64,
            need as f64 / GIB as f64
        );
    }
    Ok(())
}

/// The nearest existing ancestor of `path` (or `/`) and the free bytes of its file system.
pub(crate) fn free_space_at(path: &Path) -> Result<(&Path, u64)> {
    let probe = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let st = nix::sys::statvfs::statvfs(probe)?;
    Ok((
        probe,
        st.blocks_available() as u64 * st.fragment_size() as u64,
    ))
}

/// Whether `e` is a damaged object in bootlab's host repo, found by a checked copy
/// ([`crate::tools::ostree::Repo::pull_local`]).
pub fn is_damaged_object(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::tools::ostree::DamagedObject>()
        .is_some()
}

/// After a checked copy out of the host repo found a damaged object: remove every damaged
/// object (`ostree fsck --delete`), so the commits that held them count as missing and the next
/// build commits their trees again. `e` comes back saying so.
pub(crate) async fn remove_damaged(
    paths: &Paths,
    e: anyhow::Error,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Error {
    if !is_damaged_object(&e) {
        return e;
    }
    let host = crate::tools::ostree::Repo::at(paths.ostree_repo());
    ev.note(
        stage,
        format!(
            "{e:#}: removing the damaged objects from {} (`ostree fsck --delete`)",
            host.path.display()
        ),
    );
    match host.delete_damaged(stage, ev, cancel).await {
        Ok(()) => {
            e.context("the damaged objects were removed: the next build commits the image again")
        }
        Err(fsck) => e.context(format!("removing the damaged objects failed too: {fsck:#}")),
    }
}

/// Build (or reuse) the image of `recipe` `version`, then `use_commit` on its commit. A checked
/// copy that finds a damaged object in bootlab's repo has removed it by then (see
/// [`remove_damaged`]) and its commit no longer counts: the image is committed again (its
/// objects written afresh) and `use_commit` runs once more, on the new commit.
pub async fn with_image_commit<T, F, Fut>(
    paths: &Paths,
    recipe: &crate::recipe::Recipe,
    version: &crate::recipe::Version,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
    use_commit: F,
) -> Result<(BuildResult, T)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let image = build_image(paths, recipe, version, ev, cancel).await?;
    match use_commit(image.commit.clone()).await {
        Ok(t) => Ok((image, t)),
        Err(e) if is_damaged_object(&e) => {
            ev.note(stage, format!("{e:#}; committing the image again"));
            let image = build_image(paths, recipe, version, ev, cancel).await?;
            let t = use_commit(image.commit.clone()).await?;
            Ok((image, t))
        }
        Err(e) => Err(e),
    }
}

/// `e`, said plainly when the file system holding `dir` has filled up while writing there.
/// A disk image is written through a loop device, and a loop device over a file whose file
/// system is full reports "Input/output error", not "No space left on device".
pub fn explain_full_disk(e: anyhow::Error, dir: &Path, what: &str) -> anyhow::Error {
    const NEARLY_FULL: u64 = 64 << 20;
    match free_space_at(dir) {
        Ok((_, free)) if free < NEARLY_FULL => e.context(format!(
            "the file system holding {} is full ({} MiB free) while writing {what}; free some space or point BOOTLAB_HOME elsewhere",
            dir.display(),
            free >> 20
        )),
        _ => e,
    }
}

/// A host-wide exclusive lock (flock on a file in the temp dir) for work on shared resources
/// such as podman's image store. Waiting is cancellable.
pub struct HostLock(#[allow(dead_code)] std::fs::File);

impl HostLock {
    pub async fn acquire(name: &str, ev: &Emitter, cancel: &CancellationToken) -> Result<HostLock> {
        use std::os::fd::AsRawFd;
        let p = std::env::temp_dir().join(format!("bootlab-{name}.lock"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)?;
        let mut told = false;
        loop {
            // SAFETY: flock on a valid open fd.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(HostLock(f));
            }
            if !told {
                ev.note(
                    name,
                    format!("waiting for another bootlab ({})", p.display()),
                );
                told = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = cancel.cancelled() => return Err(Cancelled.into()),
            }
        }
    }
}

/// Hash of every file under `dir` (names, modes, symlink targets, contents), sorted: the part
/// of a build's cache key that says "the recipe did not change".
pub fn hash_dir(dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(p.clone());
            }
            entries.push(p);
        }
    }
    entries.sort();
    let mut h = Sha256::new();
    for p in entries {
        let rel = p.strip_prefix(dir)?;
        let md = std::fs::symlink_metadata(&p)?;
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(format!("\0{:o}\0", md.permissions().mode()));
        if md.file_type().is_symlink() {
            h.update(std::fs::read_link(&p)?.as_os_str().as_encoded_bytes());
        } else if md.is_file() {
            h.update(std::fs::read(&p)?);
        }
        h.update("\0");
    }
    Ok(hex::encode(h.finalize()))
}

/// Where an image says whether its deployments boot from composefs (ostree 2023.4 and later).
pub const PREPARE_ROOT_CONF: &str = "usr/lib/ostree/prepare-root.conf";

/// Does this `prepare-root.conf` turn composefs on (`enabled = true|yes|1|signed|verity`)? The
/// trixie base's does; an older ostree's image has no such file. `maybe` does not require it.
pub fn composefs_required(conf: &str) -> bool {
    let mut in_section = false;
    for line in conf.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[composefs]";
        } else if in_section
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == "enabled"
        {
            return matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "true" | "yes" | "1" | "signed" | "verity"
            );
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composefs_is_required_only_when_enabled_for_sure() {
        // The trixie base's file, as guest-base.sh writes it.
        assert!(composefs_required("[composefs]\nenabled = true\n"));
        assert!(composefs_required("[composefs]\nenabled = signed\n"));
        assert!(!composefs_required("[composefs]\nenabled = maybe\n"));
        assert!(!composefs_required("[sysroot]\nenabled = true\n"));
        assert!(!composefs_required(""));
    }

    #[test]
    fn hash_dir_sees_content_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), "1").unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/b"), "2").unwrap();
        let h1 = hash_dir(t.path()).unwrap();
        assert_eq!(h1, hash_dir(t.path()).unwrap());
        std::fs::write(t.path().join("d/b"), "3").unwrap();
        let h2 = hash_dir(t.path()).unwrap();
        assert_ne!(h1, h2);
        std::fs::set_permissions(t.path().join("a"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert_ne!(h2, hash_dir(t.path()).unwrap());
    }

    #[test]
    fn free_space_check_names_what() {
        let e = check_free_space(Path::new("/"), u64::MAX / 2, "a test disk").unwrap_err();
        assert!(e.to_string().contains("a test disk"), "{e}");
        check_free_space(Path::new("/nonexistent/below"), 1, "x").unwrap();
    }

    /// A disk write that failed on a full file system says so first; elsewhere the error is
    /// left as it was. The full one is a 1 MiB tmpfs filled to the last byte (root only).
    #[test]
    fn a_failure_on_a_full_file_system_says_it_is_full() {
        let cause = || anyhow::anyhow!("syncfs: Input/output error");
        let roomy = tempfile::tempdir().unwrap();
        let e = explain_full_disk(cause(), roomy.path(), "a golden disk");
        assert_eq!(format!("{e:#}"), "syncfs: Input/output error");
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED the full file system: needs root to mount a tmpfs");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            t.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        // Fill it: write until the file system refuses.
        let mut f = std::fs::File::create(t.path().join("ballast")).unwrap();
        let block = vec![0u8; 64 << 10];
        while std::io::Write::write_all(&mut f, &block).is_ok() {}
        let e = explain_full_disk(cause(), t.path(), "a golden disk");
        let _ = nix::mount::umount2(t.path(), nix::mount::MntFlags::MNT_DETACH);
        let msg = format!("{e:#}");
        let want = format!(
            "the file system holding {} is full (0 MiB free) while writing a golden disk",
            t.path().display()
        );
        assert!(msg.starts_with(&want), "{msg}");
        assert!(msg.ends_with(": syncfs: Input/output error"), "{msg}");
    }

    #[test]
    fn names() {
        assert_eq!(branch("debian-minimal"), "bootlab/debian-minimal");
        assert_eq!(guest_remote_url(), "file:///run/bootlab/updates/repo");
    }
}
