//! The host's Rust toolchain (`rustc`, `cargo`): bootlab builds bootc with it, inside a build
//! container that mounts the toolchain read-only (bootc is not packaged in Debian).

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::HostCmd;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The toolchain bootlab found on the host.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Toolchain {
    /// `rustc --print sysroot`: holds `bin/cargo` and `bin/rustc` (not rustup's proxies, so the
    /// toolchain works where rustup is absent, e.g. inside a container).
    pub sysroot: PathBuf,
    /// `rustc 1.95.0 (…)`.
    pub version: String,
}

/// Parse `rustc 1.95.0 (59807616e 2026-04-14)` into (1, 95).
pub fn parse_rustc_version(line: &str) -> Option<(u32, u32)> {
    let v = line.split_whitespace().nth(1)?;
    let mut it = v.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Find the host toolchain and check it is at least `min` (major, minor).
pub async fn probe(min: (u32, u32), ev: &Emitter) -> Result<Toolchain> {
    let version = HostCmd::new("rustc")
        .arg("--version")
        .output("rust", ev)
        .await
        .context("bootc is built with the host's Rust toolchain, and rustc did not run")?;
    let have = parse_rustc_version(&version)
        .with_context(|| format!("cannot read the rustc version from {version:?}"))?;
    if have < min {
        bail!(
            "{version} is too old to build bootc (it needs Rust ≥ {}.{}): `rustup update stable`",
            min.0,
            min.1
        );
    }
    let sysroot = PathBuf::from(
        HostCmd::new("rustc")
            .args(["--print", "sysroot"])
            .output("rust", ev)
            .await?,
    );
    if !sysroot.join("bin/cargo").exists() {
        bail!(
            "the Rust toolchain at {} has no bin/cargo",
            sysroot.display()
        );
    }
    Ok(Toolchain { sysroot, version })
}

impl Toolchain {
    /// `cargo` of this toolchain with its own `CARGO_HOME`.
    pub fn cargo(&self, cargo_home: &Path) -> HostCmd {
        HostCmd::new(self.sysroot.join("bin/cargo")).env("CARGO_HOME", cargo_home)
    }
}

/// `cargo fetch --locked` in `dir`: from the crate registry, or, when that is unreachable, from
/// what `cargo_home` already holds.
pub async fn fetch_locked(
    tc: &Toolchain,
    cargo_home: &Path,
    dir: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    let online = tc
        .cargo(cargo_home)
        .args(["fetch", "--locked"])
        .cwd(dir)
        .run(stage, ev, cancel)
        .await;
    let Err(online_err) = online else {
        return Ok(());
    };
    ev.note(
        stage,
        "cargo could not reach the crate registry; trying the crates already downloaded",
    );
    tc.cargo(cargo_home)
        .args(["fetch", "--locked", "--offline"])
        .cwd(dir)
        .run(stage, ev, cancel)
        .await
        .map(|_| ())
        .map_err(|_| online_err)
        .context("cargo could not fetch bootc's crates (the crate registry must be reachable once; they are kept in bootlab's cache after that)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustc_versions() {
        assert_eq!(
            parse_rustc_version("rustc 1.95.0 (59807616e 2026-04-14)"),
            Some((1, 95))
        );
        assert_eq!(parse_rustc_version("rustc 1.85.0-nightly"), Some((1, 85)));
        assert_eq!(parse_rustc_version("nonsense"), None);
        assert!(parse_rustc_version("rustc 1.84.1").unwrap() < (1, 85));
    }
}
