//! Virtual machines: each VM is one QEMU at a time (a new one after each guest reset) owned by
//! one small supervisor process.
//!
//! `vm up` writes a record (`<vms>/<name>/vm.json`), starts a detached supervisor
//! (`bootlab vm supervise --dir <vm dir>`), and waits until the guest agent answers. The
//! supervisor spawns QEMU (which dies with it), holds the QMP and guest-agent connections, drains
//! the console into a log, keeps the record current and answers clients ([`client::VmClient`])
//! on a unix socket with a small line-delimited JSON protocol ([`proto`]).

pub mod boot_phase;
pub mod client;
pub mod console;
pub mod images;
pub mod lifecycle;
pub mod lock;
pub mod procs;
pub mod proto;
pub mod supervisor;

pub use crate::tools::qmp::qga::ExecOutput;
pub use client::VmClient;
pub use lifecycle::{UpOptions, down, list, reap_stale, remove, up};
pub use proto::{VmEvent, VmStamped};

use crate::paths::{Paths, write_atomic};
use crate::tools::qemu::Accel;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a VM is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Record written, supervisor starting QEMU.
    Starting,
    /// QEMU runs; waiting for the guest agent.
    Booting,
    /// The guest agent answers (synced).
    Ready,
    /// The guest reset (a new QEMU runs it); waiting for the agent again.
    Rebooting,
    /// A snapshot is being loaded; the agent is re-synced afterwards.
    Restoring,
    /// A snapshot is being saved.
    Saving,
    /// vCPUs stopped (pause, or QEMU stopped the guest).
    Paused,
    /// Powering down.
    Stopping,
    /// QEMU exited.
    Stopped,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Starting => "starting",
            VmState::Booting => "booting",
            VmState::Ready => "ready",
            VmState::Rebooting => "rebooting",
            VmState::Restoring => "restoring",
            VmState::Saving => "saving",
            VmState::Paused => "paused",
            VmState::Stopping => "stopping",
            VmState::Stopped => "stopped",
        }
    }
    pub fn is_running(self) -> bool {
        !matches!(self, VmState::Stopped)
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The sockets of one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sockets {
    /// The supervisor's control socket (bootlab's own protocol).
    pub control: PathBuf,
    pub qmp: PathBuf,
    pub qga: PathBuf,
    /// The serial console (interactive; every byte is also in the console log).
    pub serial: PathBuf,
}

/// `vm.json`: everything known about a VM, kept current by its supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub name: String,
    pub recipe: Option<String>,
    pub version: Option<String>,
    pub state: VmState,
    /// Why it is in that state (e.g. the SHUTDOWN reason, the boot error).
    #[serde(default)]
    pub detail: String,
    pub supervisor_pid: Option<i32>,
    pub qemu_pid: Option<i32>,
    pub accel: Accel,
    pub accel_reason: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Host port on 127.0.0.1 forwarded to the guest's sshd.
    pub ssh_port: Option<u16>,
    pub sockets: Sockets,
    pub console_log: PathBuf,
    pub supervisor_log: PathBuf,
    /// The VM's own qcow2 (overlay on the golden disk, or a copy of a booted snapshot image).
    pub overlay: PathBuf,
    /// The golden raw disk the overlay is backed by.
    pub golden: Option<PathBuf>,
    /// Host folder shared read-only into the guest (mounted at [`VmRecord::share_dir`] when
    /// ready).
    pub share: Option<PathBuf>,
    #[serde(default)]
    pub share_mounted: bool,
    /// Where the guest mounts the share when not /run/bootlab/updates (bootc guests: where
    /// their image reference points, /var/mnt/share).
    #[serde(default)]
    pub guest_share_dir: Option<String>,
    /// Start from this internal snapshot (`-loadvm`).
    pub loadvm: Option<String>,
    /// Start from this saved machine state (a booted image's, see [`images::state_file`])
    /// instead of booting; only the first QEMU of a start, never after a reset.
    #[serde(default)]
    pub load_state: Option<PathBuf>,
    /// SeaBIOS or OVMF (`vm up --firmware uefi`).
    #[serde(default)]
    pub firmware: crate::tools::qemu::Firmware,
    /// A console login everybody knows ("root/bootlab"): such a VM is for labs only.
    pub known_password: Option<String>,
    /// Keep overlay and record after the VM stops (otherwise `down` removes them).
    #[serde(default)]
    pub keep: bool,
    pub boot_timeout_secs: u64,
    pub created_unix: u64,
    /// Seconds from QEMU start (or snapshot load) to the guest agent answering.
    pub ready_secs: Option<f64>,
}

impl VmRecord {
    /// The guest folder the update share is mounted at.
    pub fn share_dir(&self) -> &str {
        self.guest_share_dir
            .as_deref()
            .unwrap_or(crate::tools::qemu::GUEST_SHARE_DIR)
    }
    /// How to reach this VM's sshd with its own key; `None` when it was started without ssh.
    pub fn ssh_login(&self, paths: &Paths) -> Option<crate::tools::ssh::Login> {
        Some(crate::tools::ssh::Login {
            port: self.ssh_port?,
            user: "root".into(),
            dir: crate::tools::ssh::key_dir(&Self::dir(paths, &self.name)),
        })
    }
    pub fn dir(paths: &Paths, name: &str) -> PathBuf {
        paths.vms().join(name)
    }
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("vm.json")
    }
    pub fn load_dir(dir: &Path) -> Result<VmRecord> {
        let f = Self::file(dir);
        let s = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        serde_json::from_str(&s).with_context(|| format!("parsing {}", f.display()))
    }
    pub fn load(paths: &Paths, name: &str) -> Result<VmRecord> {
        let dir = Self::dir(paths, name);
        if !Self::file(&dir).exists() {
            anyhow::bail!("no VM named {name:?} (see `bootlab vm ls`)");
        }
        Self::load_dir(&dir)
    }
    /// Written atomically: a reader never sees half a record.
    pub fn save_dir(&self, dir: &Path) -> Result<()> {
        let f = Self::file(dir);
        let bytes = serde_json::to_string_pretty(self)?;
        match write_atomic(&f, bytes.as_bytes()) {
            // By kind: the temp file's errors wrap the OS error with its path.
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                // The folder's file system is full (a guest paused for want of space is just
                // when the record must say so): write over the record's own blocks instead.
                overwrite_within_blocks(&f, bytes.as_bytes())
                    .with_context(|| format!("writing {} (its file system is full)", f.display()))
            }
            r => r.with_context(|| format!("writing {}", f.display())),
        }
    }
}

/// Writes `bytes` over the existing file `f` when they fit in the blocks it already has, so no
/// new block is needed; refused otherwise (a write that ran out of space half-way would leave
/// a torn file).
fn overwrite_within_blocks(f: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(f)?;
    if bytes.len() as u64 > meta.blocks() * 512 {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    let mut file = std::fs::OpenOptions::new().write(true).open(f)?;
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)?;
    file.sync_all()
}

/// Valid VM names: short, and safe in paths and QEMU options.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        anyhow::bail!("invalid VM name {name:?}: use up to 40 letters, digits, '-', '_' or '.'")
    }
}

/// Socket paths for a VM folder. Unix socket paths are limited to 107 bytes; when the folder is
/// too deep, the sockets go to a short per-VM folder under /tmp instead.
pub fn socket_paths(dir: &Path) -> Sockets {
    let longest = dir.join("serial.sock");
    let base = if longest.as_os_str().len() < 100 {
        dir.to_path_buf()
    } else {
        use sha2::Digest;
        let h = hex::encode(&sha2::Sha256::digest(dir.to_string_lossy().as_bytes())[..6]);
        std::env::temp_dir().join(format!("bootlab-vm-{h}"))
    };
    Sockets {
        control: base.join("ctl.sock"),
        qmp: base.join("qmp.sock"),
        qga: base.join("qga.sock"),
        serial: base.join("serial.sock"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_record_is_written_over_its_own_blocks_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("vm.json");
        std::fs::write(&f, "x".repeat(1500)).unwrap();
        // Shorter: fits the block the file has; written whole and cut to length.
        overwrite_within_blocks(&f, b"{\"state\": \"paused\"}").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"{\"state\": \"paused\"}");
        // Larger than every block it has: refused, the file untouched.
        let huge = vec![b'y'; 1 << 20];
        let e = overwrite_within_blocks(&f, &huge).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        assert_eq!(std::fs::read(&f).unwrap(), b"{\"state\": \"paused\"}");
    }
}
