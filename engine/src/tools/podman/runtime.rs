//! Which OCI runtime and ulimits make podman work on this host, found by really running a
//! container, never by editing the user's global configuration.
//!
//! Measured on our machine kind: crun 1.8 refuses the hybrid cgroup layout ("cgroups in hybrid
//! mode not supported"), runc works; podman also raises rlimits that this sandbox cannot
//! (no CAP_SYS_RESOURCE), so ulimits are pinned at or below the inherited hard limits.

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::HostCmd;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Image used by the probe: a busybox rootfs imported once (no registry needed).
pub const PROBE_IMAGE: &str = "localhost/bootlab/probe:busybox";

/// What the probe found and what bootlab will pass to podman.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeChoice {
    /// podman's default runtime name (`podman info`), e.g. "crun" or "runc".
    pub default_runtime: String,
    /// Whether a container ran with the default runtime.
    pub default_works: bool,
    /// The default runtime's error, when it failed (first line).
    pub default_error: Option<String>,
    /// Runtime bootlab passes with `--runtime`, when the default does not work.
    pub runtime_override: Option<String>,
    /// `--ulimit` values bootlab passes.
    pub ulimits: Vec<String>,
    /// Whether any configuration ran a container.
    pub works: bool,
    /// One line for doctor and logs.
    pub summary: String,
}

impl RuntimeChoice {
    /// Global flags to put before the podman subcommand (`podman --runtime runc build …`).
    pub fn global_args(&self) -> Vec<String> {
        match &self.runtime_override {
            Some(r) => vec!["--runtime".into(), r.clone()],
            None => vec![],
        }
    }
    /// Flags for `podman run` / `podman build` (`--ulimit …`).
    pub fn ulimit_args(&self) -> Vec<String> {
        self.ulimits
            .iter()
            .flat_map(|u| ["--ulimit".to_string(), u.clone()])
            .collect()
    }
}

/// Ulimits podman may set here: the inherited hard limits, capped (podman adjusts nproc itself
/// and fails when asked for exactly the hard limit).
pub fn pinned_ulimits() -> Vec<String> {
    let hard = |res| {
        nix::sys::resource::getrlimit(res)
            .map(|(_, h)| h)
            .unwrap_or(u64::MAX)
    };
    let nofile = hard(nix::sys::resource::Resource::RLIMIT_NOFILE).min(20000);
    let nproc = hard(nix::sys::resource::Resource::RLIMIT_NPROC).min(32768);
    vec![
        format!("nofile={nofile}:{nofile}"),
        format!("nproc={nproc}:{nproc}"),
    ]
}

/// Make sure the probe image exists: import a busybox rootfs from the host's busybox-static.
async fn ensure_probe_image(ev: &Emitter, cancel: &CancellationToken) -> anyhow::Result<()> {
    let exists = HostCmd::new("podman").args(["image", "exists", PROBE_IMAGE]);
    if exists
        .run_unchecked("podman-probe", &Emitter::null(), cancel)
        .await?
        .status
        .success()
    {
        return Ok(());
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no busybox on this host for the podman probe image (install it: `bash .ci/setup`, or `apt-get install busybox-static` on Debian/Ubuntu, `dnf install busybox` on Fedora)"
            )
        })?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("bin"))?;
    std::fs::copy(busybox, dir.path().join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", dir.path().join("bin/sh"))?;
    let tar = dir.path().join("probe.tar");
    HostCmd::new("tar")
        .arg("-C")
        .arg(dir.path())
        .args(["--exclude", "./probe.tar", "-cf"])
        .arg(&tar)
        .arg("./bin")
        .run("podman-probe", ev, cancel)
        .await?;
    HostCmd::new("podman")
        .arg("import")
        .arg(&tar)
        .arg(PROBE_IMAGE)
        .run("podman-probe", ev, cancel)
        .await?;
    Ok(())
}

/// Run `/bin/busybox true` in the probe image with these settings (`runtime` as `--runtime`,
/// `ulimits` as `--ulimit`). `Ok(Err(line))` carries podman's error line when the container did
/// not run; `Err` only when podman itself could not be started.
pub async fn try_container(
    runtime: Option<&str>,
    ulimits: &[String],
    cancel: &CancellationToken,
) -> anyhow::Result<Result<(), String>> {
    let mut c = HostCmd::new("podman");
    if let Some(r) = runtime {
        c = c.args(["--runtime", r]);
    }
    c = c.args(["run", "--rm", "--network=none"]);
    for u in ulimits {
        c = c.args(["--ulimit", u.as_str()]);
    }
    let out = c
        .args([PROBE_IMAGE, "/bin/busybox", "true"])
        .run_unchecked("podman-probe", &Emitter::null(), cancel)
        .await?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        let err = out
            .tail
            .iter()
            .rev()
            .find(|l| l.contains("Error"))
            .or(out.tail.last())
            .cloned()
            .unwrap_or_default();
        Ok(Err(err))
    }
}

/// Run a real container with podman's default runtime; when that fails, with runc.
pub async fn probe(ev: &Emitter, cancel: &CancellationToken) -> anyhow::Result<RuntimeChoice> {
    let default_runtime = HostCmd::new("podman")
        .args(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
        .output("podman-probe", ev)
        .await
        .unwrap_or_default();
    ensure_probe_image(ev, cancel).await?;
    let ulimits = pinned_ulimits();
    let default = try_container(None, &ulimits, cancel).await?;
    let mut choice = RuntimeChoice {
        default_runtime: default_runtime.clone(),
        default_works: default.is_ok(),
        default_error: default.clone().err(),
        runtime_override: None,
        ulimits,
        works: default.is_ok(),
        summary: String::new(),
    };
    if default.is_ok() {
        choice.summary = format!(
            "podman runs containers with its default runtime ({default_runtime}), ulimits pinned to the inherited hard limits"
        );
        return Ok(choice);
    }
    if default_runtime != "runc"
        && try_container(Some("runc"), &choice.ulimits, cancel)
            .await?
            .is_ok()
    {
        choice.runtime_override = Some("runc".into());
        choice.works = true;
        choice.summary = format!(
            "podman's default runtime {default_runtime} cannot run containers here ({}); bootlab passes --runtime runc on every call (your containers.conf is untouched)",
            choice.default_error.as_deref().unwrap_or("?")
        );
    } else {
        choice.summary = format!(
            "podman cannot run a container here: {}",
            choice.default_error.as_deref().unwrap_or("?")
        );
    }
    Ok(choice)
}

#[derive(Serialize, Deserialize)]
struct Cached {
    podman: String,
    choice: RuntimeChoice,
}

fn cache_file(paths: &crate::paths::Paths) -> std::path::PathBuf {
    paths.probes().join("podman-runtime.json")
}

/// `podman --version`, the cache key.
pub async fn podman_version() -> anyhow::Result<String> {
    HostCmd::new("podman")
        .arg("--version")
        .output("podman-probe", &Emitter::null())
        .await
}

/// The cached choice for this podman version, if a working one was stored. Never probes.
pub fn load(paths: &crate::paths::Paths, podman_version: &str) -> Option<RuntimeChoice> {
    let text = std::fs::read_to_string(cache_file(paths)).ok()?;
    let c = serde_json::from_str::<Cached>(&text).ok()?;
    (c.podman == podman_version && c.choice.works).then_some(c.choice)
}

/// Store a choice for this podman version (atomically).
pub fn store(
    paths: &crate::paths::Paths,
    podman_version: &str,
    choice: &RuntimeChoice,
) -> anyhow::Result<()> {
    let c = Cached {
        podman: podman_version.to_string(),
        choice: choice.clone(),
    };
    crate::paths::write_atomic(
        &cache_file(paths),
        serde_json::to_string_pretty(&c)?.as_bytes(),
    )?;
    Ok(())
}

/// The probe's result, cached in the state dir per podman version so it runs once.
pub async fn cached(
    paths: &crate::paths::Paths,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> anyhow::Result<RuntimeChoice> {
    let version = podman_version().await?;
    if let Some(choice) = load(paths, &version) {
        return Ok(choice);
    }
    let choice = probe(ev, cancel).await?;
    store(paths, &version, &choice)?;
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_never_exceed_hard_limits() {
        let u = pinned_ulimits();
        assert_eq!(u.len(), 2);
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let n: u64 = u[0]
            .trim_start_matches("nofile=")
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(n <= hard);
    }

    #[test]
    fn override_becomes_global_flag() {
        let c = RuntimeChoice {
            default_runtime: "crun".into(),
            default_works: false,
            default_error: Some("cgroups in hybrid mode not supported".into()),
            runtime_override: Some("runc".into()),
            ulimits: vec!["nofile=10:10".into()],
            works: true,
            summary: String::new(),
        };
        assert_eq!(c.global_args(), ["--runtime", "runc"]);
        assert_eq!(c.ulimit_args(), ["--ulimit", "nofile=10:10"]);
    }
}
