//! The bootc program, run inside a bootc image (podman) or a guest: `bootc container lint` here.

use crate::events::{CancellationToken, Emitter};
use crate::tools::podman::Podman;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// What `bootc container lint` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LintReport {
    /// The lint exited 0 (no fatal finding).
    pub passed: bool,
    /// "Checks passed: 12" → 12, when printed.
    pub checks_passed: Option<u32>,
    /// "Warnings: 1" → 1, when printed.
    pub warnings: Option<u32>,
    /// Every line it printed (the findings, as the learner should see them).
    pub lines: Vec<String>,
}

/// Parse lint output (`Checks passed: 12`, `Checks skipped: 1`, `Warnings: 1`, findings).
pub fn parse_lint(output: &str, passed: bool) -> LintReport {
    let mut r = LintReport {
        passed,
        ..Default::default()
    };
    for line in output.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        for part in line.split(',') {
            let part = part.trim();
            if let Some(n) = part.strip_prefix("Checks passed:") {
                r.checks_passed = n.trim().parse().ok();
            } else if let Some(n) = part.strip_prefix("Warnings:") {
                r.warnings = n.trim().parse().ok();
            }
        }
        r.lines.push(line.to_string());
    }
    r
}

/// `bootc container lint` in `image` (no network; the image is not changed).
pub async fn container_lint(
    podman: &Podman,
    image: &str,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<LintReport> {
    let out = podman
        .run_capture(image, &["bootc", "container", "lint"], stage, ev, cancel)
        .await?;
    // Warnings and the summary go to stdout, fatal findings to stderr: show both.
    let mut text = out.stdout.clone();
    for l in &out.tail {
        if !text.contains(l.as_str()) {
            text.push('\n');
            text.push_str(l);
        }
    }
    Ok(parse_lint(&text, out.status.success()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_summary() {
        let r = parse_lint(
            "Lint warning: var-log: Found non-empty logfile: /var/log/dpkg.log\nChecks passed: 12\nChecks skipped: 1\nWarnings: 1\n",
            true,
        );
        assert_eq!(r.checks_passed, Some(12));
        assert_eq!(r.warnings, Some(1));
        assert_eq!(r.lines.len(), 4);
        let r = parse_lint("Checks passed: 11, Warnings: 2", false);
        assert_eq!(
            (r.checks_passed, r.warnings, r.passed),
            (Some(11), Some(2), false)
        );
    }
}
