//! VM records never lie (issue 12, "seen on a fresh machine"): the supervisor is this very
//! executable whatever its file name; a start that fails leaves no `starting` record; `vm down`
//! and `vm rm` clear a record whose supervisor is gone. No guest OS is needed: a blank disk keeps
//! a real QEMU in its firmware, which is all a supervisor needs to run.

mod common;

use bootlab::paths::Paths;
use bootlab::vm::{VmRecord, VmState};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(exe: &Path, home: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(exe);
    c.env("BOOTLAB_HOME", home).env_remove("BOOTLAB_BIN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.args(args).output().expect("run bootlab")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ls(exe: &Path, home: &Path) -> Vec<VmRecord> {
    let o = run(exe, home, &[], &["vm", "ls", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

/// A blank 16 MiB raw disk: QEMU starts, the firmware finds nothing to boot.
fn blank_disk(dir: &Path) -> PathBuf {
    let p = dir.join("blank.raw");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(16 << 20).unwrap();
    p
}

/// The bootlab binary copied under another name, as a member might install it.
fn copied_binary(dir: &Path) -> PathBuf {
    let p = dir.join("my-workbench");
    std::fs::copy(env!("CARGO_BIN_EXE_bootlab"), &p).unwrap();
    // Another test thread that forks while the copy's write handle is open inherits it, and
    // exec then fails with ETXTBSY until that child has exec'd: wait for the handle to go.
    let t = Instant::now();
    while Command::new(&p)
        .arg("--version")
        .output()
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ExecutableFileBusy)
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{} stays busy",
            p.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    p
}

#[test]
fn copied_binary_runs_its_own_supervisor_and_down_clears_it() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let exe = copied_binary(tmp.path());
    let disk = blank_disk(tmp.path());
    let mut up = Command::new(&exe)
        .env("BOOTLAB_HOME", &home)
        .env_remove("BOOTLAB_BIN")
        .args(["vm", "up", "debian-minimal", "--name", "copy", "--tcg"])
        .args(["--memory", "256", "--cpus", "1"])
        .args(["--boot-timeout", "120", "--disk"])
        .arg(&disk)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // The supervisor comes up and is the copied file itself.
    let t = Instant::now();
    let rec = loop {
        if let Some(r) = ls(&exe, &home)
            .into_iter()
            .find(|r| r.name == "copy" && r.state == VmState::Booting)
        {
            break r;
        }
        if let Ok(Some(_)) = up.try_wait() {
            let o = up.wait_with_output().unwrap();
            panic!("vm up ended before the VM was booting: {}", text(&o));
        }
        assert!(t.elapsed() < Duration::from_secs(60), "never booting");
        std::thread::sleep(Duration::from_millis(200));
    };
    let sup = rec.supervisor_pid.expect("supervisor pid recorded");
    let sup_exe = std::fs::read_link(format!("/proc/{sup}/exe")).unwrap();
    assert_eq!(sup_exe, std::fs::canonicalize(&exe).unwrap());
    let qemu = rec.qemu_pid.expect("QEMU pid recorded");

    // What runs is private and bound to this host only (issue 12, item 6).
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    let paths = Paths::under(&home);
    let dir = VmRecord::dir(&paths, "copy");
    assert_eq!(mode(&paths.state), 0o700);
    assert_eq!(mode(&paths.data), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&VmRecord::file(&dir)), 0o600);
    assert_eq!(mode(rec.sockets.control.parent().unwrap()), 0o700);
    let argv = bootlab::vm::procs::cmdline(qemu).unwrap();
    let virtfs = argv
        .windows(2)
        .find(|w| w[0] == "-virtfs")
        .map(|w| w[1].clone())
        .expect("the update share is passed");
    assert!(virtfs.contains("readonly=on"), "{virtfs}");
    for a in &argv {
        // Only unix sockets and loopback forwards: nothing listens beyond 127.0.0.1.
        assert!(
            !a.contains("hostfwd") || !a.contains("hostfwd=tcp::"),
            "{a}"
        );
        assert!(
            !a.starts_with("tcp:") && !a.contains("server=on,host="),
            "{a}"
        );
    }
    assert!(
        !argv.iter().any(|a| a == "-vnc" || a == "-spice"),
        "{argv:?}"
    );

    // `vm down --force` while `vm up` still waits: the record is gone, the waiting start fails.
    let o = run(&exe, &home, &[], &["vm", "down", "copy", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(ls(&exe, &home).is_empty(), "{:?}", ls(&exe, &home));
    let o = up.wait_with_output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(bootlab::vm::procs::qemus_under(&home).is_empty());
    assert!(!VmRecord::dir(&Paths::under(&home), "copy").exists());
}

#[test]
fn a_supervisor_that_fails_to_start_leaves_no_record() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let exe = copied_binary(tmp.path());
    let disk = blank_disk(tmp.path());
    let disk_s = disk.to_str().unwrap();
    let up = [
        "vm",
        "up",
        "debian-minimal",
        "--name",
        "lab-x",
        "--tcg",
        "--no-share",
        "--disk",
        disk_s,
    ];
    // A supervisor binary that exits at once, and one that cannot be run at all.
    for (bin, expect) in [
        ("/bin/false", "exited (exit status: 1) before it answered"),
        (
            "/nonexistent/bootlab",
            "starting the VM supervisor /nonexistent/bootlab",
        ),
    ] {
        let t = Instant::now();
        let o = run(&exe, &home, &[("BOOTLAB_BIN", bin)], &up);
        let out = text(&o);
        assert!(!o.status.success(), "{out}");
        assert!(out.contains(expect), "{out}");
        // Failing fast: not after the 30 s connect timeout.
        assert!(t.elapsed() < Duration::from_secs(20), "{out}");
        assert!(ls(&exe, &home).is_empty(), "{out}");
        assert!(!VmRecord::dir(&Paths::under(&home), "lab-x").exists());
        // Nothing holds the name: the next start is not refused as "already runs".
        assert!(!out.contains("already runs"), "{out}");
    }
}

/// What an older bootlab (or a crash between writing the record and starting the supervisor)
/// left: records in `starting` with no supervisor. `vm down --force` and `vm rm` clear them.
#[test]
fn records_left_starting_by_a_crash_are_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let exe = copied_binary(tmp.path());
    let paths = Paths::under(&home);
    for (name, keep) in [("lab-x", true), ("booted-123", true), ("plain", false)] {
        write_starting(&paths, name, keep);
    }

    let o = run(&exe, &home, &[], &["vm", "down", "lab-x", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&exe, &home, &[], &["vm", "rm", "lab-x"]);
    assert!(o.status.success(), "{}", text(&o));
    // Listing never shows `starting` without a live supervisor: kept ones say why they stopped.
    let o = run(&exe, &home, &[], &["vm", "ls"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        o.stdout
            .split(|b| *b == b'\n')
            .all(|l| String::from_utf8_lossy(l).split_whitespace().nth(1) != Some("starting")),
        "{out}"
    );
    assert!(
        out.contains("booted-123") && out.contains("supervisor was gone"),
        "{out}"
    );
    let left: Vec<_> = ls(&exe, &home)
        .into_iter()
        .map(|r| (r.name, r.state))
        .collect();
    assert_eq!(left, vec![("booted-123".to_string(), VmState::Stopped)]);
    let o = run(&exe, &home, &[], &["vm", "rm", "booted-123"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(ls(&exe, &home).is_empty());

    // The engine calls themselves, without the CLI's reap first.
    write_starting(&paths, "direct", true);
    bootlab::vm::remove(&paths, "direct").unwrap();
    assert!(!VmRecord::dir(&paths, "direct").exists());
    write_starting(&paths, "direct", true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bootlab::vm::down(
        &paths,
        "direct",
        true,
        Duration::from_secs(5),
    ))
    .unwrap();
    let r = VmRecord::load(&paths, "direct").unwrap();
    assert_eq!(r.state, VmState::Stopped, "{r:?}");
    assert!(r.detail.contains("supervisor never ran"), "{}", r.detail);
}

/// A record in `starting` with no supervisor, as a start that died before its supervisor ran
/// leaves it.
fn write_starting(paths: &Paths, name: &str, keep: bool) {
    let dir = VmRecord::dir(paths, name);
    std::fs::create_dir_all(&dir).unwrap();
    let rec = VmRecord {
        name: name.into(),
        recipe: Some("debian-minimal".into()),
        version: None,
        state: VmState::Starting,
        detail: "starting the supervisor".into(),
        supervisor_pid: None,
        qemu_pid: None,
        accel: bootlab::tools::qemu::Accel::Tcg,
        accel_reason: "test".into(),
        memory_mib: 256,
        cpus: 1,
        ssh_port: None,
        sockets: bootlab::vm::socket_paths(&dir),
        console_log: dir.join("console.log"),
        supervisor_log: dir.join("supervisor.log"),
        overlay: dir.join("disk.qcow2"),
        golden: None,
        share: None,
        share_mounted: false,
        guest_share_dir: None,
        loadvm: None,
        load_state: None,
        firmware: Default::default(),
        known_password: None,
        keep,
        boot_timeout_secs: 240,
        // Just now: no "old enough to be stale" grace period may hide it.
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        ready_secs: None,
    };
    rec.save_dir(&dir).unwrap();
}
