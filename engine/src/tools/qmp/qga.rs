//! The QEMU guest agent (qemu-guest-agent in the guest), through `qapi`'s qga types.
//!
//! The agent protocol has no ids: one command at a time, and a reply that arrives after we gave up
//! on it would be taken for the next command's. So every connection starts with `guest-sync`
//! (a random id, echoed back), and any timeout or error poisons the connection: the owner drops
//! it and connects again (a fresh connection plus a fresh sync flushes whatever was stale).

use anyhow::{Result, anyhow, bail};
use qapi::futures::{QapiService, QgaStreamTokio};
use qapi::qga;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;

type QgaWriter = QgaStreamTokio<WriteHalf<UnixStream>>;

/// One synced guest-agent connection.
pub struct Qga {
    service: QapiService<QgaWriter>,
    task: tokio::task::JoinHandle<()>,
    poisoned: AtomicBool,
}

impl Drop for Qga {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a guest command left.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExecOutput {
    /// Exit code; `None` when killed by a signal (see `signal`).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The agent caps captured output (16 MiB); true when it cut some off.
    pub truncated: bool,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// Exit status as a shell would report it (128+signal when killed).
    pub fn status(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            _ => 255,
        }
    }
}

impl Qga {
    /// Connect and sync once, all within `within`. Fails when the agent does not answer (the
    /// guest is still booting, or rebooting): the caller retries with a fresh connection.
    pub async fn connect(path: &Path, within: Duration) -> Result<Qga> {
        let r = tokio::time::timeout(within, async {
            let stream = QgaStreamTokio::open_uds(path).await?;
            let (service, task) = stream.spawn_tokio();
            let q = Qga {
                service,
                task,
                poisoned: AtomicBool::new(false),
            };
            // guest-sync ids are i32 on the wire (qapi takes i32 and widens).
            let id = fastrand::i32(1..i32::MAX);
            q.service
                .guest_sync(id)
                .await
                .map_err(|e| anyhow!("guest-sync: {e}"))?;
            Ok::<_, anyhow::Error>(q)
        })
        .await;
        match r {
            Ok(r) => r,
            Err(_) => bail!("guest agent did not answer guest-sync within {within:?}"),
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// Run one agent command; a timeout or transport error poisons this connection.
    pub async fn call<C>(&self, cmd: C, within: Duration) -> Result<C::Ok>
    where
        C: qga::QgaCommand + 'static,
    {
        let name = <C as qapi::Command>::NAME;
        if self.is_poisoned() {
            bail!("guest agent {name}: connection needs a re-sync");
        }
        match tokio::time::timeout(within, self.service.execute(cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(qapi::ExecuteError::Qapi(e))) => Err(anyhow!("guest agent {name}: {e}")),
            Ok(Err(e)) => {
                self.poisoned.store(true, Ordering::Relaxed);
                Err(anyhow!("guest agent {name}: {e}"))
            }
            Err(_) => {
                self.poisoned.store(true, Ordering::Relaxed);
                Err(anyhow!(
                    "guest agent {name}: no answer within {}s",
                    within.as_secs()
                ))
            }
        }
    }

    pub async fn ping(&self, within: Duration) -> Result<()> {
        self.call(qga::guest_ping {}, within).await.map(drop)
    }

    /// Set the guest's clock to the host's (`guest-set-time`) and return how far it was off
    /// (guest minus host, seconds). After a saved state is loaded the guest's clock goes on
    /// from the moment the state was saved — hours or days behind. The agent sets the system
    /// time, then runs `hwclock -w`; the lab guests have no hwclock, which fails the command
    /// after the time was set, so the guest's time is read back to tell.
    pub async fn set_time_to_host(&self, within: Duration) -> Result<f64> {
        let now_ns = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64)
        };
        let before = self.call(qga::guest_get_time {}, within).await? - now_ns();
        let set = self
            .call(
                qga::guest_set_time {
                    time: Some(now_ns()),
                },
                within,
            )
            .await;
        let after = self.call(qga::guest_get_time {}, within).await? - now_ns();
        if after.abs() > 1_000_000_000 {
            bail!(
                "the guest's clock is still {:.1} s off after guest-set-time ({})",
                after as f64 / 1e9,
                set.err().map_or("no error".into(), |e| format!("{e:#}"))
            );
        }
        Ok(before as f64 / 1e9)
    }

    /// Start a guest command and return its guest pid without waiting for it (for commands that
    /// take the guest down, like `systemctl reboot`).
    pub async fn spawn(&self, argv: &[String]) -> Result<i64> {
        let (path, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
        let r = self
            .call(
                qga::guest_exec {
                    path: path.clone(),
                    arg: Some(args.to_vec()),
                    env: None,
                    input_data: None,
                    capture_output: Some(qga::GuestExecCaptureOutput::flag(false)),
                },
                Duration::from_secs(10),
            )
            .await?;
        Ok(r.pid)
    }

    /// Run `argv` in the guest (no shell: argv[0] is looked up in the agent's PATH), feed `input`
    /// on stdin, wait up to `within` for it to exit and return exit code and output.
    pub async fn exec(
        &self,
        argv: &[String],
        input: Option<Vec<u8>>,
        within: Duration,
    ) -> Result<ExecOutput> {
        let (path, args) = argv.split_first().ok_or_else(|| anyhow!("empty command"))?;
        let started = self
            .call(
                qga::guest_exec {
                    path: path.clone(),
                    arg: Some(args.to_vec()),
                    env: None,
                    input_data: input,
                    capture_output: Some(qga::GuestExecCaptureOutput::flag(true)),
                },
                Duration::from_secs(10),
            )
            .await?;
        let deadline = tokio::time::Instant::now() + within;
        // Poll gently at first, then settle at 250 ms: short commands answer fast, long ones
        // do not flood the agent.
        let mut every = Duration::from_millis(20);
        loop {
            let st = self
                .call(
                    qga::guest_exec_status { pid: started.pid },
                    Duration::from_secs(10),
                )
                .await?;
            if st.exited {
                let text = |b: Option<Vec<u8>>| {
                    String::from_utf8_lossy(&b.unwrap_or_default()).into_owned()
                };
                return Ok(ExecOutput {
                    code: st.exitcode.map(|c| c as i32),
                    signal: st.signal.map(|s| s as i32),
                    truncated: st.out_truncated.unwrap_or(false)
                        || st.err_truncated.unwrap_or(false),
                    stdout: text(st.out_data),
                    stderr: text(st.err_data),
                });
            }
            if tokio::time::Instant::now() + every > deadline {
                bail!(
                    "guest command `{}` still running after {}s",
                    argv.join(" "),
                    within.as_secs()
                );
            }
            tokio::time::sleep(every).await;
            every = (every * 2).min(Duration::from_millis(250));
        }
    }

    /// Read a whole guest file (up to `max` bytes).
    pub async fn read_file(&self, path: &str, max: usize) -> Result<Vec<u8>> {
        let t = Duration::from_secs(10);
        let h = self
            .call(
                qga::guest_file_open {
                    path: path.into(),
                    mode: Some("r".into()),
                },
                t,
            )
            .await?;
        let mut out = Vec::new();
        let res = async {
            loop {
                let r = self
                    .call(
                        qga::guest_file_read {
                            handle: h,
                            count: Some(64 * 1024),
                        },
                        t,
                    )
                    .await?;
                out.extend_from_slice(&r.buf_b64);
                if r.eof || r.count == 0 {
                    return Ok(());
                }
                if out.len() > max {
                    bail!("guest file {path} is larger than {max} bytes");
                }
            }
        }
        .await;
        let _ = self.call(qga::guest_file_close { handle: h }, t).await;
        res.map(|_| out)
    }
}
