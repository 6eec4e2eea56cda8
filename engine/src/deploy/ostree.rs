//! `ostree admin status`: the text every ostree prints, and `--json` (ostree 2025.3 and later).
//!
//! Text format (src/ostree/ot-admin-builtin-status.c): one line per deployment in boot order,
//! `"%c %s %s.%d%s"` = `*` for the booted one or a space, stateroot, checksum.serial, and a suffix
//! ` (staged)` / ` (pending)` / ` (rollback)` (newer: ` (finalization locked)`, ` (soft-reboot)`);
//! then indented lines: `Version: V`, `Unlocked: STATE`, `Pinned: yes`, `origin refspec: R`,
//! `origin: <unknown origin type>`, `origin: none`, `` `- TITLE``, `GPG: …`.
//! Anything else indented is ignored: newer ostree adds lines and we must not break on them.

use super::{Deployment, HostStatus, StatusParseError, StatusSource};
use serde::Deserialize;

const WHAT_TEXT: &str = "`ostree admin status` output";

/// Parse the text of `ostree admin status`.
pub fn parse_text(text: &str) -> Result<HostStatus, StatusParseError> {
    let mut deployments: Vec<Deployment> = Vec::new();
    let mut saw_none = false;
    for (n, raw) in text.lines().enumerate() {
        let lineno = n + 1;
        let line = strip_ansi(raw);
        let line = line.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        if line.trim() == "No deployments." {
            saw_none = true;
            continue;
        }
        if line.starts_with("    ") || line.starts_with('\t') {
            let Some(d) = deployments.last_mut() else {
                return Err(StatusParseError::new(
                    WHAT_TEXT,
                    lineno,
                    format!("detail line before any deployment: {line:?}"),
                ));
            };
            let item = line.trim_start();
            if let Some(v) = item.strip_prefix("Version: ") {
                d.version = Some(v.to_string());
            } else if let Some(v) = item.strip_prefix("origin refspec: ") {
                d.origin_refspec = Some(v.to_string());
            } else if item == "Pinned: yes" {
                d.pinned = true;
            } else if let Some(v) = item.strip_prefix("Unlocked: ") {
                d.unlocked = Some(v.to_string());
            }
            // `origin: none`, `origin: <unknown origin type>`, `` `- title``, `GPG: …`: nothing
            // the model keeps.
            continue;
        }
        deployments.push(parse_header(line, lineno, deployments.len())?);
    }
    if deployments.is_empty() && !saw_none {
        return Err(StatusParseError::new(
            WHAT_TEXT,
            1,
            "no deployment lines and no \"No deployments.\"",
        ));
    }
    Ok(HostStatus {
        source: StatusSource::OstreeText,
        deployments,
        rollback_queued: false,
        boot_order: None,
        spec_image: None,
        cached_update: None,
    })
}

fn parse_header(line: &str, lineno: usize, index: usize) -> Result<Deployment, StatusParseError> {
    let err = |m: String| StatusParseError::new(WHAT_TEXT, lineno, m);
    let mut chars = line.chars();
    let marker = chars.next().unwrap_or(' ');
    if marker != '*' && marker != ' ' {
        return Err(err(format!(
            "expected `* ` or two spaces before a deployment, got {line:?}"
        )));
    }
    let rest = chars.as_str();
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| err(format!("expected a space after the marker in {line:?}")))?;
    let mut words = rest.splitn(3, ' ');
    let stateroot = words.next().unwrap_or_default();
    let id = words
        .next()
        .ok_or_else(|| err(format!("expected `STATEROOT CHECKSUM.SERIAL` in {line:?}")))?;
    let suffix = words.next().unwrap_or("");
    let (checksum, serial) = id
        .rsplit_once('.')
        .ok_or_else(|| err(format!("expected CHECKSUM.SERIAL, got {id:?}")))?;
    if checksum.len() != 64 || !checksum.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(err(format!("{checksum:?} is not a 64-hex-digit checksum")));
    }
    let serial: u32 = serial
        .parse()
        .map_err(|_| err(format!("deploy serial {serial:?} is not a number")))?;
    let mut d = Deployment::new(index, checksum);
    d.serial = serial;
    d.stateroot = Some(stateroot.to_string());
    d.booted = marker == '*';
    // Suffixes are parenthesised words, possibly several: " (staged) (soft-reboot)".
    for part in suffix.split(')') {
        match part.trim().trim_start_matches('(') {
            "staged" => d.staged = true,
            "pending" => d.pending = true,
            "rollback" => d.rollback = true,
            "finalization locked" => d.staged = true,
            _ => {}
        }
    }
    Ok(d)
}

fn strip_ansi(s: &str) -> String {
    // `Unlocked:` is printed red and bold on a terminal.
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            for c2 in it.by_ref() {
                if c2.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct JsonDoc {
    deployments: Vec<JsonDeployment>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct JsonDeployment {
    checksum: String,
    #[serde(default, alias = "osname")]
    stateroot: Option<String>,
    #[serde(default)]
    serial: Option<u32>,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    booted: Option<bool>,
    #[serde(default)]
    pending: Option<bool>,
    #[serde(default)]
    rollback: Option<bool>,
    #[serde(default)]
    staged: Option<bool>,
    #[serde(default)]
    finalization_locked: Option<bool>,
    #[serde(default)]
    pinned: Option<bool>,
    #[serde(default)]
    unlocked: Option<String>,
    #[serde(default)]
    version: Option<String>,
    // Not in 2025.3; later releases add the origin refspec under one of these names.
    #[serde(default, alias = "origin-refspec", alias = "origin")]
    refspec: Option<String>,
}

/// Parse `ostree admin status --json` (ostree 2025.3+): `{"deployments": [{checksum, stateroot,
/// serial, index, booted, pending, rollback, staged, pinned, unlocked, version, …}]}`.
pub fn parse_json(text: &str) -> Result<HostStatus, StatusParseError> {
    let doc: JsonDoc = serde_json::from_str(text).map_err(|e| {
        StatusParseError::new("`ostree admin status --json`", e.line(), e.to_string())
    })?;
    let mut deployments = Vec::new();
    for (i, j) in doc.deployments.into_iter().enumerate() {
        let mut d = Deployment::new(j.index.unwrap_or(i), j.checksum);
        d.stateroot = j.stateroot;
        d.serial = j.serial.unwrap_or(0);
        d.booted = j.booted.unwrap_or(false);
        d.pending = j.pending.unwrap_or(false);
        d.rollback = j.rollback.unwrap_or(false);
        d.staged = j.staged.unwrap_or(false) || j.finalization_locked.unwrap_or(false);
        d.pinned = j.pinned.unwrap_or(false);
        d.unlocked = j.unlocked.filter(|u| u != "none");
        d.version = j.version;
        d.origin_refspec = j.refspec;
        deployments.push(d);
    }
    deployments.sort_by_key(|d| d.index);
    Ok(HostStatus {
        source: StatusSource::OstreeJson,
        deployments,
        rollback_queued: false,
        boot_order: None,
        spec_image: None,
        cached_update: None,
    })
}

/// `ostree admin status`, the argv bootlab runs in the guest.
pub fn status_argv() -> Vec<String> {
    vec!["ostree".into(), "admin".into(), "status".into()]
}
