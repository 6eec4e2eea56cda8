//! The live deployments of a running guest, read through its agent.

use super::HostStatus;
use crate::drill::ops::GuestOps;
use crate::recipe::Family;
use anyhow::{Context, Result};
use serde::Serialize;

/// What the guest said, parsed, with the raw text kept for the curious.
#[derive(Debug, Clone, Serialize)]
pub struct LiveStatus {
    /// From `ostree admin status` (`--json` when the guest's ostree has it).
    pub ostree: Option<HostStatus>,
    /// From `bootc status --format=json` (bootc family only).
    pub bootc: Option<HostStatus>,
    /// The commands that answered and their output.
    pub raw: Vec<(Vec<String>, String)>,
}

impl LiveStatus {
    /// The richest view: bootc's when present, else ostree's.
    pub fn best(&self) -> Option<&HostStatus> {
        self.bootc.as_ref().or(self.ostree.as_ref())
    }
}

fn sv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Ask the guest. `ostree admin status --json` first (ostree ≥ 2025.3), the text otherwise; for
/// the bootc family also `bootc status --format=json`.
pub async fn read<G: GuestOps>(guest: &mut G, family: Family) -> Result<LiveStatus> {
    read_with(guest, family, true).await
}

/// [`read`] without the composefs facts: a few guest calls per deployment and a copy of each
/// composefs image less, for the checks that ask only which deployments there are (lab checks
/// run on every step; under TCG each guest call costs).
pub async fn read_deployments<G: GuestOps>(guest: &mut G, family: Family) -> Result<LiveStatus> {
    read_with(guest, family, false).await
}

async fn read_with<G: GuestOps>(
    guest: &mut G,
    family: Family,
    composefs: bool,
) -> Result<LiveStatus> {
    let mut live = LiveStatus {
        ostree: None,
        bootc: None,
        raw: Vec::new(),
    };
    let json = sv(&["ostree", "admin", "status", "--json"]);
    let out = guest.exec(&json).await?;
    if out.success() && out.stdout.trim_start().starts_with('{') {
        live.ostree = Some(super::ostree::parse_json(&out.stdout)?);
        live.raw.push((json, out.stdout));
    } else {
        let text = super::ostree::status_argv();
        let out = guest.exec(&text).await?;
        if !out.success() {
            anyhow::bail!(
                "`ostree admin status` failed in the guest (exit {}): {}",
                out.exit,
                out.stderr.trim()
            );
        }
        live.ostree = Some(super::ostree::parse_text(&out.stdout)?);
        live.raw.push((text, out.stdout));
    }
    if composefs && let Some(st) = live.ostree.as_mut() {
        super::composefs::read_live(guest, &mut st.deployments).await?;
    }
    if family == Family::Bootc {
        let a = super::bootc::status_argv();
        let out = guest.exec(&a).await?;
        if !out.success() {
            anyhow::bail!(
                "`bootc status --format=json` failed in the guest (exit {}): {}",
                out.exit,
                out.stderr.trim()
            );
        }
        let mut b = super::bootc::parse(&out.stdout).context("bootc status")?;
        // bootc says `composefs: null` for ostree-backed deployments: take what was read above.
        if let Some(o) = &live.ostree {
            for d in &mut b.deployments {
                d.composefs = o
                    .deployments
                    .iter()
                    .find(|x| x.checksum == d.checksum && x.serial == d.serial)
                    .and_then(|x| x.composefs.clone());
            }
        }
        live.bootc = Some(b);
        live.raw.push((a, out.stdout));
    }
    Ok(live)
}
