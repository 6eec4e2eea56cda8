//! What `bootlab lab selftest` leaves: one [`LabReport`] per lab, as JSON and as JUnit XML (one
//! testsuite per lab, one testcase per check named `step-id/check title`).

use super::model::Lab;
use super::runner::{LabRunner, StepOutcome};
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabReport {
    pub lab: String,
    pub title: String,
    pub vm: String,
    pub passed: bool,
    pub secs: f64,
    /// Steps that ran, in order.
    pub steps: Vec<StepOutcome>,
    /// Steps not run because an earlier one failed (or the run was cancelled).
    pub skipped: Vec<String>,
    /// Why the lab stopped early, when it did.
    pub error: Option<String>,
}

/// The JUnit testcase (after the step's checks) that says a learner step's checks failed
/// before its solve ran.
pub const BEFORE_SOLVE_CASE: &str = "checks fail before the solve";

impl LabReport {
    /// Checks run, plus one "checks fail before the solve" case per learner step.
    pub fn checks(&self) -> usize {
        self.steps
            .iter()
            .map(|s| s.checks.len() + usize::from(s.before_solve.is_some()))
            .sum()
    }
    pub fn failures(&self) -> usize {
        let before = self
            .steps
            .iter()
            .filter_map(|s| s.before_solve.as_ref())
            .filter(|b| !b.proves_the_learner_is_needed())
            .count();
        before
            + self
                .steps
                .iter()
                .flat_map(|s| &s.checks)
                .filter(|c| !c.passed)
                .count()
    }
}

/// Run every step of `lab` with its solve, in order, stopping at the first step that fails; then
/// stop and remove the lab's VM whatever happened (also when cancelled).
pub async fn selftest(
    lab: &Lab,
    vm: Option<String>,
    paths: &Paths,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> LabReport {
    let t0 = Instant::now();
    let mut runner = LabRunner::new(lab.clone(), vm, paths.clone(), ev.clone(), cancel.clone());
    let mut report = LabReport {
        lab: lab.id.clone(),
        title: lab.title.clone(),
        vm: runner.vm.clone(),
        passed: false,
        secs: 0.0,
        steps: vec![],
        skipped: vec![],
        error: None,
    };
    let mut stop = false;
    for step in &lab.steps {
        if stop || cancel.is_cancelled() {
            report.skipped.push(step.id.clone());
            continue;
        }
        let o = runner.run_step_selftest(step).await;
        if !o.passed {
            stop = true;
            report.error = Some(format!("step {} failed", step.id));
        }
        report.steps.push(o);
    }
    if cancel.is_cancelled() && report.error.is_none() {
        report.error = Some("cancelled".into());
    }
    if let Err(e) = runner.stop_vm().await {
        ev.note(
            &crate::events::lab_stage(&lab.id, None),
            format!("could not stop VM {}: {e:#}", runner.vm),
        );
        report
            .error
            .get_or_insert(format!("stopping the VM: {e:#}"));
    }
    report.passed = report.error.is_none() && report.steps.iter().all(|s| s.passed);
    report.secs = t0.elapsed().as_secs_f64();
    report
}

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: one testsuite per lab, one testcase per check; a failed check's `<failure>` carries
/// the learner-facing message. Checks of skipped steps are `<skipped/>`.
pub fn junit(reports: &[(LabReport, &Lab)]) -> String {
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (r, lab) in reports {
        let skipped: Vec<(&str, &str)> = lab
            .steps
            .iter()
            .filter(|s| r.skipped.contains(&s.id))
            .flat_map(|s| {
                s.checks
                    .iter()
                    .map(move |c| (s.id.as_str(), c.title.as_str()))
            })
            .collect();
        o.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.1}\">\n",
            xml(&r.lab),
            r.checks() + skipped.len(),
            r.failures(),
            skipped.len(),
            r.secs
        ));
        for s in &r.steps {
            for c in &s.checks {
                o.push_str(&format!(
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.1}\"",
                    xml(&r.lab),
                    xml(&format!("{}/{}", s.step, c.title)),
                    c.secs
                ));
                match &c.message {
                    None => o.push_str("/>\n"),
                    Some(m) => o.push_str(&format!(
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                        // Parsers fold a raw newline in an attribute into a space.
                        xml(m).replace('\n', "&#10;"),
                        xml(&format!("{m}\n(after {} attempts)", c.attempts))
                    )),
                }
            }
            if let Some(b) = &s.before_solve {
                o.push_str(&format!(
                    "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.1}\"",
                    xml(&r.lab),
                    xml(&format!("{}/{BEFORE_SOLVE_CASE}", s.step)),
                    b.secs
                ));
                if b.proves_the_learner_is_needed() {
                    o.push_str("/>\n");
                } else {
                    let m = format!(
                        "every check passed before the solve ran: the step passes with nobody acting (passed: {}; could not observe: {})",
                        b.passed.join("; "),
                        b.unobserved
                            .iter()
                            .map(|(t, w)| format!("{t} ({w})"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                    o.push_str(&format!(
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                        xml(&m),
                        xml(&m)
                    ));
                }
            }
        }
        for (step, title) in skipped {
            o.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\"><skipped message=\"an earlier step failed\"/></testcase>\n",
                xml(&r.lab),
                xml(&format!("{step}/{title}"))
            ));
        }
        o.push_str("  </testsuite>\n");
    }
    o.push_str("</testsuites>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_what_breaks_attributes() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;?");
    }
}
