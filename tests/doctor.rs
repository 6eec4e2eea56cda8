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
    let (ev, mut rx) = Emitter::channel();
    let p = kvm_probe::probe(&ev, &CancellationToken::new())
        .await
        .unwrap();
    drop(ev);
    eprintln!("{}", serde_json::to_string_pretty(&p).unwrap());
    // QEMU's stderr (a KVM failure's register dump) stays in the record, out of the caller's
    // pane; the caller sees the commands and one line per failed run.
    while let Some(s) = rx.recv().await {
        if let bootlab::events::Event::Log { stream, line, .. } = &s.event {
            assert_ne!(
                *stream,
                bootlab::events::Stream::Stderr,
                "QEMU's stderr reached the caller: {line}"
            );
        }
    }
    for r in p.kvm_runs.iter().filter(|r| r.error.is_some()) {
        assert!(!r.qemu_stderr.is_empty(), "{r:#?}");
    }
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

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// `bootlab doctor --json` on this machine, with a fresh home so the KVM probe really runs.
/// Every expectation about KVM and podman is derived from facts read from the machine.
#[test]
fn doctor_json_reports_this_machine() {
    if !common::require_root() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = common::bootlab_in(home.path(), &["doctor", "--json"]);
    let r = json_of(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["ok"], true);
    for c in r["checks"].as_array().unwrap() {
        for key in [
            "name",
            "status",
            "detail",
            "fix_debian",
            "fix_fedora",
            "required",
        ] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
        if c["required"] == true {
            assert_ne!(c["status"], "fail", "{c:#}");
        }
    }
    for name in [
        "podman",
        "qemu-system-x86_64",
        "qemu-img",
        "kvm",
        "ostree",
        "mmdebstrap",
        "loop devices",
        "disk space",
        "extlinux",
        "sfdisk",
        "mkfs.ext4",
    ] {
        check(&r, name);
    }
    assert_eq!(check(&r, "kvm")["required"], false);

    // KVM: present means /dev/kvm exists; unusable means TCG, with a reason that names it.
    let kvm = &r["kvm"];
    let dev_kvm = std::path::Path::new("/dev/kvm").exists();
    assert_eq!(kvm["present"], dev_kvm);
    assert_eq!(kvm["from_cache"], false, "fresh home must probe");
    assert_eq!(
        kvm["tcg_run"]["passed"], true,
        "the probe itself must work: {kvm:#}"
    );
    if kvm["usable"] == false {
        assert_eq!(r["accel"], "tcg");
        assert_eq!(kvm["accel"], "tcg");
        let reason = kvm["reason"].as_str().unwrap();
        assert!(!reason.is_empty());
        assert!(reason.contains("TCG is the fallback"), "{reason}");
        if dev_kvm {
            assert!(reason.starts_with("KVM present but unusable"), "{reason}");
        }
        let c = check(&r, "kvm");
        assert_eq!(c["status"], "warn");
        assert!(c["detail"].as_str().unwrap().contains("-accel tcg"), "{c}");
    } else {
        assert_eq!(r["accel"], "kvm");
        assert_eq!(check(&r, "kvm")["status"], "ok");
    }
    assert!(kvm["tcg_secs"].as_f64().unwrap() > 0.0);

    // podman: its runtime situation is named, and a container ran with bootlab's flags.
    let p = &r["podman"];
    assert_eq!(p["works"], true, "{p:#}");
    let default_runtime = p["default_runtime"].as_str().unwrap();
    assert!(!default_runtime.is_empty());
    let situation = p["situation"].as_str().unwrap();
    assert!(
        situation.contains(&format!("default runtime {default_runtime}")),
        "{situation}"
    );
    assert!(situation.contains("crun"), "{situation}");
    assert!(
        situation.contains("containers.conf is never edited"),
        "{situation}"
    );
    let crun_here = ["/usr/bin/crun", "/usr/sbin/crun", "/usr/local/bin/crun"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    assert_eq!(p["crun_installed"], crun_here);
    if let Some(e) = p["plain_run_error"].as_str() {
        // Whatever bootlab works around must show in its flags.
        assert!(!e.is_empty());
        assert!(!p["bootlab_flags"].as_str().unwrap().is_empty(), "{p:#}");
    }
    assert_eq!(check(&r, "podman")["detail"], p["situation"]);

    // The verdict is cached for `vm up`, and a second doctor reads it instead of probing.
    assert!(home.path().join("state/probes/kvm.json").exists());
    let t = std::time::Instant::now();
    let again = json_of(&common::bootlab_in(home.path(), &["doctor", "--json"]));
    assert_eq!(again["kvm"]["from_cache"], true);
    assert_eq!(again["kvm"]["usable"], kvm["usable"]);
    assert_eq!(again["accel"], r["accel"]);
    eprintln!("second doctor run: {:?}", t.elapsed());
}

/// With ostree missing from PATH, doctor fails and prints the Debian and Fedora fixes.
#[test]
fn doctor_without_ostree_fails_with_fixes() {
    if !common::require_root() {
        return;
    }
    // A PATH holding every program of the real PATH but ostree.
    let bin = tempfile::tempdir().unwrap();
    let real_path = std::env::var_os("PATH").unwrap();
    for dir in std::env::split_paths(&real_path) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let link = bin.path().join(&name);
            if name != "ostree" && !link.exists() {
                let _ = std::os::unix::fs::symlink(e.path(), link);
            }
        }
    }
    assert!(!bin.path().join("ostree").exists());
    assert!(bin.path().join("qemu-system-x86_64").exists());
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bootlab"))
            .env("BOOTLAB_HOME", common::shared_home())
            .env("PATH", bin.path())
            .args(args)
            .output()
            .unwrap()
    };

    let out = run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL  ostree")),
        "{text}"
    );
    assert!(text.contains("apt-get install -y ostree"), "{text}");
    assert!(text.contains("dnf install -y ostree"), "{text}");
    assert!(text.contains("bash .ci/setup"), "{text}");
    assert!(text.contains("NOT ready: ostree"), "{text}");

    let out = run(&["doctor", "--json"]);
    assert_ne!(out.status.code(), Some(0));
    let r = json_of(&out);
    assert_eq!(r["ok"], false);
    let c = check(&r, "ostree");
    assert_eq!(c["status"], "fail");
    assert_eq!(c["required"], true);
    assert!(
        c["fix_fedora"]
            .as_str()
            .unwrap()
            .contains("dnf install -y ostree")
    );
    // Only ostree is missing: the other tools are still found through the stripped PATH.
    for name in ["qemu-system-x86_64", "mmdebstrap", "sfdisk", "podman"] {
        assert_eq!(check(&r, name)["status"], "ok", "{:#}", check(&r, name));
    }
}

/// A Debian kernel to cross-check with: `BOOTLAB_TEST_KERNEL`, else one in the shared cache
/// (the base rootfs keeps it under boot/ or usr/lib/modules/), else the host's /boot.
fn find_kernel() -> Option<std::path::PathBuf> {
    if let Some(k) = std::env::var_os("BOOTLAB_TEST_KERNEL") {
        return Some(k.into());
    }
    fn walk(dir: &std::path::Path, depth: u32) -> Option<std::path::PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in &entries {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let ft = e.file_type().ok()?;
            if ft.is_file() && (name.starts_with("vmlinuz-") || name == "vmlinuz") {
                return Some(p);
            }
            if ft.is_dir()
                && depth > 0
                && name != "objects"
                && name != "proc"
                && let Some(k) = walk(&p, depth - 1)
            {
                return Some(k);
            }
        }
        None
    }
    walk(&common::shared_home().join("cache"), 6).or_else(|| walk(std::path::Path::new("/boot"), 0))
}

/// The kernel cross-check boots a real kernel past its decompressor under TCG.
#[tokio::test]
async fn guest_kernel_reaches_linux_version_under_tcg() {
    let Some(kernel) = find_kernel() else {
        eprintln!("SKIPPED: no guest kernel (set BOOTLAB_TEST_KERNEL or build the base image)");
        return;
    };
    let _heavy = common::heavy_lock();
    let run = kvm_probe::run_kernel(
        &kernel,
        Accel::Tcg,
        Duration::from_secs(120),
        &Emitter::null(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(run.passed, "{run:#?}");
    assert!(!run.timed_out);
}
