//! `rpm-ostree status --json`: `{"deployments": [...], "transaction": …, "cached-update": …}`.
//! Each deployment has `id` (`osname-checksum.serial`), `osname`, `serial`, `checksum`,
//! `version`, `timestamp` (Unix seconds), `origin` (a refspec) or `container-image-reference`
//! (`ostree-unverified-registry:IMAGE`, …) with `container-image-reference-digest`, and the flags
//! `booted`, `staged`, `pinned`, `unlocked`. rpm-ostree has no rollback flag: the first deployment
//! after the booted one is what `rpm-ostree rollback` boots.

use super::{Deployment, HostStatus, ImageInfo, ImageRef, StatusParseError, StatusSource};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Doc {
    deployments: Vec<Dep>,
    #[serde(default)]
    cached_update: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Dep {
    checksum: String,
    #[serde(default)]
    osname: Option<String>,
    #[serde(default)]
    serial: Option<u32>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    container_image_reference: Option<String>,
    #[serde(default)]
    container_image_reference_digest: Option<String>,
    #[serde(default)]
    booted: Option<bool>,
    #[serde(default)]
    staged: Option<bool>,
    #[serde(default)]
    pinned: Option<bool>,
    #[serde(default)]
    unlocked: Option<String>,
}

/// Split `ostree-unverified-registry:quay.io/x:tag` into transport and image, the way bootc
/// shows it (`registry`, `quay.io/x:tag`).
pub fn split_container_ref(r: &str) -> ImageRef {
    // ostree-unverified-image:docker://IMG, ostree-image-signed:docker://IMG,
    // ostree-remote-image:REMOTE:docker://IMG, ostree-unverified-registry:IMG
    let after_sig = ["ostree-unverified-registry:"]
        .iter()
        .find_map(|p| r.strip_prefix(p).map(|rest| ("registry", rest)));
    if let Some((t, img)) = after_sig {
        return ImageRef {
            image: img.to_string(),
            transport: t.to_string(),
        };
    }
    let rest = ["ostree-unverified-image:", "ostree-image-signed:"]
        .iter()
        .find_map(|p| r.strip_prefix(p))
        .or_else(|| {
            r.strip_prefix("ostree-remote-image:")
                .and_then(|x| x.split_once(':').map(|(_, t)| t))
        })
        .unwrap_or(r);
    for (t, pfx) in [
        ("registry", "docker://"),
        ("oci", "oci:"),
        ("oci-archive", "oci-archive:"),
        ("containers-storage", "containers-storage:"),
    ] {
        if let Some(img) = rest.strip_prefix(pfx) {
            return ImageRef {
                image: img.to_string(),
                transport: t.to_string(),
            };
        }
    }
    ImageRef {
        image: rest.to_string(),
        transport: "registry".into(),
    }
}

fn rfc3339(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Parse `rpm-ostree status --json`.
pub fn parse_json(text: &str) -> Result<HostStatus, StatusParseError> {
    let doc: Doc = serde_json::from_str(text).map_err(|e| {
        StatusParseError::new("`rpm-ostree status --json`", e.line(), e.to_string())
    })?;
    let mut deployments = Vec::new();
    let mut seen_booted = false;
    let mut rollback_set = false;
    for (i, j) in doc.deployments.into_iter().enumerate() {
        let mut d = Deployment::new(i, j.checksum);
        d.stateroot = j.osname;
        d.serial = j.serial.unwrap_or(0);
        d.booted = j.booted.unwrap_or(false);
        d.staged = j.staged.unwrap_or(false);
        d.pinned = j.pinned.unwrap_or(false);
        d.unlocked = j.unlocked.filter(|u| u != "none");
        d.version = j.version;
        d.timestamp = j.timestamp.and_then(rfc3339);
        d.origin_refspec = j.origin;
        d.image = j
            .container_image_reference
            .as_deref()
            .map(split_container_ref);
        d.digest = j.container_image_reference_digest;
        if seen_booted && !rollback_set && !d.staged {
            d.rollback = true;
            rollback_set = true;
        }
        if d.booted {
            seen_booted = true;
        } else if !seen_booted && !d.staged && i == 0 {
            // Deployed but not staged and ahead of the booted one: the default next boot.
            d.pending = true;
        }
        deployments.push(d);
    }
    let cached_update = doc
        .cached_update
        .filter(|v| !v.is_null())
        .map(|v| ImageInfo {
            image: v
                .get("container-image-reference")
                .and_then(|s| s.as_str())
                .map(split_container_ref),
            version: v.get("version").and_then(|s| s.as_str()).map(String::from),
            digest: v
                .get("container-image-reference-digest")
                .or_else(|| v.get("checksum"))
                .and_then(|s| s.as_str())
                .map(String::from),
            timestamp: v
                .get("timestamp")
                .and_then(|t| t.as_i64())
                .and_then(rfc3339),
            architecture: None,
        });
    Ok(HostStatus {
        source: StatusSource::RpmOstreeJson,
        deployments,
        rollback_queued: false,
        boot_order: None,
        spec_image: None,
        cached_update,
    })
}
