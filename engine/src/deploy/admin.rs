//! The guest commands that change an offline-family guest's deployments (`ostree admin` upgrade,
//! switch, rollback), in one place: the drills (`drill::flows`) and the lab runner
//! (`lab::runner`) both send exactly these, so a lab teaches what a drill proves.
//!
//! Each function returns the argv sequence to run in the guest, in order; the callers only run
//! them (and record or check the output their own way).

use super::{Deployment, HostStatus};
use anyhow::{Result, anyhow};

pub use crate::pipeline::REMOTE;

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// `bootlab:<branch>`: the origin an upgrade follows.
pub fn refspec(branch: &str) -> String {
    format!("{REMOTE}:{branch}")
}

/// Point the booted deployment's origin at `bootlab:<branch>` on the update share, when it does
/// not already follow it (a disk made before the remote existed, or a learner's own
/// `ostree admin deploy <checksum>`, whose origin is a bare checksum). None when it does.
pub fn retarget_origin(booted: Option<&Deployment>, branch: &str) -> Option<Vec<String>> {
    let have = booted.and_then(|d| d.origin_refspec.as_deref());
    (have != Some(refspec(branch).as_str())).then(|| {
        argv(&[
            "ostree",
            "admin",
            "set-origin",
            "--set=gpg-verify=false",
            REMOTE,
            &crate::pipeline::guest_remote_url(),
            branch,
        ])
    })
}

/// Pull the origin's branch and deploy it for the next boot. Without `--stage` the new
/// deployment is *pending*: written (its /etc merged) now, the default at the next boot.
pub fn upgrade_argv() -> Vec<String> {
    argv(&["ostree", "admin", "upgrade"])
}

/// The upgrade sequence: the origin set right if needed, then the upgrade.
pub fn upgrade(booted: Option<&Deployment>, branch: &str) -> Vec<Vec<String>> {
    retarget_origin(booted, branch)
        .into_iter()
        .chain([upgrade_argv()])
        .collect()
}

/// Deploy another branch of the update share (a different recipe) for the next boot.
pub fn switch(branch: &str) -> Vec<Vec<String>> {
    vec![argv(&["ostree", "admin", "switch", &refspec(branch)])]
}

/// The guest command that tells which ostree it runs (the rollback depends on it).
pub fn version_argv() -> Vec<String> {
    argv(&["ostree", "--version"])
}

/// Is `ostree --version` at least `y.m`? (`set-default` arrived in 2023.6.)
pub fn ostree_at_least(version_out: &str, y: u32, m: u32) -> bool {
    version_out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(|v| v.trim().trim_matches('\'').to_string())
        .and_then(|v| {
            let mut it = v.split('.');
            Some((
                it.next()?.parse::<u32>().ok()?,
                it.next()?.parse::<u32>().ok()?,
            ))
        })
        .is_some_and(|(a, b)| (a, b) >= (y, m))
}

/// Make the rollback deployment the default. `ostree admin set-default` reorders the existing
/// deployments (a new bootloader config), deploys nothing and merges no /etc — what
/// `bootc rollback` does. An ostree before 2023.6 (`version_out` of [`version_argv`]) has no
/// set-default: there the old commit is deployed again (a new serial, its /etc merged from the
/// booted one's, the origin a bare checksum).
pub fn rollback(st: &HostStatus, version_out: &str) -> Result<(Deployment, Vec<Vec<String>>)> {
    let rb = st.rollback().cloned().ok_or_else(|| {
        anyhow!("there is no rollback deployment: `ostree admin status` lists only one")
    })?;
    let cmd = if ostree_at_least(version_out, 2023, 6) {
        argv(&["ostree", "admin", "set-default", &rb.index.to_string()])
    } else {
        let os = format!("--os={}", rb.stateroot.as_deref().unwrap_or("debian"));
        argv(&["ostree", "admin", "deploy", &os, &rb.checksum])
    };
    Ok((rb, vec![cmd]))
}

/// `checksum.serial` of every deployment, in boot order: what a rollback must only reorder.
pub fn deployment_ids(st: &HostStatus) -> Vec<String> {
    st.deployments
        .iter()
        .map(|d| format!("{}.{}", d.checksum, d.serial))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(i: usize, c: &str, origin: &str) -> Deployment {
        let mut d = Deployment::new(i, c);
        d.origin_refspec = Some(origin.into());
        d
    }

    #[test]
    fn upgrade_retargets_only_a_foreign_origin() {
        let ok = dep(0, "aa", "bootlab:bootlab/debian-minimal");
        assert_eq!(
            upgrade(Some(&ok), "bootlab/debian-minimal"),
            vec![upgrade_argv()]
        );
        let bare = dep(0, "aa", "aa");
        let seq = upgrade(Some(&bare), "bootlab/debian-minimal");
        assert_eq!(seq.len(), 2);
        assert_eq!(seq[0][2], "set-origin");
        assert_eq!(seq[0][5], "file:///run/bootlab/updates/repo");
        assert_eq!(seq[0][6], "bootlab/debian-minimal");
        assert_eq!(seq[1], upgrade_argv());
    }

    #[test]
    fn rollback_sets_the_rollback_index_as_default() {
        // Real: v2 booted, v1 rollback, on a debian-minimal guest.
        let text =
            include_str!("../../../tests/fixtures/ostree-status/captured-after-upgrade-reboot.txt");
        let st = crate::deploy::ostree::parse_text(text).unwrap();
        let (v2, v1) = (&st.deployments[0], &st.deployments[1]);
        let new = "libostree:\n Version: '2026.4'\n";
        let (rb, seq) = rollback(&st, new).unwrap();
        assert_eq!(&rb, v1);
        assert_eq!(seq, vec![argv(&["ostree", "admin", "set-default", "1"])]);
        assert_eq!(
            deployment_ids(&st),
            vec![format!("{}.0", v2.checksum), format!("{}.0", v1.checksum)]
        );
        let (_, old) = rollback(&st, "libostree:\n Version: '2022.7'\n").unwrap();
        assert_eq!(
            old,
            vec![argv(&[
                "ostree",
                "admin",
                "deploy",
                "--os=debian",
                &v1.checksum
            ])]
        );
        let before =
            include_str!("../../../tests/fixtures/ostree-status/captured-before-upgrade.txt");
        let one = crate::deploy::ostree::parse_text(before).unwrap();
        assert!(rollback(&one, new).is_err());
    }

    #[test]
    fn ostree_version_gate() {
        assert!(!ostree_at_least(
            "libostree:\n Version: '2022.7'\n",
            2023,
            6
        ));
        assert!(ostree_at_least("libostree:\n Version: '2025.2'\n", 2023, 6));
        assert!(ostree_at_least("libostree:\n Version: '2026.4'\n", 2023, 6));
        assert!(!ostree_at_least("garbage", 2023, 6));
    }
}
