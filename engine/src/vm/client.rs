//! Talking to a VM's supervisor: the API drills, labs, the TUI and the CLI use.
//!
//! Each request opens its own connection to the control socket, so calls can run concurrently
//! (an `exec` does not block a `status`). Every call is async and can simply be dropped to
//! cancel it.

use super::proto::{Reply, Request, SnapshotDone, VmStamped};
use super::{VmRecord, VmState};
use crate::paths::Paths;
use crate::tools::qmp::qga::ExecOutput;
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Default time a guest command may run.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a live supervisor may take to answer on its control socket (QEMU started, a
/// snapshot loaded) before a client gives up on it.
pub const ADOPT_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct VmClient {
    pub name: String,
    dir: PathBuf,
    control: PathBuf,
}

impl VmClient {
    /// A client for the VM `name`; fails when it has no live supervisor.
    pub async fn connect(paths: &Paths, name: &str) -> Result<VmClient> {
        let dir = VmRecord::dir(paths, name);
        let rec = VmRecord::load(paths, name)?;
        if rec.state == VmState::Stopped {
            bail!("VM {name} is stopped ({})", rec.detail);
        }
        let c = VmClient {
            name: name.into(),
            dir,
            control: rec.sockets.control.clone(),
        };
        let Err(e) = c.status().await else {
            return Ok(c);
        };
        // A supervisor binds its control socket once QEMU runs. One that lives but does not
        // answer yet is still starting (its `vm up` may have been killed): adopt it by waiting,
        // instead of calling it dead.
        let dir_s = c.dir.to_string_lossy().into_owned();
        let starting = |r: &VmRecord| {
            r.supervisor_pid
                .is_some_and(|p| super::procs::alive_with(p, &dir_s))
        };
        if starting(&rec) {
            let deadline = tokio::time::Instant::now() + ADOPT_WITHIN;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if c.status().await.is_ok() {
                    return Ok(c);
                }
                match VmRecord::load(paths, name) {
                    Ok(r) if starting(&r) => {}
                    _ => break,
                }
            }
        }
        Err(e).with_context(|| {
            format!(
                "VM {name} has no live supervisor (try `bootlab vm ls`, which clears stale VMs)"
            )
        })
    }

    /// Like [`VmClient::connect`] but waits (up to `within`) for the control socket to appear:
    /// used right after starting a supervisor.
    pub async fn connect_within(paths: &Paths, name: &str, within: Duration) -> Result<VmClient> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match Self::connect(paths, name).await {
                Ok(c) => return Ok(c),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    // A record that says stopped will not come back by waiting.
                    if let Ok(r) = VmRecord::load(paths, name)
                        && r.state == VmState::Stopped
                    {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn call(&self, req: &Request, within: Duration) -> Result<serde_json::Value> {
        let fut = async {
            let mut conn = UnixStream::connect(&self.control)
                .await
                .with_context(|| format!("connecting to {}", self.control.display()))?;
            let mut line = serde_json::to_string(req)?;
            line.push('\n');
            conn.write_all(line.as_bytes()).await?;
            let mut r = BufReader::new(conn);
            let mut reply = String::new();
            if r.read_line(&mut reply).await? == 0 {
                bail!("the supervisor closed the connection without answering");
            }
            let reply: Reply = serde_json::from_str(&reply).context("bad reply")?;
            if reply.ok {
                Ok(reply.data)
            } else {
                Err(anyhow!(
                    reply.error.unwrap_or_else(|| "unknown error".into())
                ))
            }
        };
        tokio::time::timeout(within, fut)
            .await
            .map_err(|_| anyhow!("VM {}: no answer within {}s", self.name, within.as_secs()))?
            .with_context(|| format!("VM {}", self.name))
    }

    fn data<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T> {
        serde_json::from_value(v).context("unexpected reply")
    }

    pub async fn status(&self) -> Result<VmRecord> {
        Self::data(self.call(&Request::Status, Duration::from_secs(10)).await?)
    }

    /// Wait until the guest agent answers; errors carry the console tail.
    pub async fn wait_ready(&self, within: Duration) -> Result<VmRecord> {
        let req = Request::WaitReady {
            timeout_secs: within.as_secs().max(1),
        };
        Self::data(self.call(&req, within + Duration::from_secs(10)).await?)
    }

    /// Run `argv` in the guest (no shell) and return its exit code and output.
    pub async fn exec(&self, argv: &[&str]) -> Result<ExecOutput> {
        self.exec_with(argv, None, EXEC_TIMEOUT).await
    }

    /// Run a shell command line in the guest (`/bin/sh -c`).
    pub async fn sh(&self, script: &str) -> Result<ExecOutput> {
        self.exec(&["/bin/sh", "-c", script]).await
    }

    pub async fn exec_with(
        &self,
        argv: &[&str],
        input: Option<&[u8]>,
        within: Duration,
    ) -> Result<ExecOutput> {
        let req = Request::Exec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout_secs: within.as_secs().max(1),
            input_b64: input.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        };
        Self::data(self.call(&req, within + Duration::from_secs(30)).await?)
    }

    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let req = Request::ReadFile {
            path: path.into(),
            max_bytes: 64 << 20,
        };
        let b64: String = Self::data(self.call(&req, Duration::from_secs(120)).await?)?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }

    /// Reboot the guest from inside; returns once QEMU saw the reset (call `wait_ready` next).
    pub async fn reboot(&self) -> Result<()> {
        self.call(&Request::Reboot, Duration::from_secs(330))
            .await
            .map(drop)
    }

    /// Reboot and wait for the guest agent again.
    pub async fn reboot_and_wait(&self, within: Duration) -> Result<VmRecord> {
        self.reboot().await?;
        self.wait_ready(within).await
    }

    /// ACPI power button; returns the SHUTDOWN reason once QEMU exited.
    pub async fn powerdown(&self, within: Duration) -> Result<Option<String>> {
        let req = Request::Powerdown {
            timeout_secs: within.as_secs().max(1),
        };
        Self::data(self.call(&req, within + Duration::from_secs(15)).await?)
    }

    /// Power cut (QMP quit): QEMU exits at once, no clean shutdown in the guest.
    pub async fn powercut(&self) -> Result<Option<String>> {
        Self::data(
            self.call(&Request::Powercut, Duration::from_secs(30))
                .await?,
        )
    }

    pub async fn reset(&self) -> Result<()> {
        self.call(&Request::Reset, Duration::from_secs(45))
            .await
            .map(drop)
    }
    pub async fn pause(&self) -> Result<()> {
        self.call(&Request::Pause, Duration::from_secs(30))
            .await
            .map(drop)
    }
    pub async fn resume(&self) -> Result<()> {
        self.call(&Request::Resume, Duration::from_secs(30))
            .await
            .map(drop)
    }

    pub async fn snapshot_save(&self, tag: &str) -> Result<SnapshotDone> {
        let req = Request::SnapshotSave { tag: tag.into() };
        Self::data(self.call(&req, Duration::from_secs(1000)).await?)
    }

    /// Save the machine state into `path` (see [`crate::tools::qmp::Qmp::save_state`]); the
    /// guest stays stopped afterwards.
    pub async fn state_save(&self, path: &std::path::Path) -> Result<SnapshotDone> {
        let req = Request::StateSave { path: path.into() };
        Self::data(self.call(&req, Duration::from_secs(1000)).await?)
    }

    /// Load a snapshot and wait until the guest agent answers again (re-synced).
    pub async fn snapshot_restore(&self, tag: &str, within: Duration) -> Result<SnapshotDone> {
        let req = Request::SnapshotRestore {
            tag: tag.into(),
            timeout_secs: within.as_secs().max(1),
        };
        Self::data(self.call(&req, within + Duration::from_secs(900)).await?)
    }

    /// Mount the host update folder at /run/bootlab/updates (true when it was not mounted).
    pub async fn mount_share(&self) -> Result<bool> {
        Self::data(
            self.call(&Request::MountShare, Duration::from_secs(120))
                .await?,
        )
    }
    /// The guest now runs `recipe` at `version`: the supervisor records it.
    pub async fn set_recipe(&self, recipe: &str, version: Option<&str>) -> Result<()> {
        let req = Request::SetRecipe {
            recipe: recipe.to_string(),
            version: version.map(str::to_string),
        };
        self.call(&req, Duration::from_secs(10)).await.map(drop)
    }
    pub async fn unmount_share(&self) -> Result<bool> {
        Self::data(
            self.call(&Request::UnmountShare, Duration::from_secs(120))
                .await?,
        )
    }

    pub async fn screendump(&self, png: &Path) -> Result<()> {
        let req = Request::Screendump {
            path: png.to_string_lossy().into_owned(),
        };
        self.call(&req, Duration::from_secs(30)).await.map(drop)
    }

    /// Events from now on (state changes, console lines, QMP events), until the VM stops or the
    /// receiver is dropped. The first item is the current state.
    pub async fn subscribe(&self) -> Result<tokio::sync::mpsc::UnboundedReceiver<VmStamped>> {
        let mut conn = UnixStream::connect(&self.control).await?;
        let mut line = serde_json::to_string(&Request::Subscribe)?;
        line.push('\n');
        conn.write_all(line.as_bytes()).await?;
        let (r, w) = conn.into_split();
        let mut lines = BufReader::new(r).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| anyhow!("subscribe: no answer"))??
            .ok_or_else(|| anyhow!("subscribe: connection closed"))?;
        let reply: Reply = serde_json::from_str(&first)?;
        let rec: VmRecord = Self::data(reply.data)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(VmStamped::now(super::VmEvent::State {
            state: rec.state,
            detail: rec.detail,
        }));
        tokio::spawn(async move {
            let _w = w; // closing our half tells the supervisor we left
            while let Ok(Some(l)) = lines.next_line().await {
                let Ok(ev) = serde_json::from_str::<VmStamped>(&l) else {
                    continue;
                };
                if tx.send(ev).is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }

    /// Forward events to an engine [`crate::events::Emitter`] until the VM stops or `cancel`.
    pub async fn forward(
        &self,
        emitter: crate::events::Emitter,
        cancel: crate::events::CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let mut rx = self.subscribe().await?;
        let name = self.name.clone();
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => emitter.emit(ev.to_engine(&name).event),
                        None => break,
                    },
                    _ = cancel.cancelled() => break,
                }
            }
        }))
    }
}
