//! What a drill needs from the world, as two traits: the guest ([`GuestOps`]) and the host
//! ([`HostOps`]). The drill state machines only talk to these, so the same drill runs against a
//! real VM (guest agent + QMP) and against a replay of recorded guest documents.

use std::future::Future;

/// The update share's mount point in the guest and the ostree remote guests pull from.
pub use crate::deploy::admin::REMOTE;
pub use crate::tools::qemu::GUEST_SHARE_DIR;

/// A finished guest command.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ExecOutput {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn ok(stdout: impl Into<String>) -> ExecOutput {
        ExecOutput {
            exit: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }
    pub fn failed(exit: i32, stderr: impl Into<String>) -> ExecOutput {
        ExecOutput {
            exit,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
    pub fn success(&self) -> bool {
        self.exit == 0
    }
}

/// The guest side of a drill.
pub trait GuestOps: Send {
    /// Run `argv` in the guest and wait for it to exit.
    fn exec(&mut self, argv: &[String]) -> impl Future<Output = anyhow::Result<ExecOutput>> + Send;
    /// Reboot the guest (from inside, cleanly) and return once it answers again.
    fn reboot(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Cut the power now: no sync, no shutdown (QMP `quit`).
    fn powercut(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Power on again after [`GuestOps::powercut`] and return once the guest answers.
    fn power_on(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Can [`GuestOps::powercut`] then [`GuestOps::power_on`] bring this same guest back (its
    /// disk outlives QEMU)? Asked before a power-cut drill sends anything to the guest; runs no
    /// guest command itself.
    fn power_cycle_ready(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Make sure the host's update share is mounted at [`GUEST_SHARE_DIR`]; returns a line
    /// describing what was done (evidence for the timeline).
    fn mount_updates(&mut self) -> impl Future<Output = anyhow::Result<String>> + Send;
}

/// A recipe version built, committed and published where guests can pull it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub recipe: String,
    pub version: String,
    /// The ostree branch in the update repo (offline family).
    pub branch: String,
    /// The ostree commit checksum (offline family), when known.
    pub commit: Option<String>,
    /// The image reference guests follow (bootc family), when known.
    pub image: Option<String>,
    /// Image manifest digest (bootc family), when known.
    pub digest: Option<String>,
    /// One line for the timeline: what the host did (cache hits included).
    pub summary: String,
    /// The image requires fs-verity on every object of the guest's repository (its
    /// prepare-root.conf says `[composefs] enabled = verity` or `signed`).
    #[serde(default)]
    pub requires_verity: bool,
}

/// How a bootc version is published, i.e. what the guest is then told to follow. The offline
/// family always moves its recipe's branch in the update repo, whatever is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// The recipe's OCI layout, tagged with the version and `stable` (the tag guests installed
    /// from bootlab's disks follow): what `bootc upgrade` fetches.
    #[default]
    Stable,
    /// The layout under the version's own tag only: a `bootc switch --transport oci` target that
    /// pins that version (`stable` is not moved).
    Tag,
    /// An oci-archive file in the share: a `bootc switch --transport oci-archive` target.
    Archive,
}

/// The host side of a drill.
pub trait HostOps: Send {
    /// Build `version` of `recipe` (a cache hit when already built), commit it and publish it to
    /// the update share the way `via` says.
    fn publish(
        &mut self,
        recipe: &str,
        version: &str,
        via: Via,
    ) -> impl Future<Output = anyhow::Result<Published>> + Send;
}
