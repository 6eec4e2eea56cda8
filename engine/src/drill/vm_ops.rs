//! The real [`GuestOps`] and [`HostOps`]: a bootlab VM driven through its supervisor (guest agent,
//! QMP), and the offline pipeline (build, commit, publish to the update share).

use super::ops::{ExecOutput, GUEST_SHARE_DIR, GuestOps, HostOps, Published, Via};
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::recipe::{Family, Recipe};
use crate::vm::client::VmClient;
use anyhow::{Context, Result, bail};
use std::time::Duration;

/// How long a guest may take to answer again after a reboot or a power-on (TCG boots take
/// ~45–60 s here; a first boot after a power cut may also replay the journal).
pub const READY_WITHIN: Duration = Duration::from_secs(420);

/// A running VM as a drill's guest.
pub struct VmGuest {
    paths: Paths,
    name: String,
    client: VmClient,
    ev: Emitter,
}

impl VmGuest {
    /// Connect to a running VM; also returns the recipe it was made from, when recorded.
    pub async fn connect(
        paths: &Paths,
        name: &str,
        ev: &Emitter,
    ) -> Result<(VmGuest, Option<Recipe>)> {
        let client = VmClient::connect(paths, name).await?;
        let rec = client.status().await?;
        let recipe = match &rec.recipe {
            Some(r) => Some(
                crate::recipe::find(r)
                    .with_context(|| format!("VM {name} was made from recipe {r}"))?,
            ),
            None => None,
        };
        Ok((
            VmGuest {
                paths: paths.clone(),
                name: name.to_string(),
                client,
                ev: ev.clone(),
            },
            recipe,
        ))
    }

    pub fn client(&self) -> &VmClient {
        &self.client
    }

    /// Make the VM record follow the guest: the recipe its booted deployment's origin names
    /// (when it is one this bootlab knows) and the version it reports. Returns the recipe when
    /// it changed. Without this, after a switch the next drill would build the recorded recipe
    /// and point the guest back at it unasked.
    pub async fn follow_booted(&mut self, family: Family) -> Result<Option<Recipe>> {
        let live = crate::deploy::live::read_deployments(self, family).await?;
        let Some(booted) = live.best().and_then(|st| st.booted()).cloned() else {
            return Ok(None);
        };
        let rec = self.client.status().await?;
        // A bare-checksum origin (a redeploy) or a registry image names no recipe: keep it.
        let name = booted.recipe_hint().or(rec.recipe.clone());
        let Some(r) = name.as_deref().and_then(|n| crate::recipe::find(n).ok()) else {
            return Ok(None);
        };
        let version = booted
            .version
            .as_deref()
            .and_then(|meta| r.version_named_by(meta))
            .map(str::to_string);
        let changed = rec.recipe.as_deref() != Some(r.name());
        if !changed && (version.is_none() || rec.version == version) {
            return Ok(None);
        }
        self.client.set_recipe(r.name(), version.as_deref()).await?;
        self.ev.note(
            &crate::events::vm_stage(&self.name),
            format!(
                "the guest booted {}{}: the VM record follows (was {}{})",
                r.name(),
                version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
                rec.recipe.as_deref().unwrap_or("none"),
                rec.version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
            ),
        );
        Ok(changed.then_some(r))
    }
}

impl GuestOps for VmGuest {
    async fn exec(&mut self, argv: &[String]) -> Result<ExecOutput> {
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let o = self.client.exec(&a).await?;
        Ok(ExecOutput {
            exit: o.status(),
            stdout: o.stdout,
            stderr: o.stderr,
        })
    }

    async fn reboot(&mut self) -> Result<()> {
        self.client.reboot_and_wait(READY_WITHIN).await?;
        Ok(())
    }

    async fn powercut(&mut self) -> Result<()> {
        self.client.powercut().await?;
        Ok(())
    }

    async fn power_cycle_ready(&mut self) -> Result<()> {
        // power_on starts this VM's record again on the same overlay. Every VM's record and
        // overlay outlive a QEMU exit (only `vm down` without keep, or `vm rm`, removes them), so
        // what must hold is that both are on the host, with the disk the overlay is backed by.
        let rec = crate::vm::VmRecord::load(&self.paths, &self.name).with_context(|| {
            format!(
                "VM {}: no record on the host to start again after a power cut",
                self.name
            )
        })?;
        if !rec.overlay.is_file() {
            bail!(
                "VM {}: its disk {} is missing, so nothing could boot after a power cut",
                self.name,
                rec.overlay.display()
            );
        }
        if let Some(g) = rec.golden.as_ref().filter(|g| !g.is_file()) {
            bail!(
                "VM {}: the golden disk {} its overlay is backed by is missing, so nothing could boot after a power cut",
                self.name,
                g.display()
            );
        }
        Ok(())
    }

    async fn power_on(&mut self) -> Result<()> {
        // The supervisor records the stop a moment after QEMU is gone; starting before that is
        // refused ("already runs").
        let (paths, name) = (self.paths.clone(), self.name.clone());
        let stopped =
            crate::events::retry_until(Duration::from_secs(60), Duration::from_millis(250), || {
                let (paths, name) = (paths.clone(), name.clone());
                async move {
                    crate::vm::VmRecord::load(&paths, &name)
                        .ok()
                        .filter(|r| r.state == crate::vm::VmState::Stopped)
                        .map(|_| ())
                }
            })
            .await;
        if stopped.is_none() {
            bail!(
                "VM {} was not recorded stopped within 60 s of the power cut",
                self.name
            );
        }
        // The VM's record and disk outlive the cut; starting it again boots that same disk.
        let opts = crate::vm::lifecycle::UpOptions::new(self.name.clone());
        crate::vm::lifecycle::up(&self.paths, opts, &self.ev, &CancellationToken::new()).await?;
        self.client = VmClient::connect(&self.paths, &self.name).await?;
        Ok(())
    }

    async fn mount_updates(&mut self) -> Result<String> {
        let newly = self.client.mount_share().await?;
        // Where depends on the family (bootc guests see it at /var/mnt/share): the record says.
        let at = crate::vm::VmRecord::load(&self.paths, &self.name)
            .map(|r| r.share_dir().to_string())
            .unwrap_or_else(|_| GUEST_SHARE_DIR.to_string());
        Ok(if newly {
            format!("mounted the update share at {at} (9p, read-only)")
        } else {
            format!("update share already mounted at {at}")
        })
    }
}

/// The offline pipeline as a drill's host.
pub struct PipelineHost {
    paths: Paths,
    ev: Emitter,
    cancel: CancellationToken,
}

impl PipelineHost {
    pub fn new(paths: Paths, ev: Emitter, cancel: CancellationToken) -> PipelineHost {
        PipelineHost { paths, ev, cancel }
    }
}

impl HostOps for PipelineHost {
    async fn publish(&mut self, recipe: &str, version: &str, via: Via) -> Result<Published> {
        let r = crate::recipe::find(recipe)?;
        let v = r.resolve_version(Some(version))?;
        if r.file.family == Family::Bootc {
            return crate::drill::bootc::publish(&self.paths, &r, v, via, &self.ev, &self.cancel)
                .await;
        }
        let (paths, ev, cancel) = (&self.paths, &self.ev, &self.cancel);
        let (b, p) =
            crate::pipeline::with_image_commit(
                paths,
                &r,
                v,
                "publish",
                ev,
                cancel,
                |commit| async move {
                    crate::pipeline::publish(paths, recipe, &commit, ev, cancel).await
                },
            )
            .await?;
        let summary = format!(
            "{recipe} {version}: {} commit {} on {}; published (branch was {})",
            if b.cached { "cached" } else { "built" },
            &b.commit[..12.min(b.commit.len())],
            p.branch,
            p.previous
                .as_deref()
                .map(|c| &c[..12.min(c.len())])
                .unwrap_or("new"),
        );
        Ok(Published {
            recipe: recipe.to_string(),
            version: version.to_string(),
            branch: p.branch,
            commit: Some(p.commit),
            image: None,
            digest: None,
            summary,
            requires_verity: false,
        })
    }
}
