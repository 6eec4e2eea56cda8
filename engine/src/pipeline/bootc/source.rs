//! Where bootc's source comes from: the pinned release and its two git dependencies, either from
//! a local folder of archives ([`SOURCE_ENV`], e.g. `../shared/vendor/bootc`) or downloaded from
//! upstream. Local archives are checked against the pinned checksums; the checksums of what is
//! used key the cache of the built binary.

use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::tools::fetch;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The bootc release bootlab builds.
pub const BOOTC_VERSION: &str = "1.16.9";
/// A folder holding the archives of [`ARCHIVES`] (names as listed there).
pub const SOURCE_ENV: &str = "BOOTLAB_BOOTC_SOURCE";

/// One pinned source archive.
#[derive(Debug, Clone, Copy)]
pub struct Archive {
    /// File name in a local source folder.
    pub file: &'static str,
    /// sha256 of that file (the copies in ../shared/vendor/bootc).
    pub sha256: &'static str,
    /// Upstream download of the same revision.
    pub url: &'static str,
    /// For git dependencies: the git URL bootc's Cargo.lock names, and the crates bootc uses from
    /// it directly (their paths inside the archive), which are patched to the unpacked folder.
    pub git: Option<(&'static str, &'static [(&'static str, &'static str)])>,
}

pub const ARCHIVES: [Archive; 3] = [
    Archive {
        file: "bootc-1.16.9.tar.gz",
        sha256: "3ca45a1f56c6d39ecc10af3383010228a8b1694e8077ba3443e56afc506ed934",
        url: "https://github.com/bootc-dev/bootc/archive/refs/tags/v1.16.9.tar.gz",
        git: None,
    },
    Archive {
        file: "composefs-rs-0fbc853.tar.gz",
        sha256: "5d8676da11d9a640d6a431a9e1f98cd65e60696d219a5b9c927a87504d549e4c",
        url: "https://github.com/composefs/composefs-rs/archive/0fbc853325ff92dbb842e715611bed7ddf9fe169.tar.gz",
        git: Some((
            "https://github.com/composefs/composefs-rs",
            &[("composefs-ctl", "crates/composefs-ctl")],
        )),
    },
    Archive {
        file: "bcvk-d0433d9.tar.gz",
        sha256: "32fd897bedd52d2c00c16702b04253c49376daf6db285881d5895f5ef04841ba",
        url: "https://github.com/bootc-dev/bcvk/archive/d0433d9efec73836c447ab511a365421dd90da82.tar.gz",
        git: Some((
            "https://github.com/bootc-dev/bcvk",
            &[("bcvk-qemu", "crates/bcvk-qemu")],
        )),
    },
];

/// The archives bootlab will build from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// Paths of the archives, in the order of [`ARCHIVES`].
    pub archives: Vec<PathBuf>,
    /// Their sha256, same order.
    pub sha256: Vec<String>,
    /// "local folder X" or "downloaded from upstream".
    pub origin: String,
}

impl Source {
    /// The source checksum: one hash over the archives' checksums.
    pub fn checksum(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.sha256 {
            h.update(s);
            h.update("\n");
        }
        hex::encode(h.finalize())
    }
}

pub fn sha256_file(p: &Path) -> Result<String> {
    let mut f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("read {}", p.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// Check a local folder of archives against the pinned checksums.
pub fn from_folder(dir: &Path) -> Result<Source> {
    if !dir.is_dir() {
        bail!(
            "{SOURCE_ENV}={} is not a folder (it should hold {})",
            dir.display(),
            names()
        );
    }
    let mut src = Source {
        archives: vec![],
        sha256: vec![],
        origin: format!("local folder {}", dir.display()),
    };
    for a in ARCHIVES {
        let p = dir.join(a.file);
        if !p.exists() {
            bail!(
                "{} is missing from {SOURCE_ENV}={} (bootc {BOOTC_VERSION} needs {})",
                a.file,
                dir.display(),
                names()
            );
        }
        let sum = sha256_file(&p)?;
        if sum != a.sha256 {
            bail!(
                "{}: sha256 {sum} is not the pinned {} (a different or damaged archive)",
                p.display(),
                a.sha256
            );
        }
        src.archives.push(p);
        src.sha256.push(sum);
    }
    Ok(src)
}

fn names() -> String {
    ARCHIVES.map(|a| a.file).join(", ")
}

/// Find the source: [`SOURCE_ENV`] when set; else archives downloaded earlier into the cache;
/// else a download from upstream.
pub async fn locate(paths: &Paths, ev: &Emitter, cancel: &CancellationToken) -> Result<Source> {
    if let Some(dir) = std::env::var_os(SOURCE_ENV).filter(|v| !v.is_empty()) {
        let s = from_folder(Path::new(&dir))?;
        ev.note(
            "bootc",
            format!("bootc {BOOTC_VERSION} source: {}", s.origin),
        );
        return Ok(s);
    }
    let dir = paths.cache.join("bootc/downloads");
    let mut src = Source {
        archives: vec![],
        sha256: vec![],
        origin: "downloaded from upstream (github.com)".into(),
    };
    for a in ARCHIVES {
        let p = dir.join(a.file);
        if !p.exists() {
            ev.note("bootc", format!("downloading {}", a.url));
            fetch::download(a.url, &p, "bootc", ev, cancel)
                .await
                .with_context(|| {
                    format!(
                        "no bootc source: {SOURCE_ENV} is not set and the download failed (offline?). Set {SOURCE_ENV} to a folder holding {}",
                        names()
                    )
                })?;
        }
        src.sha256.push(sha256_file(&p)?);
        src.archives.push(p);
    }
    ev.note(
        "bootc",
        format!("bootc {BOOTC_VERSION} source: {}", src.origin),
    );
    Ok(src)
}

/// Unpack the archives into `into` and point bootc's build at the unpacked git dependencies
/// instead of GitHub: a `[patch]` in the source's `.cargo/config.toml`, and the Cargo.lock's git
/// `source` lines of those crates dropped (a patched crate's lock entry has none), so that
/// `cargo --locked` accepts it. Every other lock entry stays exactly as pinned. Returns bootc's
/// source folder.
pub async fn unpack(
    src: &Source,
    into: &Path,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    let mut folders = vec![];
    for p in &src.archives {
        folders.push(fetch::unpack_one_folder(p, into, "bootc", ev, cancel).await?);
    }
    let bootc = folders[0].clone();
    let mut config = String::from(
        "# Written by bootlab: bootc's git dependencies come from the unpacked archives.\n",
    );
    let mut git_urls = vec![];
    for (a, folder) in ARCHIVES.iter().zip(&folders) {
        let Some((url, crates)) = a.git else { continue };
        git_urls.push(url);
        config.push_str(&format!("[patch.\"{url}\"]\n"));
        for (name, rel) in crates {
            let p = folder.join(rel);
            if !p.join("Cargo.toml").exists() {
                bail!("{} has no {rel}/Cargo.toml", a.file);
            }
            config.push_str(&format!("{name} = {{ path = \"{}\" }}\n", p.display()));
        }
    }
    std::fs::create_dir_all(bootc.join(".cargo"))?;
    std::fs::write(bootc.join(".cargo/config.toml"), config)?;
    let lock = bootc.join("Cargo.lock");
    let text =
        std::fs::read_to_string(&lock).with_context(|| format!("read {}", lock.display()))?;
    std::fs::write(&lock, lock_without_git_sources(&text, &git_urls))?;
    Ok(bootc)
}

/// Cargo.lock text with the `source = "git+<url>?…"` lines of the given git URLs removed.
pub fn lock_without_git_sources(lock: &str, git_urls: &[&str]) -> String {
    let mut out = String::with_capacity(lock.len());
    for line in lock.split_inclusive('\n') {
        let drop = git_urls.iter().any(|u| {
            line.starts_with(&format!("source = \"git+{u}?"))
                || line.starts_with(&format!("source = \"git+{u}#"))
        });
        if !drop {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_rewrite_drops_only_patched_git_sources() {
        let lock = "[[package]]\nname = \"composefs\"\nversion = \"0.7.0\"\nsource = \"git+https://github.com/composefs/composefs-rs?rev=0fbc#0fbc\"\n\n[[package]]\nname = \"anyhow\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"x\"\nsource = \"git+https://github.com/other/x?rev=1#1\"\n";
        let out = lock_without_git_sources(lock, &["https://github.com/composefs/composefs-rs"]);
        assert!(!out.contains("composefs-rs"));
        assert!(out.contains("registry+https://github.com/rust-lang/crates.io-index"));
        assert!(out.contains("git+https://github.com/other/x"));
        assert_eq!(out.lines().count(), lock.lines().count() - 1);
    }

    #[test]
    fn local_folder_errors_name_the_file() {
        let t = tempfile::tempdir().unwrap();
        let e = from_folder(t.path()).unwrap_err().to_string();
        assert!(e.contains("bootc-1.16.9.tar.gz is missing"), "{e}");
        std::fs::write(t.path().join("bootc-1.16.9.tar.gz"), "not it").unwrap();
        let e = from_folder(t.path()).unwrap_err().to_string();
        assert!(e.contains("is not the pinned"), "{e}");
        let e = from_folder(&t.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("is not a folder"), "{e}");
    }

    #[test]
    fn checksum_depends_on_every_archive() {
        let a = Source {
            archives: vec![],
            sha256: vec!["1".into(), "2".into()],
            origin: String::new(),
        };
        let mut b = a.clone();
        b.sha256[1] = "3".into();
        assert_ne!(a.checksum(), b.checksum());
    }
}
