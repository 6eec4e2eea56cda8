//! End to end, on this machine: a `debian-minimal` v1 guest under QEMU (TCG here), then in one
//! sequence on the same VM: the upgrade drill (v1 → v2 built, committed and published by the
//! pipeline, pulled over 9p), the rollback drill, and a power-cut drill. Every drill must PASS;
//! the power-cut run must boot a complete deployment. The guest's real `ostree admin status`
//! outputs are saved as captures (see tests/fixtures/ostree-status/README.md).

mod common;

use bootlab::drill::replay::Recorder;
use bootlab::drill::vm_ops::{PipelineHost, VmGuest};
use bootlab::drill::{CutPoint, DrillKind, DrillSpec, Report, Verdict, run_drill};
use bootlab::events::{CancellationToken, Emitter};
use bootlab::paths::Paths;
use std::time::{Duration, Instant};

const VM: &str = "drill-e2e";

/// Stops and removes the VM whatever happens to the test.
struct VmGuard(Paths);
impl Drop for VmGuard {
    fn drop(&mut self) {
        let paths = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let _ =
                    bootlab::vm::lifecycle::stop(&paths, VM, true, Duration::from_secs(20)).await;
            });
            let _ = bootlab::vm::lifecycle::remove(&paths, VM);
        })
        .join();
    }
}

fn print_events(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<bootlab::events::Stamped>,
) -> tokio::task::JoinHandle<()> {
    use bootlab::events::Event;
    tokio::spawn(async move {
        while let Some(s) = rx.recv().await {
            match s.event {
                Event::Command { stage, argv } => eprintln!("[{stage}] $ {}", argv.join(" ")),
                Event::StageFinished { stage, secs, .. } => eprintln!("[{stage}] {secs:.1}s"),
                Event::Note { stage, text } => eprintln!("[{stage}] {text}"),
                _ => {}
            }
        }
    })
}

fn save(dir: &std::path::Path, r: &Report) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(format!("{}.json", r.drill)),
        serde_json::to_string_pretty(r).unwrap(),
    )
    .unwrap();
    eprintln!("{}", r.render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_rollback_powercut_on_one_guest() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let t0 = Instant::now();
    let paths = Paths::under(&common::shared_home());
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("drill-e2e");
    let (ev, rx) = Emitter::channel();
    let printer = print_events(rx);
    let cancel = CancellationToken::new();
    let recipe = bootlab::recipe::find("debian-minimal").unwrap();
    let v1 = recipe.version("v1").unwrap().clone();

    // The v1 golden disk and a booted snapshot of it (both cached in the shared home).
    bootlab::pipeline::ensure_base(&paths, false, &ev, &cancel)
        .await
        .unwrap();
    let b = bootlab::pipeline::build_image(&paths, &recipe, &v1, &ev, &cancel)
        .await
        .unwrap();
    let disk =
        bootlab::pipeline::make_disk(&paths, "debian-minimal", "v1", &b.commit, &ev, &cancel)
            .await
            .unwrap();
    // The update share starts at v1, as after `bootlab disk build`.
    bootlab::pipeline::publish(&paths, "debian-minimal", &b.commit, &ev, &cancel)
        .await
        .unwrap();
    let _ = bootlab::vm::lifecycle::stop(&paths, VM, true, Duration::from_secs(20)).await;
    let _ = bootlab::vm::lifecycle::remove(&paths, VM);
    let mut opts = bootlab::vm::lifecycle::UpOptions::new(VM).for_recipe(&recipe, "v1");
    opts.keep = true; // the power-cut drill starts the same disk again
    let booted = bootlab::vm::images::booted_image(&paths, &disk.path, &opts, &ev, &cancel)
        .await
        .unwrap();
    opts.image = Some(booted);
    opts.from_snapshot = Some(bootlab::vm::images::BOOTED_TAG.to_string());
    let _guard = VmGuard(paths.clone());
    let t_up = Instant::now();
    bootlab::vm::lifecycle::up(&paths, opts, &ev, &cancel)
        .await
        .unwrap();
    eprintln!(
        "prepared in {:.0}s (VM up in {:.1}s)",
        t0.elapsed().as_secs_f64(),
        t_up.elapsed().as_secs_f64()
    );

    let (guest, _) = VmGuest::connect(&paths, VM, &ev).await.unwrap();
    let mut guest = Recorder::new(guest);
    let mut host = PipelineHost::new(paths.clone(), ev.clone(), cancel.clone());

    let up = run_drill(
        &DrillSpec::new(DrillKind::Upgrade, VM, recipe.clone()),
        &mut guest,
        &mut host,
        &ev,
        &cancel,
    )
    .await;
    save(&out, &up);
    assert_eq!(up.verdict, Verdict::Pass, "{}", up.reason);
    assert_eq!(up.facts["new.version"], "v2");

    // The engine's diff (what the TUI panel and `bootlab diff` show) on the two real
    // deployments: v1 (now index 1) to the booted v2 adds bootlab-hello.
    let live = bootlab::deploy::live::read(&mut guest, recipe.file.family)
        .await
        .unwrap();
    // The offline guest (trixie, ostree 2026.4) boots a composefs root: status says so, read
    // live. Its commits (made by the host's ostree) carry no composefs digest, so bootlab
    // computes the fs-verity digest of each deployment's .ostree.cfs.
    for d in &live.ostree.as_ref().unwrap().deployments {
        let c = d
            .composefs
            .as_ref()
            .expect("composefs read for each deployment");
        assert_eq!(c.mode, bootlab::deploy::composefs::Mode::On, "{d:#?}");
        assert!(c.image, "{d:#?}");
        assert!(
            c.digest
                .as_deref()
                .is_some_and(|g| g.starts_with("sha256:")),
            "{d:#?}"
        );
        if d.booted {
            assert_eq!(c.root_mounted, Some(true), "{d:#?}");
        }
    }
    let (from, to) =
        bootlab::deploy::diff::pick(live.best().unwrap(), Some("1"), Some("0")).unwrap();
    let d = bootlab::deploy::diff::between(&mut guest, &ev, &from, &to)
        .await
        .unwrap();
    common::assert_diff_adds_hello(&d);

    let rb = run_drill(
        &DrillSpec::new(DrillKind::Rollback, VM, recipe.clone()),
        &mut guest,
        &mut host,
        &ev,
        &cancel,
    )
    .await;
    save(&out, &rb);
    assert_eq!(rb.verdict, Verdict::Pass, "{}", rb.reason);
    assert_eq!(rb.facts["new.version"], "v1");

    let pc = run_drill(
        &DrillSpec::new(
            DrillKind::Powercut {
                at: CutPoint::EtcMerge,
            },
            VM,
            recipe.clone(),
        ),
        &mut guest,
        &mut host,
        &ev,
        &cancel,
    )
    .await;
    save(&out, &pc);
    assert_eq!(pc.verdict, Verdict::Pass, "{}", pc.reason);
    let after = &pc.facts["booted.after_cut"];
    assert!(
        after.starts_with("old (v1)") || after.starts_with("new (v2)"),
        "{after}"
    );

    // Keep the guest's real `ostree admin status` outputs, in the order the drills read them.
    let caps = out.join("captures");
    std::fs::create_dir_all(&caps).unwrap();
    for (i, o) in guest
        .outputs_of(&["ostree", "admin", "status"])
        .iter()
        .enumerate()
    {
        std::fs::write(caps.join(format!("{i:02}.txt")), &o.stdout).unwrap();
        // Every real capture parses.
        bootlab::deploy::ostree::parse_text(&o.stdout).unwrap();
    }
    // The guest and the host hold emitter clones: the printer ends once all are gone.
    drop(guest);
    drop(host);
    drop(ev);
    let _ = printer.await;
    eprintln!(
        "e2e total {:.0}s; reports and captures in {}",
        t0.elapsed().as_secs_f64(),
        out.display()
    );
}
