//! The deployment model read from every status document we have: the real bootc fixtures (JSON
//! and YAML), `ostree admin status` text and JSON, `rpm-ostree status --json`. Expected values are
//! read off the documents themselves.

use bootlab::deploy::{self, HostStatus, StatusSource};
use std::path::PathBuf;

fn fixture(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What a test expects of one deployment: checksum, serial, image digest, version.
#[derive(Debug, PartialEq)]
struct D<'a> {
    checksum: &'a str,
    digest: Option<&'a str>,
    version: Option<&'a str>,
}

fn d(st: Option<&deploy::Deployment>) -> Option<D<'_>> {
    st.map(|d| D {
        checksum: &d.checksum,
        digest: d.digest.as_deref(),
        version: d.version.as_deref(),
    })
}

const C439: &str = "439f6bd2e2361bee292c1f31840d798c5ac5ba76483b8021dc9f7b0164ac0f48";
const D47_38: &str = "sha256:47e5ed613a970b6574bfa954ab25bb6e85656552899aa518b5961d9645102b38";
const C2683: &str = "26836632adf6228d64ef07a26fd3efaf177104efd1f341a2cf7909a3e4e2c72c";
const D736B: &str = "sha256:736b359467c9437c1ac915acaae952aad854e07eb4a16a94999a48af08c83c34";
const C3C6D: &str = "3c6dad657109522e0b2e49bf44b5420f16f0b438b5b9357e5132211cfbad135d";
const D16DC: &str = "sha256:16dc2b6256b4ff0d2ec18d2dbfb06d117904010c8cf9732cdb022818cf7a7566";
const C41AF: &str = "41af286dc0b172ed2f1ca934fd2278de4a1192302ffa07087cea2682e7d372e3";
const CF9FA: &str = "f9fa3a553ceaaaf30cf85bfe7eed46a822f7b8fd7e14c1e3389cbc3f6d27f791";
const STREAM9: &str = "stream9.20240807.0";

fn bootc(rel: &str) -> HostStatus {
    let text = fixture(&format!("bootc-status/{rel}"));
    let st = deploy::bootc::parse(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    // The content sniffing path must agree.
    assert_eq!(
        deploy::parse_any(&text).unwrap(),
        st,
        "{rel}: parse_any differs"
    );
    st
}

fn booted_only_439(st: &HostStatus) {
    assert_eq!(
        d(st.booted()),
        Some(D {
            checksum: C439,
            digest: Some(D47_38),
            version: Some(STREAM9)
        })
    );
    let b = st.booted().unwrap();
    assert_eq!(b.stateroot.as_deref(), Some("default"));
    assert_eq!(b.serial, 0);
    assert_eq!(b.index, 0);
    assert!(st.staged().is_none());
    assert!(st.rollback().is_none());
    assert!(!st.rollback_queued);
    assert_eq!(st.boot_order.as_deref(), Some("default"));
}

#[test]
fn bootc_only_booted() {
    let st = bootc("spec-only-booted.yaml");
    assert_eq!(st.source, StatusSource::BootcYaml);
    booted_only_439(&st);
    assert_eq!(st.deployments.len(), 1);
    let img = st.booted().unwrap().image.as_ref().unwrap();
    assert_eq!(img.image, "quay.io/centos-bootc/centos-bootc:stream9");
    assert_eq!(img.transport, "registry");
    assert_eq!(
        st.spec_image.as_ref().unwrap().to_string(),
        "registry:quay.io/centos-bootc/centos-bootc:stream9"
    );
    assert!(st.cached_update.is_none());
    assert!(st.booted().unwrap().timestamp.is_none());
}

#[test]
fn bootc_booted_pinned_with_other_deployment() {
    let st = bootc("spec-booted-pinned.yaml");
    booted_only_439(&st);
    assert!(st.booted().unwrap().pinned);
    assert_eq!(st.deployments.len(), 2, "otherDeployments are listed");
    let other = &st.deployments[1];
    assert_eq!(
        other.checksum,
        "99b2cc3b6edce9ebaef6a6076effa5ee3e1dcff3523016ffc94a1b27c6c67e12"
    );
    assert_eq!(
        other.digest.as_deref(),
        Some("sha256:47e5ed613a970b6574bfa954ab25bb6e85656552899aa518b5961d9645102b37")
    );
    assert!(other.pinned && !other.booted && !other.rollback && !other.staged);
    assert_eq!(other.role(), "");
}

#[test]
fn bootc_cached_update_same_digest() {
    let st = bootc("spec-booted-update-same-digest.yaml");
    booted_only_439(&st);
    let u = st.cached_update.as_ref().expect("cachedUpdate");
    assert_eq!(u.digest.as_deref(), Some(D47_38));
    assert_eq!(u.version.as_deref(), Some(STREAM9));
    assert_eq!(u.architecture.as_deref(), Some("arm64"));
}

#[test]
fn bootc_cached_update_with_and_without_version() {
    let st = bootc("spec-booted-with-update.yaml");
    booted_only_439(&st);
    assert_eq!(
        st.booted().unwrap().timestamp.as_deref(),
        Some("2024-08-07T12:00:00Z")
    );
    let u = st.cached_update.as_ref().unwrap();
    assert_eq!(u.version.as_deref(), Some("stream9.20240901.0"));
    assert_eq!(
        u.digest.as_deref(),
        Some("sha256:a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0")
    );
    assert_eq!(u.timestamp.as_deref(), Some("2024-09-01T12:00:00Z"));

    let st = bootc("spec-booted-with-update-no-version.yaml");
    booted_only_439(&st);
    let u = st.cached_update.as_ref().unwrap();
    assert_eq!(u.version, None);
    assert_eq!(
        u.digest.as_deref(),
        Some("sha256:b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1")
    );
}

#[test]
fn bootc_usr_overlay_and_missing_newer_fields() {
    // No bootOrder, no rollbackQueued, an unknown usrOverlay block.
    let st = bootc("spec-booted-usroverlay.yaml");
    assert_eq!(
        d(st.booted()),
        Some(D {
            checksum: C2683,
            digest: Some(D736B),
            version: Some("nightly")
        })
    );
    assert_eq!(
        st.booted().unwrap().timestamp.as_deref(),
        Some("2023-09-30T19:22:16Z")
    );
    assert_eq!(st.boot_order, None);
    assert!(!st.rollback_queued);
    assert_eq!(st.deployments.len(), 1);
}

#[test]
fn bootc_tagged_signature_and_numeric_version() {
    // `signature: !ostreeRemote "fedora"` (a YAML tag) and `version: 20231230.1` (a YAML float).
    let st = bootc("spec-ostree-remote.yaml");
    assert_eq!(
        d(st.booted()),
        Some(D {
            checksum: C41AF,
            digest: Some("sha256:b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"),
            version: Some("20231230.1"),
        })
    );
    assert_eq!(
        st.spec_image.as_ref().unwrap().image,
        "quay.io/fedora/fedora-coreos:stable"
    );
    assert_eq!(
        st.booted().unwrap().image.as_ref().unwrap().image,
        "quay.io/otherexample/otherimage:latest"
    );

    let st = bootc("spec-v1a1.yaml");
    assert_eq!(d(st.booted()).unwrap().version, Some("20231230.1"));
    assert_eq!(st.booted().unwrap().checksum, C41AF);
}

#[test]
fn bootc_ostree_to_bootc_booted_without_image() {
    let st = bootc("spec-ostree-to-bootc.yaml");
    assert_eq!(
        d(st.booted()),
        Some(D {
            checksum: CF9FA,
            digest: None,
            version: None
        })
    );
    assert!(st.booted().unwrap().image.is_none());
    assert_eq!(
        d(st.staged()),
        Some(D {
            checksum: "05cbf6dcae32e7a1c5a0774a648a073a5834a305ca92204b53fb6c281fe49db1",
            digest: Some(D47_38),
            version: Some(STREAM9),
        })
    );
    assert_eq!(st.staged().unwrap().index, 0, "staged boots first");
    assert_eq!(st.booted().unwrap().index, 1);
    assert_eq!(
        st.next_boot().unwrap().checksum,
        "05cbf6dcae32e7a1c5a0774a648a073a5834a305ca92204b53fb6c281fe49db1"
    );
}

#[test]
fn bootc_rfe_ostree_deployment_incompatible_staged() {
    let st = bootc("spec-rfe-ostree-deployment.yaml");
    assert!(st.spec_image.is_none(), "spec.image: null");
    let s = st.staged().unwrap();
    assert_eq!(
        s.checksum,
        "1c24260fdd1be20f72a4a97a75c582834ee3431fbb0fa8e4f482bb219d633a45"
    );
    assert!(s.incompatible);
    assert!(!st.booted().unwrap().incompatible);
    assert_eq!(st.booted().unwrap().checksum, CF9FA);
}

#[test]
fn bootc_staged_booted() {
    let st = bootc("spec-staged-booted.yaml");
    assert_eq!(
        d(st.staged()),
        Some(D {
            checksum: C3C6D,
            digest: Some(D16DC),
            version: Some("nightly")
        })
    );
    assert_eq!(
        d(st.booted()),
        Some(D {
            checksum: C2683,
            digest: Some(D736B),
            version: Some("nightly")
        })
    );
    assert_eq!(
        st.staged().unwrap().timestamp.as_deref(),
        Some("2023-10-14T19:22:15.42Z")
    );
    assert!(!st.staged().unwrap().download_only);
    assert!(st.rollback().is_none());
    assert_eq!(st.next_boot().unwrap().checksum, C3C6D);
}

#[test]
fn bootc_staged_download_only() {
    let st = bootc("spec-staged-download-only.yaml");
    assert!(st.staged().unwrap().download_only);
    // The booted entry has no downloadOnly key at all: tolerated, false.
    assert!(!st.booted().unwrap().download_only);
    assert_eq!(st.staged().unwrap().digest.as_deref(), Some(D16DC));
}

#[test]
fn bootc_staged_rollback_no_booted() {
    let st = bootc("spec-staged-rollback.yaml");
    assert!(st.booted().is_none());
    assert_eq!(
        d(st.staged()),
        Some(D {
            checksum: C3C6D,
            digest: Some(D16DC),
            version: Some("nightly")
        })
    );
    assert_eq!(
        d(st.rollback()),
        Some(D {
            checksum: C2683,
            digest: Some(D736B),
            version: Some("nightly")
        })
    );
    assert_eq!(
        st.staged().unwrap().timestamp.as_deref(),
        Some("2023-10-14T19:22:15Z")
    );
}

#[test]
fn bootc_v1_null_json() {
    let text = fixture("bootc-status/spec-v1-null.json");
    let st = deploy::bootc::parse_json(&text).unwrap();
    assert_eq!(st.source, StatusSource::BootcJson);
    assert!(st.deployments.is_empty());
    assert!(st.spec_image.is_none());
    assert_eq!(st.boot_order.as_deref(), Some("default"));
    assert!(!st.rollback_queued);
    assert_eq!(deploy::parse_any(&text).unwrap(), st);
}

#[test]
fn bootc_v1alpha1_original() {
    let st = bootc("spec-v1a1-orig.yaml");
    assert_eq!(
        d(st.staged()),
        Some(D {
            checksum: C3C6D,
            digest: Some(D16DC),
            version: Some("nightly")
        })
    );
    assert_eq!(
        d(st.booted()),
        Some(D {
            checksum: C2683,
            digest: Some(D736B),
            version: Some("nightly")
        })
    );
}

#[test]
fn bootc_via_local_oci() {
    let st = bootc("spec-via-local-oci.yaml");
    booted_only_439(&st);
    assert_eq!(
        st.spec_image.as_ref().unwrap().to_string(),
        "oci:/var/mnt/osupdate:latest"
    );
    assert_eq!(
        st.booted().unwrap().image.as_ref().unwrap().to_string(),
        "oci:/var/mnt/osupdate"
    );
}

#[test]
fn bootc_every_fixture_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bootc-status");
    let mut n = 0;
    for sub in [dir.clone(), dir.join("derived")] {
        for e in std::fs::read_dir(&sub).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".yaml") || name.ends_with(".json") {
                let text = std::fs::read_to_string(&p).unwrap();
                deploy::bootc::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                n += 1;
            }
        }
    }
    assert_eq!(
        n, 21,
        "16 upstream + 3 derived fixtures + 2 captured live from a debian-bootc guest"
    );
}

#[test]
fn bootc_yaml_converted_to_json_parses_the_same() {
    let yaml = fixture("bootc-status/spec-staged-booted.yaml");
    let v: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let json = serde_json::to_string_pretty(&v).unwrap();
    let from_json = deploy::bootc::parse_json(&json).unwrap();
    let from_yaml = deploy::bootc::parse_yaml(&yaml).unwrap();
    assert_eq!(from_json.source, StatusSource::BootcJson);
    assert_eq!(from_json.deployments, from_yaml.deployments);
    assert_eq!(from_json.spec_image, from_yaml.spec_image);
    assert_eq!(deploy::parse_any(&json).unwrap(), from_json);
}

#[test]
fn bootc_rollback_queued_orders_rollback_first() {
    let st = bootc("derived/rollback-queued.yaml");
    assert!(st.rollback_queued);
    assert_eq!(st.boot_order.as_deref(), Some("rollback"));
    assert_eq!(st.next_boot().unwrap().digest.as_deref(), Some(D736B));
    assert_eq!(st.deployments[0].digest.as_deref(), Some(D736B));
    assert_eq!(st.booted().unwrap().digest.as_deref(), Some(D16DC));
}

#[test]
fn bootc_bad_document_names_the_line() {
    let err = deploy::bootc::parse_yaml("apiVersion: x\nstatus:\n  booted:\n    ostree: [1, 2\n")
        .unwrap_err();
    assert!(err.line >= 4, "{err}");
    assert!(err.to_string().contains("bootc status"), "{err}");
}

// ---- ostree admin status ----

const A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const C: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const ORIGIN: &str = "bootlab:bootlab/debian-minimal";

fn ostree_text(rel: &str) -> HostStatus {
    let text = fixture(&format!("ostree-status/{rel}"));
    let st = deploy::ostree::parse_text(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(
        deploy::parse_any(&text).unwrap(),
        st,
        "{rel}: parse_any differs"
    );
    assert_eq!(st.source, StatusSource::OstreeText);
    st
}

#[test]
fn ostree_text_upgrade_sequence() {
    let st = ostree_text("handwritten-before-upgrade.txt");
    assert_eq!(st.deployments.len(), 1);
    let b = st.booted().unwrap();
    assert_eq!(
        (b.checksum.as_str(), b.serial, b.version.as_deref()),
        (A, 0, Some("v1"))
    );
    assert_eq!(b.stateroot.as_deref(), Some("debian"));
    assert_eq!(b.origin_refspec.as_deref(), Some(ORIGIN));

    let st = ostree_text("handwritten-upgrade-pending.txt");
    let p = st.pending().unwrap();
    assert_eq!(
        (p.checksum.as_str(), p.index, p.version.as_deref()),
        (B, 0, Some("v2"))
    );
    assert_eq!(st.booted().unwrap().checksum, A);
    assert_eq!(st.next_boot().unwrap().checksum, B);

    let st = ostree_text("handwritten-after-reboot.txt");
    assert_eq!(st.booted().unwrap().checksum, B);
    assert_eq!(st.rollback().unwrap().checksum, A);
    assert!(st.pending().is_none());

    let st = ostree_text("handwritten-rollback-pending.txt");
    let p = st.pending().unwrap();
    assert_eq!((p.checksum.as_str(), p.serial), (A, 1));
    assert_eq!(
        p.origin_refspec.as_deref(),
        Some(A),
        "origin is the bare checksum after deploy"
    );

    let st = ostree_text("handwritten-after-rollback.txt");
    assert_eq!(st.booted().unwrap().id(), format!("{A}.1"));
    assert_eq!(st.rollback().unwrap().checksum, B);
}

#[test]
fn ostree_text_every_line_kind() {
    let st = ostree_text("handwritten-all-line-kinds.txt");
    assert_eq!(st.deployments.len(), 3);
    let s = &st.deployments[0];
    assert!(s.staged && !s.booted);
    assert_eq!(s.checksum, C);
    assert_eq!(s.stateroot.as_deref(), Some("fedora"));
    assert_eq!(s.origin_refspec, None, "origin: <unknown origin type>");
    let b = &st.deployments[1];
    assert!(b.booted && b.pinned);
    assert_eq!(b.serial, 2);
    assert_eq!(
        b.unlocked.as_deref(),
        Some("development"),
        "colour codes stripped"
    );
    assert_eq!(
        b.origin_refspec.as_deref(),
        Some("fedora:fedora/42/x86_64/silverblue")
    );
    assert_eq!(b.version.as_deref(), Some("42.20241201.0"));
    let r = &st.deployments[2];
    assert!(r.rollback);
    assert_eq!(
        (r.checksum.as_str(), r.serial, r.version.as_deref()),
        (A, 1, None)
    );
}

#[test]
fn ostree_text_no_deployments_and_errors() {
    let st = deploy::ostree::parse_text("No deployments.\n").unwrap();
    assert!(st.deployments.is_empty());
    let e = deploy::ostree::parse_text(&format!("* debian {A}.0\n    Version: v1\nerror: oops\n"))
        .unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    let e = deploy::ostree::parse_text("* debian abc.0\n").unwrap_err();
    assert!(e.message.contains("checksum"), "{e}");
    let e = deploy::ostree::parse_text("").unwrap_err();
    assert_eq!(e.line, 1);
}

#[test]
fn ostree_json_2025() {
    let text = fixture("ostree-status/handwritten-2025.3.json");
    let st = deploy::ostree::parse_json(&text).unwrap();
    assert_eq!(deploy::parse_any(&text).unwrap(), st);
    assert_eq!(st.source, StatusSource::OstreeJson);
    assert_eq!(st.staged().unwrap().checksum, B);
    assert_eq!(st.staged().unwrap().version.as_deref(), Some("v2"));
    let b = st.booted().unwrap();
    assert_eq!((b.checksum.as_str(), b.index, b.pinned), (A, 1, true));
    assert_eq!(b.unlocked, None, "\"none\" is no unlock");
    // Minimal and future documents: missing keys tolerated, unknown keys ignored.
    let st = deploy::ostree::parse_json(&format!(
        r#"{{"deployments":[{{"checksum":"{A}","booted":true,"refspec":"{ORIGIN}","some-future-key":{{"x":1}}}}]}}"#
    ))
    .unwrap();
    assert_eq!(st.booted().unwrap().origin_refspec.as_deref(), Some(ORIGIN));
}

#[test]
fn ostree_captured_from_our_guest() {
    // Real captures from a debian-minimal guest (added by the e2e drill runs). Every capture
    // must parse and show exactly one booted deployment on stateroot debian.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ostree-status");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("captured-") {
            continue;
        }
        let st = deploy::ostree::parse_text(&std::fs::read_to_string(&p).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            st.deployments.iter().filter(|d| d.booted).count(),
            1,
            "{name}"
        );
        assert!(
            st.deployments
                .iter()
                .all(|d| d.stateroot.as_deref() == Some("debian")),
            "{name}"
        );
        n += 1;
    }
    eprintln!("{n} captured documents parsed");
}

#[test]
fn ostree_captured_drill_sequence() {
    // Captured from our debian-minimal guest (ostree 2022.7) during the e2e drills:
    // v1 booted → v2 pending → v2 booted → v1 redeployed (.1, bare-checksum origin) → v1 booted
    // → power cut during the next upgrade: v1 still booted, origin set back to the branch.
    const V1: &str = "d6e119edc96bf05853a5af6c5d00c208deb133b1b3aa2e2a5fda577eb89b4ec2";
    const V2: &str = "9caf86eecb50191804c269c93f30dacdfbe24dd897e267b91a94cde76165b8ea";
    let roles = |rel: &str| -> Vec<(String, &'static str, Option<String>, Option<String>)> {
        ostree_text(rel)
            .deployments
            .iter()
            .map(|d| {
                (
                    d.id(),
                    d.role(),
                    d.version.clone(),
                    d.origin_refspec.clone(),
                )
            })
            .collect()
    };
    let o = || Some(ORIGIN.to_string());
    let v = |s: &str| Some(s.to_string());
    assert_eq!(
        roles("captured-before-upgrade.txt"),
        vec![(format!("{V1}.0"), "booted", v("v1"), o())]
    );
    assert_eq!(
        roles("captured-upgrade-pending.txt"),
        vec![
            (format!("{V2}.0"), "pending", v("v2"), o()),
            (format!("{V1}.0"), "booted", v("v1"), o())
        ]
    );
    assert_eq!(
        roles("captured-after-upgrade-reboot.txt"),
        vec![
            (format!("{V2}.0"), "booted", v("v2"), o()),
            (format!("{V1}.0"), "rollback", v("v1"), o())
        ]
    );
    assert_eq!(
        roles("captured-rollback-pending.txt"),
        vec![
            (format!("{V1}.1"), "pending", v("v1"), v(V1)),
            (format!("{V2}.0"), "booted", v("v2"), o())
        ]
    );
    assert_eq!(
        roles("captured-after-rollback-reboot.txt"),
        vec![
            (format!("{V1}.1"), "booted", v("v1"), v(V1)),
            (format!("{V2}.0"), "rollback", v("v2"), o())
        ]
    );
    assert_eq!(
        roles("captured-after-powercut.txt"),
        vec![
            (format!("{V1}.1"), "booted", v("v1"), o()),
            (format!("{V2}.0"), "rollback", v("v2"), o())
        ]
    );
}

// ---- rpm-ostree ----

#[test]
fn rpm_ostree_json() {
    let text = fixture("rpm-ostree-status/handwritten-container-staged.json");
    let st = deploy::rpm_ostree::parse_json(&text).unwrap();
    assert_eq!(deploy::parse_any(&text).unwrap(), st);
    assert_eq!(st.source, StatusSource::RpmOstreeJson);
    assert_eq!(st.deployments.len(), 3);
    let s = st.staged().unwrap();
    assert_eq!(
        s.digest.as_deref(),
        Some("sha256:2222222222222222222222222222222222222222222222222222222222222222")
    );
    assert_eq!(
        s.image.as_ref().unwrap().to_string(),
        "registry:quay.io/fedora/fedora-bootc:42"
    );
    assert_eq!(s.version.as_deref(), Some("42.20250201.0"));
    assert_eq!(s.timestamp.as_deref(), Some("2025-02-01T08:53:20Z"));
    let b = st.booted().unwrap();
    assert!(b.pinned);
    assert_eq!(
        b.checksum,
        "e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5"
    );
    let r = st.rollback().unwrap();
    assert_eq!(
        r.origin_refspec.as_deref(),
        Some("fedora:fedora/41/x86_64/silverblue")
    );
    assert!(r.image.is_none());
    assert_eq!(r.stateroot.as_deref(), Some("fedora"));
    assert!(st.cached_update.is_none());
}

#[test]
fn rpm_ostree_container_refs() {
    use deploy::rpm_ostree::split_container_ref as s;
    assert_eq!(
        s("ostree-image-signed:docker://quay.io/a/b:1").to_string(),
        "registry:quay.io/a/b:1"
    );
    assert_eq!(
        s("ostree-unverified-image:oci:/var/mnt/x").to_string(),
        "oci:/var/mnt/x"
    );
    assert_eq!(
        s("ostree-remote-image:fedora:docker://quay.io/f:42").to_string(),
        "registry:quay.io/f:42"
    );
}

#[test]
fn status_table_shows_roles() {
    let st = ostree_text("handwritten-after-reboot.txt");
    let t = st.table();
    assert!(t.contains("booted"), "{t}");
    assert!(t.contains("rollback"), "{t}");
    assert!(t.contains("b2b2b2b2b2b2.0"), "{t}");
    assert!(t.contains(ORIGIN), "{t}");
}

#[test]
fn bootc_live_from_our_debian_bootc_guest() {
    // Real `bootc status --format=json` from a debian-bootc guest (bootc 1.16.9 built by bootlab,
    // image from an OCI layout on the update share), as `bootlab status b --json` read it.
    let st = bootc("live-debian-bootc-v1-booted.json");
    assert_eq!(st.source, StatusSource::BootcJson);
    let b = st.booted().unwrap();
    assert_eq!(b.version.as_deref(), Some("v1"));
    assert_eq!(b.stateroot.as_deref(), Some("default"));
    let img = b.image.as_ref().unwrap();
    assert_eq!(img.transport, "oci");
    assert_eq!(img.image, "/var/mnt/share/debian-bootc.oci:stable");
    assert_eq!(
        b.digest.as_deref(),
        Some("sha256:ee03fe2fad9ea96f6fb33968d24e04730a680015f45f8f8f76d8c485678e35c4")
    );
    assert!(st.staged().is_none() && st.rollback().is_none());
    assert_eq!(st.boot_order.as_deref(), Some("default"));
    // After the upgrade drill's reboot: v2 booted, v1 the rollback.
    let up = bootc("live-debian-bootc-v2-booted-v1-rollback.json");
    assert_eq!(up.booted().unwrap().version.as_deref(), Some("v2"));
    let rb = up.rollback().unwrap();
    assert_eq!(rb.version.as_deref(), Some("v1"));
    assert_eq!(rb.digest, b.digest);
    assert!(!up.rollback_queued);
    // The same guest's `ostree admin status --json` (ostree 2026.4 from Debian testing) agrees.
    let o =
        deploy::ostree::parse_json(&fixture("ostree-status/live-debian-bootc-v1.json")).unwrap();
    assert_eq!(o.booted().unwrap().checksum, b.checksum);
}
