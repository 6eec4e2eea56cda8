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
