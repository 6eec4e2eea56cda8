//! Deciding whether a check passed: pure functions over what a runner captured. No I/O here;
//! the runner runs the probe (guest agent, host shell, deployment reader), then asks.

use super::jsonpath::JsonPath;
use super::model::{Check, DeploymentsExpect, Expect, Probe, Slot};
use serde::Serialize;

/// What a command probe returned.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Captured {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The deployments a runner read from the guest: the version of each slot, `None` when the slot
/// is empty. `staged` is the deployment waiting to become the default at the next boot: ostree's
/// `(staged)` or `(pending)` one, bootc's `staged` (labs do not care which mechanism queued it).
/// A deployment without a version fills its slot with its short checksum, so "none" never
/// passes for a slot that holds something.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DeploymentsSeen {
    pub booted: Option<String>,
    pub staged: Option<String>,
    pub rollback: Option<String>,
}

/// What a runner observed for a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Observation {
    Command(Captured),
    Deployments(DeploymentsSeen),
    /// The probe itself could not run (guest agent not answering, timeout…).
    Unavailable(String),
}

/// The outcome, with a learner-facing reason when it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail(String),
}

impl Verdict {
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
    /// What to show the learner: why it failed and the check's own advice.
    pub fn explain(&self, check: &Check) -> Option<String> {
        match self {
            Verdict::Pass => None,
            Verdict::Fail(why) => Some(format!("{why}\n{}", check.fail)),
        }
    }
}

/// How much of an output a reason quotes.
pub const QUOTE_CHARS: usize = 160;

/// `s` on one line, cut to `QUOTE_CHARS` characters, in quotes.
pub fn quote(s: &str) -> String {
    let one_line = s.trim_end().replace('\n', "⏎");
    let n = one_line.chars().count();
    if n == 0 {
        return "nothing".into();
    }
    if n <= QUOTE_CHARS {
        format!("{one_line:?}")
    } else {
        let cut: String = one_line.chars().take(QUOTE_CHARS).collect();
        format!("{cut:?}… ({n} characters)")
    }
}

/// `s` cut to `QUOTE_CHARS` characters, no quotes added (for JSON, which has its own).
fn cut(s: &str) -> String {
    if s.chars().count() <= QUOTE_CHARS {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(QUOTE_CHARS).collect::<String>())
    }
}

/// Evaluate a whole check against what the runner observed.
pub fn evaluate_check(check: &Check, obs: &Observation) -> Verdict {
    match (&check.probe, obs) {
        (_, Observation::Unavailable(why)) => {
            Verdict::Fail(format!("could not run the check: {why}"))
        }
        (Probe::Deployments(d), Observation::Deployments(seen)) => evaluate_deployments(d, seen),
        (Probe::Guest { .. } | Probe::Host { .. }, Observation::Command(c)) => {
            evaluate(&check.expect, c)
        }
        (Probe::Deployments(_), Observation::Command(_)) => {
            Verdict::Fail("internal: a deployments check got a command result".into())
        }
        (_, Observation::Deployments(_)) => {
            Verdict::Fail("internal: a command check got deployments".into())
        }
    }
}

/// Check a command's result against every expectation; the first one that fails is the reason.
pub fn evaluate(expect: &Expect, got: &Captured) -> Verdict {
    let want = expect.exit_code();
    if got.exit != want {
        let mut why = format!("expected exit code {want}, got {}", got.exit);
        if !got.stderr.trim().is_empty() {
            why.push_str(&format!("; stderr: {}", quote(&got.stderr)));
        } else if !got.stdout.trim().is_empty() {
            why.push_str(&format!("; stdout: {}", quote(&got.stdout)));
        }
        return Verdict::Fail(why);
    }
    for s in &expect.stdout_contains {
        if !got.stdout.contains(s.as_str()) {
            return Verdict::Fail(format!(
                "expected stdout to contain {s:?}; it was {}",
                quote(&got.stdout)
            ));
        }
    }
    for s in &expect.stdout_lacks {
        if got.stdout.contains(s.as_str()) {
            return Verdict::Fail(format!(
                "expected stdout not to contain {s:?}; it was {}",
                quote(&got.stdout)
            ));
        }
    }
    for re in &expect.stdout_matches {
        match regex::Regex::new(re) {
            Ok(r) if r.is_match(&got.stdout) => {}
            Ok(_) => {
                return Verdict::Fail(format!(
                    "expected stdout to match /{re}/; it was {}",
                    quote(&got.stdout)
                ));
            }
            Err(e) => return Verdict::Fail(format!("bad regex /{re}/: {e}")),
        }
    }
    for s in &expect.stderr_contains {
        if !got.stderr.contains(s.as_str()) {
            return Verdict::Fail(format!(
                "expected stderr to contain {s:?}; it was {}",
                quote(&got.stderr)
            ));
        }
    }
    if !expect.json.is_empty() {
        let doc: serde_json::Value = match serde_json::from_str(&got.stdout) {
            Ok(v) => v,
            Err(e) => {
                return Verdict::Fail(format!(
                    "expected JSON on stdout ({e}); it was {}",
                    quote(&got.stdout)
                ));
            }
        };
        for (path, want) in &expect.json {
            let p: JsonPath = match path.parse() {
                Ok(p) => p,
                Err(e) => return Verdict::Fail(format!("bad JSON path {path:?}: {e}")),
            };
            match p.get(&doc) {
                Ok(v) if json_equal(v, want) => {}
                Ok(v) => {
                    return Verdict::Fail(format!(
                        "expected {path} to be {want}, it is {}",
                        cut(&v.to_string())
                    ));
                }
                Err(miss) => {
                    return Verdict::Fail(format!("expected {path} to be {want}, but {miss}"));
                }
            }
        }
    }
    Verdict::Pass
}

/// TOML integers and JSON floats compare by value: `2` equals `2.0`.
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

/// Check deployments slot by slot.
pub fn evaluate_deployments(expect: &DeploymentsExpect, seen: &DeploymentsSeen) -> Verdict {
    let slots = [
        ("booted", &expect.booted, &seen.booted),
        ("staged", &expect.staged, &seen.staged),
        ("rollback", &expect.rollback, &seen.rollback),
    ];
    let mut wrong = Vec::new();
    for (name, want, got) in slots {
        let got_s = got.as_deref().unwrap_or("none");
        match want {
            None => {}
            Some(Slot::Absent) if got.is_none() => {}
            Some(Slot::Absent) => {
                wrong.push(format!("expected no {name} deployment, found {got_s}"))
            }
            Some(Slot::Version(v)) if got.as_deref() == Some(v.as_str()) => {}
            Some(Slot::Version(v)) => wrong.push(format!("expected {name} {v}, found {got_s}")),
        }
    }
    if wrong.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "{} (booted {}, staged {}, rollback {})",
            wrong.join("; "),
            seen.booted.as_deref().unwrap_or("none"),
            seen.staged.as_deref().unwrap_or("none"),
            seen.rollback.as_deref().unwrap_or("none"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn out(exit: i32, stdout: &str, stderr: &str) -> Captured {
        Captured {
            exit,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn exit_code_defaults_to_zero_and_quotes_stderr() {
        let e = Expect::default();
        assert_eq!(evaluate(&e, &out(0, "", "")), Verdict::Pass);
        let v = evaluate(
            &e,
            &out(
                1,
                "",
                "touch: cannot touch '/usr/x': Read-only file system\n",
            ),
        );
        assert_eq!(
            v,
            Verdict::Fail(
                "expected exit code 0, got 1; stderr: \"touch: cannot touch '/usr/x': Read-only file system\"".into()
            )
        );
        let e = Expect {
            exit: Some(1),
            stderr_contains: vec!["Read-only".into()],
            ..Default::default()
        };
        assert!(evaluate(&e, &out(1, "", "Read-only file system")).passed());
        assert!(!evaluate(&e, &out(1, "", "Permission denied")).passed());
    }

    #[test]
    fn stdout_contains_lacks_and_matches() {
        let e = Expect {
            stdout_contains: vec!["v2".into()],
            stdout_lacks: vec!["pending".into()],
            stdout_matches: vec![r"^\* debian [0-9a-f]{64}\.\d+$".into()],
            ..Default::default()
        };
        let good = format!("* debian {}.1\n    Version: v2\n", "a".repeat(64));
        let good = good.replace("    Version: v2\n", "");
        let good = format!("{good}v2");
        // The regex has no (?m): it must match the whole stdout from start to end, which it
        // does not, so it fails and says what it saw.
        match evaluate(&e, &out(0, &good, "")) {
            Verdict::Fail(w) => assert!(w.starts_with("expected stdout to match /"), "{w}"),
            Verdict::Pass => panic!("should fail"),
        }
        let e = Expect {
            stdout_matches: vec![r"(?m)^\* debian [0-9a-f]{64}\.\d+$".into()],
            ..e
        };
        assert!(evaluate(&e, &out(0, &good, "")).passed());
        let v = evaluate(&e, &out(0, "v2 (pending)", ""));
        assert_eq!(
            v,
            Verdict::Fail(
                "expected stdout not to contain \"pending\"; it was \"v2 (pending)\"".into()
            )
        );
        let v = evaluate(&e, &out(0, "v1", ""));
        assert_eq!(
            v,
            Verdict::Fail("expected stdout to contain \"v2\"; it was \"v1\"".into())
        );
    }

    #[test]
    fn long_output_is_truncated_in_the_reason() {
        let e = Expect {
            stdout_contains: vec!["needle".into()],
            ..Default::default()
        };
        let hay = "x".repeat(1000);
        let Verdict::Fail(why) = evaluate(&e, &out(0, &hay, "")) else {
            panic!()
        };
        assert!(why.ends_with("… (1000 characters)"), "{why}");
        assert!(why.len() < 260, "{}", why.len());
    }

    #[test]
    fn json_paths_compare_values() {
        let doc = json!({"status": {"booted": {"image": {"version": "v2"}}, "rollback": null},
                         "deployments": [{"serial": 1}]})
        .to_string();
        let e = Expect {
            json: vec![
                ("status.booted.image.version".into(), json!("v2")),
                ("deployments[0].serial".into(), json!(1.0)),
            ],
            ..Default::default()
        };
        assert!(evaluate(&e, &out(0, &doc, "")).passed());
        let e = Expect {
            json: vec![("status.booted.image.version".into(), json!("v3"))],
            ..Default::default()
        };
        assert_eq!(
            evaluate(&e, &out(0, &doc, "")),
            Verdict::Fail("expected status.booted.image.version to be \"v3\", it is \"v2\"".into())
        );
        let e = Expect {
            json: vec![("status.rollback.image".into(), json!("x"))],
            ..Default::default()
        };
        assert_eq!(
            evaluate(&e, &out(0, &doc, "")),
            Verdict::Fail(
                "expected status.rollback.image to be \"x\", but status.rollback is null, not an object with key \"image\"".into()
            )
        );
        let Verdict::Fail(why) = evaluate(&e, &out(0, "not json", "")) else {
            panic!()
        };
        assert!(why.starts_with("expected JSON on stdout"), "{why}");
    }

    #[test]
    fn deployments_slots() {
        let seen = DeploymentsSeen {
            booted: Some("v2".into()),
            staged: None,
            rollback: Some("v1".into()),
        };
        let want = DeploymentsExpect {
            booted: Some(Slot::Version("v2".into())),
            staged: Some(Slot::Absent),
            rollback: Some(Slot::Version("v1".into())),
        };
        assert!(evaluate_deployments(&want, &seen).passed());
        let want = DeploymentsExpect {
            booted: Some(Slot::Version("v1".into())),
            ..Default::default()
        };
        assert_eq!(
            evaluate_deployments(&want, &seen),
            Verdict::Fail(
                "expected booted v1, found v2 (booted v2, staged none, rollback v1)".into()
            )
        );
        let want = DeploymentsExpect {
            rollback: Some(Slot::Absent),
            ..Default::default()
        };
        assert!(!evaluate_deployments(&want, &seen).passed());
    }

    #[test]
    fn unavailable_probe_fails_with_its_reason() {
        let c = Check {
            title: "t".into(),
            probe: Probe::Guest { run: "true".into() },
            expect: Expect::default(),
            retry: crate::lab::RetryPolicy::once(),
            fail: "Is the VM running? Look at the console.".into(),
        };
        let v = evaluate_check(
            &c,
            &Observation::Unavailable("guest agent timed out".into()),
        );
        assert_eq!(
            v.explain(&c).unwrap(),
            "could not run the check: guest agent timed out\nIs the VM running? Look at the console."
        );
        assert!(evaluate_check(&c, &Observation::Command(Captured::default())).passed());
    }
}
