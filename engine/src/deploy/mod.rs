//! Deployments: one model of "what is installed on this host and what boots next", read from the
//! three tools that can tell us: `bootc status` (JSON or YAML), `ostree admin status` (text, or
//! `--json` from ostree 2025.3), and `rpm-ostree status --json`.
//!
//! Every parser is tolerant of fields it does not know and of newer fields that are missing,
//! because the guest's tool version is whatever the image shipped.

pub mod admin;
pub mod bootc;
pub mod composefs;
pub mod diff;
pub mod live;
pub mod ostree;
pub mod rpm_ostree;

use serde::{Deserialize, Serialize};

/// Which document a [`HostStatus`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusSource {
    BootcJson,
    BootcYaml,
    OstreeText,
    OstreeJson,
    RpmOstreeJson,
}

/// A container image reference as bootc reports it (`transport` + `image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub image: String,
    pub transport: String,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport, self.image)
    }
}

/// An image bootc knows about but has not deployed (`cachedUpdate` after `bootc upgrade --check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub image: Option<ImageRef>,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub timestamp: Option<String>,
    pub architecture: Option<String>,
}

/// One deployment, whatever tool reported it. Fields a source does not carry are `None`/false.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Position in boot order: 0 boots next by default.
    pub index: usize,
    /// ostree stateroot ("osname"), e.g. `debian`, `default`, `fedora`.
    pub stateroot: Option<String>,
    /// OSTree commit checksum of the deployment.
    pub checksum: String,
    /// Deploy serial: the same commit deployed twice gets .0, .1, ...
    pub serial: u32,
    pub booted: bool,
    /// Written for the next boot but finalized only at shutdown (`ostree admin deploy --stage`,
    /// `bootc upgrade`).
    pub staged: bool,
    /// ostree's "pending": the default next boot, newer than the booted one, already finalized.
    pub pending: bool,
    /// The deployment that boots if you roll back.
    pub rollback: bool,
    pub pinned: bool,
    /// Commit metadata `version` (ostree) or the image's version label (bootc).
    pub version: Option<String>,
    /// Where upgrades come from for an ostree deployment: `remote:branch`, or a bare checksum
    /// after `ostree admin deploy <checksum>`.
    pub origin_refspec: Option<String>,
    /// The container image this deployment came from (bootc / rpm-ostree container deployments).
    pub image: Option<ImageRef>,
    /// Image manifest digest (`sha256:…`).
    pub digest: Option<String>,
    /// Image or commit timestamp, RFC 3339.
    pub timestamp: Option<String>,
    /// `ostree admin unlock` state when not "none".
    pub unlocked: Option<String>,
    /// bootc: the staged deployment was only downloaded (`bootc upgrade --download-only`).
    pub download_only: bool,
    /// bootc: deployment has local rpm-ostree changes bootc will not touch.
    pub incompatible: bool,
    /// composefs facts read live from the guest (`None` until read, or when it could not be).
    #[serde(default)]
    pub composefs: Option<composefs::Composefs>,
}

impl Deployment {
    /// The bootlab recipe this deployment was made from, as its origin says: an ostree origin
    /// `bootlab:bootlab/<recipe>` (the update share's branch), or a bootc image in the share,
    /// `/var/mnt/share/<recipe>.oci:<tag>` or `/var/mnt/share/<recipe>-<version>.oci-archive`.
    /// None for anything else (a bare-checksum origin, a registry image): the caller keeps what
    /// it knew.
    pub fn recipe_hint(&self) -> Option<String> {
        if let Some(o) = &self.origin_refspec {
            let branch = o.split_once(':').map_or(o.as_str(), |(_, b)| b);
            if let Some(r) = branch.strip_prefix("bootlab/") {
                return Some(r.to_string());
            }
        }
        let img = self.image.as_ref()?;
        let file = img.image.rsplit('/').next()?;
        match img.transport.as_str() {
            "oci" => file.split_once(".oci:").map(|(r, _)| r.to_string()),
            // `<recipe>-<version>`: the version is the last dash-separated word.
            "oci-archive" => file
                .strip_suffix(".oci-archive")
                .and_then(|s| s.rsplit_once('-'))
                .map(|(r, _)| r.to_string()),
            _ => None,
        }
    }

    pub fn new(index: usize, checksum: impl Into<String>) -> Deployment {
        Deployment {
            index,
            stateroot: None,
            checksum: checksum.into(),
            serial: 0,
            booted: false,
            staged: false,
            pending: false,
            rollback: false,
            pinned: false,
            version: None,
            origin_refspec: None,
            image: None,
            digest: None,
            timestamp: None,
            unlocked: None,
            download_only: false,
            incompatible: false,
            composefs: None,
        }
    }

    /// `checksum.serial`, as ostree names deployments.
    pub fn id(&self) -> String {
        format!("{}.{}", self.checksum, self.serial)
    }

    /// A short word for tables: booted / staged / pending / rollback / "".
    pub fn role(&self) -> &'static str {
        if self.booted {
            "booted"
        } else if self.staged {
            "staged"
        } else if self.pending {
            "pending"
        } else if self.rollback {
            "rollback"
        } else {
            ""
        }
    }
}

/// Everything one status document says about a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub source: StatusSource,
    /// In boot order (index 0 first).
    pub deployments: Vec<Deployment>,
    /// bootc: `bootc rollback` ran and the rollback boots next (`status.rollbackQueued`).
    pub rollback_queued: bool,
    /// bootc: `spec.bootOrder` (`default` or `rollback`).
    pub boot_order: Option<String>,
    /// bootc: the image the host is set to follow (`spec.image`).
    pub spec_image: Option<ImageRef>,
    /// An update bootc found but did not deploy (`cachedUpdate` of the booted deployment).
    pub cached_update: Option<ImageInfo>,
}

impl HostStatus {
    pub fn booted(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.booted)
    }
    pub fn staged(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.staged)
    }
    pub fn pending(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.pending)
    }
    pub fn rollback(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.rollback)
    }
    /// The deployment the next boot will use, as far as the document tells.
    pub fn next_boot(&self) -> Option<&Deployment> {
        if self.rollback_queued {
            return self.rollback();
        }
        self.staged()
            .or_else(|| self.deployments.first())
            .or_else(|| self.booted())
    }

    /// A plain-text table for people (the CLI's `bootlab status`).
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<3} {:<9} {:<10} {:<20} {:<14} {:<26} {}\n",
            "#", "role", "stateroot", "checksum.serial", "version", "origin / image", "flags"
        );
        for d in &self.deployments {
            let id = format!(
                "{}.{}",
                d.checksum.get(..12).unwrap_or(&d.checksum),
                d.serial
            );
            let origin = d
                .image
                .as_ref()
                .map(|i| i.to_string())
                .or_else(|| d.origin_refspec.clone())
                .unwrap_or_default();
            let mut flags = Vec::new();
            if d.pinned {
                flags.push("pinned".to_string());
            }
            if d.download_only {
                flags.push("download-only".into());
            }
            if d.incompatible {
                flags.push("incompatible".into());
            }
            if let Some(u) = &d.unlocked {
                flags.push(format!("unlocked:{u}"));
            }
            if let Some(dg) = &d.digest {
                flags.push(dg.get(..19).unwrap_or(dg).to_string());
            }
            if let Some(c) = &d.composefs {
                flags.push(c.summary());
            }
            out.push_str(&format!(
                "{:<3} {:<9} {:<10} {:<20} {:<14} {:<26} {}\n",
                d.index,
                d.role(),
                d.stateroot.as_deref().unwrap_or("-"),
                id,
                d.version.as_deref().unwrap_or("-"),
                origin,
                flags.join(" ")
            ));
        }
        if self.deployments.is_empty() {
            out.push_str("(no deployments)\n");
        }
        if self.rollback_queued {
            out.push_str("rollback queued: the rollback deployment boots next\n");
        }
        if let Some(u) = &self.cached_update {
            out.push_str(&format!(
                "cached update: {} {}\n",
                u.version.as_deref().unwrap_or("-"),
                u.digest.as_deref().unwrap_or("-")
            ));
        }
        out
    }
}

/// A status document that could not be read; names the document and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: line {line}: {message}")]
pub struct StatusParseError {
    /// Which document: e.g. "`ostree admin status` output" or a file path.
    pub what: String,
    /// 1-based; 0 when the position is unknown.
    pub line: usize,
    pub message: String,
}

impl StatusParseError {
    pub fn new(what: &str, line: usize, message: impl Into<String>) -> StatusParseError {
        StatusParseError {
            what: what.to_string(),
            line,
            message: message.into(),
        }
    }
}

/// Parse any status document bootlab understands, guessing the kind from its content:
/// JSON with `deployments` (ostree `--json` or rpm-ostree), JSON or YAML with `kind: BootcHost`,
/// or `ostree admin status` text.
pub fn parse_any(text: &str) -> Result<HostStatus, StatusParseError> {
    let t = text.trim_start();
    if t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| StatusParseError::new("status JSON", e.line(), e.to_string()))?;
        if v.get("kind").is_some() || v.get("apiVersion").is_some() {
            return bootc::parse_json(text);
        }
        if let Some(deps) = v.get("deployments").and_then(|d| d.as_array()) {
            // rpm-ostree has `id`/`osname`; ostree has `stateroot`/`index`.
            let rpm = deps
                .iter()
                .any(|d| d.get("osname").is_some() || d.get("id").is_some())
                || v.get("transaction").is_some();
            return if rpm {
                rpm_ostree::parse_json(text)
            } else {
                ostree::parse_json(text)
            };
        }
        return Err(StatusParseError::new(
            "status JSON",
            1,
            "neither a bootc host document nor a list of deployments",
        ));
    }
    if t.starts_with("apiVersion:") || t.starts_with('#') || t.contains("\nkind: BootcHost") {
        return bootc::parse_yaml(text);
    }
    ostree::parse_text(text)
}

#[cfg(test)]
mod recipe_hint_tests {
    use super::*;

    fn with(origin: Option<&str>, image: Option<(&str, &str)>) -> Deployment {
        let mut d = Deployment::new(0, "c");
        d.origin_refspec = origin.map(str::to_string);
        d.image = image.map(|(t, i)| ImageRef {
            transport: t.into(),
            image: i.into(),
        });
        d
    }

    #[test]
    fn the_origin_names_the_recipe() {
        let hint = |o, i| with(o, i).recipe_hint();
        assert_eq!(
            hint(Some("bootlab:bootlab/debian-web"), None).as_deref(),
            Some("debian-web")
        );
        // A rollback by redeploy leaves a bare checksum: nothing to say.
        assert_eq!(hint(Some("0123abcd"), None), None);
        assert_eq!(
            hint(None, Some(("oci", "/var/mnt/share/debian-bootc.oci:v3"))).as_deref(),
            Some("debian-bootc")
        );
        assert_eq!(
            hint(
                None,
                Some(("oci-archive", "/var/mnt/share/debian-bootc-v3.oci-archive"))
            )
            .as_deref(),
            Some("debian-bootc")
        );
        assert_eq!(
            hint(None, Some(("registry", "quay.io/fedora/fedora-bootc:42"))),
            None
        );
    }
}
