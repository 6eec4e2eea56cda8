//! Running host commands: shown before they run, output streamed as events, whole process group
//! killed on cancel or when the handle is dropped (nothing is orphaned).

use crate::events::{CancellationToken, Cancelled, Emitter, Event, Stream};
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// How many trailing output lines an error keeps to show the learner what went wrong.
pub const TAIL_LINES: usize = 40;

/// A host command to run.
#[derive(Debug, Clone)]
pub struct HostCmd {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    /// Keep all of stdout (for commands whose output is data, e.g. `ostree rev-parse`).
    pub capture_stdout: bool,
    /// Bytes fed to stdin; `None` means stdin is /dev/null.
    pub stdin: Option<Vec<u8>>,
}

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    /// Last lines of stdout and stderr, interleaved as they arrived.
    pub tail: Vec<String>,
}

/// A command that ran and failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed ({status}){}", tail_suffix(.tail))]
pub struct CmdFailed {
    pub command: String,
    pub status: String,
    pub tail: Vec<String>,
}

fn tail_suffix(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last output:\n  {}", tail.join("\n  "))
    }
}

/// A command that could not be started at all (missing tool).
#[derive(Debug, thiserror::Error)]
#[error("cannot run `{program}`: {source}{hint}")]
pub struct CmdMissing {
    pub program: String,
    pub hint: String,
    #[source]
    pub source: std::io::Error,
}

impl HostCmd {
    pub fn new(program: impl Into<OsString>) -> HostCmd {
        HostCmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            capture_stdout: false,
            stdin: None,
        }
    }
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
    pub fn capture(mut self) -> Self {
        self.capture_stdout = true;
        self
    }
    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn argv(&self) -> Vec<String> {
        std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    /// The command as a shell-like line, for display.
    pub fn display(&self) -> String {
        self.argv()
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run to completion, streaming lines as `Log` events under `stage`. Fails with [`CmdFailed`]
    /// on a non-zero exit, [`Cancelled`] when `cancel` fires (the process group is killed first).
    pub async fn run(
        &self,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<CmdOutput> {
        let out = self.run_unchecked(stage, ev, cancel).await?;
        if !out.status.success() {
            return Err(CmdFailed {
                command: self.display(),
                status: describe_status(&out.status),
                tail: out.tail.clone(),
            }
            .into());
        }
        Ok(out)
    }

    /// Like [`HostCmd::run`] but a non-zero exit is returned, not an error.
    pub async fn run_unchecked(
        &self,
        stage: &str,
        ev: &Emitter,
        cancel: &CancellationToken,
    ) -> Result<CmdOutput> {
        ev.emit(Event::Command {
            stage: stage.into(),
            argv: self.argv(),
        });
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: cancelling kills the tool and everything it started.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd.spawn().map_err(|e| CmdMissing {
            program: self.program.to_string_lossy().into_owned(),
            hint: install_hint(&self.program.to_string_lossy()),
            source: e,
        })?;
        let pid = child.id().context("child has no pid")? as i32;
        let mut guard = GroupGuard {
            pgid: pid,
            armed: true,
        };

        if let Some(bytes) = &self.stdin {
            let mut stdin = child.stdin.take().context("no stdin")?;
            let bytes = bytes.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&bytes).await;
            });
        }

        let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<(Stream, String)>();
        let readers = [
            spawn_reader(
                child.stdout.take().context("no stdout")?,
                Stream::Stdout,
                line_tx.clone(),
            ),
            spawn_reader(
                child.stderr.take().context("no stderr")?,
                Stream::Stderr,
                line_tx,
            ),
        ];

        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        let mut stdout = String::new();
        let mut cancelled = false;
        loop {
            tokio::select! {
                line = line_rx.recv() => match line {
                    Some((stream, line)) => {
                        if self.capture_stdout && stream == Stream::Stdout {
                            stdout.push_str(&line);
                            stdout.push('\n');
                        }
                        if tail.len() == TAIL_LINES { tail.pop_front(); }
                        tail.push_back(line.clone());
                        ev.log(stage, stream, line);
                    }
                    // Both pipes closed: the output is drained, now reap the child.
                    None => break,
                },
                _ = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    stop_group(pid, &mut child).await;
                }
            }
        }
        for r in readers {
            let _ = r.await;
        }
        let status = child.wait().await?;
        guard.armed = false;
        if cancelled {
            return Err(Cancelled.into());
        }
        Ok(CmdOutput {
            status,
            stdout,
            tail: tail.into(),
        })
    }

    /// Run and return stdout, trimmed. Output is not streamed as events, only the command is shown.
    pub async fn output(&self, stage: &str, ev: &Emitter) -> Result<String> {
        ev.emit(Event::Command {
            stage: stage.into(),
            argv: self.argv(),
        });
        let cmd = self.clone().capture();
        let out = cmd
            .run(stage, &Emitter::null(), &CancellationToken::new())
            .await?;
        Ok(out.stdout.trim_end().to_string())
    }
}

fn spawn_reader(
    r: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
    tx: tokio::sync::mpsc::UnboundedSender<(Stream, String)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r);
        let mut buf = Vec::new();
        // Byte lines, not `lines()`: tools print invalid UTF-8 now and then and must not stop us.
        while let Ok(n) = lines.read_until(b'\n', &mut buf).await {
            if n == 0 {
                break;
            }
            let s = String::from_utf8_lossy(&buf);
            let s = s.trim_end_matches(['\n', '\r']);
            // podman and apt redraw progress with \r; keep the last redraw.
            let s = s.rsplit('\r').next().unwrap_or(s).to_string();
            if tx.send((stream, s)).is_err() {
                break;
            }
            buf.clear();
        }
    })
}

/// Kills a process group when dropped unless disarmed: a dropped future never orphans children.
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// INT, then TERM, then KILL to `child`'s process group, each given a moment; returns as soon as
/// the child has exited (it is reaped here, so a zombie leader never looks alive), then KILLs
/// whatever else is left in the group.
async fn stop_group(pgid: i32, child: &mut tokio::process::Child) {
    use nix::sys::signal::{Signal, killpg};
    let pg = nix::unistd::Pid::from_raw(pgid);
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let _ = killpg(pg, sig);
        if tokio::time::timeout(Duration::from_secs(2), child.wait())
            .await
            .is_ok()
        {
            break;
        }
    }
    let _ = killpg(pg, Signal::SIGKILL);
}

/// INT, then TERM, then KILL to a process group that is not our child (so it cannot be reaped
/// here), giving each a moment to work.
pub async fn kill_group_gracefully(pgid: i32) {
    use nix::sys::signal::{Signal, killpg};
    let pg = nix::unistd::Pid::from_raw(pgid);
    for (sig, wait) in [
        (Signal::SIGINT, 2000),
        (Signal::SIGTERM, 2000),
        (Signal::SIGKILL, 0),
    ] {
        if killpg(pg, sig).is_err() {
            return; // group gone
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        while tokio::time::Instant::now() < deadline {
            if killpg(pg, None).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn describe_status(s: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

/// Where `name` is installed: the first match in PATH, then in the usual bin and sbin folders
/// (a root shell started without them still finds mkfs.vfat or grub-mkstandalone).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Quote an argument for display so a learner can paste it into a shell.
pub fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// How to install the Debian/Fedora package that provides `program`.
pub fn install_hint(program: &str) -> String {
    let base = std::path::Path::new(program)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (deb, rpm) = match base.as_str() {
        "podman" => ("podman runc", "podman runc"),
        "qemu-system-x86_64" => ("qemu-system-x86", "qemu-system-x86"),
        "qemu-img" => ("qemu-utils", "qemu-img"),
        "ostree" => ("ostree", "ostree"),
        "mmdebstrap" => ("mmdebstrap", "mmdebstrap"),
        "extlinux" => ("extlinux syslinux-common", "syslinux-extlinux"),
        "sfdisk" | "losetup" => ("fdisk", "util-linux"),
        "mkfs.ext4" | "tune2fs" => ("e2fsprogs", "e2fsprogs"),
        "runc" => ("runc", "runc"),
        "ssh" | "ssh-keygen" => ("openssh-client", "openssh-clients"),
        _ => return String::new(),
    };
    format!(
        " (install it: `bash .ci/setup`, or `apt-get install {deb}` on Debian/Ubuntu, `dnf install {rpm}` on Fedora)"
    )
}

/// A command that takes over the terminal while it runs (a face suspends its own screen first):
/// neither captured nor streamed, so it is built here and run by the caller.
pub fn foreground(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.args(args);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_lines_and_captures_stdout() {
        let (ev, mut rx) = Emitter::channel();
        let out = HostCmd::new("sh")
            .args(["-c", "echo one; echo two >&2; echo three"])
            .capture()
            .run("t", &ev, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(out.stdout, "one\nthree\n");
        assert_eq!(out.tail.len(), 3);
        drop(ev);
        let mut kinds = Vec::new();
        while let Some(s) = rx.recv().await {
            kinds.push(s.event);
        }
        assert!(matches!(&kinds[0], Event::Command { argv, .. } if argv[0] == "sh"));
        assert_eq!(kinds.len(), 4);
    }

    #[tokio::test]
    async fn failure_carries_tail() {
        let err = HostCmd::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run("t", &Emitter::null(), &CancellationToken::new())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exit code 3"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[tokio::test]
    async fn missing_program_is_named() {
        let err = HostCmd::new("no-such-tool-bootlab")
            .run("t", &Emitter::null(), &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-such-tool-bootlab"));
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let task = tokio::spawn(async move {
            HostCmd::new("sh")
                .args(["-c", &script])
                .run("t", &Emitter::null(), &c2)
                .await
        });
        let pf = pidfile.clone();
        let pid =
            crate::events::retry_until(Duration::from_secs(5), Duration::from_millis(20), || {
                let pf = pf.clone();
                async move {
                    std::fs::read_to_string(&pf)
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                }
            })
            .await
            .expect("grandchild started");
        let t0 = std::time::Instant::now();
        cancel.cancel();
        let r = task.await.unwrap();
        // sh dies on SIGINT at once; cancel must not wait out the TERM/KILL steps.
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "cancel took {:?}",
            t0.elapsed()
        );
        assert!(r.unwrap_err().is::<Cancelled>());
        // The grandchild (sleep) is gone too, not just the shell.
        let gone = crate::events::retry_until(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || async move {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                    .is_err()
                    .then_some(())
            },
        )
        .await;
        assert!(gone.is_some(), "grandchild {pid} survived cancel");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
