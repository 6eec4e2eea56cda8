//! What changed between two deployments: files (`ostree diff A B`) and packages, asked of the
//! guest. One implementation for every face: the TUI's diff panel, `bootlab diff`, labs.
//!
//! Packages come from the dpkg database each commit carries (Debian guests of both families),
//! or from `rpm-ostree db diff` on Fedora/CentOS bootc images, whichever the commit has.

use super::{Deployment, HostStatus};
use crate::drill::ops::{ExecOutput, GuestOps};
use crate::events::{Emitter, Event};
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;

/// Where a Debian commit keeps its dpkg database: the offline family moves the image's /var
/// into this seed; a bootc image keeps /var/lib as built (ostree-container stores it in the
/// commit). The first one the commit has wins.
pub const DPKG_STATUS_PATHS: &[&str] = &[
    "/usr/share/bootlab/var-seed/lib/dpkg/status",
    "/var/lib/dpkg/status",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileChangeKind {
    Added,
    Modified,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub kind: FileChangeKind,
    pub path: String,
}

impl std::fmt::Display for FileChange {
    /// The letters `ostree diff` prints: A, M, D.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.kind {
            FileChangeKind::Added => 'A',
            FileChangeKind::Modified => 'M',
            FileChangeKind::Removed => 'D',
        };
        write!(f, "{k}    {}", self.path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum PackageChange {
    Added {
        name: String,
        version: String,
    },
    Removed {
        name: String,
        version: String,
    },
    Changed {
        name: String,
        from: String,
        to: String,
    },
    /// A line of `rpm-ostree db diff`, kept as printed.
    Other {
        line: String,
    },
}

impl std::fmt::Display for PackageChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackageChange::Added { name, version } => write!(f, "+ {name} {version}"),
            PackageChange::Removed { name, version } => write!(f, "- {name} {version}"),
            PackageChange::Changed { name, from, to } => write!(f, "~ {name} {from} → {to}"),
            PackageChange::Other { line } => f.write_str(line),
        }
    }
}

/// Files and packages from deployment (commit) `a` to `b`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentDiff {
    pub a: String,
    pub b: String,
    pub files: Vec<FileChange>,
    pub packages: Vec<PackageChange>,
    /// Why the package list is missing or partial, when it is.
    pub packages_note: Option<String>,
    /// The two deployments' composefs digests.
    pub composefs: ComposefsDiff,
}

/// The composefs digests of both sides (`None`: that deployment has no composefs image, or it
/// could not be read). Equal digests mean byte-identical root trees, metadata included.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ComposefsDiff {
    pub a: Option<String>,
    pub b: Option<String>,
}

impl ComposefsDiff {
    /// `Some(true)` when both digests are known and differ, `None` when one is unknown.
    pub fn differ(&self) -> Option<bool> {
        match (&self.a, &self.b) {
            (Some(a), Some(b)) => Some(a != b),
            _ => None,
        }
    }

    /// One line for people.
    pub fn line(&self) -> String {
        use super::composefs::short_digest;
        let show = |d: &Option<String>| d.as_deref().map(short_digest).unwrap_or("none".into());
        match self.differ() {
            Some(true) => format!(
                "composefs digests differ: {} → {}",
                show(&self.a),
                show(&self.b)
            ),
            Some(false) => format!("composefs digests equal: {}", show(&self.a)),
            None => format!(
                "composefs digests: {} → {} (not comparable)",
                show(&self.a),
                show(&self.b)
            ),
        }
    }
}

impl DeploymentDiff {
    pub fn file_lines(&self) -> Vec<String> {
        self.files.iter().map(ToString::to_string).collect()
    }

    /// Package lines, with the note (in parentheses) when there is one.
    pub fn package_lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self.packages.iter().map(ToString::to_string).collect();
        if let Some(n) = &self.packages_note {
            v.push(format!("({n})"));
        }
        v
    }
}

async fn run<G: GuestOps>(guest: &mut G, ev: &Emitter, argv: &[&str]) -> Result<ExecOutput> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    ev.emit(Event::Command {
        stage: "diff".into(),
        argv: argv.clone(),
    });
    guest.exec(&argv).await
}

/// Ask the guest what changed from commit `a` to commit `b` (both in its repository).
pub async fn between<G: GuestOps>(
    guest: &mut G,
    ev: &Emitter,
    a: &str,
    b: &str,
) -> Result<DeploymentDiff> {
    let files = run(guest, ev, &["ostree", "diff", a, b]).await?;
    if !files.success() {
        bail!(
            "`ostree diff {a} {b}` failed in the guest (exit {}): {}",
            files.exit,
            files.stderr.trim()
        );
    }
    let files = parse_ostree_diff(&files.stdout);

    let mut dbs = [None, None];
    for (slot, c) in dbs.iter_mut().zip([a, b]) {
        for p in DPKG_STATUS_PATHS {
            let o = run(guest, ev, &["ostree", "cat", c, p]).await?;
            if o.success() {
                *slot = Some(o.stdout);
                break;
            }
        }
    }
    let (packages, packages_note) = match dbs {
        [Some(x), Some(y)] => (package_diff(&dpkg_packages(&x), &dpkg_packages(&y)), None),
        [None, None] => {
            // Not Debian: rpm-based bootc images answer `rpm-ostree db diff`.
            let o = run(guest, ev, &["rpm-ostree", "db", "diff", a, b]).await?;
            if o.success() {
                let lines = o
                    .stdout
                    .lines()
                    .map(|l| PackageChange::Other {
                        line: l.trim_end().to_string(),
                    })
                    .collect();
                (lines, None)
            } else {
                (
                    vec![],
                    Some("no dpkg database in either commit and no rpm-ostree in the guest".into()),
                )
            }
        }
        _ => (
            vec![],
            Some("only one of the two commits has a dpkg database".into()),
        ),
    };
    let composefs = ComposefsDiff {
        a: composefs_digest(guest, ev, a).await,
        b: composefs_digest(guest, ev, b).await,
    };
    Ok(DeploymentDiff {
        a: a.to_string(),
        b: b.to_string(),
        files,
        packages,
        packages_note,
        composefs,
    })
}

/// The composefs digest of the first deployment of `commit` (any stateroot, any serial): the
/// same commit always has the same image. `None` when there is none; never an error, because
/// the file and package diff stand on their own.
async fn composefs_digest<G: GuestOps>(
    guest: &mut G,
    ev: &Emitter,
    commit: &str,
) -> Option<String> {
    let find = r#"for d in /sysroot/ostree/deploy/*/deploy/"$1".*; do [ -d "$d" ] && { echo "$d"; exit 0; }; done; exit 1"#;
    let dir = run(guest, ev, &["sh", "-c", find, "sh", commit])
        .await
        .ok()?;
    let dir = dir.success().then(|| dir.stdout.trim().to_string())?;
    super::composefs::digest_of(guest, commit, &dir)
        .await
        .ok()
        .and_then(|(d, _, _)| d)
}

/// The two commits to compare, from `a`/`b` selectors against the live deployments: an index in
/// boot order (`0`, `1`) or a checksum prefix. Without `a`, the booted deployment; without `b`,
/// the first other one (what boots next, or the rollback).
pub fn pick(status: &HostStatus, a: Option<&str>, b: Option<&str>) -> Result<(String, String)> {
    let ds = &status.deployments;
    let find = |sel: &str| -> Result<&Deployment> {
        if let Ok(i) = sel.parse::<usize>()
            && i < ds.len()
        {
            return Ok(&ds[i]);
        }
        let hits: Vec<&Deployment> = ds.iter().filter(|d| d.checksum.starts_with(sel)).collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] => bail!(
                "no deployment {sel:?}: give an index 0..{} in boot order or a checksum prefix",
                ds.len().saturating_sub(1)
            ),
            _ => bail!(
                "{sel:?} matches {} deployments: give more of the checksum",
                hits.len()
            ),
        }
    };
    let a = match a {
        Some(s) => find(s)?,
        None => ds
            .iter()
            .find(|d| d.booted)
            .ok_or_else(|| anyhow::anyhow!("the guest reports no booted deployment"))?,
    };
    let b = match b {
        Some(s) => find(s)?,
        None => ds.iter().find(|d| d.index != a.index).ok_or_else(|| {
            anyhow::anyhow!(
                "only one deployment: upgrade or switch first, then there are two to compare"
            )
        })?,
    };
    Ok((a.checksum.clone(), b.checksum.clone()))
}

/// `ostree diff` prints one `X    /path` per line (A added, M modified, D deleted).
pub fn parse_ostree_diff(out: &str) -> Vec<FileChange> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim_end();
            let (k, rest) = l.split_at_checked(1)?;
            let kind = match k {
                "A" => FileChangeKind::Added,
                "M" => FileChangeKind::Modified,
                "D" => FileChangeKind::Removed,
                _ => return None,
            };
            let path = rest.trim_start();
            path.starts_with('/').then(|| FileChange {
                kind,
                path: path.to_string(),
            })
        })
        .collect()
}

/// `package → version` from a dpkg status file (installed packages only).
pub fn dpkg_packages(status: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for para in status.split("\n\n") {
        let field = |k: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        if let (Some(p), Some(v)) = (field("Package:"), field("Version:")) {
            let installed = field("Status:").is_none_or(|s| s.ends_with("installed"));
            if installed {
                out.insert(p, v);
            }
        }
    }
    out
}

/// Added, changed, then removed packages from `a` to `b`.
pub fn package_diff(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) -> Vec<PackageChange> {
    let mut out = vec![];
    for (p, v) in b {
        match a.get(p) {
            None => out.push(PackageChange::Added {
                name: p.clone(),
                version: v.clone(),
            }),
            Some(old) if old != v => out.push(PackageChange::Changed {
                name: p.clone(),
                from: old.clone(),
                to: v.clone(),
            }),
            _ => {}
        }
    }
    for (p, v) in a {
        if !b.contains_key(p) {
            out.push(PackageChange::Removed {
                name: p.clone(),
                version: v.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ostree_diff_lines_become_typed_changes() {
        let out =
            "A    /usr/bin/bootlab-hello\nM    /usr/etc/bootlab/motd\nD    /usr/share/old\nnoise\n";
        let v = parse_ostree_diff(out);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].kind, FileChangeKind::Added);
        assert_eq!(v[0].path, "/usr/bin/bootlab-hello");
        assert_eq!(v[2].kind, FileChangeKind::Removed);
        assert_eq!(v[1].to_string(), "M    /usr/etc/bootlab/motd");
    }

    const STATUS: &str = "Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: b\nStatus: install ok installed\nVersion: 2.0\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 9\n";

    #[test]
    fn dpkg_status_lists_installed_packages() {
        let p = dpkg_packages(STATUS);
        assert_eq!(p.len(), 2);
        assert_eq!(p["a"], "1.0");
        assert!(!p.contains_key("gone"));
    }

    #[test]
    fn package_diff_names_added_removed_and_changed() {
        let a = dpkg_packages(STATUS);
        let mut b = a.clone();
        b.remove("a");
        b.insert("b".into(), "2.1".into());
        b.insert("c".into(), "0.1".into());
        let lines: Vec<String> = package_diff(&a, &b).iter().map(|c| c.to_string()).collect();
        assert_eq!(lines, ["~ b 2.0 → 2.1", "+ c 0.1", "- a 1.0"]);
        assert!(package_diff(&a, &a).is_empty());
    }

    #[test]
    fn composefs_digests_compare_only_when_both_are_known() {
        let d1 = "sha256:48d599755eb1835d694e8fd612a886503ad6bd0002a53befcc0219214fd17266";
        let d2 = "sha256:06d5be5c1f84f55006b5826aec720b80e5d95f30e170be7e1d6aae61755f1ae4";
        let c = ComposefsDiff {
            a: Some(d1.into()),
            b: Some(d2.into()),
        };
        assert_eq!(c.differ(), Some(true));
        assert_eq!(
            c.line(),
            "composefs digests differ: sha256:48d599755eb1… → sha256:06d5be5c1f84…"
        );
        let same = ComposefsDiff {
            a: Some(d1.into()),
            b: Some(d1.into()),
        };
        assert_eq!(same.differ(), Some(false));
        assert!(same.line().starts_with("composefs digests equal"));
        let off = ComposefsDiff {
            a: Some(d1.into()),
            b: None,
        };
        assert_eq!(off.differ(), None);
        assert!(
            off.line().ends_with("none (not comparable)"),
            "{}",
            off.line()
        );
    }
}
