//! What the guest bases share: mmdebstrap run with its progress shown. The offline family's
//! base is the trixie one of [`super::bootc::guest`] (ostree from testing: `set-default`, staged
//! deployments, composefs); its bootc base builds on it. A bookworm base (ostree 2022.7) was
//! the offline family's until the labs had to show what only a newer ostree does.

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::HostCmd;
use anyhow::Result;

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
}
