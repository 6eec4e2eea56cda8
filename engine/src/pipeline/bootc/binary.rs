//! bootc built once per source checksum and kept in bootlab's cache.
//!
//! Stages: `bootc-buildroot` (a trixie root with testing's libostree, imported into podman as
//! [`BUILDROOT_TAG`], reused while its package list is the same), `bootc` (unpack the pinned
//! archives, `cargo fetch --locked` on the host, then `cargo build --release --locked --offline
//! -p bootc` in the build root with no network and the host's toolchain mounted read-only).
//!
//! Cache: `<cache>/bootc/<key>/` holds `root/` (bootc laid out as upstream's `make install
//! install-ostree-hooks` does: binary, units, generator, ostree hooks) and `build.json`. The key
//! is the source checksum plus the build script. It is written under a temp name and renamed when
//! complete. A failed build keeps its work folder (`work-<key>`), so the next try resumes where
//! cargo stopped.

use super::source::{self, BOOTC_VERSION, Source};
use super::trixie::{self, RootSpec};
use crate::events::{CancellationToken, Emitter, Event, StageTimer, StageTiming};
use crate::paths::Paths;
use crate::pipeline::{GIB, HostLock, check_free_space};
use crate::tools::cmd::CmdFailed;
use crate::tools::podman::Podman;
use crate::tools::rust;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// podman tag of the build root.
pub const BUILDROOT_TAG: &str = "localhost/bootlab/bootc-buildroot:trixie";
pub const KEY_LABEL: &str = "bootlab.bootc-buildroot-key";
/// Packages of the build root from trixie (compiler, pkg-config and the -dev packages of the
/// C libraries bootc links: glib/gio, openssl, zstd, zlib).
pub const BUILD_PACKAGES: &[&str] = &[
    "gcc",
    "libc6-dev",
    "make",
    "pkg-config",
    "libssl-dev",
    "libglib2.0-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// Runs in the build container: compile, then lay out.
pub const BUILD_SCRIPT: &str = include_str!("build-bootc.sh");
/// bootc 1.16.9's `rust-version`.
pub const MIN_RUST: (u32, u32) = (1, 85);

/// A bootc ready to be copied into an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootcBuild {
    pub version: String,
    /// Cache key (source checksum + build script).
    pub key: String,
    /// The laid-out tree (`usr/bin/bootc`, …) to copy into an image's `/`.
    pub root: PathBuf,
    pub record: BuildRecord,
    pub cached: bool,
    pub timings: Vec<StageTiming>,
}

impl BootcBuild {
    pub fn binary(&self) -> PathBuf {
        self.root.join("usr/bin/bootc")
    }
}

/// What `build.json` says about a cached build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub version: String,
    pub source_checksum: String,
    pub source_origin: String,
    pub archives_sha256: Vec<String>,
    /// `bootc --version` of the result.
    pub bootc_version: String,
    pub rustc: String,
    pub built_at: String,
    /// Seconds the cold build took (build root excluded).
    pub cold_secs: f64,
}

pub fn cache_key(src: &Source) -> String {
    let mut h = Sha256::new();
    h.update(src.checksum());
    h.update("\0");
    h.update(BUILD_SCRIPT);
    hex::encode(h.finalize())[..16].to_string()
}

pub fn buildroot_key() -> String {
    let mut h = Sha256::new();
    h.update(trixie::SUITE);
    h.update("\0");
    h.update(BUILD_PACKAGES.join(","));
    h.update("\0");
    h.update(trixie::TESTING_DEV.join(","));
    h.update("\0");
    h.update(trixie::TESTING_HOOK);
    hex::encode(h.finalize())[..16].to_string()
}

fn cache_dir(paths: &Paths) -> PathBuf {
    paths.cache.join("bootc")
}

/// The cached build for `key`, when complete.
pub fn cached(paths: &Paths, key: &str) -> Option<(PathBuf, BuildRecord)> {
    let dir = cache_dir(paths).join(key);
    let rec: BuildRecord =
        serde_json::from_str(&std::fs::read_to_string(dir.join("build.json")).ok()?).ok()?;
    dir.join("root/usr/bin/bootc")
        .is_file()
        .then(|| (dir.join("root"), rec))
}

/// The build root image, made once (mmdebstrap, ~1 min) and reused while its key is the same.
pub async fn ensure_buildroot(
    paths: &Paths,
    podman: &Podman,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<StageTiming> {
    let timer = StageTimer::start(ev, "bootc-buildroot");
    let key = buildroot_key();
    let _lock = HostLock::acquire("bootc-buildroot", ev, cancel).await?;
    if podman
        .image_label(BUILDROOT_TAG, KEY_LABEL, cancel)
        .await?
        .as_deref()
        == Some(&key)
    {
        ev.note(
            "bootc-buildroot",
            format!("reusing {BUILDROOT_TAG} (key {key})"),
        );
        return Ok(timer.finish(true));
    }
    let dir = cache_dir(paths);
    std::fs::create_dir_all(&dir)?;
    check_free_space(&dir, 2 * GIB, "bootc's build root")?;
    let work = tempfile::Builder::new()
        .prefix(".buildroot-")
        .tempdir_in(&dir)?;
    let tar = work.path().join("rootfs.tar");
    let spec = RootSpec {
        include: BUILD_PACKAGES,
        testing: trixie::TESTING_DEV,
        hooks: vec![],
    };
    trixie::make_rootfs(&spec, work.path(), &tar, "bootc-buildroot", ev, cancel).await?;
    podman
        .import(
            &tar,
            BUILDROOT_TAG,
            &[
                "CMD [\"/bin/bash\"]".to_string(),
                format!("LABEL {KEY_LABEL}={key}"),
            ],
            "bootc-buildroot",
            ev,
            cancel,
        )
        .await
        .context("podman could not import bootc's build root")?;
    Ok(timer.finish(false))
}

/// bootc, from the cache or built now (see the module docs).
pub async fn ensure_bootc(
    paths: &Paths,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<BootcBuild> {
    let src = source::locate(paths, ev, cancel).await?;
    let key = cache_key(&src);
    if let Some((root, record)) = cached(paths, &key) {
        let t = StageTimer::start(ev, "bootc");
        ev.note(
            "bootc",
            format!(
                "reusing bootc {BOOTC_VERSION} built {} (key {key}, cold build took {:.0} s)",
                record.built_at, record.cold_secs
            ),
        );
        return Ok(BootcBuild {
            version: BOOTC_VERSION.into(),
            key,
            root,
            record,
            cached: true,
            timings: vec![t.finish(true)],
        });
    }
    // One build of bootc at a time on this host: it takes both cores for minutes.
    let _lock = HostLock::acquire("bootc-build", ev, cancel).await?;
    if let Some((root, record)) = cached(paths, &key) {
        // Another bootlab finished it while this one waited.
        return Ok(BootcBuild {
            version: BOOTC_VERSION.into(),
            key,
            root,
            record,
            cached: true,
            timings: vec![],
        });
    }
    let tc = rust::probe(MIN_RUST, ev).await?;
    let podman = Podman::probe(paths, ev, cancel).await?;
    // Under the build lock no other build runs: a build container still there belongs to a
    // bootlab that was killed, and would compete for both cores with this one.
    podman.reap_orphans("bootc", ev).await?;
    let mut timings = vec![ensure_buildroot(paths, &podman, ev, cancel).await?];

    let timer = StageTimer::start(ev, "bootc");
    let started = std::time::Instant::now();
    let dir = cache_dir(paths);
    std::fs::create_dir_all(&dir)?;
    // Sources and crates (~0.6 GB), cargo's target folder (~3 GB at its peak).
    check_free_space(&dir, 5 * GIB, "building bootc")?;
    let work = dir.join(format!("work-{key}"));
    let src_dir = work.join("src");
    let bootc_dir = match find_unpacked(&src_dir) {
        Some(d) => {
            ev.note(
                "bootc",
                format!("resuming the earlier build in {}", work.display()),
            );
            d
        }
        None => {
            let _ = std::fs::remove_dir_all(&src_dir);
            source::unpack(&src, &src_dir, ev, cancel).await?
        }
    };
    let cargo_home = dir.join("cargo-home");
    std::fs::create_dir_all(&cargo_home)?;
    rust::fetch_locked(&tc, &cargo_home, &bootc_dir, "bootc", ev, cancel).await?;

    let out = work.join("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let script = work.join("build-bootc.sh");
    std::fs::write(&script, BUILD_SCRIPT)?;
    let log = work.join("build.log");
    let total = count_lock_packages(&bootc_dir.join("Cargo.lock"));
    ev.note(
        "bootc",
        format!(
            "compiling bootc {BOOTC_VERSION} ({total} locked crates) with {}: 5–8 min on 2 cores, once per source",
            tc.version
        ),
    );
    let container = format!("bootlab-bootc-build-{}", std::process::id());
    let sysroot = tc.sysroot.display().to_string();
    // The same absolute paths inside as outside: the [patch] paths and CARGO_HOME stay valid.
    let bind = |p: &Path, ro: bool| {
        let p = p.display().to_string();
        format!("{p}:{p}{}", if ro { ":ro" } else { "" })
    };
    let cmd = podman
        .run_rm_cmd(&container)
        .arg("-v")
        .arg(bind(&tc.sysroot, true))
        .arg("-v")
        .arg(bind(&work, false))
        .arg("-v")
        .arg(bind(&cargo_home, false))
        .args([
            "-e",
            &format!("PATH={sysroot}/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ])
        .args(["-e", &format!("CARGO_HOME={}", cargo_home.display())])
        .args(["-e", "CARGO_TERM_COLOR=never"])
        .args(["-e", "CARGO_NET_OFFLINE=true"])
        .arg(BUILDROOT_TAG)
        .arg("bash")
        .arg(&script)
        .arg(&bootc_dir)
        .arg(out.join("root"))
        .arg(&log);

    // Relay: each `Compiling x` line is a Progress event.
    let (relay, mut rx) = Emitter::channel();
    let forward = {
        let ev = ev.clone();
        tokio::spawn(async move {
            let mut done = 0;
            while let Some(s) = rx.recv().await {
                if let Event::Log { line, .. } = &s.event
                    && let Some(krate) = line.trim_start().strip_prefix("Compiling ")
                {
                    done += 1;
                    ev.emit(Event::Progress {
                        stage: "bootc".into(),
                        done,
                        total: total.max(done),
                        label: format!("Compiling {krate}"),
                    });
                }
                ev.emit(s.event);
            }
        })
    };
    let result = cmd.run("bootc", &relay, cancel).await;
    drop(relay);
    let _ = forward.await;
    if let Err(e) = result {
        // A cancelled client leaves the container running: it is ours, remove it.
        podman
            .remove_left_behind(&container, "bootc", &Emitter::null())
            .await;
        if let Some(f) = e.downcast_ref::<CmdFailed>() {
            bail!(
                "compiling bootc {BOOTC_VERSION} failed ({}); last lines of the build log:\n  {}\nfull log: {} (the next try resumes from {})",
                f.status,
                f.tail.join("\n  "),
                log.display(),
                work.display()
            );
        }
        return Err(e);
    }
    // Written by the build script: the binary links testing's libostree, so it does not run on
    // every host.
    let bootc_version = std::fs::read_to_string(out.join("bootc-version"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let record = BuildRecord {
        version: BOOTC_VERSION.into(),
        source_checksum: src.checksum(),
        source_origin: src.origin.clone(),
        archives_sha256: src.sha256.clone(),
        bootc_version,
        rustc: tc.version.clone(),
        built_at: chrono::Utc::now().to_rfc3339(),
        cold_secs: started.elapsed().as_secs_f64(),
    };
    std::fs::write(
        out.join("build.json"),
        serde_json::to_string_pretty(&record)?,
    )?;
    let _ = std::fs::copy(&log, out.join("build.log"));
    let dest = dir.join(&key);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&out, &dest)
        .with_context(|| format!("move the built bootc to {}", dest.display()))?;
    // The target folder is gigabytes; the result is in the cache now.
    let _ = std::fs::remove_dir_all(&work);
    timings.push(timer.finish(false));
    Ok(BootcBuild {
        version: BOOTC_VERSION.into(),
        key,
        root: dest.join("root"),
        record,
        cached: false,
        timings,
    })
}

/// bootc's folder in an earlier, unfinished work folder (unpacked and patched).
fn find_unpacked(src_dir: &Path) -> Option<PathBuf> {
    let d = src_dir.join(format!("bootc-{BOOTC_VERSION}"));
    d.join(".cargo/config.toml").is_file().then_some(d)
}

fn count_lock_packages(lock: &Path) -> u64 {
    std::fs::read_to_string(lock)
        .map(|t| t.lines().filter(|l| *l == "[[package]]").count() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_and_stable() {
        let s = Source {
            archives: vec![],
            sha256: vec!["a".into()],
            origin: String::new(),
        };
        assert_eq!(cache_key(&s), cache_key(&s));
        assert_eq!(cache_key(&s).len(), 16);
        assert_eq!(buildroot_key().len(), 16);
    }

    #[test]
    fn build_script_builds_locked_offline() {
        assert!(BUILD_SCRIPT.contains("cargo build --release --locked --offline -p bootc"));
        assert!(BUILD_SCRIPT.contains("libexec/libostree/ext"));
    }

    #[test]
    fn an_incomplete_cache_entry_is_not_used() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths::under(t.path());
        let d = paths.cache.join("bootc/k/root/usr/bin");
        std::fs::create_dir_all(&d).unwrap();
        assert!(cached(&paths, "k").is_none(), "no build.json yet");
        let rec = BuildRecord {
            version: "1".into(),
            source_checksum: "c".into(),
            source_origin: "o".into(),
            archives_sha256: vec![],
            bootc_version: "bootc 1".into(),
            rustc: "r".into(),
            built_at: "now".into(),
            cold_secs: 1.0,
        };
        std::fs::write(
            paths.cache.join("bootc/k/build.json"),
            serde_json::to_string(&rec).unwrap(),
        )
        .unwrap();
        assert!(cached(&paths, "k").is_none(), "no binary yet");
        std::fs::write(d.join("bootc"), "x").unwrap();
        assert_eq!(cached(&paths, "k").unwrap().1, rec);
    }
}
