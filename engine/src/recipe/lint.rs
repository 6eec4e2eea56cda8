//! `bootlab recipe lint`: what a built image does that will hurt on an image-based OS, each
//! finding with a paragraph on why.
//!
//! Two sources, shown together:
//! - **bootc family**: `bootc container lint`, run in the built image (bootc's own rules; the
//!   explanations here are bootlab's, for a learner).
//! - **both families**: bootlab's checks of the built image — what the recipe added under /var
//!   or as /etc drop-ins (from `podman image diff` against the recipe's base), and what the
//!   guest offers (guest agent, sshd's effective password setting, baked-in SSH host keys, the
//!   version label).
//!
//! The offline family runs no bootc, so its /var rule is bootlab's (bootc's `var-tmpfiles`
//! covers it for bootc images).

use super::{Family, Recipe, Version};
use crate::events::{CancellationToken, Emitter};
use crate::tools::bootc;
use crate::tools::podman::{ImageDiff, Podman};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The image will not work as a bootable system (bootc refuses it).
    Fatal,
    /// It works, but teaches or ships something that breaks on a later upgrade or in production.
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `bootc container lint` in the image.
    Bootc,
    /// bootlab's own checks.
    Bootlab,
}

/// One finding: what, where, and why it matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub level: Level,
    pub source: Source,
    /// One line: what was found.
    pub message: String,
    /// The paths or lines behind it (shortened by the tool that found them).
    pub details: Vec<String>,
    /// One paragraph: why this matters on an image-based OS, and what to do instead.
    pub why: String,
}

/// Every finding for one built image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LintReport {
    pub recipe: String,
    pub version: String,
    pub image: String,
    pub family: Family,
    /// bootc's summary lines ("Checks passed: 12", …), bootc family only.
    pub bootc_summary: Vec<String>,
    pub findings: Vec<Finding>,
}

impl LintReport {
    /// No fatal finding.
    pub fn passed(&self) -> bool {
        !self.findings.iter().any(|f| f.level == Level::Fatal)
    }
}

/// Lint the built image of `version` of `recipe` (it must have been built).
pub async fn lint(
    podman: &Podman,
    recipe: &Recipe,
    version: &Version,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<LintReport> {
    let image = recipe.image_tag(&version.id);
    if podman.image_id(&image, cancel).await?.is_none() {
        bail!(
            "{image} is not built yet: run `bootlab image build {} --version {}` first",
            recipe.name(),
            version.id
        );
    }
    let stage = "lint";
    let mut report = LintReport {
        recipe: recipe.name().to_string(),
        version: version.id.clone(),
        image: image.clone(),
        family: recipe.file.family,
        bootc_summary: Vec::new(),
        findings: Vec::new(),
    };
    if recipe.file.family == Family::Bootc {
        let r = bootc::container_lint(podman, &image, stage, ev, cancel).await?;
        let (findings, summary) = parse_bootc(&r.lines);
        report.findings.extend(findings);
        report.bootc_summary = summary;
    }
    // The base is what the recipe starts FROM: only what the recipe itself adds is its doing.
    let diff = match podman.image_id(&recipe.file.base, cancel).await? {
        Some(_) => podman.image_diff(&image, &recipe.file.base, cancel).await?,
        None => {
            ev.note(
                stage,
                format!(
                    "base {} is not here: the /var and /etc checks are skipped",
                    recipe.file.base
                ),
            );
            ImageDiff::default()
        }
    };
    if recipe.file.family == Family::DebianOstree {
        report.findings.extend(var_content(&diff));
    }
    report.findings.extend(etc_defaults(&diff));
    let out = podman
        .run_capture(&image, &["sh", "-c", PROBE], stage, ev, cancel)
        .await?;
    if !out.status.success() {
        bail!(
            "the lint probe failed in {image} ({}): {}",
            out.status,
            out.tail.join("\n")
        );
    }
    let label = podman
        .image_label(&image, VERSION_LABEL, cancel)
        .await?
        .unwrap_or_default();
    report
        .findings
        .extend(guest_findings(&Probe::parse(&out.stdout), &label));
    Ok(report)
}

/// The label `bootc status` and registries show as an image's version.
pub const VERSION_LABEL: &str = "org.opencontainers.image.version";

/// Split bootc's output into findings (a `Lint warning: NAME: …` or `Failed lint: NAME: …`
/// line and the lines under it) and its summary lines.
pub fn parse_bootc(lines: &[String]) -> (Vec<Finding>, Vec<String>) {
    let mut findings: Vec<Finding> = Vec::new();
    let mut summary = Vec::new();
    for line in lines {
        let head = line
            .strip_prefix("Lint warning: ")
            .map(|r| (Level::Warning, r))
            .or_else(|| {
                line.strip_prefix("Failed lint: ")
                    .map(|r| (Level::Fatal, r))
            });
        if let Some((level, rest)) = head {
            let (rule, message) = rest.split_once(": ").unwrap_or((rest, ""));
            findings.push(Finding {
                rule: rule.to_string(),
                level,
                source: Source::Bootc,
                message: message.to_string(),
                details: Vec::new(),
                why: bootc_why(rule).to_string(),
            });
        } else if ["Checks passed:", "Checks skipped:", "Warnings:", "Error:"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            summary.push(line.clone());
        } else if let Some(f) = findings.last_mut() {
            f.details.push(line.trim().to_string());
        } else {
            summary.push(line.clone());
        }
    }
    (findings, summary)
}

/// bootlab's explanation of a bootc lint rule, for a learner.
pub fn bootc_why(rule: &str) -> &'static str {
    match rule {
        "var-tmpfiles" => {
            "/var belongs to the machine, not to the image: bootc copies the image's /var once, \
             when the system is installed, and never again. A directory or file an update adds \
             under /var reaches no machine that is already installed. Ship data in /usr (for \
             example /usr/share/<app>) and let a tmpfiles.d line in /usr/lib/tmpfiles.d make the \
             /var directories at every boot."
        }
        "var-log" => {
            "Log files are per-machine state. Shipped in the image they are copied into /var \
             only at install time, make the image unreproducible (timestamps) and can leak \
             details of the build machine. Remove them in the same RUN that made them."
        }
        "nonempty-run-tmp" => {
            "/run and /tmp are tmpfs at run time, so whatever the image has there is hidden at \
             boot: it is build leftovers that only make the image bigger. Clean them in the RUN \
             that made them."
        }
        "nonempty-boot" => {
            "/boot belongs to the bootloader of the installed machine and is masked at run time. \
             The kernel and initramfs of an image live in /usr/lib/modules/<kver>/, where bootc \
             and ostree look for them."
        }
        "sysusers" => {
            "/etc is merged per file on upgrade: once a machine changes /etc/passwd (a user \
             added), the image's newer /etc/passwd never replaces it, so users an update adds \
             would be missing. Declare system users in /usr/lib/sysusers.d so they are made at \
             boot on every machine."
        }
        "baseimage-root" | "baseimage-composefs" => {
            "A bootc base image carries /sysroot, the /ostree link into it and an ostree \
             prepare-root.conf with composefs on: without them the system cannot boot the way \
             bootc deploys it (or loses composefs' integrity of the root)."
        }
        "api-base-directories" | "var-run" => {
            "systemd and bootc expect the standard API directories (/dev, /proc, /sys, /run, \
             /tmp, a real /var, /var/run as a link to /run); an image without them does not \
             boot reliably."
        }
        "etc-usretc" => {
            "An image has /etc only; ostree moves it to /usr/etc itself. Having both makes it \
             undefined which one the machine gets."
        }
        "kernel" => {
            "One image boots one kernel: bootc takes it from /usr/lib/modules/<kver>/. Two \
             kernel directories leave it undefined which one boots."
        }
        "bootc-kargs" => {
            "Kernel arguments in /usr/lib/bootc/kargs.d are applied on install and upgrade; a \
             syntax error there would stop both."
        }
        "utf8" => {
            "bootc's ostree backend stores only UTF-8 file names; any other name makes the \
             image impossible to deploy."
        }
        "buildah-injected" => {
            "An empty /etc/hostname or /etc/resolv.conf left by the build tool would replace \
             the machine's own at install time."
        }
        _ => "bootc's own description of this rule: `bootc container lint --list` in the image.",
    }
}

const VAR_WHY: &str = "/var is the machine's, not the image's: bootlab copies the image's /var \
into a disk once, when the disk is made, and `ostree admin upgrade` never touches /var. Content \
a later version puts under /var never reaches a machine that booted an earlier one — the nginx \
pitfall: a web root in /var/www stays at its first version forever. Ship the content in /usr \
(for example /usr/share/<app>, pointed at by the service's config) and make the /var \
directories with a tmpfiles.d line in /usr/lib/tmpfiles.d.";

/// What installing a package writes under /var by itself: the package manager's records, not
/// content a learner chose to put there (and nothing a recipe can avoid when it installs one).
const PACKAGE_STATE: &[&str] = &[
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/lib/ucf",
    "/var/lib/systemd/deb-systemd-",
    "/var/cache/apt",
    "/var/cache/debconf",
    "/var/cache/ldconfig",
    "/var/log/apt",
    "/var/log/dpkg.log",
    "/var/log/alternatives.log",
];

/// Content the recipe put under /var (offline family: bootlab keeps it only as a first-boot seed).
pub fn var_content(diff: &ImageDiff) -> Option<Finding> {
    let paths: Vec<&String> = diff
        .added
        .iter()
        .chain(&diff.changed)
        .filter(|p| p.starts_with("/var/") && !PACKAGE_STATE.iter().any(|s| p.starts_with(s)))
        // Leaves only: a changed parent directory says nothing the child does not.
        .filter(|p| {
            !diff.added.iter().chain(&diff.changed).any(|q| {
                q.len() > p.len() && q.starts_with(p.as_str()) && q[p.len()..].starts_with('/')
            })
        })
        .collect();
    if paths.is_empty() {
        return None;
    }
    Some(Finding {
        rule: "var-content".into(),
        level: Level::Warning,
        source: Source::Bootlab,
        message: format!("the recipe puts {} path(s) under /var", paths.len()),
        details: shorten(&paths),
        why: VAR_WHY.into(),
    })
}

/// /etc folders whose defaults belong in /usr/lib (the same tools read both, /etc wins).
const ETC_DROP_INS: &[(&str, &str)] = &[
    ("/etc/systemd/system/", "/usr/lib/systemd/system/"),
    ("/etc/tmpfiles.d/", "/usr/lib/tmpfiles.d/"),
    ("/etc/sysctl.d/", "/usr/lib/sysctl.d/"),
    ("/etc/modules-load.d/", "/usr/lib/modules-load.d/"),
    ("/etc/sysusers.d/", "/usr/lib/sysusers.d/"),
    ("/etc/udev/rules.d/", "/usr/lib/udev/rules.d/"),
];

/// Drop-ins the recipe put in /etc where /usr/lib has the same folder.
pub fn etc_defaults(diff: &ImageDiff) -> Option<Finding> {
    let mut details = Vec::new();
    for p in diff.added.iter().chain(&diff.changed) {
        // `systemctl enable` links are how a unit is switched on; they belong in /etc.
        if p.contains(".wants/") || p.contains(".requires/") || p.ends_with(".wants") {
            continue;
        }
        for (etc, usr) in ETC_DROP_INS {
            if let Some(rest) = p.strip_prefix(etc)
                && !rest.is_empty()
                && !rest.contains('/')
            {
                details.push(format!("{p} → {usr}{rest}"));
            }
        }
    }
    if details.is_empty() {
        return None;
    }
    Some(Finding {
        rule: "etc-defaults".into(),
        level: Level::Warning,
        source: Source::Bootlab,
        message: format!(
            "{} image default(s) in /etc where /usr/lib has the same folder",
            details.len()
        ),
        details,
        why: "On an image-based OS /etc is the machine's: it is merged per file on every \
              upgrade, and a file the machine has changed is kept whole — the image's newer \
              version of it then waits unseen in /usr/etc. Defaults the image owns belong in \
              /usr/lib (systemd, tmpfiles.d, sysctl.d, sysusers.d and udev read both; /etc \
              overrides /usr/lib), so an upgrade always brings the new default and /etc stays \
              free for local changes."
            .into(),
    })
}

/// Runs in the image: what the guest will offer. One `key=value` per line.
const PROBE: &str = r#"
echo "agent=$(command -v qemu-ga || true)"
if command -v sshd >/dev/null 2>&1; then
  echo sshd=1
  mkdir -p /run/sshd 2>/dev/null
  # sshd -T refuses to run with no host key, and a good image has none (each machine makes its
  # own): give it a throw-away one, so the settings it prints are the image's.
  hk=$(mktemp -u /tmp/bootlab-lint-hostkey.XXXXXX)
  if ssh-keygen -q -t ed25519 -N '' -f "$hk" >/dev/null 2>&1; then set -- -h "$hk"; fi
  sshd -T "$@" 2>/dev/null | grep -iE '^(passwordauthentication|permitrootlogin|kbdinteractiveauthentication) ' | tr ' ' '='
fi
for k in /etc/ssh/ssh_host_*_key; do [ -e "$k" ] && echo "hostkey=$k"; done
pw=$(grep '^root:' /etc/shadow 2>/dev/null | cut -d: -f2)
case "$pw" in '') echo root=empty ;; '*'*|'!'*) echo root=locked ;; *) echo root=password ;; esac
exit 0
"#;

/// What [`PROBE`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub agent: bool,
    pub sshd: bool,
    /// sshd's effective settings (`sshd -T`), lower-case keys.
    pub password_auth: Option<String>,
    pub kbd_interactive: Option<String>,
    pub permit_root: Option<String>,
    pub host_keys: Vec<String>,
    /// "empty", "locked" or "password".
    pub root: String,
}

impl Probe {
    pub fn parse(out: &str) -> Probe {
        let mut p = Probe::default();
        for line in out.lines() {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            match k.to_ascii_lowercase().as_str() {
                "agent" => p.agent = !v.is_empty(),
                "sshd" => p.sshd = true,
                "passwordauthentication" => p.password_auth = Some(v.to_string()),
                "kbdinteractiveauthentication" => p.kbd_interactive = Some(v.to_string()),
                "permitrootlogin" => p.permit_root = Some(v.to_string()),
                "hostkey" => p.host_keys.push(v.to_string()),
                "root" => p.root = v.to_string(),
                _ => {}
            }
        }
        p
    }
}

/// Findings about what the guest offers.
pub fn guest_findings(p: &Probe, version_label: &str) -> Vec<Finding> {
    let mut f = Vec::new();
    if !p.agent {
        f.push(Finding {
            rule: "guest-agent".into(),
            level: Level::Warning,
            source: Source::Bootlab,
            message: "no qemu-guest-agent in the image".into(),
            details: vec![],
            why: "bootlab reads deployments, runs drills and checks labs through the QEMU guest \
                  agent: without it the VM boots, but bootlab cannot see inside it. Install \
                  qemu-guest-agent (it starts when the virtio port appears)."
                .into(),
        });
    }
    if p.sshd {
        // sshd -T prints the effective value; an unreadable config prints nothing (default yes).
        let pw = p.password_auth.as_deref().unwrap_or("yes");
        let kbd = p.kbd_interactive.as_deref().unwrap_or("no");
        if pw == "yes" || kbd == "yes" {
            let mut details = vec![format!("passwordauthentication {pw}")];
            details.push(format!("kbdinteractiveauthentication {kbd}"));
            if let Some(r) = &p.permit_root {
                details.push(format!("permitrootlogin {r}"));
            }
            if p.root == "password" {
                details.push("root has a password in /etc/shadow".into());
            }
            f.push(Finding {
                rule: "ssh-passwords".into(),
                level: Level::Warning,
                source: Source::Bootlab,
                message: "sshd accepts passwords".into(),
                details,
                why: "Every machine made from an image has the same /etc/shadow: a password \
                      baked into the image is a password on every machine, and a guessable one \
                      is open to anyone who reaches port 22. Ship keys only: a drop-in in \
                      /etc/ssh/sshd_config.d/ with `PasswordAuthentication no` and \
                      `KbdInteractiveAuthentication no`, and authorized keys from \
                      /usr/lib/tmpfiles.d or a provisioning step, not a password."
                    .into(),
            });
        }
    }
    if !p.host_keys.is_empty() {
        f.push(Finding {
            rule: "ssh-host-keys".into(),
            level: Level::Warning,
            source: Source::Bootlab,
            message: format!("{} SSH host key(s) baked into the image", p.host_keys.len()),
            details: p.host_keys.clone(),
            why: "A host key identifies one machine. Baked into the image, every machine made \
                  from it has the same private key, so a client cannot tell them apart and one \
                  leaked image unlocks them all. Remove /etc/ssh/ssh_host_* in the image and \
                  let each machine make its own at first boot (`ssh-keygen -A` in a unit \
                  before sshd)."
                .into(),
        });
    }
    if version_label.is_empty() {
        f.push(Finding {
            rule: "version-label".into(),
            level: Level::Warning,
            source: Source::Bootlab,
            message: format!("no {VERSION_LABEL} label"),
            details: vec![],
            why: "The version label is how a deployment tells which image it runs: `bootc \
                  status` shows it as the version, registries and `podman inspect` show it. \
                  Without it a learner sees only digests. Add \
                  `LABEL org.opencontainers.image.version=<version>` to the Containerfile."
                .into(),
        });
    }
    f
}

/// The first ten paths, then "…and N more" (a /var tree can hold thousands).
fn shorten(paths: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = paths.iter().take(10).map(|p| p.to_string()).collect();
    if paths.len() > 10 {
        v.push(format!("...and {} more", paths.len() - 10));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    /// The real output of `bootc container lint` in debian-bootc v1 (bootc 1.16.9).
    const DEBIAN_BOOTC_V1: &str =
        "Lint warning: var-tmpfiles: Found content in /var missing systemd tmpfiles.d entries:
  L /var/spool/mail - - - - ../mail
  d /var/backups 0755 root root - -
  ...and 25 more
Found non-directory/non-symlink files in /var:
  var/lib/dpkg/arch-native
  ...and 976 more
Checks passed: 12
Checks skipped: 1
Warnings: 1";

    #[test]
    fn bootc_findings_and_summary() {
        let (f, s) = parse_bootc(&lines(DEBIAN_BOOTC_V1));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "var-tmpfiles");
        assert_eq!(f[0].level, Level::Warning);
        assert_eq!(
            f[0].message,
            "Found content in /var missing systemd tmpfiles.d entries:"
        );
        assert_eq!(f[0].details.len(), 6, "{:?}", f[0].details);
        assert!(f[0].why.contains("tmpfiles.d"));
        assert_eq!(s, ["Checks passed: 12", "Checks skipped: 1", "Warnings: 1"]);
    }

    #[test]
    fn bootc_fatal_finding() {
        let (f, _) = parse_bootc(&lines(
            "Failed lint: var-run: Not a symlink: var/run\nChecks passed: 11\nError: Checks failed: 1",
        ));
        assert_eq!(f[0].level, Level::Fatal);
        assert_eq!(f[0].rule, "var-run");
        assert!(f[0].details.is_empty());
    }

    fn diff(added: &[&str], changed: &[&str]) -> ImageDiff {
        ImageDiff {
            added: added.iter().map(|s| s.to_string()).collect(),
            changed: changed.iter().map(|s| s.to_string()).collect(),
            deleted: vec![],
        }
    }

    #[test]
    fn var_content_names_leaves_only() {
        // The real diff of debian-minimal v2 against its base has nothing under /var.
        let real = diff(
            &[
                "/etc/bootlab",
                "/etc/bootlab/motd",
                "/usr/bin/bootlab-hello",
                "/usr/share/bootlab",
                "/usr/share/bootlab/version",
            ],
            &["/etc", "/etc/motd", "/usr", "/usr/bin", "/usr/share"],
        );
        assert_eq!(var_content(&real), None);
        assert_eq!(etc_defaults(&real), None);
        let web = diff(
            &["/var/www", "/var/www/html", "/var/www/html/index.html"],
            &[
                "/var",
                "/var/lib/dpkg/status",
                "/var/cache/debconf/config.dat",
            ],
        );
        let f = var_content(&web).unwrap();
        assert_eq!(f.details, ["/var/www/html/index.html"]);
        assert!(f.why.contains("nginx"));
    }

    #[test]
    fn etc_defaults_skip_enable_links() {
        let d = diff(
            &[
                "/etc/systemd/system/web.service",
                "/etc/systemd/system/multi-user.target.wants",
                "/etc/systemd/system/multi-user.target.wants/web.service",
                "/etc/tmpfiles.d/web.conf",
                "/etc/nginx/nginx.conf",
            ],
            &["/etc/systemd/system"],
        );
        let f = etc_defaults(&d).unwrap();
        assert_eq!(
            f.details,
            [
                "/etc/systemd/system/web.service → /usr/lib/systemd/system/web.service",
                "/etc/tmpfiles.d/web.conf → /usr/lib/tmpfiles.d/web.conf"
            ]
        );
    }

    /// What PROBE printed in debian-minimal v1 and debian-bootc v1 (real runs).
    const MINIMAL: &str = "agent=/usr/sbin/qemu-ga\nsshd=1\npermitrootlogin=without-password\n\
passwordauthentication=yes\nkbdinteractiveauthentication=no\n\
hostkey=/etc/ssh/ssh_host_ecdsa_key\nhostkey=/etc/ssh/ssh_host_ed25519_key\n\
hostkey=/etc/ssh/ssh_host_rsa_key\nroot=password\n";
    const BOOTC: &str = "agent=/usr/sbin/qemu-ga\nroot=password\n";

    #[test]
    fn guest_findings_of_the_shipped_images() {
        let m = guest_findings(&Probe::parse(MINIMAL), "");
        let rules: Vec<&str> = m.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules, ["ssh-passwords", "ssh-host-keys", "version-label"]);
        assert!(
            m[0].details
                .contains(&"root has a password in /etc/shadow".to_string())
        );
        let b = guest_findings(&Probe::parse(BOOTC), "v1");
        assert!(b.is_empty(), "{b:?}");
        let none = guest_findings(&Probe::parse("agent=\nroot=locked\n"), "v1");
        assert_eq!(none[0].rule, "guest-agent");
    }
}
