//! Debian 13 (trixie) roots with libostree and composefs from Debian testing: bootc 1.16.9 needs
//! libostree ≥ 2025.3 and trixie has 2025.2. Used for bootc's build root here, and for the bootc
//! guest base (and later the offline family's staged deployments).
//!
//! Only the named packages come from testing, each at the exact version testing has at build
//! time (see `testing-ostree.sh`): `-t unstable` would bring sid's libc6 and glib along.

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::{CmdFailed, HostCmd};
use anyhow::{Context, Result};
use std::path::Path;

pub const SUITE: &str = "trixie";
/// The oldest libostree bootc 1.16.9 links against (`ostree` crate feature `v2025_3`).
pub const MIN_LIBOSTREE: &str = "2025.3";
/// The hook that installs [`TESTING_RUNTIME`] / [`TESTING_DEV`] packages from testing.
pub const TESTING_HOOK: &str = include_str!("testing-ostree.sh");
/// libostree, composefs and what they need newer than trixie's, at run time.
pub const TESTING_RUNTIME: &[&str] = &["ostree", "libostree-1-1", "libcomposefs1", "libgpgme45"];
/// The same plus headers, for building bootc.
pub const TESTING_DEV: &[&str] = &[
    "libostree-dev",
    "gir1.2-ostree-1.0",
    "libcomposefs-dev",
    "ostree",
    "libostree-1-1",
    "libcomposefs1",
    "libgpgme45",
];

/// The Debian mirror: `BOOTLAB_MMDEBSTRAP_MIRROR` when it is a URL (as for the bookworm base),
/// else deb.debian.org.
pub fn mirror() -> String {
    std::env::var("BOOTLAB_MMDEBSTRAP_MIRROR")
        .ok()
        .filter(|m| m.starts_with("http"))
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// What a trixie root should hold.
#[derive(Debug, Clone)]
pub struct RootSpec<'a> {
    /// Packages from trixie.
    pub include: &'a [&'a str],
    /// Packages from testing (exact versions resolved now).
    pub testing: &'a [&'a str],
    /// Further mmdebstrap customize hooks, run after the testing packages are in.
    pub hooks: Vec<String>,
}

/// Make `tar` with mmdebstrap (root mode). `work` holds the hook script while it runs.
/// A missing testing package or a libostree older than [`MIN_LIBOSTREE`] fails with a clear error.
pub async fn make_rootfs(
    spec: &RootSpec<'_>,
    work: &Path,
    tar: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    let hook = work.join("testing-ostree.sh");
    std::fs::write(&hook, TESTING_HOOK)?;
    let mirror = mirror();
    let mut testing_hook = format!("sh {} \"$1\" {mirror}", hook.display());
    for p in spec.testing {
        testing_hook.push(' ');
        testing_hook.push_str(p);
    }
    let mut cmd = HostCmd::new("mmdebstrap")
        .args(["--variant=minbase", "--mode=root", "--format=tar", "--verbose"])
        .arg(format!("--include={}", spec.include.join(",")))
        .arg(format!("--customize-hook={testing_hook}"))
        .arg(format!(
            "--customize-hook=chroot \"$1\" dpkg --compare-versions \"$(chroot \"$1\" dpkg-query -W -f '${{Version}}' libostree-1-1)\" ge {MIN_LIBOSTREE} || {{ echo 'bootlab: libostree older than {MIN_LIBOSTREE}' >&2; exit 5; }}"
        ));
    for h in &spec.hooks {
        cmd = cmd.arg(format!("--customize-hook={h}"));
    }
    cmd = cmd
        .arg("--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin")
        .arg(SUITE)
        .arg(tar);
    if std::env::var("BOOTLAB_MMDEBSTRAP_MIRROR").is_ok_and(|m| m == mirror) {
        // Without a mirror argument mmdebstrap also adds trixie-updates and -security.
        cmd = cmd.arg(&mirror);
    }
    match crate::pipeline::base::run_mmdebstrap(cmd, stage, ev, cancel).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let tail = e
                .downcast_ref::<CmdFailed>()
                .map(|f| f.tail.join("\n"))
                .unwrap_or_default();
            if tail.contains("is not in Debian testing") || tail.contains("libostree older than") {
                Err(e).context(format!(
                    "no libostree ≥ {MIN_LIBOSTREE} reachable: bootc needs it from Debian testing at {mirror}"
                ))
            } else {
                Err(e).context("mmdebstrap could not make the trixie root")
            }
        }
    }
}
