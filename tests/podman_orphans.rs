//! Containers left behind by a killed bootlab are removed by the next one: every container bootlab
//! starts carries a `bootlab.owner` label (pid and start time of the bootlab that started it);
//! `Podman::reap_orphans` removes those whose owner is gone and keeps those of a live bootlab.
//! Real podman, as root; the containers are only created (an empty imported image), never run.

mod common;

use bootlab::events::{CancellationToken, Emitter};
use bootlab::paths::Paths;
use bootlab::tools::podman::{OWNER_LABEL, Podman};
use std::process::Command;

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman").args(args).output().unwrap()
}

fn exists(name: &str) -> bool {
    podman(&["container", "exists", name]).status.success()
}

#[tokio::test]
async fn a_killed_bootlabs_containers_are_reaped_a_live_ones_kept() {
    if !common::require_root() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let paths = Paths::under(home.path());
    let ev = Emitter::null();
    let p = Podman::probe(&paths, &ev, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // An empty image is enough: a created container never runs.
    let img = "localhost/bootlab-test/empty:latest";
    let mut import = Command::new("sh")
        .args([
            "-c",
            &format!("tar cf - --files-from /dev/null | podman import -q - {img}"),
        ])
        .spawn()
        .unwrap();
    assert!(import.wait().unwrap().success());

    let tag = fastrand::u32(..);
    let dead = format!("bootlab-test-dead-{tag}");
    let live = format!("bootlab-test-live-{tag}");
    // A pid that cannot exist (above pid_max's ceiling): its owner is surely gone.
    let dead_owner = format!("{OWNER_LABEL}=4194305.12345");
    let live_owner = format!("{OWNER_LABEL}={}", bootlab::vm::procs::owner_stamp());
    for (name, label) in [(&dead, &dead_owner), (&live, &live_owner)] {
        let o = podman(&["create", "--name", name, "--label", label, img, "/x"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    let reaped = p.reap_orphans("test", &ev).await.unwrap();
    assert!(reaped.contains(&dead), "{reaped:?}");
    assert!(!reaped.contains(&live), "{reaped:?}");
    assert!(!exists(&dead), "{dead} was left");
    assert!(
        exists(&live),
        "{live} belongs to a running bootlab and must stay"
    );

    // The export container of a build carries this bootlab as its owner, so a build killed
    // while exporting leaves nothing the next build cannot reap.
    let t = p
        .create_temp(img, "test", &ev, &CancellationToken::new())
        .await
        .unwrap();
    let o = podman(&[
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{OWNER_LABEL}\"}}}}"),
        &t.name,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        bootlab::vm::procs::owner_stamp(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    t.remove("test", &ev).await.unwrap();

    podman(&["rm", "-f", &live]);
    podman(&["rmi", "-f", img]);
}
