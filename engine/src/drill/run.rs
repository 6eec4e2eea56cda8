//! The bookkeeping every drill shares: steps with timings, evidence, checks, events.

use super::ops::{ExecOutput, GuestOps, HostOps, Published, Via};
use super::report::{Check, Evidence, Report, Side, Step, Verdict, excerpt};
use crate::events::{CancellationToken, Emitter, Event, Stream, cancellable};
use std::collections::BTreeMap;
use std::time::Instant;

/// Returned (as an error) by a drill that found a check failing that makes going on pointless.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// A step in progress.
pub struct StepRec {
    name: String,
    started: Instant,
    at: f64,
    evidence: Vec<Evidence>,
    checks: Vec<Check>,
}

/// A drill run: the guest and host it drives, and the timeline it writes.
pub struct Run<'a, G: GuestOps, H: HostOps> {
    pub guest: &'a mut G,
    pub host: &'a mut H,
    pub ev: Emitter,
    pub cancel: CancellationToken,
    started: Instant,
    steps: Vec<Step>,
    pub facts: BTreeMap<String, String>,
}

pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

impl<'a, G: GuestOps, H: HostOps> Run<'a, G, H> {
    pub fn new(guest: &'a mut G, host: &'a mut H, ev: Emitter, cancel: CancellationToken) -> Self {
        Run {
            guest,
            host,
            ev,
            cancel,
            started: Instant::now(),
            steps: Vec::new(),
            facts: BTreeMap::new(),
        }
    }

    pub fn begin(&mut self, name: &str) -> StepRec {
        self.ev.stage_started(&format!("drill: {name}"));
        self.ev.emit(Event::State {
            object: "drill".into(),
            state: name.into(),
            detail: String::new(),
        });
        StepRec {
            name: name.to_string(),
            started: Instant::now(),
            at: self.started.elapsed().as_secs_f64(),
            evidence: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Close a step. It is ok when all its checks held.
    pub fn end(&mut self, s: StepRec, detail: impl Into<String>) {
        let secs = s.started.elapsed().as_secs_f64();
        let ok = s.checks.iter().all(|c| c.ok);
        let stage = format!("drill: {}", s.name);
        // A failed step's time is no measure of the step (crate::timings).
        if ok {
            self.ev.stage_finished(&stage, secs, false);
        } else {
            self.ev.stage_failed(&stage, secs);
        }
        let detail = detail.into();
        self.ev.note("drill", format!("{}: {detail}", s.name));
        self.steps.push(Step {
            ok,
            name: s.name,
            at: s.at,
            secs,
            detail,
            evidence: s.evidence,
            checks: s.checks,
        });
    }

    /// Record a check; returns whether it held.
    pub fn check(
        &mut self,
        s: &mut StepRec,
        name: &str,
        ok: bool,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> bool {
        let c = Check {
            name: name.into(),
            ok,
            expected: expected.into(),
            actual: actual.into(),
        };
        self.ev.note(
            "drill",
            format!(
                "check {} {}: expected {}, got {}",
                if ok { "ok" } else { "FAIL" },
                c.name,
                c.expected,
                c.actual
            ),
        );
        s.checks.push(c);
        ok
    }

    /// Like [`Run::check`], but a failure ends the drill (after closing the step).
    pub fn require(
        &mut self,
        mut s: StepRec,
        name: &str,
        ok: bool,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Result<StepRec, anyhow::Error> {
        let expected = expected.into();
        let actual = actual.into();
        if self.check(&mut s, name, ok, expected.clone(), actual.clone()) {
            Ok(s)
        } else {
            self.end(s, format!("{name}: expected {expected}, got {actual}"));
            Err(CheckFailed(format!("{name}: expected {expected}, got {actual}")).into())
        }
    }

    /// Run a guest command, show it first, keep it as evidence with the lines matching `keep`
    /// (or the last lines).
    pub async fn exec(
        &mut self,
        s: &mut StepRec,
        argv: Vec<String>,
        keep: &[&str],
    ) -> anyhow::Result<ExecOutput> {
        self.ev.emit(Event::Command {
            stage: "guest".into(),
            argv: argv.clone(),
        });
        let t = Instant::now();
        let out = cancellable(&self.cancel, self.guest.exec(&argv)).await?;
        for l in out.stdout.lines() {
            self.ev.log("guest", Stream::Stdout, l);
        }
        for l in out.stderr.lines() {
            self.ev.log("guest", Stream::Stderr, l);
        }
        let mut text = out.stdout.clone();
        if !out.stderr.trim().is_empty() {
            text.push('\n');
            text.push_str(&out.stderr);
        }
        s.evidence.push(Evidence {
            side: Side::Guest,
            command: argv,
            exit: Some(out.exit),
            excerpt: excerpt(&text, keep, 12),
            secs: t.elapsed().as_secs_f64(),
        });
        Ok(out)
    }

    /// A guest command that must succeed; a non-zero exit ends the drill as a failure.
    pub async fn exec_ok(
        &mut self,
        s: StepRec,
        argv: Vec<String>,
        keep: &[&str],
    ) -> anyhow::Result<(StepRec, ExecOutput)> {
        let mut s = s;
        let out = self.exec(&mut s, argv.clone(), keep).await?;
        let s = self.require(
            s,
            &format!("`{}` succeeds", argv.join(" ")),
            out.success(),
            "exit 0",
            format!("exit {}", out.exit),
        )?;
        Ok((s, out))
    }

    /// Run a guest command without keeping it as evidence (polling loops keep only the last).
    pub async fn exec_quiet(&mut self, argv: &[String]) -> anyhow::Result<ExecOutput> {
        // Still shown: learners see every command sent to their guest.
        self.ev.emit(Event::Command {
            stage: "guest".into(),
            argv: argv.to_vec(),
        });
        cancellable(&self.cancel, self.guest.exec(argv)).await
    }

    /// Keep a command that ran through [`Run::exec_quiet`] as evidence.
    pub fn evidence(
        &mut self,
        s: &mut StepRec,
        argv: Vec<String>,
        out: &ExecOutput,
        keep: &[&str],
    ) {
        let mut text = out.stdout.clone();
        if !out.stderr.trim().is_empty() {
            text.push('\n');
            text.push_str(&out.stderr);
        }
        s.evidence.push(Evidence {
            side: Side::Guest,
            command: argv,
            exit: Some(out.exit),
            excerpt: excerpt(&text, keep, 12),
            secs: 0.0,
        });
    }

    /// Seconds since the drill started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn power_evidence(&mut self, s: &mut StepRec, what: &str, t: Instant, detail: &str) {
        s.evidence.push(Evidence {
            side: Side::Host,
            command: vec![what.to_string()],
            exit: None,
            excerpt: detail.to_string(),
            secs: t.elapsed().as_secs_f64(),
        });
    }

    pub async fn reboot(&mut self, s: &mut StepRec) -> anyhow::Result<()> {
        self.ev.emit(Event::State {
            object: "guest".into(),
            state: "rebooting".into(),
            detail: String::new(),
        });
        let t = Instant::now();
        cancellable(&self.cancel, self.guest.reboot()).await?;
        self.power_evidence(
            s,
            "reboot the guest and wait for its agent",
            t,
            "guest answers again",
        );
        Ok(())
    }

    pub async fn powercut(&mut self, s: &mut StepRec) -> anyhow::Result<()> {
        let t = Instant::now();
        cancellable(&self.cancel, self.guest.powercut()).await?;
        self.power_evidence(s, "QMP quit (power cut, no sync)", t, "QEMU gone");
        Ok(())
    }

    pub async fn power_on(&mut self, s: &mut StepRec) -> anyhow::Result<()> {
        let t = Instant::now();
        cancellable(&self.cancel, self.guest.power_on()).await?;
        self.power_evidence(
            s,
            "start the VM again and wait for its agent",
            t,
            "guest answers",
        );
        Ok(())
    }

    /// Ask the guest side whether a power cut could be recovered from (no guest command).
    pub async fn power_cycle_ready(&mut self, s: &mut StepRec) -> anyhow::Result<()> {
        let t = Instant::now();
        cancellable(&self.cancel, self.guest.power_cycle_ready()).await?;
        self.power_evidence(
            s,
            "the VM's record and disk are on the host (power on starts them again)",
            t,
            "yes",
        );
        Ok(())
    }

    pub async fn mount_updates(&mut self, s: &mut StepRec) -> anyhow::Result<()> {
        let t = Instant::now();
        let what = cancellable(&self.cancel, self.guest.mount_updates()).await?;
        self.power_evidence(s, "mount the update share in the guest", t, &what);
        Ok(())
    }

    pub async fn publish(
        &mut self,
        s: &mut StepRec,
        recipe: &str,
        version: &str,
        via: Via,
    ) -> anyhow::Result<Published> {
        let t = Instant::now();
        let p = cancellable(&self.cancel, self.host.publish(recipe, version, via)).await?;
        s.evidence.push(Evidence {
            side: Side::Host,
            command: vec![format!("build, commit and publish {recipe} {version}")],
            exit: None,
            excerpt: p.summary.clone(),
            secs: t.elapsed().as_secs_f64(),
        });
        Ok(p)
    }

    pub fn fact(&mut self, k: &str, v: impl Into<String>) {
        self.facts.insert(k.to_string(), v.into());
    }

    /// Turn what happened into a report.
    pub fn finish(
        self,
        drill: &str,
        vm: &str,
        family: &str,
        started_at: String,
        result: anyhow::Result<String>,
    ) -> Report {
        let failed: Vec<String> = self
            .steps
            .iter()
            .flat_map(|s| s.checks.iter())
            .filter(|c| !c.ok)
            .map(|c| format!("{}: expected {}, got {}", c.name, c.expected, c.actual))
            .collect();
        let (verdict, reason) = match result {
            Ok(summary) if failed.is_empty() => (Verdict::Pass, summary),
            Ok(_) => (Verdict::Fail, failed.join("; ")),
            Err(e) if e.is::<CheckFailed>() => (Verdict::Fail, e.to_string()),
            Err(e) => (Verdict::Error, format!("{e:#}")),
        };
        Report {
            drill: drill.into(),
            vm: vm.into(),
            family: family.into(),
            verdict,
            reason,
            started_at,
            total_secs: self.started.elapsed().as_secs_f64(),
            steps: self.steps,
            facts: self.facts,
        }
    }
}
