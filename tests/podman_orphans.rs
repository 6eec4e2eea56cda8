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

/// podman as bootlab runs it (its runtime probed in a home of its own).
async fn probe() -> Podman {
    let home = tempfile::tempdir().unwrap();
    Podman::probe(
        &Paths::under(home.path()),
        &Emitter::null(),
        &CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test]
async fn a_killed_bootlabs_containers_are_reaped_a_live_ones_kept() {
    if !common::require_root() {
        return;
    }
    let ev = Emitter::null();
    let p = probe().await;
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

/// An image a killed bootlab left mounted (`Podman::mount_image`, whose guard never ran) is
/// unmounted by the reaper every disk maker runs first (`pipeline::disk::reap_leftovers`), and
/// its marker file goes.
#[tokio::test]
async fn an_image_a_killed_bootlab_left_mounted_is_unmounted() {
    if !common::require_root() {
        return;
    }
    let ev = Emitter::null();
    let p = probe().await;
    // An image holding only the mount points `mount_image` asks of an image.
    let img = "localhost/bootlab-test/run-only:latest";
    let tree = tempfile::tempdir().unwrap();
    for dir in ["run", "proc", "dev", "sys"] {
        std::fs::create_dir(tree.path().join(dir)).unwrap();
    }
    let import = Command::new("sh")
        .args([
            "-c",
            &format!(
                "tar -C {} -cf - . | podman import -q - {img}",
                tree.path().display()
            ),
        ])
        .status()
        .unwrap();
    assert!(import.success());
    let mounted = || {
        let o = podman(&["image", "mount"]);
        String::from_utf8_lossy(&o.stdout).contains("bootlab-test/run-only")
    };

    let dir = tempfile::tempdir().unwrap();
    let m = p
        .mount_image(img, dir.path(), "test", &ev, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(m.root.join("run").is_dir(), "{}", m.root.display());
    assert!(mounted());
    // Killed here: nothing unmounts it.
    std::mem::forget(m);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "a marker"
    );

    bootlab::pipeline::disk::reap_leftovers(dir.path(), &ev).await;
    assert!(!mounted(), "the image is still mounted");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the marker is left"
    );

    // Unmounted through its guard, it leaves nothing either.
    let m = p
        .mount_image(img, dir.path(), "test", &ev, &CancellationToken::new())
        .await
        .unwrap();
    m.unmount("test", &ev).await.unwrap();
    assert!(!mounted());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    podman(&["rmi", "-f", img]);

    // An image without them: a clear error, and nothing left mounted or marked.
    let bare = "localhost/bootlab-test/no-mount-points:latest";
    let import = Command::new("sh")
        .args([
            "-c",
            &format!("tar cf - --files-from /dev/null | podman import -q - {bare}"),
        ])
        .status()
        .unwrap();
    assert!(import.success());
    let e = p
        .mount_image(bare, dir.path(), "test", &ev, &CancellationToken::new())
        .await
        .err()
        .expect("an image without /run");
    assert!(format!("{e:#}").contains("has no /run directory"), "{e:#}");
    let o = podman(&["image", "mount"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("no-mount-points"),
        "left mounted"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    podman(&["rmi", "-f", bare]);
}
