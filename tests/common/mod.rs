//! Shared by the integration tests. Each test file does `mod common;` and uses what it needs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// One BOOTLAB_HOME shared by every test binary of a `cargo test` run (and kept between runs),
/// so the Debian base, built images and golden disks are made once and reused.
/// Tests that must start from nothing make their own temp home instead.
pub fn shared_home() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bootlab-home");
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The bootlab binary under test.
pub fn bootlab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bootlab"));
    c.env("BOOTLAB_HOME", shared_home());
    // What bootlab ships, only: a learner's recipes and labs left in the shared home (the lab
    // selftest of *Your own image* makes `my-image` there) must not show in these listings.
    let none = shared_home().join("no-user-folder");
    c.env("BOOTLAB_USER_RECIPES", &none)
        .env("BOOTLAB_USER_LABS", &none);
    c
}

/// Run bootlab with `args` and a given home; returns the output (never panics on failure).
pub fn bootlab_in(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootlab"))
        .env("BOOTLAB_HOME", home)
        .args(args)
        .output()
        .expect("run bootlab")
}

/// A held exclusive lock on a file: heavy tests (VM boots, image builds) take it so that only
/// one runs at a time across all test binaries (2 cores; one VM at a time).
pub struct HeavyLock(std::fs::File);

pub fn heavy_lock() -> HeavyLock {
    use std::os::fd::AsRawFd;
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bootlab-heavy.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .unwrap();
    // SAFETY: flock on a valid fd; released when the file is closed.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock");
    HeavyLock(f)
}

/// Tests that need root-only host tools skip loudly (not silently pass) when not root; CI runs
/// as root so they always run there.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root");
        if std::env::var_os("CI").is_some() {
            panic!("CI must run these tests as root");
        }
        return false;
    }
    true
}

/// A live deployment diff from a version without `/usr/bin/bootlab-hello` to one with it (v1 →
/// v2 or v3 of the Debian recipes): the file shows as added, and both commits' dpkg databases
/// were read (no note saying why packages could not be compared).
pub fn assert_diff_adds_hello(d: &bootlab::deploy::diff::DeploymentDiff) {
    assert!(
        d.files.iter().any(|f| f.path == "/usr/bin/bootlab-hello"
            && f.kind == bootlab::deploy::diff::FileChangeKind::Added),
        "{:#?}",
        d.files
    );
    assert!(d.packages_note.is_none(), "{:?}", d.packages_note);
}
