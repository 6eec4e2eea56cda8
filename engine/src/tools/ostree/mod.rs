//! ostree: repositories (init, commit, pull-local, refs, log) and `ostree admin` on a sysroot.
//! Every call is an `ostree` command run through [`HostCmd`], so a learner sees each one.

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::HostCmd;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub mod objects;

/// A copy being checked ([`Repo::pull_local_checking`]).
pub struct CheckedCopy {
    check: objects::Check,
    src: PathBuf,
    started: std::time::Instant,
}

impl CheckedCopy {
    /// Wait for the check: every object matched, or the first that did not. A damaged object
    /// in the source is a [`DamagedObject`] of the source repo (what the repair acts on); a copy
    /// that differs from a whole source is a plain error, so nothing good is deleted.
    pub async fn finish(self, stage: &str, ev: &Emitter, cancel: &CancellationToken) -> Result<()> {
        let CheckedCopy {
            check,
            src,
            started,
        } = self;
        // A cancel drops the check, which stops it and waits for its threads.
        let result = tokio::select! {
            r = check.finish() => r,
            _ = cancel.cancelled() => return Err(crate::events::Cancelled.into()),
        };
        match result {
            Ok(c) => {
                ev.note(
                    stage,
                    format!(
                        "{} objects ({} MiB) match their checksums (checked in {:.1} s)",
                        c.objects,
                        c.bytes >> 20,
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                let objects::CheckError::Mismatch { kind, expected, .. } = e else {
                    return Err(anyhow::Error::from(e).context("checking the copied objects"));
                };
                let repo = src.clone();
                let source_whole = tokio::task::spawn_blocking(move || {
                    objects::object_matches(&repo, &expected, &kind)
                })
                .await?;
                match source_whole {
                    Ok(true) => Err(anyhow::anyhow!(
                        "the copy on the new disk does not match ({message}), but the object in \
                         {} does: the copy changed on the way (an extended attribute the host \
                         adds to new files, such as a security label, would do that)",
                        src.display()
                    )),
                    _ => Err(DamagedObject { repo: src, message }.into()),
                }
            }
        }
    }
}

/// An OSTree repository on the host.
#[derive(Debug, Clone)]
pub struct Repo {
    pub path: PathBuf,
}

/// Repo modes bootlab uses: `bare` for the host repo and disks (root owns the files), `archive`
/// for the update share (served as plain files to guests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bare,
    Archive,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::Archive => "archive",
        }
    }
}

/// Metadata and subject of a commit.
#[derive(Debug, Clone)]
pub struct CommitSpec<'a> {
    pub branch: &'a str,
    pub tree: &'a Path,
    pub subject: String,
    pub metadata: Vec<(String, String)>,
}

/// One commit of `ostree log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub commit: String,
    pub version: Option<String>,
}

/// An object whose content no longer matches its checksum, found while copying from `repo`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bootlab's OSTree repository {} has a damaged object ({message})",
    repo.display()
)]
pub struct DamagedObject {
    pub repo: PathBuf,
    /// ostree's line naming the object and both checksums.
    pub message: String,
}

/// ostree's "Corrupted … object" line in a failed command's output, if that is why it failed.
fn damaged_object_line(e: &anyhow::Error) -> Option<String> {
    let failed = e.downcast_ref::<crate::tools::cmd::CmdFailed>()?;
    failed
        .tail
        .iter()
        .find(|l| l.contains("Corrupted") && l.contains("object"))
        .map(|l| l.trim().trim_start_matches("error: ").to_string())
}

impl Repo {
    pub fn at(path: impl Into<PathBuf>) -> Repo {
        Repo { path: path.into() }
    }

    /// `ostree --repo=PATH` + args.
    pub fn cmd(&self) -> HostCmd {
        HostCmd::new("ostree").arg(format!("--repo={}", self.path.display()))
    }

    pub fn exists(&self) -> bool {
        self.path.join("config").is_file() && self.path.join("objects").is_dir()
    }

    /// Create the repo unless it exists. Made under a temp name and renamed, so a half-made repo
    /// is never mistaken for one.
    pub async fn ensure(&self, mode: Mode, ev: &Emitter, cancel: &CancellationToken) -> Result<()> {
        if self.exists() {
            return Ok(());
        }
        let parent = self.path.parent().context("repo path has no parent")?;
        std::fs::create_dir_all(parent)?;
        let tmp = tempfile::Builder::new()
            .prefix(".repo-")
            .tempdir_in(parent)?;
        Repo::at(tmp.path())
            .cmd()
            .args(["init", &format!("--mode={}", mode.as_str())])
            .run("ostree", ev, cancel)
            .await?;
        let tmp = tmp.keep();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !self.exists() {
                return Err(e).context(format!("create repo {}", self.path.display()));
            }
        }
        Ok(())
    }

    /// Commit a tree; returns the checksum. The tree is consumed (its files move into the repo
    /// where possible and are deleted): it is a staging copy, and this halves the disk I/O.
    pub async fn commit(
        &self,
        spec: &CommitSpec<'_>,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<String> {
        let mut c = self
            .cmd()
            .args(["commit", "--consume"])
            .arg(format!("--branch={}", spec.branch))
            .arg(format!("--tree=dir={}", spec.tree.display()))
            .arg(format!("--subject={}", spec.subject));
        for (k, v) in &spec.metadata {
            c = c.arg(format!("--add-metadata-string={k}={v}"));
        }
        let out = c.capture().run(stage, ev, cancel).await?;
        let sum = out.stdout.trim().to_string();
        anyhow::ensure!(
            is_checksum(&sum),
            "ostree commit printed {sum:?}, not a checksum"
        );
        Ok(sum)
    }

    /// The commit a ref (or a checksum) resolves to, `None` when it does not.
    pub async fn rev_parse(
        &self,
        refspec: &str,
        cancel: &CancellationToken,
    ) -> Result<Option<String>> {
        if !self.exists() {
            return Ok(None);
        }
        let out = self
            .cmd()
            .args(["rev-parse", refspec])
            .capture()
            .run_unchecked("ostree", &Emitter::null(), cancel)
            .await?;
        Ok(out.status.success().then(|| out.stdout.trim().to_string()))
    }

    /// Whether the commit (not just a ref) is in the repo, whole: a commit marked partial (a
    /// pull cut short, or objects removed by [`Repo::delete_damaged`]) does not count.
    pub async fn has_commit(&self, checksum: &str, cancel: &CancellationToken) -> Result<bool> {
        if !self.exists() || !is_checksum(checksum) {
            return Ok(false);
        }
        if self
            .path
            .join("state")
            .join(format!("{checksum}.commitpartial"))
            .exists()
        {
            return Ok(false);
        }
        let out = self
            .cmd()
            .args(["show", "--print-metadata-key=version", checksum])
            .run_unchecked("ostree", &Emitter::null(), cancel)
            .await?;
        Ok(out.status.success())
    }

    /// The text of `path` in `commit`'s tree, or None when the commit has no such file.
    pub async fn cat(
        &self,
        commit: &str,
        path: &str,
        cancel: &CancellationToken,
    ) -> Result<Option<String>> {
        let out = self
            .cmd()
            .args(["cat", commit, path])
            .capture()
            .run_unchecked("ostree", &Emitter::null(), cancel)
            .await?;
        Ok(out.status.success().then_some(out.stdout))
    }

    /// Copy `refs_or_commits` from `src` (a local repo) into this one, checking every object's
    /// checksum on the way (`--untrusted`): a trusted local pull copies a damaged object as it
    /// is (measured with ostree 2022.7), and a disk made from it would boot the damage silently.
    /// A damaged object in `src` is a [`DamagedObject`] error.
    pub async fn pull_local(
        &self,
        src: &Path,
        refs_or_commits: &[&str],
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let out = self
            .cmd()
            .args(["pull-local", "--untrusted"])
            .arg(src)
            .args(refs_or_commits)
            .run(stage, ev, cancel)
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) => Err(match damaged_object_line(&e) {
                Some(line) => DamagedObject {
                    repo: src.to_path_buf(),
                    message: line,
                }
                .into(),
                None => e,
            }),
        }
    }

    /// Copy `commit` from `src` (a local repo) into this one, which holds nothing else (a new
    /// disk's), as a trusted `pull-local` (the kernel copies the bytes), and start checking every
    /// object of the copy against its name on every core ([`objects::Check`]). The caller goes on
    /// (a disk's deploy) and keeps nothing made from the copy before [`CheckedCopy::finish`]
    /// said yes: a damaged object is the same [`DamagedObject`] `--untrusted` reports, in less
    /// time (see [`objects`]).
    pub async fn pull_local_checking(
        &self,
        src: &Path,
        commit: &str,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<CheckedCopy> {
        let trusted = self
            .cmd()
            .arg("pull-local")
            .arg(src)
            .arg(commit)
            .run(stage, ev, cancel)
            .await;
        if let Err(e) = trusted {
            // A damaged dirtree fails the copy with "Couldn't find file object" (the listing
            // names another file), and `--untrusted` does the same (ostree 2022.7, tested
            // below): the source's metadata objects are checked to say which one is damaged.
            if e.downcast_ref::<crate::events::Cancelled>().is_some() {
                return Err(e);
            }
            let repo = src.to_path_buf();
            let meta = tokio::task::spawn_blocking(move || objects::check_metadata(&repo)).await?;
            return Err(match meta {
                Err(m @ objects::CheckError::Mismatch { .. }) => {
                    anyhow::Error::from(DamagedObject {
                        repo: src.to_path_buf(),
                        message: m.to_string(),
                    })
                    .context(format!("{e:#}"))
                }
                _ => e,
            });
        }
        ev.note(
            stage,
            format!(
                "checking every object copied into {} against its checksum, beside what follows",
                self.path.display()
            ),
        );
        Ok(CheckedCopy {
            check: objects::Check::start(&self.path),
            src: src.to_path_buf(),
            started: std::time::Instant::now(),
        })
    }

    /// Remove the damaged objects of this repo (`ostree fsck --delete`); the commits that
    /// held them are marked partial, so [`Repo::has_commit`] no longer counts them and the next
    /// build commits their tree again (which writes the missing objects back).
    pub async fn delete_damaged(
        &self,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        // fsck exits non-zero when it found (and removed) damage: that is the expected case.
        self.cmd()
            .args(["fsck", "--quiet", "--all", "--delete"])
            .run_unchecked(stage, ev, cancel)
            .await?;
        Ok(())
    }

    /// Point `refspec` (`branch` or `remote:branch`) at `checksum`, whatever it pointed at before.
    pub async fn set_ref(
        &self,
        refspec: &str,
        checksum: &str,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        if self.rev_parse(refspec, cancel).await?.as_deref() == Some(checksum) {
            return Ok(());
        }
        // ostree 2022.7's `refs --create` refuses an existing ref, and has no --force.
        let _ = self
            .cmd()
            .args(["refs", "--delete", refspec])
            .run_unchecked(stage, ev, cancel)
            .await?;
        self.create_ref(refspec, checksum, stage, ev, cancel).await
    }

    /// A ref that does not exist yet (a new repo's): one command, where [`Self::set_ref`] reads
    /// and deletes first.
    pub async fn create_ref(
        &self,
        refspec: &str,
        checksum: &str,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        self.cmd()
            .args(["refs", &format!("--create={refspec}"), checksum])
            .run(stage, ev, cancel)
            .await?;
        Ok(())
    }

    /// `ostree log BRANCH`: newest first.
    pub async fn log(&self, branch: &str, cancel: &CancellationToken) -> Result<Vec<LogEntry>> {
        let out = self
            .cmd()
            .args(["log", branch])
            .capture()
            .run("ostree", &Emitter::null(), cancel)
            .await?;
        Ok(parse_log(&out.stdout))
    }

    /// A metadata string of a commit (`None` when unset).
    pub async fn metadata(
        &self,
        checksum: &str,
        key: &str,
        cancel: &CancellationToken,
    ) -> Result<Option<String>> {
        let out = self
            .cmd()
            .args(["show", &format!("--print-metadata-key={key}"), checksum])
            .capture()
            .run_unchecked("ostree", &Emitter::null(), cancel)
            .await?;
        if !out.status.success() {
            return Ok(None);
        }
        // GVariant text: 'value'
        Ok(Some(out.stdout.trim().trim_matches('\'').to_string()))
    }

    /// Update the summary file (pulls of an archive repo resolve refs through it).
    pub async fn update_summary(
        &self,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<()> {
        self.cmd()
            .args(["summary", "--update"])
            .run(stage, ev, cancel)
            .await?;
        Ok(())
    }
}

/// A 64-hex-digit OSTree checksum.
pub fn is_checksum(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parse `ostree log` output: `commit <sum>` lines, each followed by headers incl. `Version:`.
pub fn parse_log(text: &str) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("commit ") {
            out.push(LogEntry {
                commit: c.trim().to_string(),
                version: None,
            });
        } else if let Some(v) = line.strip_prefix("Version:")
            && let Some(last) = out.last_mut()
        {
            last.version = Some(v.trim().to_string());
        }
    }
    out
}

/// `ostree admin …` on a sysroot mounted at `sysroot`.
pub fn admin(sysroot: &Path) -> HostCmd {
    HostCmd::new("ostree")
        .arg("admin")
        .arg(format!("--sysroot={}", sysroot.display()))
}

/// `ostree admin` subcommand with `--sysroot` after it (the form ostree 2022.7 accepts for all).
pub fn admin_sub(sub: &str, sysroot: &Path) -> HostCmd {
    HostCmd::new("ostree")
        .args(["admin", sub])
        .arg(format!("--sysroot={}", sysroot.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log() {
        let text = "commit 1111111111111111111111111111111111111111111111111111111111111111\n\
                    Parent:  2222222222222222222222222222222222222222222222222222222222222222\n\
                    ContentChecksum:  abc\n\
                    Date:  2026-11-26 02:00:00 +0000\n\
                    Version: v2\n\n    debian-minimal v2\n\n\
                    commit 2222222222222222222222222222222222222222222222222222222222222222\n\
                    Date:  2026-11-26 01:00:00 +0000\n\
                    Version: v1\n\n    debian-minimal v1\n\n";
        let l = parse_log(text);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].version.as_deref(), Some("v2"));
        assert_eq!(l[1].version.as_deref(), Some("v1"));
        assert!(is_checksum(&l[1].commit));
    }

    #[tokio::test]
    async fn commit_and_log_in_a_temp_repo() {
        if which("ostree").is_none() {
            eprintln!("SKIPPED: no ostree");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let repo = Repo::at(t.path().join("repo"));
        let (ev, c) = (Emitter::null(), CancellationToken::new());
        repo.ensure(Mode::Bare, &ev, &c).await.unwrap();
        assert!(repo.exists());
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("usr")).unwrap();
        std::fs::write(tree.join("usr/f"), "x").unwrap();
        let sum = repo
            .commit(
                &CommitSpec {
                    branch: "b/x",
                    tree: &tree,
                    subject: "s".into(),
                    metadata: vec![("version".into(), "v9".into())],
                },
                "t",
                &ev,
                &c,
            )
            .await
            .unwrap();
        assert!(is_checksum(&sum));
        assert_eq!(
            repo.rev_parse("b/x", &c).await.unwrap().as_deref(),
            Some(sum.as_str())
        );
        assert!(repo.has_commit(&sum, &c).await.unwrap());
        assert_eq!(
            repo.metadata(&sum, "version", &c).await.unwrap().as_deref(),
            Some("v9")
        );
        let log = repo.log("b/x", &c).await.unwrap();
        assert_eq!(log[0].version.as_deref(), Some("v9"));
        repo.set_ref("other", &sum, "t", &ev, &c).await.unwrap();
        repo.set_ref("other", &sum, "t", &ev, &c).await.unwrap();
        assert_eq!(
            repo.rev_parse("other", &c).await.unwrap().as_deref(),
            Some(sum.as_str())
        );
    }

    /// A damaged object in the source: the checked copy refuses it by name (a trusted copy took
    /// it silently), the repair removes it, the commit no longer counts, and committing the tree
    /// again writes the object back so the copy succeeds.
    #[tokio::test]
    async fn a_damaged_object_is_refused_removed_and_committed_again() {
        let Some((t, ev, c, src)) = source_repo().await else {
            return;
        };
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let commit_tree = || async {
            // `--consume` takes the tree: commit a copy.
            let copy = t.path().join("copy");
            let _ = std::fs::remove_dir_all(&copy);
            std::fs::create_dir_all(copy.join("usr/bin")).unwrap();
            std::fs::write(copy.join("usr/bin/big"), &big).unwrap();
            let spec = CommitSpec {
                branch: "b/x",
                tree: &copy,
                subject: "s".into(),
                metadata: vec![("version".into(), "v1".into())],
            };
            src.commit(&spec, "t", &ev, &c).await.unwrap()
        };
        let sum = commit_tree().await;
        let object = walk(&src.path.join("objects"))
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "file"))
            .unwrap();
        // Damage it in place (the same inode, as bit rot or a stray write would).
        flip(&object, 500, 0xff);

        let dst = empty_repo(&t, "dst", &ev, &c).await;
        let e = dst
            .pull_local(&src.path, &[&sum], "t", &ev, &c)
            .await
            .unwrap_err();
        let d = e.downcast_ref::<DamagedObject>().expect("a DamagedObject");
        assert!(d.message.contains("checksum expected"), "{d}");
        assert_eq!(d.repo, src.path);
        assert!(src.has_commit(&sum, &c).await.unwrap());

        src.delete_damaged("t", &ev, &c).await.unwrap();
        assert!(!object.exists(), "the damaged object is removed");
        assert!(!src.has_commit(&sum, &c).await.unwrap(), "partial: missing");
        let again = commit_tree().await;
        assert!(src.has_commit(&again, &c).await.unwrap());
        dst.pull_local(&src.path, &[&again], "t", &ev, &c)
            .await
            .unwrap();
    }

    /// bootlab's own check agrees with ostree on every kind of content object a root file system
    /// has (regular, empty, executable, setuid, symlink, xattrs) and on the metadata objects; a
    /// copy of a commit whose object was damaged in the source is refused by name.
    #[tokio::test]
    async fn the_own_check_agrees_with_ostree_and_finds_damage() {
        use std::os::unix::fs::PermissionsExt;
        let Some((t, ev, c, src)) = source_repo().await else {
            return;
        };
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(tree.join("usr/bin/big"), &big).unwrap();
        std::fs::write(tree.join("etc/empty"), "").unwrap();
        std::fs::write(tree.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            tree.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::os::unix::fs::symlink("../usr/bin/tool", tree.join("etc/link")).unwrap();
        // Headers past 255 bytes frame with 2-byte offsets: a long symlink target, a long xattr.
        let long_target = format!("../{}", "d/".repeat(150));
        std::os::unix::fs::symlink(&long_target, tree.join("etc/long-link")).unwrap();
        let tagged =
            std::ffi::CString::new(tree.join("usr/bin/big").as_os_str().as_encoded_bytes())
                .unwrap();
        let long_value = "v".repeat(300);
        let xattr_ok = [
            ("user.zz", "two"),
            ("user.aa", "one"),
            ("user.long", &long_value),
        ]
        .iter()
        .all(|(n, v)| {
            let n = std::ffi::CString::new(*n).unwrap();
            // SAFETY: NUL-terminated path and name, value with its length.
            unsafe {
                libc::setxattr(tagged.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) == 0
            }
        });
        let spec = CommitSpec {
            branch: "b/x",
            tree: &tree,
            subject: "s".into(),
            metadata: vec![],
        };
        let sum = src.commit(&spec, "t", &ev, &c).await.unwrap();
        let all = walk(&src.path.join("objects"));
        let checked = objects::check_repo(&src.path, 2, &Default::default()).unwrap();
        assert_eq!(checked.objects, all.len(), "{all:?}");
        assert!(checked.bytes >= big.len() as u64);
        if xattr_ok {
            let out = std::process::Command::new("ostree")
                .arg(format!("--repo={}", src.path.display()))
                .args(["ls", "-X", &sum, "/usr/bin/big"])
                .output()
                .unwrap();
            let ls = String::from_utf8_lossy(&out.stdout);
            assert!(ls.contains("user.aa"), "the commit kept the xattrs: {ls}");
        } else {
            eprintln!("(no user xattrs here: checked without them)");
        }

        // Damage the big file's object in place; the checking copy names it.
        let object = all
            .iter()
            .find(|p| std::fs::symlink_metadata(p).unwrap().len() == big.len() as u64)
            .unwrap();
        flip(object, 2_000_000, 0xff);
        let dst = empty_repo(&t, "dst", &ev, &c).await;
        let copy = dst
            .pull_local_checking(&src.path, &sum, "t", &ev, &c)
            .await
            .unwrap();
        let e = copy.finish("t", &ev, &c).await.unwrap_err();
        let d = e.downcast_ref::<DamagedObject>().expect("a DamagedObject");
        assert_eq!(d.repo, src.path);
        let name = object.file_name().unwrap().to_string_lossy();
        assert!(
            d.message.contains("checksum expected") && d.message.contains(&name[..20]),
            "{d}"
        );
    }

    /// A damaged directory listing (a `.dirtree`): whether the trusted copy fails on it or copies
    /// it, the checking copy ends in a [`DamagedObject`].
    #[tokio::test]
    async fn a_damaged_dirtree_is_a_damaged_object_too() {
        let Some((t, ev, c, src)) = source_repo().await else {
            return;
        };
        let tree = t.path().join("tree");
        // `--consume` takes the tree: made afresh for each commit.
        let make_tree = || {
            std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
            for i in 0..20 {
                std::fs::write(tree.join(format!("usr/lib/f{i}")), format!("{i}")).unwrap();
            }
        };
        make_tree();
        let spec = CommitSpec {
            branch: "b/x",
            tree: &tree,
            subject: "s".into(),
            metadata: vec![],
        };
        let sum = src.commit(&spec, "t", &ev, &c).await.unwrap();
        // The biggest dirtree lists usr/lib's twenty files.
        let dirtree = walk(&src.path.join("objects"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "dirtree"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap();
        flip(&dirtree, 3, 0x20);
        let dst = empty_repo(&t, "dst", &ev, &c).await;
        let e = match dst.pull_local_checking(&src.path, &sum, "t", &ev, &c).await {
            Ok(copy) => copy.finish("t", &ev, &c).await.unwrap_err(),
            Err(e) => e,
        };
        let d = e
            .downcast_ref::<DamagedObject>()
            .unwrap_or_else(|| panic!("not a DamagedObject: {e:#}"));
        assert!(d.message.contains("dirtree"), "{d}");
        // The repair bootlab runs then: the damaged listing goes, the tree is committed again.
        src.delete_damaged("t", &ev, &c).await.unwrap();
        assert!(!dirtree.exists(), "the damaged dirtree is removed");
        make_tree();
        let again = src.commit(&spec, "t", &ev, &c).await.unwrap();
        let dst = empty_repo(&t, "dst2", &ev, &c).await;
        let copy = dst
            .pull_local_checking(&src.path, &again, "t", &ev, &c)
            .await
            .unwrap();
        copy.finish("t", &ev, &c).await.unwrap();
    }

    /// A temp folder with a bare repo `src` in it, or `None` (and a note) without ostree.
    async fn source_repo() -> Option<(tempfile::TempDir, Emitter, CancellationToken, Repo)> {
        if which("ostree").is_none() {
            eprintln!("SKIPPED: no ostree");
            return None;
        }
        let t = tempfile::tempdir().unwrap();
        let (ev, c) = (Emitter::null(), CancellationToken::new());
        let src = empty_repo(&t, "src", &ev, &c).await;
        Some((t, ev, c, src))
    }

    /// An empty bare repo `name` in `t`.
    async fn empty_repo(
        t: &tempfile::TempDir,
        name: &str,
        ev: &Emitter,
        c: &CancellationToken,
    ) -> Repo {
        let r = Repo::at(t.path().join(name));
        r.ensure(Mode::Bare, ev, c).await.unwrap();
        r
    }

    /// Damage `file` in place (the same inode, as bit rot or a stray write would): the byte at
    /// `at` XOR `mask`.
    fn flip(file: &Path, at: usize, mask: u8) {
        let mut bytes = std::fs::read(file).unwrap();
        bytes[at] ^= mask;
        std::fs::write(file, &bytes).unwrap();
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    fn which(p: &str) -> Option<PathBuf> {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(p))
            .find(|p| p.is_file())
    }
}
