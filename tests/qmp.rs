//! QMP through qapi against a real qemu-system-x86_64 with no guest OS (no disk, fast).

mod common;

use bootlab::tools::qmp::{Qmp, QmpEvent, RunState, enum_name, wait_event};
use bootlab::vm::procs;
use std::time::Duration;

struct Qemu {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        assert!(
            procs::qemus_under(self.dir.path()).is_empty(),
            "QEMU left behind for {}",
            self.dir.path().display()
        );
    }
}

fn start_qemu() -> Qemu {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let child = std::process::Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args(["-device", "VGA", "-S", "-m", "64", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 runs");
    Qemu { child, dir }
}

#[tokio::test]
async fn qmp_status_stop_cont_reset_screendump_quit() {
    let mut q = start_qemu();
    let qmp = Qmp::connect(&q.dir.path().join("qmp.sock"), Duration::from_secs(20))
        .await
        .expect("negotiate");
    assert!(qmp.qemu_version.starts_with(|c: char| c.is_ascii_digit()));
    let mut ev = qmp.subscribe();

    // -S: created but not running.
    let st = qmp.query_status().await.unwrap();
    assert!(!st.running);
    assert_eq!(st.status, RunState::prelaunch);

    qmp.cont().await.unwrap();
    wait_event(&mut ev, Duration::from_secs(10), |e| {
        matches!(e, QmpEvent::RESUME { .. }).then_some(())
    })
    .await
    .expect("RESUME after cont");
    assert!(qmp.query_status().await.unwrap().running);

    qmp.stop().await.unwrap();
    wait_event(&mut ev, Duration::from_secs(10), |e| {
        matches!(e, QmpEvent::STOP { .. }).then_some(())
    })
    .await
    .expect("STOP after stop");
    assert_eq!(qmp.query_status().await.unwrap().status, RunState::paused);
    qmp.cont().await.unwrap();

    qmp.system_reset().await.unwrap();
    let reason = wait_event(&mut ev, Duration::from_secs(10), |e| match e {
        QmpEvent::RESET { data, .. } => Some(enum_name(&data.reason)),
        _ => None,
    })
    .await
    .expect("RESET after system_reset");
    assert_eq!(reason, "host-qmp-system-reset");

    let png = q.dir.path().join("screen.png");
    qmp.screendump(&png).await.unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "screendump wrote a PNG");

    // A failing command is an error, not a hang.
    let err = qmp
        .hmp_quiet("loadvm nosuchtag", Duration::from_secs(10))
        .await;
    assert!(err.is_err());

    qmp.quit().await.unwrap();
    let (guest, reason) = wait_event(&mut ev, Duration::from_secs(10), |e| match e {
        QmpEvent::SHUTDOWN { data, .. } => Some((data.guest, enum_name(&data.reason))),
        _ => None,
    })
    .await
    .expect("SHUTDOWN after quit");
    assert!(!guest);
    assert_eq!(reason, "host-qmp-quit");
    tokio::time::timeout(Duration::from_secs(10), qmp.closed().cancelled())
        .await
        .expect("connection closes when QEMU exits");
    let status = q.child.wait().unwrap();
    assert!(status.success(), "QEMU exited cleanly after quit: {status}");
}

#[tokio::test]
async fn qmp_connect_gives_up_on_a_missing_socket() {
    let d = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let r = Qmp::connect(&d.path().join("nope.sock"), Duration::from_millis(300)).await;
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_secs(5));
}
