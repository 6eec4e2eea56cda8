//! QEMU's two JSON sockets, always through the `qapi` crate: QMP (the machine monitor) here,
//! the guest agent in [`qga`].
//!
//! Every connect and every call has a timeout: a QEMU that stopped answering must never hang a
//! caller. QMP events are read by one task per connection (it also routes replies) and fanned out
//! on a broadcast channel.

pub mod qga;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use qapi::futures::{QapiService, QmpStreamTokio};
use qapi::qmp;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use qapi::qmp::{Event as QmpEvent, RunState, ShutdownCause};

/// How long a single QMP command may take before we call QEMU unresponsive. Snapshot jobs are
/// started here and waited for separately, so commands themselves are short.
pub const QMP_CALL_TIMEOUT: Duration = Duration::from_secs(60);

type QmpWriter = QmpStreamTokio<WriteHalf<UnixStream>>;

/// A negotiated QMP connection.
#[derive(Clone)]
pub struct Qmp {
    service: Arc<QapiService<QmpWriter>>,
    events: broadcast::Sender<QmpEvent>,
    closed: CancellationToken,
    pub qemu_version: String,
}

impl Qmp {
    /// Connect to a QMP socket, retrying while QEMU has not created it yet (for up to `within`),
    /// read the greeting and negotiate capabilities.
    pub async fn connect(path: &Path, within: Duration) -> Result<Qmp> {
        let deadline = tokio::time::Instant::now() + within;
        let stream = loop {
            let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                let neg = QmpStreamTokio::open_uds(path).await?;
                let v = &neg.capabilities.QMP.version.qemu;
                let version = format!("{}.{}.{}", v.major, v.minor, v.micro);
                let stream = neg.negotiate().await?;
                Ok::<_, std::io::Error>((stream, version))
            })
            .await;
            match attempt {
                Ok(Ok(s)) => break s,
                Ok(Err(e)) if tokio::time::Instant::now() >= deadline => {
                    return Err(anyhow!(e)).with_context(|| {
                        format!("cannot connect to QMP socket {}", path.display())
                    });
                }
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    anyhow::bail!("QMP socket {} did not answer", path.display())
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let ((stream, qemu_version),) = (stream,);
        let (service, mut events) = stream.into_parts();
        let (tx, _) = broadcast::channel(256);
        let closed = CancellationToken::new();
        {
            // This task must keep polling: it is what routes command replies, not only events.
            let tx = tx.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                while let Some(ev) = events.next().await {
                    match ev {
                        Ok(ev) => {
                            let _ = tx.send(ev);
                        }
                        // A message the 9.1 schema cannot parse ends the stream in tokio-util;
                        // report it and let the owner reconnect.
                        Err(e) => {
                            log_line!("qmp: event stream error: {e}");
                            break;
                        }
                    }
                }
                closed.cancel();
            });
        }
        Ok(Qmp {
            service: Arc::new(service),
            events: tx,
            closed,
            qemu_version,
        })
    }

    /// Events from now on (subscribe before sending the command whose event you wait for).
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Fires when the connection is gone (QEMU exited, or the stream broke).
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Run any QMP command with the default timeout.
    pub async fn execute<C>(&self, cmd: C) -> Result<C::Ok>
    where
        C: qmp::QmpCommand + 'static,
    {
        self.execute_within(cmd, QMP_CALL_TIMEOUT).await
    }

    pub async fn execute_within<C>(&self, cmd: C, within: Duration) -> Result<C::Ok>
    where
        C: qmp::QmpCommand + 'static,
    {
        let name = <C as qapi::Command>::NAME;
        let fut = self.service.execute(cmd);
        tokio::select! {
            r = tokio::time::timeout(within, fut) => match r {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(anyhow!("QMP {name}: {e}")),
                Err(_) => Err(anyhow!("QMP {name}: no answer within {}s", within.as_secs())),
            },
            _ = self.closed.cancelled() => Err(anyhow!("QMP {name}: QEMU closed the monitor")),
        }
    }

    pub async fn query_status(&self) -> Result<qmp::StatusInfo> {
        self.execute(qmp::query_status {}).await
    }
    pub async fn stop(&self) -> Result<()> {
        self.execute(qmp::stop {}).await.map(drop)
    }
    pub async fn cont(&self) -> Result<()> {
        self.execute(qmp::cont {}).await.map(drop)
    }
    pub async fn system_reset(&self) -> Result<()> {
        self.execute(qmp::system_reset {}).await.map(drop)
    }
    pub async fn system_powerdown(&self) -> Result<()> {
        self.execute(qmp::system_powerdown {}).await.map(drop)
    }
    /// Power cut: QEMU exits at once, the guest gets no chance to shut down. The reply may race
    /// QEMU's exit, so a closed connection counts as success.
    pub async fn quit(&self) -> Result<()> {
        match self
            .execute_within(qmp::quit {}, Duration::from_secs(10))
            .await
        {
            Ok(_) => Ok(()),
            Err(_) if self.closed.is_cancelled() => Ok(()),
            Err(e) => Err(e),
        }
    }
    /// Stop the vCPUs and save the whole machine (RAM and devices) into `file` in QEMU's
    /// `mapped-ram` migration format: every RAM page at a fixed offset of a sparse file, zero
    /// pages left out. The vCPUs stay stopped (QEMU is then in `postmigrate`). A saved state
    /// loads only into the same QEMU with the same devices ([`Qmp::load_state`]).
    pub async fn save_state(&self, file: &Path, within: Duration) -> Result<()> {
        self.stop().await?;
        self.set_mapped_ram(true).await?;
        let saved = async {
            self.execute(qmp::migrate {
                channels: Some(vec![file_channel(file)]),
                detach: None,
                resume: None,
                uri: None,
            })
            .await?;
            self.wait_migration("saving the machine state", within)
                .await
        }
        .await;
        // Off again either way, for the snapshots a resumed guest may still save (see below).
        let off = self.set_mapped_ram(false).await;
        saved.and(off)
    }

    /// Load a state saved by [`Qmp::save_state`] into this QEMU (started with `-incoming
    /// defer`) and run it. QEMU reads the RAM pages straight into guest memory: measured, 0.05–0.09
    /// s for a booted guest's 226 MB, where `-loadvm` of the same state from a qcow2 took 0.35–0.40 s.
    pub async fn load_state(&self, file: &Path, within: Duration) -> Result<()> {
        self.set_mapped_ram(true).await?;
        self.execute(qmp::migrate_incoming {
            channels: Some(vec![file_channel(file)]),
            exit_on_error: Some(false),
            uri: None,
        })
        .await?;
        self.wait_migration("loading the machine state", within)
            .await?;
        // Off again: `snapshot-save` writes its state through the same migration code into the
        // qcow2, which has no fixed offsets for mapped-ram (it failed with "Error while writing
        // VM state: Input/output error").
        self.set_mapped_ram(false).await?;
        self.cont().await
    }

    async fn set_mapped_ram(&self, on: bool) -> Result<()> {
        self.execute(qmp::migrate_set_capabilities {
            capabilities: vec![qmp::MigrationCapabilityStatus {
                capability: qmp::MigrationCapability::mapped_ram,
                state: on,
            }],
        })
        .await
        .map(drop)
    }

    /// Polls `query-migrate` (the MIGRATION event needs the `events` capability) until the
    /// migration completed or failed.
    async fn wait_migration(&self, what: &str, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let info = self.execute(qmp::query_migrate {}).await?;
            match info.status {
                Some(qmp::MigrationStatus::completed) => return Ok(()),
                Some(s @ (qmp::MigrationStatus::failed | qmp::MigrationStatus::cancelled)) => {
                    return Err(anyhow!(
                        "{what}: migration {}: {}",
                        enum_name(&s),
                        info.error_desc.unwrap_or_default()
                    ));
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(anyhow!("{what}: not done within {}s", within.as_secs()));
                }
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Save the display as PNG (a text console shows as its VGA rendering).
    pub async fn screendump(&self, file: &Path) -> Result<()> {
        self.execute(qmp::screendump {
            filename: file.to_string_lossy().into_owned(),
            device: None,
            head: None,
            format: Some(qmp::ImageFormat::png),
        })
        .await
        .map(drop)
    }
    /// A human monitor command (through QMP's `human-monitor-command`); HMP reports errors as text,
    /// so a non-empty answer to a command that prints nothing on success is returned as an error
    /// by [`Qmp::hmp_quiet`].
    pub async fn hmp(&self, line: &str) -> Result<String> {
        self.execute(qmp::human_monitor_command {
            command_line: line.into(),
            cpu_index: None,
        })
        .await
    }
    pub async fn hmp_quiet(&self, line: &str, within: Duration) -> Result<()> {
        let out = self
            .execute_within(
                qmp::human_monitor_command {
                    command_line: line.into(),
                    cpu_index: None,
                },
                within,
            )
            .await?;
        let out = out.trim();
        if out.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("`{line}`: {out}"))
        }
    }
}

/// Wait for the first event for which `pick` returns `Some`, within `within`.
pub async fn wait_event<T>(
    rx: &mut broadcast::Receiver<QmpEvent>,
    within: Duration,
    mut pick: impl FnMut(&QmpEvent) -> Option<T>,
) -> Result<T> {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    if let Some(v) = pick(&ev) {
                        return Ok(v);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(anyhow!("QMP connection closed while waiting for an event"));
                }
            }
        }
    };
    tokio::time::timeout(within, fut)
        .await
        .map_err(|_| anyhow!("no such QMP event within {}s", within.as_secs()))?
}

/// The name of a QMP event as QEMU spells it, plus a short detail for logs.
pub fn describe_event(ev: &QmpEvent) -> (String, String) {
    let v = serde_json::to_value(ev).unwrap_or_default();
    let name = v
        .get("event")
        .and_then(|e| e.as_str())
        .unwrap_or("?")
        .to_string();
    let detail = match ev {
        QmpEvent::SHUTDOWN { data, .. } => {
            format!("guest={} reason={}", data.guest, enum_name(&data.reason))
        }
        QmpEvent::RESET { data, .. } => {
            format!("guest={} reason={}", data.guest, enum_name(&data.reason))
        }
        _ => v
            .get("data")
            .filter(|d| d.as_object().is_some_and(|o| !o.is_empty()))
            .map(|d| d.to_string())
            .unwrap_or_default(),
    };
    (name, detail)
}

/// QAPI's wire name of an enum value (`guest-reset`, not `guest_reset`).
pub fn enum_name<E: serde::Serialize>(e: &E) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A migration channel to or from `file` (structured: no URI, so no escaping of the path).
fn file_channel(file: &Path) -> qmp::MigrationChannel {
    qmp::MigrationChannel {
        channel_type: qmp::MigrationChannelType::main,
        addr: qmp::MigrationAddress::file(qmp::FileMigrationArgs {
            filename: file.to_string_lossy().into_owned(),
            offset: 0,
        }),
    }
}
