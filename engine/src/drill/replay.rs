//! A guest and a host that replay recordings: the drills run against them exactly as against a
//! VM, and the replay checks that bootlab sends the commands the recording expects, in order.
//! For what cannot run here (real bootc on Fedora/CentOS), the recordings are real `bootc status`
//! documents.

use super::ops::{ExecOutput, GuestOps, HostOps, Published, Via};
use anyhow::{Result, anyhow};
use std::collections::VecDeque;

/// One thing bootlab asked of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Exec(Vec<String>),
    Reboot,
    Powercut,
    PowerOn,
    MountUpdates,
}

/// A scripted guest: each call must match the next expected one.
#[derive(Debug, Default)]
pub struct ReplayGuest {
    script: VecDeque<(Call, ExecOutput)>,
    /// Everything bootlab asked, in order (also the calls that did not match).
    pub log: Vec<Call>,
    /// Why this guest could not be power-cycled (`None`: it can).
    no_power_cycle: Option<String>,
}

impl ReplayGuest {
    pub fn new() -> ReplayGuest {
        ReplayGuest::default()
    }
    /// Expect `argv`; answer with `out`.
    pub fn exec(mut self, argv: &[&str], out: ExecOutput) -> Self {
        self.script.push_back((
            Call::Exec(argv.iter().map(|s| s.to_string()).collect()),
            out,
        ));
        self
    }
    /// Expect `argv` (owned); answer with `out`.
    pub fn exec_owned(mut self, argv: Vec<String>, out: ExecOutput) -> Self {
        self.script.push_back((Call::Exec(argv), out));
        self
    }
    pub fn reboot(mut self) -> Self {
        self.script.push_back((Call::Reboot, ExecOutput::default()));
        self
    }
    pub fn powercut(mut self) -> Self {
        self.script
            .push_back((Call::Powercut, ExecOutput::default()));
        self
    }
    pub fn power_on(mut self) -> Self {
        self.script
            .push_back((Call::PowerOn, ExecOutput::default()));
        self
    }
    pub fn mount_updates(mut self) -> Self {
        self.script
            .push_back((Call::MountUpdates, ExecOutput::default()));
        self
    }
    /// A guest whose power cut nothing could recover from, for the reason given.
    pub fn cannot_power_cycle(mut self, why: &str) -> Self {
        self.no_power_cycle = Some(why.to_string());
        self
    }
    /// Calls the recording still expects.
    pub fn remaining(&self) -> Vec<Call> {
        self.script.iter().map(|(c, _)| c.clone()).collect()
    }

    fn next(&mut self, call: Call) -> Result<ExecOutput> {
        self.log.push(call.clone());
        match self.script.pop_front() {
            Some((want, out)) if want == call => Ok(out),
            Some((want, _)) => Err(anyhow!(
                "replay: bootlab sent {call:?} but the recording expects {want:?}"
            )),
            None => Err(anyhow!(
                "replay: bootlab sent {call:?} after the recording ended"
            )),
        }
    }
}

impl GuestOps for ReplayGuest {
    async fn exec(&mut self, argv: &[String]) -> Result<ExecOutput> {
        self.next(Call::Exec(argv.to_vec()))
    }
    async fn reboot(&mut self) -> Result<()> {
        self.next(Call::Reboot).map(|_| ())
    }
    async fn powercut(&mut self) -> Result<()> {
        self.next(Call::Powercut).map(|_| ())
    }
    async fn power_on(&mut self) -> Result<()> {
        self.next(Call::PowerOn).map(|_| ())
    }
    async fn power_cycle_ready(&mut self) -> Result<()> {
        match &self.no_power_cycle {
            Some(why) => Err(anyhow!("{why}")),
            None => Ok(()),
        }
    }
    async fn mount_updates(&mut self) -> Result<String> {
        self.next(Call::MountUpdates)
            .map(|_| "replayed: share mounted".to_string())
    }
}

/// A host that hands out prepared [`Published`] results and records what it was asked.
#[derive(Debug, Default)]
pub struct ReplayHost {
    pub results: VecDeque<Published>,
    /// (recipe, version) asked for, in order.
    pub asked: Vec<(String, String)>,
}

impl ReplayHost {
    pub fn new(results: Vec<Published>) -> ReplayHost {
        ReplayHost {
            results: results.into(),
            asked: Vec::new(),
        }
    }
}

impl HostOps for ReplayHost {
    async fn publish(&mut self, recipe: &str, version: &str, _via: Via) -> Result<Published> {
        self.asked.push((recipe.to_string(), version.to_string()));
        self.results
            .pop_front()
            .ok_or_else(|| anyhow!("replay: no recorded publish for {recipe} {version}"))
    }
}

/// Wraps a real guest and records every call and answer: the raw material for replays and for
/// the captured fixtures of `tests/fixtures/ostree-status/`.
pub struct Recorder<G: GuestOps> {
    pub inner: G,
    pub calls: Vec<(Call, ExecOutput)>,
}

impl<G: GuestOps> Recorder<G> {
    pub fn new(inner: G) -> Recorder<G> {
        Recorder {
            inner,
            calls: Vec::new(),
        }
    }
    /// The stdout of every recorded run of `argv`, in order.
    pub fn outputs_of(&self, argv: &[&str]) -> Vec<&ExecOutput> {
        let want: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.calls
            .iter()
            .filter(|(c, _)| matches!(c, Call::Exec(a) if *a == want))
            .map(|(_, o)| o)
            .collect()
    }
    /// A replay of what was recorded.
    pub fn to_replay(&self) -> ReplayGuest {
        let mut g = ReplayGuest::new();
        g.script = self.calls.iter().cloned().collect();
        g
    }
}

impl<G: GuestOps> GuestOps for Recorder<G> {
    async fn exec(&mut self, argv: &[String]) -> Result<ExecOutput> {
        let out = self.inner.exec(argv).await?;
        self.calls.push((Call::Exec(argv.to_vec()), out.clone()));
        Ok(out)
    }
    async fn reboot(&mut self) -> Result<()> {
        self.inner.reboot().await?;
        self.calls.push((Call::Reboot, ExecOutput::default()));
        Ok(())
    }
    async fn powercut(&mut self) -> Result<()> {
        self.inner.powercut().await?;
        self.calls.push((Call::Powercut, ExecOutput::default()));
        Ok(())
    }
    async fn power_on(&mut self) -> Result<()> {
        self.inner.power_on().await?;
        self.calls.push((Call::PowerOn, ExecOutput::default()));
        Ok(())
    }
    async fn power_cycle_ready(&mut self) -> Result<()> {
        self.inner.power_cycle_ready().await
    }
    async fn mount_updates(&mut self) -> Result<String> {
        let s = self.inner.mount_updates().await?;
        self.calls.push((Call::MountUpdates, ExecOutput::default()));
        Ok(s)
    }
}
