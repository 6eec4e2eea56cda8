//! `bootlab doctor` and the KVM probe against the real host: QEMU, podman, losetup, ostree.

mod common;

use bootlab::events::{CancellationToken, Emitter};
use bootlab::tools::qemu::kvm_probe::{self, Accel};
use std::time::Duration;

/// The probe payload really runs to the end under TCG: this proves the probe itself works, so a
/// KVM failure on this host is KVM's, not the payload's.
#[tokio::test]
async fn probe_payload_passes_under_tcg() {
    let run = kvm_probe::run_payload(
        Accel::Tcg,
        Some("max"),
        Duration::from_secs(60),
        &Emitter::null(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(run.passed, "{run:#?}");
    assert_eq!(run.exit_code, Some(kvm_probe::PAYLOAD_EXIT_CODE));
    assert!(run.serial.starts_with("RPLCX"), "{}", run.serial);
    assert!(
        run.serial
            .contains(&format!("{:016x}", kvm_probe::EXPECTED_CHECKSUM)),
        "{}",
        run.serial
    );
    assert!(!run.timed_out);
}

/// A timeout really kills the probe QEMU and is reported as such (the KVM-stall path, tested
/// under TCG by giving the payload less time than it needs).
#[tokio::test]
async fn probe_timeout_kills_qemu() {
    let t = std::time::Instant::now();
    let run = kvm_probe::run_payload(
        Accel::Tcg,
        Some("max"),
        Duration::from_millis(150),
        &Emitter::null(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(run.timed_out, "{run:#?}");
    assert!(!run.passed);
    assert_eq!(run.exit_code, None);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

/// The verdict on this machine, stated only from facts read here.
#[tokio::test]
async fn kvm_probe_verdict_is_consistent() {
    let p = kvm_probe::probe(&Emitter::null(), &CancellationToken::new())
        .await
        .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&p).unwrap());
    assert_eq!(p.present, std::path::Path::new("/dev/kvm").exists());
    assert!(p.tcg_run.as_ref().unwrap().passed, "{p:#?}");
    assert!(!p.reason.is_empty());
    if p.usable {
        assert_eq!(p.accel, "kvm");
        assert!(p.kvm_runs.last().unwrap().passed);
        assert!(p.kvm_secs.unwrap() <= p.tcg_secs.unwrap());
    } else {
        assert_eq!(p.accel, "tcg");
        assert!(p.reason.contains("TCG is the fallback"), "{}", p.reason);
        assert!(p.kvm_runs.iter().all(|r| !r.passed));
        if p.present {
            assert!(!p.kvm_runs.is_empty(), "KVM present but never tried");
        }
    }
}
