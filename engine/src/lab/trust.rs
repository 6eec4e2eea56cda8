//! Labs from strangers: a lab file outside bootlab's own labs folder may hold `host` actions and
//! checks, which run `sh -c` on the member's machine. Those never run silently: they are listed,
//! and the member trusts that exact file content once (`--trust`), remembered by its SHA-256 in
//! `<state>/trusted-labs` (0600). Guest commands need no trust: the guest is disposable.

use super::model::{Action, Lab, Probe};
use crate::paths::{Paths, write_atomic};
use anyhow::{Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// One host command a lab would run, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCommand {
    pub step: String,
    /// `action`, `solve`, or `check "<title>"`.
    pub place: String,
    pub run: String,
}

impl std::fmt::Display for HostCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {} {}: sh -c {:?}", self.step, self.place, self.run)
    }
}

/// Every host command of a lab, in step order.
pub fn host_commands(lab: &Lab) -> Vec<HostCommand> {
    let mut out = Vec::new();
    for s in &lab.steps {
        let mut push = |place: String, run: &str| {
            out.push(HostCommand {
                step: s.id.clone(),
                place,
                run: run.to_string(),
            })
        };
        if let Action::Host { run } = &s.action {
            push("action".into(), run);
        }
        for a in &s.solve {
            if let Action::Host { run } = a {
                push("solve".into(), run);
            }
        }
        for c in &s.checks {
            if let Probe::Host { run } = &c.probe {
                push(format!("check {:?}", c.title), run);
            }
        }
    }
    out
}

/// Whether `lab` may run its host commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// One of bootlab's own labs.
    Shipped,
    /// No host commands at all.
    NoHostCommands,
    /// The member trusted this file content before.
    Remembered,
    /// Host commands from a file nobody trusted yet.
    Needed {
        sha256: String,
        commands: Vec<HostCommand>,
    },
}

impl Trust {
    pub fn allows_host(&self) -> bool {
        !matches!(self, Trust::Needed { .. })
    }
}

fn store(paths: &Paths) -> PathBuf {
    paths.state.join("trusted-labs")
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// True when `path` lies in bootlab's own labs folder (`labs/`, or `BOOTLAB_LABS`).
pub fn is_shipped(path: &Path) -> bool {
    canonical(path).starts_with(canonical(&crate::paths::labs_dir()))
}

/// The SHA-256 of the file `lab` came from, checked to still hold exactly that lab: trusting a
/// hash must never vouch for commands that were read from another version of the file.
fn file_sha256(lab: &Lab) -> Result<String> {
    let bytes = std::fs::read(&lab.path)?;
    let src = String::from_utf8_lossy(&bytes);
    let recipes = crate::recipe::all()?;
    let same = super::parse::parse_lab(&lab.path, &src, &recipes).is_ok_and(|l| l == *lab);
    if !same {
        bail!(
            "{} changed since it was loaded; load it again",
            lab.path.display()
        );
    }
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn remembered(paths: &Paths) -> Vec<String> {
    std::fs::read_to_string(store(paths))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// Decide whether `lab`'s host commands may run.
pub fn check(paths: &Paths, lab: &Lab) -> Result<Trust> {
    if is_shipped(&lab.path) {
        return Ok(Trust::Shipped);
    }
    let commands = host_commands(lab);
    if commands.is_empty() {
        return Ok(Trust::NoHostCommands);
    }
    let sha256 = file_sha256(lab)?;
    if remembered(paths).contains(&sha256) {
        return Ok(Trust::Remembered);
    }
    Ok(Trust::Needed { sha256, commands })
}

/// Remember that the member trusts `lab`'s file as it is now.
pub fn remember(paths: &Paths, lab: &Lab) -> Result<()> {
    let sha = file_sha256(lab)?;
    let mut text = std::fs::read_to_string(store(paths)).unwrap_or_default();
    if text
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&sha))
    {
        return Ok(());
    }
    text.push_str(&format!("{sha}  {}\n", canonical(&lab.path).display()));
    crate::paths::create_private_dir(&paths.state)?;
    // write_atomic's temp file is created 0600, and the rename keeps that mode.
    write_atomic(&store(paths), text.as_bytes())?;
    Ok(())
}

/// The message for a lab that needs trust: which commands, and how to trust them.
pub fn refusal(lab: &Lab, sha256: &str, commands: &[HostCommand], how: &str) -> String {
    let list: Vec<String> = commands.iter().map(|c| format!("  {c}")).collect();
    format!(
        "{} is not one of bootlab's own labs ({}) and runs {} command(s) on this host:\n{}\nRead them; if you trust them, {how} (remembered for this exact file content, sha256 {}).",
        lab.path.display(),
        crate::paths::labs_dir().display(),
        commands.len(),
        list.join("\n"),
        &sha256[..12.min(sha256.len())]
    )
}

/// For the runner: refuse a host command of a lab that is not trusted.
pub fn require_host_allowed(paths: &Paths, lab: &Lab) -> Result<()> {
    match check(paths, lab)? {
        Trust::Needed { sha256, commands } => bail!(
            "{}",
            refusal(
                lab,
                &sha256,
                &commands,
                "run it with `bootlab lab run --trust`"
            )
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"
schema = 1
id = "stranger"
title = "A lab from elsewhere"
minutes = 1
summary = "Runs a host command."

[[steps]]
id = "one"
title = "Host things"
text = "Watch."
action = { kind = "host", run = "echo from-the-action" }

[[steps.checks]]
title = "the host agrees"
host = "echo from-the-check"
stdout_contains = "from"
fail = "The host did not agree."
"#;

    fn load(dir: &Path, src: &str) -> Lab {
        let p = dir.join("stranger.toml");
        std::fs::write(&p, src).unwrap();
        let recipes = crate::recipe::shipped().unwrap();
        super::super::parse::load_file(&p, &recipes).unwrap()
    }

    #[test]
    fn host_commands_of_a_foreign_lab_need_trust_remembered_by_content() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::under(&d.path().join("home"));
        let lab = load(d.path(), LAB);
        let Trust::Needed { sha256, commands } = check(&paths, &lab).unwrap() else {
            panic!("a foreign lab with host commands must need trust");
        };
        assert_eq!(commands.len(), 2, "{commands:?}");
        let msg = refusal(&lab, &sha256, &commands, "pass --trust");
        assert!(msg.contains("echo from-the-action") && msg.contains("echo from-the-check"));
        assert!(require_host_allowed(&paths, &lab).is_err());

        remember(&paths, &lab).unwrap();
        assert_eq!(check(&paths, &lab).unwrap(), Trust::Remembered);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store(&paths))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // Another content at the same path is a different lab: trust is not carried over.
        let changed = load(d.path(), &LAB.replace("from-the-action", "rm -rf /tmp/x"));
        assert!(matches!(
            check(&paths, &changed).unwrap(),
            Trust::Needed { .. }
        ));
        // And a lab loaded before the file changed cannot borrow the new content's trust.
        remember(&paths, &changed).unwrap();
        let back = load(d.path(), LAB);
        std::fs::write(&back.path, LAB.replace("from-the-action", "rm -rf /tmp/x")).unwrap();
        assert!(check(&paths, &back).is_err());
    }

    #[test]
    fn shipped_labs_and_labs_without_host_commands_need_none() {
        let (labs, errors) = super::super::shipped();
        assert!(errors.is_empty(), "{errors:?}");
        let paths = Paths::under(Path::new("/nonexistent"));
        for l in &labs {
            assert_eq!(check(&paths, l).unwrap(), Trust::Shipped, "{}", l.id);
        }
        let d = tempfile::tempdir().unwrap();
        let guest_only = LAB
            .replace(
                r#"{ kind = "host", run = "echo from-the-action" }"#,
                r#"{ kind = "guest", run = "true" }"#,
            )
            .replace("host = \"echo from-the-check\"", "guest = \"echo from\"");
        let lab = load(d.path(), &guest_only);
        assert_eq!(check(&paths, &lab).unwrap(), Trust::NoHostCommands);
    }
}
