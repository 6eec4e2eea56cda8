//! podman: builds, imports, exports. Every podman invocation goes through here so the runtime
//! workaround (see [`runtime`]) is applied everywhere without touching the user's config.

pub mod runtime;

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::{CmdFailed, HostCmd};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The label on every container bootlab runs: who started it ([`crate::vm::procs::owner_stamp`]).
pub const OWNER_LABEL: &str = "bootlab.owner";

/// podman with the runtime and ulimits the probe chose.
#[derive(Debug, Clone)]
pub struct Podman {
    pub choice: runtime::RuntimeChoice,
}

/// What a `podman build` needs.
#[derive(Debug, Clone)]
pub struct BuildSpec<'a> {
    pub context_dir: &'a Path,
    pub containerfile: &'a Path,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    /// Where podman writes the built image id (`--iidfile`).
    pub iidfile: &'a Path,
}

/// A `podman build` that failed: the STEP it was at and the tail of its log.
#[derive(Debug, thiserror::Error)]
#[error("podman build failed at {}{}", .step.as_deref().unwrap_or("(before the first STEP)"), tail_text(.tail))]
pub struct BuildFailed {
    pub step: Option<String>,
    pub tail: Vec<String>,
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nlast lines of the build log:\n  {}", tail.join("\n  "))
    }
}

/// Paths one image has on top of another (`podman image diff --format json`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct ImageDiff {
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub changed: Vec<String>,
    #[serde(default)]
    pub deleted: Vec<String>,
}

/// Parse podman's `STEP 3/7: RUN …` progress line into (3, 7, "RUN …").
pub fn parse_step(line: &str) -> Option<(u64, u64, String)> {
    let rest = line.strip_prefix("STEP ")?;
    let (nums, label) = rest.split_once(':').unwrap_or((rest, ""));
    let (done, total) = nums.trim().split_once('/')?;
    Some((
        done.parse().ok()?,
        total.parse().ok()?,
        label.trim().to_string(),
    ))
}

impl Podman {
    /// Probe (once per podman version, cached) which runtime works here.
    pub async fn probe(
        paths: &crate::paths::Paths,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<Podman> {
        let choice = runtime::cached(paths, ev, cancel).await?;
        if !choice.works {
            anyhow::bail!("{}", choice.summary);
        }
        Ok(Podman { choice })
    }

    /// `podman [--runtime …]`: the start of every podman command.
    pub fn cmd(&self) -> HostCmd {
        HostCmd::new("podman").args(self.choice.global_args())
    }

    /// The image id of `reference`, or `None` when there is no such image.
    pub async fn image_id(
        &self,
        reference: &str,
        cancel: &CancellationToken,
    ) -> Result<Option<String>> {
        let out = self
            .cmd()
            .args(["image", "inspect", "--format", "{{.Id}}", reference])
            .capture()
            .run_unchecked("podman", &Emitter::null(), cancel)
            .await?;
        if !out.status.success() {
            return Ok(None);
        }
        Ok(Some(out.stdout.trim().to_string()).filter(|s| !s.is_empty()))
    }

    /// One label of an image (empty when unset), `None` when there is no such image.
    pub async fn image_label(
        &self,
        reference: &str,
        label: &str,
        cancel: &CancellationToken,
    ) -> Result<Option<String>> {
        let fmt = format!("{{{{index .Labels \"{label}\"}}}}");
        let out = self
            .cmd()
            .args(["image", "inspect", "--format", &fmt, reference])
            .capture()
            .run_unchecked("podman", &Emitter::null(), cancel)
            .await?;
        if !out.status.success() {
            return Ok(None);
        }
        let v = out.stdout.trim();
        Ok(Some(if v == "<no value>" {
            String::new()
        } else {
            v.to_string()
        }))
    }

    /// The digest podman records for an image (`sha256:…`).
    pub async fn image_digest(
        &self,
        reference: &str,
        cancel: &CancellationToken,
    ) -> Result<String> {
        let out = self
            .cmd()
            .args(["image", "inspect", "--format", "{{.Digest}}", reference])
            .capture()
            .run("podman", &Emitter::null(), cancel)
            .await?;
        Ok(out.stdout.trim().to_string())
    }

    /// `podman import` a rootfs tarball as `tag`, with Containerfile-style `changes`.
    pub async fn import(
        &self,
        tar: &Path,
        tag: &str,
        changes: &[String],
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let mut c = self.cmd().arg("import");
        for ch in changes {
            c = c.args(["--change", ch.as_str()]);
        }
        c.arg(tar).arg(tag).run(stage, ev, cancel).await?;
        Ok(())
    }

    /// `podman build` without a tag (the caller tags once everything after the build succeeded,
    /// so a failed or cancelled pipeline never leaves a tag behind). Every log line is a `Log`
    /// event and every `STEP n/m` a `Progress` event under `stage`. Returns the image id.
    pub async fn build(
        &self,
        spec: &BuildSpec<'_>,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<String> {
        let mut c = self
            .cmd()
            .args(["build", "--network=host", "--layers", "--force-rm"])
            .args(self.choice.ulimit_args());
        for (k, v) in &spec.build_args {
            c = c.args(["--build-arg".to_string(), format!("{k}={v}")]);
        }
        if let Some(t) = &spec.target {
            c = c.args(["--target", t.as_str()]);
        }
        c = c
            .arg("--iidfile")
            .arg(spec.iidfile)
            .arg("-f")
            .arg(spec.containerfile)
            .arg(spec.context_dir);

        // A relay between the tool and the caller's emitter: turns STEP lines into progress and
        // remembers the last one for the error message.
        let last_step: Arc<Mutex<Option<String>>> = Arc::default();
        let (relay, forward) = ev.progress_relay(stage, {
            let last_step = last_step.clone();
            move |line| {
                let step = parse_step(line)?;
                *last_step.lock().unwrap() = Some(line.to_string());
                Some(step)
            }
        });
        // A killed `podman build` leaves its buildah working container behind; builds are
        // serialized host-wide so the ones that appear meanwhile are ours to remove.
        let _lock = crate::pipeline::HostLock::acquire("podman-build", ev, cancel).await?;
        let before = self.builder_containers().await.unwrap_or_default();
        let result = c.run(stage, &relay, cancel).await;
        drop(relay);
        let _ = forward.await;
        match result {
            Ok(_) => {}
            Err(e) => {
                if let Ok(now) = self.builder_containers().await {
                    for id in now.iter().filter(|id| !before.contains(*id)) {
                        let _ = self
                            .cmd()
                            .args(["rm", "-f", id.as_str()])
                            .run_unchecked(stage, ev, &CancellationToken::new())
                            .await;
                    }
                }
                return Err(match e.downcast::<CmdFailed>() {
                    Ok(f) => BuildFailed {
                        step: last_step.lock().unwrap().clone(),
                        tail: f.tail,
                    }
                    .into(),
                    Err(e) => e,
                });
            }
        }
        let id = std::fs::read_to_string(spec.iidfile).with_context(|| {
            format!(
                "podman build wrote no image id to {}",
                spec.iidfile.display()
            )
        })?;
        Ok(id.trim().trim_start_matches("sha256:").to_string())
    }

    pub async fn tag(
        &self,
        image: &str,
        tag: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        self.cmd()
            .args(["tag", image, tag])
            .run("podman", ev, cancel)
            .await?;
        Ok(())
    }

    /// Create a (never started) container from `image` so its rootfs can be exported; the
    /// returned guard removes it when dropped, whatever happens in between — and if this bootlab
    /// is killed first, its owner label lets the next build reap it.
    pub async fn create_temp(
        &self,
        image: &str,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<TempContainer> {
        let name = format!("bootlab-export-{}", fastrand::u64(..));
        self.cmd()
            .args(["create", "--name", &name])
            .arg("--label")
            .arg(format!("{OWNER_LABEL}={}", crate::vm::procs::owner_stamp()))
            .args(self.choice.ulimit_args())
            .args([image, "/bin/true"])
            .run(stage, ev, cancel)
            .await?;
        Ok(TempContainer {
            podman: self.clone(),
            name,
            removed: false,
        })
    }

    /// Run `argv` in a throw-away container of `image` with no network and `host_dir` mounted
    /// at `/out` (the only way its results leave the container); the container is removed
    /// however the command ends.
    pub async fn run_rm(
        &self,
        image: &str,
        host_dir: &Path,
        argv: &[String],
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let name = format!("bootlab-run-{}", fastrand::u64(..));
        let r = self
            .run_rm_cmd(&name)
            .arg("-v")
            .arg(format!("{}:/out", host_dir.display()))
            .arg(image)
            .args(argv)
            .run(stage, ev, cancel)
            .await;
        if r.is_err() {
            self.remove_left_behind(&name, stage, ev).await;
        }
        r.map(|_| ())
    }

    /// Containers bootlab started whose owner (the `bootlab.owner` label, see
    /// [`crate::vm::procs::owner_stamp`]) is gone: a bootlab killed mid-run leaves its
    /// `run --rm` container behind (seen: a bootc compile running on for minutes after its test
    /// was killed). Each is removed; returns their names.
    pub async fn reap_orphans(&self, stage: &str, ev: &Emitter) -> Result<Vec<String>> {
        let out = self
            .cmd()
            .args(["ps", "-a", "--filter"])
            .arg(format!("label={OWNER_LABEL}"))
            .args(["--format"])
            .arg(format!(
                "{{{{.Names}}}} {{{{index .Labels \"{OWNER_LABEL}\"}}}}"
            ))
            .capture()
            .run("podman", &Emitter::null(), &CancellationToken::new())
            .await?;
        let mut reaped = Vec::new();
        for line in out.stdout.lines() {
            let Some((name, owner)) = line.trim().split_once(' ') else {
                continue;
            };
            if crate::vm::procs::owner_alive(owner.trim()) {
                continue;
            }
            ev.note(
                stage,
                format!("removing container {name}: the bootlab that started it ({owner}) is gone"),
            );
            self.remove_left_behind(name, stage, ev).await;
            reaped.push(name.to_string());
        }
        Ok(reaped)
    }

    /// `podman run --rm --network=none --name NAME`, labelled with this bootlab as its owner
    /// (so [`Self::reap_orphans`] can tell a container left behind by a killed bootlab) and with
    /// the runtime's ulimit pins: what every throw-away container starts from; the caller adds
    /// mounts, the image and its command.
    pub fn run_rm_cmd(&self, name: &str) -> HostCmd {
        self.cmd()
            .args(["run", "--rm", "--network=none", "--name", name])
            .arg("--label")
            .arg(format!("{OWNER_LABEL}={}", crate::vm::procs::owner_stamp()))
            .args(self.choice.ulimit_args())
    }

    /// A `run --rm` container whose podman client was cancelled or killed mid-run: --rm did not
    /// get its chance, so remove it by name.
    pub async fn remove_left_behind(&self, name: &str, stage: &str, ev: &Emitter) {
        let _ = self
            .cmd()
            .args(["rm", "-f", "--ignore", name])
            .run_unchecked(stage, ev, &CancellationToken::new())
            .await;
    }

    /// Run `argv` in a throw-away container of `image` (no network, nothing mounted) and capture
    /// what it prints; the exit status is the caller's to judge. Like [`Self::run_rm`], the
    /// container is removed however the command ends.
    pub async fn run_capture(
        &self,
        image: &str,
        argv: &[&str],
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<crate::tools::cmd::CmdOutput> {
        let name = format!("bootlab-run-{}", fastrand::u64(..));
        let r = self
            .run_rm_cmd(&name)
            .arg(image)
            .args(argv.iter().copied())
            .capture()
            .run_unchecked(stage, ev, cancel)
            .await;
        if r.is_err() {
            self.remove_left_behind(&name, stage, ev).await;
        }
        r
    }

    /// What `image` added, changed and deleted on top of `base` (`podman image diff`).
    pub async fn image_diff(
        &self,
        image: &str,
        base: &str,
        cancel: &CancellationToken,
    ) -> Result<ImageDiff> {
        let out = self
            .cmd()
            .args(["image", "diff", "--format", "json", image, base])
            .capture()
            .run("podman", &Emitter::null(), cancel)
            .await?;
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("reading `podman image diff {image} {base}`"))
    }

    /// `podman export` a container's rootfs to a tarball.
    pub async fn export(
        &self,
        container: &str,
        tar: &Path,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        self.cmd()
            .args(["export", "-o"])
            .arg(tar)
            .arg(container)
            .run(stage, ev, cancel)
            .await?;
        Ok(())
    }

    /// Ids of buildah's working containers (podman lists them as external, command `buildah`).
    pub async fn builder_containers(&self) -> Result<Vec<String>> {
        let out = self
            .cmd()
            .args(["ps", "-a", "--external", "--format", "{{.ID}} {{.Command}}"])
            .capture()
            .run("podman", &Emitter::null(), &CancellationToken::new())
            .await?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, cmd)| cmd.trim() == "buildah")
            .map(|(id, _)| id.to_string())
            .collect())
    }

    /// Names of all containers podman knows, including buildah's build containers.
    pub async fn all_container_names(&self, cancel: &CancellationToken) -> Result<Vec<String>> {
        let out = self
            .cmd()
            .args(["ps", "-a", "--external", "--format", "{{.Names}}"])
            .capture()
            .run("podman", &Emitter::null(), cancel)
            .await?;
        Ok(out
            .stdout
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }
}

/// A temporary container, removed on [`TempContainer::remove`] or, failing that, on drop.
pub struct TempContainer {
    podman: Podman,
    pub name: String,
    removed: bool,
}

impl TempContainer {
    pub async fn remove(mut self, stage: &str, ev: &Emitter) -> Result<()> {
        self.removed = true;
        self.podman
            .cmd()
            .args(["rm", "-f", &self.name])
            .run(stage, ev, &CancellationToken::new())
            .await?;
        Ok(())
    }
}

impl Drop for TempContainer {
    fn drop(&mut self) {
        if !self.removed {
            // Drop cannot await: a blocking `podman rm` (quick; the container never ran).
            let _ = std::process::Command::new("podman")
                .args(self.podman.choice.global_args())
                .args(["rm", "-f", &self.name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Where [`ImageMount::run`] puts the host directory it is given, inside the image's root.
pub const IMAGE_MOUNT_DIR: &str = "/run/bootlab-out";

/// The name of the marker files [`Podman::mount_image`] writes (`<prefix><random>`, holding
/// the image's name) while an image is mounted.
const IMAGE_MOUNT_MARKER: &str = ".image-mount-";

/// The root file system of an image mounted on the host (`podman image mount`, read-only), to
/// run the image's own programs with it as `/` ([`ImageMount::run`]): that starts in ~0.01 s,
/// where a `podman run` of the same command takes 0.16 s to start and remove its container
/// (measured on this machine kind, 2026-12-06) — on a golden disk's critical path. While it
/// is mounted a marker file names the image, so that a bootlab killed before
/// [`ImageMount::unmount`] has the mount undone by the next [`reap_image_mounts`].
pub struct ImageMount {
    podman: Podman,
    image: String,
    /// The image's root file system on the host.
    pub root: std::path::PathBuf,
    /// The marker file; `None` once unmounted.
    marker: Option<std::path::PathBuf>,
}

impl Podman {
    /// Mount `image` on the host; the marker file goes into `marker_dir` (the caller's
    /// directory of temp files, reaped under its lock with [`reap_image_mounts`]).
    pub async fn mount_image(
        &self,
        image: &str,
        marker_dir: &Path,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<ImageMount> {
        // The marker first: a kill between the mount and the marker would leave a mount no one
        // knows about; the other way round, the reaper unmounts an image that is not mounted
        // (harmless).
        let marker = marker_dir.join(format!("{IMAGE_MOUNT_MARKER}{}", fastrand::u64(..)));
        std::fs::write(&marker, image).with_context(|| format!("write {}", marker.display()))?;
        let out = self
            .cmd()
            .args(["image", "mount", image])
            .capture()
            .run(stage, ev, cancel)
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                // Failed or cancelled, it may have mounted the image first.
                unmount_image_blocking(&self.choice.global_args(), image);
                let _ = std::fs::remove_file(&marker);
                return Err(e.context(format!("mounting the image {image}")));
            }
        };
        let root = std::path::PathBuf::from(out.stdout.trim());
        let mount = ImageMount {
            podman: self.clone(),
            image: image.to_string(),
            root,
            marker: Some(marker),
        };
        // The mount points `run` needs (a dropped `mount` unmounts the image again).
        for dir in ["run", "proc", "dev", "sys"] {
            anyhow::ensure!(
                mount.root.join(dir).is_dir(),
                "the image {image} has no /{dir} directory (mounted at {})",
                mount.root.display()
            );
        }
        Ok(mount)
    }
}

impl ImageMount {
    /// Run `argv` (a program of the image, and its arguments) with the image's root as `/`,
    /// as `root` with every capability, like a privileged container: in a mount namespace of its
    /// own with a tmpfs on /run, `host_dir` at [`IMAGE_MOUNT_DIR`] (recursively: file systems
    /// mounted below it are seen), and the host's /proc, /dev and /sys. The namespace ends with
    /// the command, and with it every mount it made.
    pub async fn run(
        &self,
        host_dir: &Path,
        argv: &[String],
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        // The paths are arguments of the script, never part of it.
        const SCRIPT: &str = r#"set -e
root=$1; dir=$2; inside=$3; shift 3
mount -t tmpfs -o mode=0755 bootlab-run "$root/run"
mkdir "$root$inside"
mount --rbind "$dir" "$root$inside"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
exec chroot "$root" "$@""#;
        HostCmd::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                SCRIPT,
                "sh",
            ])
            .arg(&self.root)
            .arg(host_dir)
            .arg(IMAGE_MOUNT_DIR)
            .args([
                "env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ])
            .args(argv)
            .run(stage, ev, cancel)
            .await
            .with_context(|| {
                let program = argv.first().map_or("", String::as_str);
                format!("running {program} of the image {}", self.image)
            })?;
        Ok(())
    }

    /// `podman image unmount`, and the marker goes.
    pub async fn unmount(mut self, stage: &str, ev: &Emitter) -> Result<()> {
        let Some(marker) = self.marker.take() else {
            return Ok(());
        };
        self.podman
            .cmd()
            .args(["image", "unmount", &self.image])
            .run(stage, ev, &CancellationToken::new())
            .await?;
        let _ = std::fs::remove_file(marker);
        Ok(())
    }
}

impl Drop for ImageMount {
    fn drop(&mut self) {
        if let Some(marker) = self.marker.take() {
            // Drop cannot await: a blocking `podman image unmount` (0.03 s).
            unmount_image_blocking(&self.podman.choice.global_args(), &self.image);
            let _ = std::fs::remove_file(marker);
        }
    }
}

fn unmount_image_blocking(global_args: &[String], image: &str) {
    let _ = std::process::Command::new("podman")
        .args(global_args)
        .args(["image", "unmount", image])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Undo the image mounts a killed bootlab left (their marker files in `dir`): each image is
/// unmounted once and its marker removed. The caller holds the lock of `dir`.
pub async fn reap_image_mounts(dir: &Path, ev: &Emitter) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .starts_with(IMAGE_MOUNT_MARKER)
        {
            continue;
        }
        let p = e.path();
        if let Ok(image) = std::fs::read_to_string(&p) {
            let _ = HostCmd::new("podman")
                .args(["image", "unmount", image.trim()])
                .run_unchecked("podman", ev, &CancellationToken::new())
                .await;
        }
        let _ = std::fs::remove_file(&p);
        ev.note("podman", format!("reaped {}", p.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_step_lines() {
        assert_eq!(
            parse_step("STEP 3/7: RUN echo hi"),
            Some((3, 7, "RUN echo hi".into()))
        );
        assert_eq!(parse_step("STEP 1/2: FROM x AS y").unwrap().1, 2);
        assert_eq!(parse_step("--> abc"), None);
        assert_eq!(parse_step("STEP x/y: no"), None);
    }

    #[test]
    fn build_failure_names_step_and_tail() {
        let e = BuildFailed {
            step: Some("STEP 2/3: RUN false".into()),
            tail: vec!["Error: building at STEP \"RUN false\": exit status 1".into()],
        };
        let s = e.to_string();
        assert!(s.contains("STEP 2/3: RUN false"), "{s}");
        assert!(s.contains("exit status 1"), "{s}");
    }
}
