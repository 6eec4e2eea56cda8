//! Real bootc, offline: bootc 1.16.9 built from its pinned source in a trixie build root with
//! testing's libostree, cached by source checksum. As root (mmdebstrap, podman). The build lives
//! in the shared test home, so a CI run compiles it once (8–12 min on 2 cores) and every later
//! test reuses it in seconds. `.ci/run` points BOOTLAB_BOOTC_SOURCE at the pinned archives when
//! the machine has them; otherwise they are downloaded.

mod common;

use bootlab::events::{CancellationToken, Emitter, Event};
use bootlab::paths::Paths;
use bootlab::pipeline::bootc::binary::{self, BUILDROOT_TAG};
use bootlab::tools::podman::Podman;
use std::time::Instant;

fn paths() -> Paths {
    Paths::under(&common::shared_home())
}

#[tokio::test(flavor = "multi_thread")]
async fn bootc_is_built_once_then_reused() {
    if !common::require_root() {
        return;
    }
    let _heavy = common::heavy_lock();
    let paths = paths();
    let (ev, mut rx) = Emitter::channel();
    let first = binary::ensure_bootc(&paths, &ev, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    drop(ev);
    let mut progress = 0;
    while let Ok(s) = rx.try_recv() {
        if let Event::Progress { stage, .. } = &s.event
            && stage == "bootc"
        {
            progress += 1;
        }
    }
    if !first.cached {
        assert!(
            progress > 100,
            "a cold build reports each crate ({progress})"
        );
        eprintln!("bootc cold build: {:?}", first.timings);
    }
    assert_eq!(first.record.bootc_version, "bootc 1.16.9");
    let bin = first.binary();
    assert!(
        bin.metadata().unwrap().len() > 10_000_000,
        "{}",
        bin.display()
    );
    // Laid out as upstream's make install install-ostree-hooks.
    for f in [
        "usr/lib/systemd/system/bootc-fetch-apply-updates.timer",
        "usr/lib/systemd/system-generators/bootc-systemd-generator",
        "usr/share/doc/bootc/baseimage/base/usr/lib/ostree/prepare-root.conf",
        "usr/lib/bootc/kargs.d",
    ] {
        assert!(first.root.join(f).exists(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_link(
            first
                .root
                .join("usr/libexec/libostree/ext/ostree-container")
        )
        .unwrap(),
        std::path::Path::new("../../../bin/bootc")
    );

    // It really runs against testing's libostree: in the build root, with no network.
    let podman = Podman::probe(&paths, &Emitter::null(), &CancellationToken::new())
        .await
        .unwrap();
    let out = podman
        .cmd()
        .args(["run", "--rm", "--network=none"])
        .args(podman.choice.ulimit_args())
        .arg("-v")
        .arg(format!("{}:/b:ro", first.root.display()))
        .args([BUILDROOT_TAG, "/b/usr/bin/bootc", "--help"])
        .capture()
        .run_unchecked("test", &Emitter::null(), &CancellationToken::new())
        .await
        .unwrap();
    assert!(
        out.status.success() && out.stdout.contains("upgrade") && out.stdout.contains("switch"),
        "{}\n{}",
        out.stdout,
        out.tail.join("\n")
    );

    // Second time: the cache, in seconds, the same tree.
    let t = Instant::now();
    let again = binary::ensure_bootc(&paths, &Emitter::null(), &CancellationToken::new())
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.root, first.root);
    assert_eq!(again.key, first.key);
    assert!(
        t.elapsed().as_secs() < 30,
        "cache hit took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_wrong_source_folder_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("bootc-1.16.9.tar.gz"), "no").unwrap();
    let e = bootlab::pipeline::bootc::source::from_folder(t.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bootc-1.16.9.tar.gz") && e.contains("pinned"),
        "{e}"
    );
}

const VM: &str = "bootc-e2e";

/// Stops and removes the VM whatever happens to the test.
struct VmGuard(Paths);
impl Drop for VmGuard {
    fn drop(&mut self) {
        let paths = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let _ = bootlab::vm::lifecycle::stop(
                    &paths,
                    VM,
                    true,
                    std::time::Duration::from_secs(20),
                )
                .await;
            });
            let _ = bootlab::vm::lifecycle::remove(&paths, VM);
        })
        .join();
    }
}

/// Real bootc end to end on one guest, through the workflow layer every face uses: the
/// `debian-bootc` v1 image (bootc base and binary cached in the shared home), its disk by
/// `bootc install to-filesystem` (cached), one cold boot, the live `bootc status` (version v1),
/// then the upgrade drill (v2 published to the OCI layout, real `bootc upgrade`, reboot, v2
/// booted per bootc status), the rollback drill (`bootc rollback`, reboot, v1 booted) and the
/// switch drill to v3's own tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_bootc_boots_upgrades_rolls_back_and_switches() {
    use bootlab::drill::vm_ops::{PipelineHost, VmGuest};
    use bootlab::drill::{DrillKind, DrillSpec, Verdict, run_drill};
    use bootlab::workflow::{BootPlan, Target};
    if !common::require_root() {
        return;
    }
    let _heavy = common::heavy_lock();
    let t0 = Instant::now();
    let paths = paths();
    let ev = Emitter::null();
    let cancel = CancellationToken::new();
    let target = Target::find("debian-bootc", Some("v1")).unwrap();
    let disk = bootlab::workflow::ensure_disk(&paths, &target, &ev, &cancel)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        disk.image
            .lint
            .iter()
            .any(|l| l.starts_with("Checks passed")),
        "lint findings kept: {:?}",
        disk.image.lint
    );
    eprintln!(
        "image+disk {:.0}s (disk cached: {})",
        t0.elapsed().as_secs_f64(),
        disk.disk.cached
    );

    let _ =
        bootlab::vm::lifecycle::stop(&paths, VM, true, std::time::Duration::from_secs(20)).await;
    let _ = bootlab::vm::lifecycle::remove(&paths, VM);
    let _guard = VmGuard(paths.clone());
    let mut plan = BootPlan::new(target.clone(), VM);
    plan.disk = Some(disk.disk.path.clone());
    let t_up = Instant::now();
    bootlab::workflow::boot(&paths, plan, &ev, &cancel)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("first boot {:.0}s", t_up.elapsed().as_secs_f64());

    // As on the offline family's disks: /boot and /var mounted by bootlab's initramfs from the
    // fstab bootc wrote (marked by the disk maker), the image counted as updated on the first
    // boot, the agent's own unit, a clean boot.
    let c = bootlab::vm::VmClient::connect(&paths, VM).await.unwrap();
    let out = c
        .sh(
            "findmnt -n -o SOURCE /var; systemctl show -P SourcePath var.mount boot.mount; \
             systemctl show -P FragmentPath qemu-guest-agent.service; \
             systemctl is-system-running --wait; cat /etc/.updated /var/.updated | grep -c NSEC=0",
        )
        .await
        .unwrap();
    // (systemctl show puts a blank line between two units.)
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        lines.len() == 6
            && lines[0].ends_with("[/ostree/deploy/default/var]")
            && lines[1..]
                == [
                    "/etc/fstab",
                    "/etc/fstab",
                    "/etc/systemd/system/qemu-guest-agent.service",
                    "running",
                    "2"
                ],
        "{}\n{}",
        out.stdout,
        out.stderr
    );

    let (mut guest, _) = VmGuest::connect(&paths, VM, &ev).await.unwrap();
    let live = bootlab::deploy::live::read(&mut guest, bootlab::recipe::Family::Bootc)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let st = live.bootc.as_ref().expect("bootc status read");
    let booted = st.booted().expect("a booted deployment");
    assert_eq!(booted.version.as_deref(), Some("v1"), "{}", st.table());
    let img = booted.image.as_ref().expect("booted image");
    assert_eq!(img.image, "/var/mnt/share/debian-bootc.oci:stable");
    assert_eq!(img.transport, "oci");
    // composefs, as `bootlab status --json` shows it: the booted root is a composefs mount with a
    // digest (the fs-verity digest of its .ostree.cfs); prepare-root.conf says `enabled = true`,
    // so fs-verity is not enforced.
    let cfs = booted.composefs.as_ref().expect("composefs read");
    assert_eq!(cfs.root_mounted, Some(true), "{cfs:?}");
    assert_eq!(cfs.mode, bootlab::deploy::composefs::Mode::On, "{cfs:?}");
    assert!(!cfs.verity_enforced, "{cfs:?}");
    assert!(cfs.image, "{cfs:?}");
    let dg = cfs.digest.as_deref().expect("a composefs digest");
    assert!(
        dg.len() == 71
            && dg.starts_with("sha256:")
            && dg[7..].chars().all(|c| c.is_ascii_hexdigit()),
        "{dg}"
    );
    let json = serde_json::to_value(&live).unwrap();
    assert_eq!(
        json["bootc"]["deployments"][0]["composefs"]["digest"], dg,
        "{json}"
    );

    let mut host = PipelineHost::new(paths.clone(), ev.clone(), cancel.clone());
    let recipe = target.recipe.clone();
    let mut drill = async |kind: DrillKind| {
        let t_d = Instant::now();
        let r = run_drill(
            &DrillSpec::new(kind, VM, recipe.clone()),
            &mut guest,
            &mut host,
            &ev,
            &cancel,
        )
        .await;
        eprintln!(
            "{}\n{} drill {:.0}s",
            r.render(),
            r.drill,
            t_d.elapsed().as_secs_f64()
        );
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
        r
    };
    let up = drill(DrillKind::Upgrade).await;
    assert_eq!(up.facts["new.version"], "v2");

    let rb = drill(DrillKind::Rollback).await;
    assert_eq!(rb.facts["new.version"], "v1");

    // The switch drill to v3's own tag (`stable` not moved): `bootc switch --transport oci
    // …:v3`, reboot, v3 booted from that tag. (`--archive`, the oci-archive transport, passed
    // live in 391 s; its `bootc switch` alone takes ~4 min under TCG, too long for every run.)
    let sw = drill(DrillKind::Switch {
        to: Box::new(recipe.clone()),
        version: Some("v3".into()),
        via: bootlab::drill::Via::Tag,
    })
    .await;
    assert_eq!(
        sw.facts["to.target"],
        "oci:/var/mnt/share/debian-bootc.oci:v3"
    );
    assert!(
        sw.steps
            .iter()
            .flat_map(|s| &s.checks)
            .any(|c| c.name == "booted image version" && c.ok),
        "{}",
        sw.render()
    );

    // The deployment diff (files and packages) on a bootc guest, as `bootlab diff` and the TUI
    // show it: v1 (now the rollback) → v3 adds bootlab-hello, and the packages come from the
    // dpkg database each bootc commit carries under /var/lib/dpkg.
    let live = bootlab::deploy::live::read(&mut guest, bootlab::recipe::Family::Bootc)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (from, to) =
        bootlab::deploy::diff::pick(live.best().unwrap(), Some("1"), Some("0")).unwrap();
    let d = bootlab::deploy::diff::between(&mut guest, &ev, &from, &to)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    common::assert_diff_adds_hello(&d);
    eprintln!("bootc e2e total {:.0}s", t0.elapsed().as_secs_f64());
}
