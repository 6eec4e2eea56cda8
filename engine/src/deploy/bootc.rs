//! `bootc status`: the `BootcHost` document, as JSON (`--format=json`) or YAML (the default when
//! stdout is not a terminal).
//!
//! Fields arrived over releases (cachedUpdate 0.1.6, rollbackQueued/bootOrder 0.1.10,
//! otherDeployments 1.3.0, usrOverlay 1.14.0, …), so everything past the basics is optional and
//! unknown fields are ignored. Older YAML may carry tags (`signature: !ostreeRemote "fedora"`) and
//! unquoted versions that YAML reads as numbers (`version: 20231230.1`).

use super::{Deployment, HostStatus, ImageInfo, ImageRef, StatusParseError, StatusSource};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Host {
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    image: Option<ImageReference>,
    #[serde(default)]
    boot_order: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ImageReference {
    image: String,
    transport: String,
}

impl From<ImageReference> for ImageRef {
    fn from(r: ImageReference) -> ImageRef {
        ImageRef {
            image: r.image,
            transport: r.transport,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    staged: Option<BootEntry>,
    #[serde(default)]
    booted: Option<BootEntry>,
    #[serde(default)]
    rollback: Option<BootEntry>,
    #[serde(default)]
    other_deployments: Option<Vec<BootEntry>>,
    #[serde(default)]
    rollback_queued: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BootEntry {
    #[serde(default)]
    image: Option<ImageStatus>,
    #[serde(default)]
    cached_update: Option<ImageStatus>,
    #[serde(default)]
    incompatible: Option<bool>,
    #[serde(default)]
    pinned: Option<bool>,
    #[serde(default)]
    download_only: Option<bool>,
    #[serde(default)]
    ostree: Option<OstreeEntry>,
    /// bootc ≥ 1.9 with the composefs backend has no ostree commit; the verity digest names it.
    #[serde(default)]
    composefs: Option<ComposefsEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageStatus {
    image: ImageReference,
    #[serde(default, deserialize_with = "stringish")]
    version: Option<String>,
    #[serde(default, deserialize_with = "stringish")]
    timestamp: Option<String>,
    #[serde(default)]
    image_digest: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
}

impl From<ImageStatus> for ImageInfo {
    fn from(s: ImageStatus) -> ImageInfo {
        ImageInfo {
            image: Some(s.image.into()),
            version: s.version,
            digest: s.image_digest,
            timestamp: s.timestamp,
            architecture: s.architecture,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OstreeEntry {
    checksum: String,
    #[serde(default)]
    deploy_serial: u32,
    #[serde(default)]
    stateroot: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ComposefsEntry {
    #[serde(default)]
    verity: Option<String>,
}

/// A scalar that should be a string but YAML may have read as a number (`version: 20231230.1`).
fn stringish<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string, a number or null")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

/// Parse `bootc status --format=json`.
pub fn parse_json(text: &str) -> Result<HostStatus, StatusParseError> {
    let host: Host = serde_json::from_str(text)
        .map_err(|e| StatusParseError::new("`bootc status` JSON", e.line(), e.to_string()))?;
    Ok(convert(host, StatusSource::BootcJson))
}

/// Parse `bootc status` YAML (its output when stdout is not a terminal).
pub fn parse_yaml(text: &str) -> Result<HostStatus, StatusParseError> {
    let host: Host = serde_yaml_ng::from_str(text).map_err(|e| {
        StatusParseError::new(
            "`bootc status` YAML",
            e.location().map(|l| l.line()).unwrap_or(0),
            e.to_string(),
        )
    })?;
    Ok(convert(host, StatusSource::BootcYaml))
}

/// JSON or YAML, whichever `text` is.
pub fn parse(text: &str) -> Result<HostStatus, StatusParseError> {
    if text.trim_start().starts_with('{') {
        parse_json(text)
    } else {
        parse_yaml(text)
    }
}

fn convert(host: Host, source: StatusSource) -> HostStatus {
    let (spec_image, boot_order) = match host.spec {
        Some(s) => (s.image.map(Into::into), s.boot_order),
        None => (None, None),
    };
    let mut out = HostStatus {
        source,
        deployments: Vec::new(),
        rollback_queued: false,
        boot_order,
        spec_image,
        cached_update: None,
    };
    let Some(st) = host.status else {
        return out;
    };
    out.rollback_queued = st.rollback_queued.unwrap_or(false);

    // Boot order as ostree keeps it: a staged deployment first, then the booted one and the
    // rollback (swapped when a rollback is queued), then anything else (pinned leftovers).
    let mut ordered: Vec<(&'static str, BootEntry)> = Vec::new();
    if let Some(e) = st.staged {
        ordered.push(("staged", e));
    }
    let booted = st.booted.map(|e| ("booted", e));
    let rollback = st.rollback.map(|e| ("rollback", e));
    if out.rollback_queued {
        ordered.extend(rollback);
        ordered.extend(booted);
    } else {
        ordered.extend(booted);
        ordered.extend(rollback);
    }
    for e in st.other_deployments.unwrap_or_default() {
        ordered.push(("other", e));
    }

    for (index, (role, e)) in ordered.into_iter().enumerate() {
        let (checksum, serial, stateroot) = match (e.ostree, e.composefs) {
            (Some(o), _) => (o.checksum, o.deploy_serial, o.stateroot),
            (None, Some(c)) => (c.verity.unwrap_or_default(), 0, None),
            (None, None) => (String::new(), 0, None),
        };
        let mut d = Deployment::new(index, checksum);
        d.serial = serial;
        d.stateroot = stateroot;
        d.booted = role == "booted";
        d.staged = role == "staged";
        d.rollback = role == "rollback";
        d.pinned = e.pinned.unwrap_or(false);
        d.download_only = e.download_only.unwrap_or(false);
        d.incompatible = e.incompatible.unwrap_or(false);
        if let Some(img) = e.image {
            d.version = img.version;
            d.timestamp = img.timestamp;
            d.digest = img.image_digest;
            d.image = Some(img.image.into());
        }
        if d.booted {
            out.cached_update = e.cached_update.map(Into::into);
        }
        out.deployments.push(d);
    }
    out
}

/// `bootc status --format=json`: the argv bootlab runs, in one place so the drills and the tests
/// agree.
pub fn status_argv() -> Vec<String> {
    ["bootc", "status", "--format=json"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The commands that change a bootc guest's deployments, in one place: the drills
/// (`drill::flows`) and the lab runner (`lab::runner`) send exactly these.
///
/// `bootc upgrade`: fetch what `spec.image` names and stage it; its /etc is merged at shutdown.
pub fn upgrade_argv() -> Vec<String> {
    argv(&["bootc", "upgrade"])
}

/// `bootc rollback`: make the rollback deployment the next boot (reorders; deploys nothing).
pub fn rollback_argv() -> Vec<String> {
    argv(&["bootc", "rollback"])
}

/// Split a target `transport:image` (`oci:/var/mnt/x:v3`, `registry:quay.io/a:b`); a bare image
/// is a registry image.
pub fn split_target(target: &str) -> (String, String) {
    for t in ["registry", "oci-archive", "oci", "containers-storage"] {
        if let Some(rest) = target.strip_prefix(&format!("{t}:")) {
            return (t.to_string(), rest.to_string());
        }
    }
    ("registry".to_string(), target.to_string())
}

/// `bootc switch [--transport T] IMAGE` for a target as [`split_target`] reads it; `spec.image`
/// follows it from now on, so later upgrades fetch from there.
pub fn switch_argv(target: &str) -> Vec<String> {
    let (transport, image) = split_target(target);
    let mut a = argv(&["bootc", "switch"]);
    if transport != "registry" {
        a.extend(argv(&["--transport", &transport]));
    }
    a.push(image);
    a
}

#[cfg(test)]
mod sequence_tests {
    use super::*;

    #[test]
    fn switch_names_the_transport_unless_registry() {
        assert_eq!(
            switch_argv("oci:/var/mnt/share/debian-bootc.oci:v3"),
            argv(&[
                "bootc",
                "switch",
                "--transport",
                "oci",
                "/var/mnt/share/debian-bootc.oci:v3"
            ])
        );
        assert_eq!(
            switch_argv("quay.io/a/b:1"),
            argv(&["bootc", "switch", "quay.io/a/b:1"])
        );
        assert_eq!(
            split_target("oci-archive:/x.tar"),
            ("oci-archive".into(), "/x.tar".into())
        );
    }
}
