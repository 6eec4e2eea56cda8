//! Step snapshots on a real guest (TCG here): `bootlab lab run` snapshots the lab's VM when a
//! step passes; going back (`--from`) restores the guest as the step before left it, and after
//! the VM stopped (bootlab or the machine restarted) resuming starts it from that snapshot.
//! Starting at a step with no snapshot before it catches up: the earlier steps run solved.

mod common;

use std::path::Path;
use std::time::Instant;

fn run(home: &Path, args: &[&str]) -> (bool, String) {
    let t = Instant::now();
    let out = common::bootlab_in(home, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "$ bootlab {} ({:.0}s)\n{text}",
        args.join(" "),
        t.elapsed().as_secs_f64()
    );
    (out.status.success(), text)
}

/// `sh -c SCRIPT` in the lab's guest.
fn guest_sh(home: &Path, script: &str) -> String {
    let (ok, out) = run(
        home,
        &["vm", "exec", "lab-first-boot", "--", "sh", "-c", script],
    );
    assert!(ok, "{out}");
    out
}

/// Whether `path` exists in the lab's guest.
fn in_guest(home: &Path, path: &str) -> bool {
    guest_sh(
        home,
        &format!("test -e {path} && echo present || echo absent"),
    )
    .contains("present")
}

#[test]
fn going_back_and_resuming_restore_the_steps_snapshot() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let home = common::shared_home();
    let _ = std::fs::remove_file(home.join("state/labs/first-boot.json"));
    remove_vm(&home);

    // Straight to step `etc` on a machine that never ran the lab: nothing to restore, so the
    // steps before it run with their solutions first (catching up), then `etc` and `status`
    // are solved. Each step that passes with the VM running leaves a snapshot.
    let (ok, out) = run(
        &home,
        &["lab", "run", "first-boot", "--from", "etc", "--solve"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("catching up: the steps before etc run with their solutions first"),
        "{out}"
    );
    for k in 1..=5 {
        assert!(
            out.contains(&format!(
                "catching up: step {k} of 7 with its solution, so step etc starts where it should"
            )),
            "step {k}: {out}"
        );
    }
    let progress: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("state/labs/first-boot.json")).unwrap())
            .unwrap();
    let snaps = progress["snapshots"].as_object().unwrap();
    for step in ["boot", "read-only-usr", "var", "etc", "status"] {
        assert_eq!(
            snaps[step]["tag"],
            format!("lab-step-{step}"),
            "{progress:#}"
        );
    }
    assert_eq!(progress["guest_at"], "status");
    // The tags are in the VM's disk, where qemu-img sees them.
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.join("state/vms/lab-first-boot/vm.json")).unwrap(),
    )
    .unwrap();
    let overlay = rec["overlay"].as_str().unwrap();
    let list = std::process::Command::new("qemu-img")
        .args(["snapshot", "-l", "-U", overlay])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("lab-step-var"), "{list}");

    // Back to step `var`: the guest as `read-only-usr` left it, before the learner wrote
    // /var/lib/bootlab-mine. Without --solve nobody writes it, so the step fails (exit 1).
    assert!(in_guest(&home, "/var/lib/bootlab-mine"));
    let (ok, out) = run(&home, &["lab", "run", "first-boot", "--from", "var"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the guest is back as step read-only-usr left it"),
        "{out}"
    );
    assert!(!in_guest(&home, "/var/lib/bootlab-mine"));
    // What the step before did is there: the snapshot is its end, not the lab's start.
    assert!(in_guest(&home, "/usr/local/bin/my-tool"));

    // Running it again where it stopped restores nothing: the learner's work in the guest stays.
    let out = guest_sh(&home, "echo mine > /var/lib/bootlab-mine");
    let (ok, out2) = run(&home, &["lab", "run", "first-boot"]);
    assert!(!out2.contains("snapshot restored"), "{out}\n{out2}");
    // `var` passes with the learner's file; `etc` then waits for theirs.
    assert!(!ok, "{out2}");
    assert!(out2.contains("stopped at step etc"), "{out2}");

    // The VM stops (bootlab closed, the machine restarted): resuming at `status` starts it from
    // the snapshot of `etc`, in seconds, with that step's /etc file.
    let (ok, out) = run(&home, &["vm", "down", "lab-first-boot"]);
    assert!(ok, "{out}");
    let t = Instant::now();
    let (ok, out) = run(&home, &["lab", "run", "first-boot", "--from", "status"]);
    assert!(ok, "{out}");
    assert!(out.contains("VM started, snapshot restored"), "{out}");
    eprintln!(
        "resume from a stopped VM: {:.0}s",
        t.elapsed().as_secs_f64()
    );
    assert!(in_guest(&home, "/etc/bootlab-first-boot"));

    // Starting over: the VM (and the snapshots in its disk) and the progress are gone.
    let (ok, out) = run(&home, &["lab", "reset", "first-boot"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("VM lab-first-boot stopped and removed"),
        "{out}"
    );
    assert!(
        out.contains("progress forgotten (7 of 7 steps had passed)"),
        "{out}"
    );
    assert!(!home.join("state/labs/first-boot.json").exists());
    assert!(!home.join("state/vms/lab-first-boot").exists());
}

/// Stop and remove the lab's VM (kept when stopped: a lab VM keeps its disk).
fn remove_vm(home: &Path) {
    let _ = common::bootlab_in(home, &["vm", "down", "lab-first-boot", "--force"]);
    let _ = common::bootlab_in(home, &["vm", "rm", "lab-first-boot"]);
    assert!(!home.join("state/vms/lab-first-boot").exists());
}
