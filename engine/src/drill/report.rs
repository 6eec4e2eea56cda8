//! A drill's outcome: a verdict and a timeline of steps, each with its duration and its evidence
//! (the exact command run and the part of its output that matters).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// The drill ran and a check did not hold: the system misbehaved.
    Fail,
    /// The drill could not run to its checks (a command could not be sent, a boot timed out).
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
        }
    }
}

/// Who ran a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Host,
    Guest,
}

/// One command and what it printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub side: Side,
    /// The exact argv (guest commands) or a description (host work, VM power actions).
    pub command: Vec<String>,
    pub exit: Option<i32>,
    /// The relevant part of the output.
    pub excerpt: String,
    pub secs: f64,
}

/// One verified fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    /// Seconds since the drill started.
    pub at: f64,
    pub secs: f64,
    pub ok: bool,
    /// One line: what this step found.
    pub detail: String,
    pub evidence: Vec<Evidence>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub drill: String,
    pub vm: String,
    pub family: String,
    pub verdict: Verdict,
    /// Why, in one line (the failed check, or the error).
    pub reason: String,
    pub started_at: String,
    pub total_secs: f64,
    pub steps: Vec<Step>,
    /// Key facts: old/new checksum and version, cut point, which deployment booted.
    pub facts: BTreeMap<String, String>,
}

impl Report {
    pub fn failed_checks(&self) -> Vec<&Check> {
        self.steps
            .iter()
            .flat_map(|s| s.checks.iter())
            .filter(|c| !c.ok)
            .collect()
    }

    /// The human form: verdict, facts, a timeline table, then each step's checks and evidence.
    pub fn render(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!(
            "drill {} on {} ({}): {} — {}\n",
            self.drill,
            self.vm,
            self.family,
            self.verdict.as_str(),
            self.reason
        ));
        if !self.facts.is_empty() {
            o.push('\n');
            for (k, v) in &self.facts {
                o.push_str(&format!("  {k:<18} {v}\n"));
            }
        }
        o.push_str(&format!(
            "\n{:>3}  {:>7}  {:>7}  {:<4}  {:<34} {}\n",
            "#", "at(s)", "took(s)", "ok", "step", "detail"
        ));
        for (i, s) in self.steps.iter().enumerate() {
            o.push_str(&format!(
                "{:>3}  {:>7.1}  {:>7.1}  {:<4}  {:<34} {}\n",
                i + 1,
                s.at,
                s.secs,
                if s.ok { "ok" } else { "FAIL" },
                s.name,
                s.detail
            ));
        }
        o.push_str(&format!("     total {:.1} s\n", self.total_secs));
        o.push_str("\nevidence\n");
        for (i, s) in self.steps.iter().enumerate() {
            o.push_str(&format!("[{}] {}\n", i + 1, s.name));
            for c in &s.checks {
                o.push_str(&format!(
                    "    check {:<4} {}: expected {}, got {}\n",
                    if c.ok { "ok" } else { "FAIL" },
                    c.name,
                    c.expected,
                    c.actual
                ));
            }
            for e in &s.evidence {
                let cmd: Vec<String> = e
                    .command
                    .iter()
                    .map(|a| crate::tools::cmd::shell_quote(a))
                    .collect();
                let who = match e.side {
                    Side::Host => "host",
                    Side::Guest => "guest",
                };
                let exit = e.exit.map(|c| format!(" → exit {c}")).unwrap_or_default();
                o.push_str(&format!(
                    "    {who}$ {}{exit} ({:.1} s)\n",
                    cmd.join(" "),
                    e.secs
                ));
                for l in e.excerpt.lines() {
                    o.push_str(&format!("      | {l}\n"));
                }
            }
        }
        o
    }
}

/// The part of a command's output worth keeping: lines matching any of `keep` when given (and
/// found), else the last `max` lines.
pub fn excerpt(text: &str, keep: &[&str], max: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if !keep.is_empty() {
        let hits: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| keep.iter().any(|k| l.contains(k)))
            .collect();
        if !hits.is_empty() {
            return hits
                .iter()
                .take(max)
                .copied()
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    let start = lines.len().saturating_sub(max);
    lines[start..].join("\n")
}
