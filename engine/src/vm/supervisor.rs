//! The per-VM supervisor: `bootlab vm supervise --dir <vm dir>`, started detached by
//! [`super::up`]. It spawns QEMU (which is killed when the supervisor dies: PR_SET_PDEATHSIG),
//! and a new one on the same disk each time the guest resets (a reboot boots faster under TCG
//! in a new process), drains the console log, holds the QMP and guest-agent connections, keeps
//! `vm.json` current and answers [`super::client::VmClient`]s on the control socket.

use super::proto::{Reply, Request, SnapshotDone, VmEvent, VmStamped};
use super::{VmRecord, VmState, console};
use crate::tools::qemu::{self, DISK_NODE, QemuSpec, SHARE_TAG};
use crate::tools::qmp::qga::Qga;
use crate::tools::qmp::{Qmp, QmpEvent, RunState, describe_event, enum_name, wait_event};
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use qapi::qmp;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

const CONSOLE_RING: usize = 200;
/// Free space under the overlay at which a guest QEMU paused for want of it is resumed.
const ROOM_TO_RESUME: u64 = 64 << 20;

/// Entry point of the hidden `vm supervise` subcommand. Runs until QEMU exits other than for a
/// guest reset.
pub fn main(dir: &Path) -> Result<()> {
    let mut rec = VmRecord::load_dir(dir)?;
    // Only `vm up` starts a supervisor, right after recording `starting`; any other state means
    // the VM was stopped (or taken) meanwhile.
    if rec.state != VmState::Starting {
        bail!(
            "VM {} is recorded {} ({}), not starting: not starting QEMU",
            rec.name,
            rec.state,
            rec.detail
        );
    }
    log_line!(
        "supervisor {} for VM {} starting ({} — {})",
        std::process::id(),
        rec.name,
        rec.accel.as_str(),
        rec.accel_reason
    );
    let s = &rec.sockets;
    for p in [&s.control, &s.qmp, &s.qga, &s.serial] {
        let _ = std::fs::remove_file(p);
        if let Some(parent) = p.parent() {
            // Sockets drive the VM (QMP can read guest memory): only their owner may reach them.
            crate::paths::create_private_dir(parent)?;
        }
    }
    // A fresh log per run; the follower starts at offset 0.
    std::fs::write(&rec.console_log, b"")?;
    let spec = QemuSpec {
        name: rec.name.clone(),
        disk: rec.overlay.clone(),
        accel: rec.accel,
        memory_mib: rec.memory_mib,
        cpus: rec.cpus,
        qmp: s.qmp.clone(),
        qga: s.qga.clone(),
        serial: s.serial.clone(),
        console_log: rec.console_log.clone(),
        share: rec.share.clone(),
        ssh_port: rec.ssh_port,
        loadvm: rec.loadvm.clone(),
        incoming: rec.load_state.is_some(),
        uefi: match rec.firmware {
            qemu::Firmware::Bios => None,
            qemu::Firmware::Uefi => Some(crate::tools::uefi::find_ovmf()?),
        },
    };
    // After a reset the guest boots from its disk, never from the snapshot it started from.
    // `-S`: its vCPUs wait until the QMP loop is connected again (`cont`), so no SHUTDOWN or
    // I/O error of the new QEMU goes unseen.
    let mut restart_args = QemuSpec {
        loadvm: None,
        incoming: false,
        ..spec.clone()
    }
    .args();
    restart_args.push("-S".into());
    // Spawned from the main thread, which lives exactly as long as the supervisor: the death
    // signal fires when the spawning *thread* exits, so a pool thread would kill QEMU early.
    let parent = std::process::id() as i32;
    let child = spawn_qemu(&spec.args(), parent)?;
    rec.qemu_pid = Some(child.id() as i32);
    rec.supervisor_pid = Some(parent);
    rec.state = VmState::Booting;
    rec.detail = match (&rec.loadvm, &rec.load_state) {
        (Some(t), _) => format!("QEMU started from snapshot {t}"),
        (None, Some(_)) => "QEMU started; loading the saved machine state".into(),
        (None, None) => "QEMU started; waiting for the guest agent".into(),
    };
    rec.save_dir(dir)?;

    let (proc_tx, proc_rx) = tokio::sync::mpsc::unbounded_channel();
    let (again_tx, again_rx) = std::sync::mpsc::channel::<()>();
    // Waits for QEMU; when asked after a reset, starts the next one. The next QEMU is spawned
    // from this thread, which lives until its last child has exited.
    std::thread::spawn(move || {
        let mut child = child;
        loop {
            let st = match child.wait() {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown exit: {e}"),
            };
            let _ = proc_tx.send(QemuProc::Exited(st));
            if again_rx.recv().is_err() {
                return;
            }
            match spawn_qemu(&restart_args, parent) {
                Ok(c) => {
                    let _ = proc_tx.send(QemuProc::Started(c.id()));
                    child = c;
                }
                Err(e) => {
                    let _ = proc_tx.send(QemuProc::Failed(format!("{e:#}")));
                    return;
                }
            }
        }
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(run(dir.to_path_buf(), rec, proc_rx, again_tx));
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Err(e) = &r {
        log_line!("supervisor: {e:#}");
    }
    r
}

/// Spawn QEMU with `args`, killed when the calling thread ends (PR_SET_PDEATHSIG).
fn spawn_qemu(args: &[String], parent: i32) -> Result<std::process::Child> {
    log_line!(
        "$ {} {}",
        qemu::QEMU,
        args.iter()
            .map(|a| crate::tools::cmd::shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut cmd = std::process::Command::new(qemu::QEMU);
    cmd.args(args).stdin(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        anyhow!(
            "cannot run {}: {e}{}",
            qemu::QEMU,
            crate::tools::cmd::install_hint(qemu::QEMU)
        )
    })
}

/// What the thread that runs QEMU reports.
enum QemuProc {
    /// QEMU exited (its exit status).
    Exited(String),
    /// A new QEMU runs after a reset (its pid).
    Started(u32),
    /// The new QEMU could not be started.
    Failed(String),
}

struct Sup {
    dir: PathBuf,
    rec: Mutex<VmRecord>,
    state_tx: watch::Sender<VmState>,
    events: broadcast::Sender<VmStamped>,
    /// Replaced when the monitor connection breaks while QEMU still runs.
    qmp: Mutex<Qmp>,
    qmp_path: PathBuf,
    agent: tokio::sync::Mutex<Option<Arc<Qga>>>,
    /// Set while the guest is known to be going away (reboot asked, snapshot loading): the agent
    /// loop must not call it ready on a last answer from the old guest.
    agent_hold: AtomicBool,
    share_wanted: AtomicBool,
    console: Mutex<VecDeque<String>>,
    exited: CancellationToken,
    /// When the current boot / reboot / restore started (for ready_secs).
    clock: Mutex<Instant>,
    /// The phases of the current boot, read from the console (the boot-phase line).
    boot: Mutex<super::boot_phase::BootTimeline>,
    last_shutdown: Mutex<Option<String>>,
    before_pause: Mutex<Option<VmState>>,
    /// Set while QEMU holds the guest paused because a disk write found the file system under
    /// the overlay full; the main loop resumes it once there is room again.
    paused_full: AtomicBool,
    /// Set when the guest reset: the QEMU that exits next is started again.
    restart_pending: AtomicBool,
    /// Counts the guest's resets (a reboot or QMP system_reset), for the requests that wait
    /// for one.
    resets: watch::Sender<u64>,
    /// Where boots to the agent are timed (`<state>` is two folders above the VM's).
    timings: Option<crate::timings::Timings>,
}

async fn run(
    dir: PathBuf,
    rec: VmRecord,
    mut procs: tokio::sync::mpsc::UnboundedReceiver<QemuProc>,
    again: std::sync::mpsc::Sender<()>,
) -> Result<()> {
    let exited = CancellationToken::new();
    let exit_status: Arc<Mutex<Option<String>>> = Arc::default();
    let qmp = tokio::select! {
        q = Qmp::connect(&rec.sockets.qmp, Duration::from_secs(30)) => q,
        _ = procs.recv() => Err(anyhow!("QEMU exited before its monitor answered")),
    };
    let qmp = match qmp {
        Ok(q) => q,
        Err(e) => {
            let mut rec = rec;
            rec.state = VmState::Stopped;
            rec.detail = format!(
                "{e:#} (QEMU's own messages are in {})",
                rec.supervisor_log.display()
            );
            rec.qemu_pid = None;
            rec.supervisor_pid = None;
            rec.save_dir(&dir)?;
            return Err(e);
        }
    };
    let qmp_events = qmp.subscribe();
    let qmp_path = sup_qmp_path(&rec);
    let (state_tx, _) = watch::channel(rec.state);
    let (events, _) = broadcast::channel(1024);
    let share_wanted = rec.share.is_some();
    let sup = Arc::new(Sup {
        dir: dir.clone(),
        rec: Mutex::new(rec),
        state_tx,
        events,
        qmp: Mutex::new(qmp),
        qmp_path: qmp_path.clone(),
        agent: tokio::sync::Mutex::new(None),
        agent_hold: AtomicBool::new(false),
        share_wanted: AtomicBool::new(share_wanted),
        console: Mutex::new(VecDeque::new()),
        exited: exited.clone(),
        clock: Mutex::new(Instant::now()),
        boot: Mutex::new(super::boot_phase::BootTimeline::new()),
        timings: dir
            .parent()
            .and_then(Path::parent)
            .map(crate::timings::Timings::in_state),
        last_shutdown: Mutex::new(None),
        before_pause: Mutex::new(None),
        paused_full: AtomicBool::new(false),
        restart_pending: AtomicBool::new(false),
        resets: watch::channel(0).0,
    });
    {
        let r = sup.rec.lock().unwrap().clone();
        sup.note(format!(
            "accelerator {}: {}",
            r.accel.as_str(),
            r.accel_reason
        ));
        if let Some(k) = &r.known_password {
            sup.note(format!("lab VM: console login with a known password ({k})"));
        }
        sup.emit(VmEvent::State {
            state: r.state,
            detail: r.detail.clone(),
        });
    }

    let ctl = sup.rec.lock().unwrap().sockets.control.clone();
    let listener = UnixListener::bind(&ctl).context("binding the control socket")?;
    tokio::spawn(serve(sup.clone(), listener));
    tokio::spawn(qemu_proc_loop(
        sup.clone(),
        procs,
        again,
        exit_status.clone(),
    ));
    tokio::spawn(qmp_loop(sup.clone(), qmp_events));
    tokio::spawn(console_loop(sup.clone()));
    let load = sup.rec.lock().unwrap().load_state.clone();
    if let Some(file) = load {
        // Before the agent loop: an agent sync sent while the guest is not yet running may go
        // unanswered until its timeout.
        sup.set_state(
            VmState::Restoring,
            format!("loading the saved machine state {}", file.display()),
        );
        if let Err(e) = sup.qmp().load_state(&file, Duration::from_secs(300)).await {
            sup.cut(&format!("could not load the saved machine state: {e:#}"))
                .await;
        }
    }
    tokio::spawn(agent_loop(sup.clone()));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = exited.cancelled() => break,
            _ = term.recv() => sup.cut("supervisor got SIGTERM").await,
            _ = int.recv() => sup.cut("supervisor got SIGINT").await,
            _ = tick.tick() => {
                // A supervisor whose record was removed has nothing left to serve.
                if !VmRecord::file(&dir).exists() {
                    log_line!("record removed; ending the VM");
                    sup.cut("VM record removed").await;
                }
                if sup.paused_full.load(Ordering::Relaxed) {
                    sup.resume_when_room().await;
                }
            }
        }
    }
    // Catch the last console lines.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let status = exit_status.lock().unwrap().clone().unwrap_or_default();
    let detail = match sup.last_shutdown.lock().unwrap().clone() {
        Some(r) => format!("QEMU exited ({status}) after SHUTDOWN {r}"),
        None => format!("QEMU exited ({status})"),
    };
    log_line!("{detail}");
    {
        let mut r = sup.rec.lock().unwrap();
        r.qemu_pid = None;
        r.supervisor_pid = None;
        r.share_mounted = false;
    }
    sup.set_state(VmState::Stopped, detail);
    // Let in-flight replies (powerdown, powercut) reach their clients.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = sup.rec.lock().unwrap().sockets.clone();
    for p in [&s.control, &s.qmp, &s.qga, &s.serial] {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

fn sup_qmp_path(rec: &VmRecord) -> PathBuf {
    rec.sockets.qmp.clone()
}

/// How long a powerdown waits for the guest before pressing the power button again.
const REPRESS_AFTER: Duration = Duration::from_secs(10);

impl Sup {
    fn qmp(&self) -> Qmp {
        self.qmp.lock().unwrap().clone()
    }
    fn emit(&self, event: VmEvent) {
        let _ = self.events.send(VmStamped::now(event));
    }
    fn note(&self, text: impl Into<String>) {
        let text = text.into();
        log_line!("note: {text}");
        self.emit(VmEvent::Note { text });
    }
    fn state(&self) -> VmState {
        *self.state_tx.borrow()
    }

    /// After the first press of the power button, wait up to `within` for QEMU to exit, pressing
    /// again every [`REPRESS_AFTER`]: the guest agent answers before udev has announced the power
    /// button and systemd-logind watches it (and a snapshot taken at "ready" restores into that
    /// window), and a press nobody reads is lost. A press during a shutdown already under way
    /// only queues the same poweroff again. True when QEMU exited.
    async fn press_until_off(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut pressed = 1;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait = left.min(REPRESS_AFTER);
            if tokio::time::timeout(wait, self.exited.cancelled())
                .await
                .is_ok()
            {
                return true;
            }
            if wait == left {
                return false;
            }
            pressed += 1;
            self.note(format!(
                "still running {} s after the power button: pressing it again (press {pressed}; \
                 a press before systemd-logind watches the button is lost)",
                REPRESS_AFTER.as_secs() * (pressed - 1)
            ));
            if let Err(e) = self.qmp().system_powerdown().await {
                // QEMU may be exiting right now; the wait above sees it.
                log_line!("pressing the power button again: {e:#}");
            }
        }
    }

    /// The folder of the VM's overlay (and of its saved states).
    fn overlay_dir(&self) -> PathBuf {
        let o = self.rec.lock().unwrap().overlay.clone();
        o.parent().map(Path::to_path_buf).unwrap_or(o)
    }

    /// QEMU stopped the guest on a failed disk write (a virtio disk's default `werror=enospc`:
    /// rather than fail a write for want of space, which would turn the guest's file system
    /// read-only, QEMU pauses it and retries the write on `cont`). Said in the record, so a
    /// guest that stopped answering is not a mystery.
    fn paused_on_io_error(&self, device: &str, operation: &str, nospace: bool, reason: &str) {
        let st = self.state();
        if st != VmState::Paused {
            // A save ends by resuming the guest: the state to go back to is ready.
            let back = if st == VmState::Saving {
                VmState::Ready
            } else {
                st
            };
            *self.before_pause.lock().unwrap() = Some(back);
        }
        if !nospace {
            self.set_state(
                VmState::Paused,
                format!("QEMU paused the guest: {operation} error on disk {device}: {reason}"),
            );
            return;
        }
        if self.paused_full.swap(true, Ordering::Relaxed) {
            return; // every failed request reports; once is enough
        }
        self.set_state(
            VmState::Paused,
            format!(
                "the file system holding {} is full: QEMU paused the guest rather than fail its {operation} on disk {device}; it goes on by itself once {} MiB are free there",
                self.overlay_dir().display(),
                ROOM_TO_RESUME >> 20
            ),
        );
    }

    /// When the guest is paused for want of space and there is room again: `cont` (QEMU
    /// retries the failed writes), go back to the state before and return it.
    async fn resume_if_room(&self) -> Option<VmState> {
        if self.state() != VmState::Paused {
            // Resumed by hand, or gone.
            self.paused_full.store(false, Ordering::Relaxed);
            return None;
        }
        let dir = self.overlay_dir();
        let free = crate::pipeline::free_space_at(&dir).map_or(0, |(_, f)| f);
        if free < ROOM_TO_RESUME {
            return None;
        }
        let said = format!(
            "{} MiB free again on {}: guest resumed (QEMU retried its writes)",
            free >> 20,
            dir.display()
        );
        match self.resume(VmState::Ready, said).await {
            Ok(back) => Some(back),
            Err(e) => {
                self.note(format!(
                    "room again on {}, but `cont` failed: {e:#}",
                    dir.display()
                ));
                None
            }
        }
    }

    /// `cont`, then back to the state before the pause (`otherwise` when none was recorded).
    async fn resume(&self, otherwise: VmState, detail: String) -> Result<VmState> {
        // Cleared before `cont`: a pause for want of space that comes right back reports
        // afresh. Kept when `cont` fails: the guest is still paused for that reason.
        let was_full = self.paused_full.swap(false, Ordering::Relaxed);
        if let Err(e) = self.qmp().cont().await {
            self.paused_full.store(was_full, Ordering::Relaxed);
            return Err(e);
        }
        let back = self
            .before_pause
            .lock()
            .unwrap()
            .take()
            .unwrap_or(otherwise);
        self.set_state(back, detail);
        Ok(back)
    }

    /// The record's detail line (why the VM is in its state).
    fn detail(&self) -> String {
        self.rec.lock().unwrap().detail.clone()
    }

    /// Called every tick while [`Sup::paused_full`]: once the overlay's file system has room
    /// again, `cont` (QEMU retries the failed writes) and go back to the state before.
    async fn resume_when_room(self: &Arc<Self>) {
        let Some(back) = self.resume_if_room().await else {
            return;
        };
        if back != VmState::Ready {
            return;
        }
        // Not on the main loop: guest commands can take their time. Requests made while the
        // guest was paused timed out and left the agent's connection unusable; connect again
        // (the agent answers the backlog first), then mount the share when it was wanted.
        let sup = self.clone();
        tokio::spawn(async move {
            let mut last = None;
            for _ in 0..4 {
                match sup.agent().await {
                    Ok(q) => match q.ping(Duration::from_secs(10)).await {
                        Ok(()) => {
                            last = None;
                            break;
                        }
                        Err(e) => last = Some(e),
                    },
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                sup.note(format!(
                    "after the resume the guest agent does not answer: {e:#}"
                ));
                return;
            }
            if sup.share_wanted.load(Ordering::Relaxed)
                && !sup.rec.lock().unwrap().share_mounted
                && let Err(e) = sup.mount_share().await
            {
                sup.note(format!("could not mount the 9p update share again: {e:#}"));
            }
        });
    }
    fn set_state(&self, state: VmState, detail: impl Into<String>) {
        self.write_state(state, detail.into(), false);
    }
    /// The record's state and detail, saved, then told to waiters and every face. With
    /// `same_state` only the detail is new, for the state the VM is still in (a boot phase
    /// began): nothing is written when the state moved on meanwhile (the agent may answer
    /// while a console line is read), and the state's waiters are not woken.
    fn write_state(&self, state: VmState, detail: String, same_state: bool) {
        {
            let mut r = self.rec.lock().unwrap();
            if same_state && r.state != state {
                return;
            }
            r.state = state;
            r.detail = detail.clone();
            if VmRecord::file(&self.dir).exists()
                && let Err(e) = r.save_dir(&self.dir)
            {
                log_line!("cannot save record: {e:#}");
            }
        }
        log_line!("state: {state} {detail}");
        if !same_state {
            self.state_tx.send_replace(state);
        }
        self.emit(VmEvent::State { state, detail });
    }
    fn save(&self) {
        let r = self.rec.lock().unwrap();
        if VmRecord::file(&self.dir).exists() {
            let _ = r.save_dir(&self.dir);
        }
    }
    /// `-action shutdown=pause` keeps QEMU after a SHUTDOWN: it goes now (SIGTERM, QEMU's own
    /// clean exit, when its monitor does not take the quit).
    async fn quit_stopped(&self) {
        if let Err(e) = self.qmp().quit().await {
            log_line!("quit after SHUTDOWN: {e:#}; sending SIGTERM");
            self.signal_qemu(nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Signal the current QEMU (our child: the pid is ours).
    fn signal_qemu(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.rec.lock().unwrap().qemu_pid {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }

    /// The guest reset: the agent and the share mount are gone, the boot clock starts again.
    async fn guest_reset(&self, detail: &str) {
        self.drop_agent().await;
        self.rec.lock().unwrap().share_mounted = false;
        let st = self.state();
        if matches!(
            st,
            VmState::Ready | VmState::Booting | VmState::Rebooting | VmState::Paused
        ) {
            self.restart_clock();
            self.agent_hold.store(false, Ordering::Relaxed);
            self.set_state(VmState::Rebooting, detail);
        }
        self.resets.send_modify(|n| *n += 1);
    }

    fn restart_clock(&self) {
        *self.clock.lock().unwrap() = Instant::now();
        *self.boot.lock().unwrap() = super::boot_phase::BootTimeline::new();
    }

    /// One whole console line: kept for error messages, read for the boot phases, sent on.
    fn console_line(&self, line: String) {
        {
            let mut c = self.console.lock().unwrap();
            if c.len() == CONSOLE_RING {
                c.pop_front();
            }
            c.push_back(line.clone());
        }
        let st = self.state();
        if matches!(st, VmState::Booting | VmState::Rebooting) {
            let at = self.clock.lock().unwrap().elapsed().as_secs_f64();
            let began = {
                let mut b = self.boot.lock().unwrap();
                b.observe(&line, at).then(|| b.line())
            };
            if let Some(l) = began {
                self.boot_progress(st, l);
            } else if let Some(w) = super::boot_phase::job_wait(&line) {
                self.job_wait_progress(st, &w);
            }
        }
        self.emit(VmEvent::Console { line });
    }

    /// systemd waits for a job: the state's detail says where the boot (or shutdown) is and
    /// which job it waits for.
    fn job_wait_progress(&self, st: VmState, wait: &str) {
        let shutting_down = {
            let b = self.boot.lock().unwrap();
            // Before the reset the timeline is still the last boot's, which ended.
            (b.current() == super::boot_phase::BootPhase::Agent)
                .then(|| "shutting down".to_string())
        };
        match shutting_down {
            // No boot's expectation: the boot has not begun.
            Some(s) => self.write_state(st, format!("{s}; the guest waits: {wait}"), true),
            None => {
                let line = self.boot.lock().unwrap().line();
                self.boot_progress(st, format!("{line}; the guest waits: {wait}"))
            }
        }
    }

    /// A boot phase began: the state's detail says so (every face shows it), with how long
    /// such a boot took to the agent before on this machine, when it was measured.
    fn boot_progress(&self, st: VmState, detail: String) {
        let expected = self
            .boot_key(st)
            .and_then(|k| self.timings.as_ref()?.expected(&k));
        let detail = match expected {
            Some(e) => format!("{detail} · ~{e:.1} s to the agent before"),
            None => detail,
        };
        self.write_state(st, detail, true);
    }

    /// The timing key (`crate::timings`) of the boot running now: a recipe's cold boots and
    /// its reboots are kept apart, and so are the accelerators and the firmwares.
    fn boot_key(&self, st: VmState) -> Option<String> {
        let kind = match st {
            VmState::Booting => "cold",
            VmState::Rebooting => "reboot",
            _ => return None,
        };
        let rec = self.rec.lock().unwrap();
        Some(format!(
            "boot {} {} {} {kind}",
            rec.recipe.as_deref().unwrap_or("disk"),
            rec.accel.as_str(),
            rec.firmware.as_str()
        ))
    }
    fn console_tail(&self, n: usize) -> String {
        let c = self.console.lock().unwrap();
        let lines: Vec<&str> = c
            .iter()
            .map(|l| l.as_str())
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = &lines[lines.len().saturating_sub(n)..];
        if tail.is_empty() {
            "(nothing on the console yet)".into()
        } else {
            tail.join("\n  ")
        }
    }
    async fn drop_agent(&self) {
        *self.agent.lock().await = None;
    }

    /// The synced agent connection, reconnecting (and re-syncing) when the last one broke.
    async fn agent(&self) -> Result<Arc<Qga>> {
        let mut a = self.agent.lock().await;
        if let Some(q) = a.as_ref().filter(|q| !q.is_poisoned()) {
            return Ok(q.clone());
        }
        if let Some(old) = a.take() {
            // QEMU's agent socket serves one connection at a time: a new one gets no answer
            // (or EAGAIN) until the poisoned one is closed, which happens when its last user —
            // a call still waiting out its timeout — lets go.
            let until = Instant::now() + Duration::from_secs(12);
            while Arc::strong_count(&old) > 1 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(old);
        }
        let st = self.state();
        if !matches!(st, VmState::Ready | VmState::Saving) {
            bail!("the guest agent is not ready (VM state: {st})");
        }
        let path = self.rec.lock().unwrap().sockets.qga.clone();
        let q = Arc::new(Qga::connect(&path, Duration::from_secs(15)).await?);
        *a = Some(q.clone());
        Ok(q)
    }

    async fn guest(
        &self,
        argv: &[&str],
        within: Duration,
    ) -> Result<crate::tools::qmp::qga::ExecOutput> {
        guest_ok(&*self.agent().await?, argv, within).await
    }

    /// The guest folder of the update share (per VM: bootc guests use /var/mnt/share).
    fn share_dir(&self) -> String {
        self.rec.lock().unwrap().share_dir().to_string()
    }

    async fn mount_share(&self) -> Result<bool> {
        if self.rec.lock().unwrap().share.is_none() {
            bail!("this VM was started without a shared update folder");
        }
        let newly = mount_share_with(&*self.agent().await?, &self.share_dir()).await?;
        self.share_wanted.store(true, Ordering::Relaxed);
        self.rec.lock().unwrap().share_mounted = true;
        self.save();
        Ok(newly)
    }

    async fn unmount_share(&self) -> Result<bool> {
        let dir = self.share_dir();
        let mounted = share_mounted(&*self.agent().await?, &dir).await?;
        if mounted {
            self.guest(&["umount", &dir], Duration::from_secs(30))
                .await?;
        }
        self.rec.lock().unwrap().share_mounted = false;
        self.save();
        Ok(mounted)
    }

    /// QMP quit and wait for QEMU to go.
    async fn cut(&self, why: &str) {
        self.set_state(VmState::Stopping, why.to_string());
        if let Err(e) = self.qmp().quit().await {
            log_line!("quit: {e:#}");
        }
        if tokio::time::timeout(Duration::from_secs(10), self.exited.cancelled())
            .await
            .is_err()
        {
            // QEMU ignores its monitor: SIGKILL it.
            self.signal_qemu(nix::sys::signal::Signal::SIGKILL);
        }
    }

    async fn wait_state(&self, want: VmState, within: Duration) -> Result<()> {
        let mut rx = self.state_tx.subscribe();
        let r = tokio::time::timeout(within, async {
            loop {
                let s = *rx.borrow_and_update();
                if s == want {
                    return Ok(());
                }
                if s == VmState::Stopped {
                    let d = self.rec.lock().unwrap().detail.clone();
                    bail!("the VM stopped: {d}");
                }
                if rx.changed().await.is_err() {
                    bail!("supervisor shutting down");
                }
            }
        })
        .await;
        match r {
            Ok(r) => r.map_err(|e| anyhow!("{e}; console tail:\n  {}", self.console_tail(25))),
            Err(_) => {
                let boot = self.boot.lock().unwrap().clone();
                let stuck = match boot.current() {
                    super::boot_phase::BootPhase::Agent => String::new(),
                    p => format!("; the boot is in its {}: {}", boot.line(), p.stuck_here()),
                };
                bail!(
                    "VM not {want} after {}s (state: {}{stuck}); console tail:\n  {}",
                    within.as_secs(),
                    self.state(),
                    self.console_tail(25)
                )
            }
        }
    }

    /// Run a snapshot job (save or load) through QMP and wait for it to conclude.
    async fn snapshot_job(&self, kind: &str, tag: &str) -> Result<()> {
        let id = format!("bootlab-{kind}-{}", fastrand::u32(..));
        let mut rx = self.qmp().subscribe();
        let devices = vec![DISK_NODE.to_string()];
        match kind {
            "save" => {
                self.qmp()
                    .execute(qmp::snapshot_save {
                        job_id: id.clone(),
                        tag: tag.into(),
                        vmstate: DISK_NODE.into(),
                        devices,
                    })
                    .await?
            }
            "load" => {
                self.qmp()
                    .execute(qmp::snapshot_load {
                        job_id: id.clone(),
                        tag: tag.into(),
                        vmstate: DISK_NODE.into(),
                        devices,
                    })
                    .await?
            }
            "delete" => {
                self.qmp()
                    .execute(qmp::snapshot_delete {
                        job_id: id.clone(),
                        tag: tag.into(),
                        devices,
                    })
                    .await?
            }
            _ => unreachable!(),
        };
        let jid = id.clone();
        wait_event(&mut rx, Duration::from_secs(900), move |e| match e {
            QmpEvent::JOB_STATUS_CHANGE { data, .. }
                if data.id == jid && enum_name(&data.status) == "concluded" =>
            {
                Some(())
            }
            _ => None,
        })
        .await?;
        let jobs = self.qmp().execute(qmp::query_jobs {}).await?;
        let err = jobs
            .iter()
            .find(|j| j.id == id)
            .and_then(|j| j.error.clone());
        self.qmp()
            .execute(qmp::job_dismiss { id: id.clone() })
            .await?;
        match err {
            Some(e) => bail!("snapshot-{kind} {tag}: {e}"),
            None => Ok(()),
        }
    }

    async fn snapshot_save(&self, tag: &str) -> Result<SnapshotDone> {
        let r = self.snapshot_save_ready(tag).await;
        // The guest may have been paused for want of space during the save's own guest
        // commands (they then time out): say that first.
        if r.is_err() && self.paused_full.load(Ordering::Relaxed) {
            let detail = self.detail();
            return r.context(format!("the guest is paused: {detail}"));
        }
        r
    }

    async fn snapshot_save_ready(&self, tag: &str) -> Result<SnapshotDone> {
        if self.paused_full.load(Ordering::Relaxed) {
            // Space may be back since the last tick: a save asked for now need not wait for it.
            self.resume_if_room().await;
        }
        let st = self.state();
        if st != VmState::Ready {
            let detail = self.detail();
            bail!("can only save a snapshot of a ready VM (state: {st}: {detail})");
        }
        // Whether *we* mounted the share (then we mount it again afterwards).
        let was_mounted = self.rec.lock().unwrap().share_mounted;
        let t = Instant::now();
        let mut tries = 0;
        let mut r = loop {
            tries += 1;
            // A mounted VirtFS export blocks saving VM state. Look in the guest instead of
            // trusting the record: the guest may mount the share itself (an update timer's
            // mount unit), also between our umount and the save — then we try again.
            match self.unmount_share().await {
                Ok(true) => self.note(UNMOUNTED_FOR_SAVE),
                Ok(false) => {}
                Err(e) if tries < 3 => {
                    self.note(format!(
                        "could not unmount the 9p share ({e:#}); trying again"
                    ));
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            // The agent's connection is part of nothing saved, but the guest will be frozen
            // for a moment: drop it so nothing half-answered survives.
            self.drop_agent().await;
            self.set_state(VmState::Saving, format!("saving snapshot {tag}"));
            let r = self.snapshot_job("save", tag).await;
            match &r {
                Err(e) if tries < 3 && e.to_string().contains("VirtFS") => {
                    self.set_state(
                        VmState::Ready,
                        "the guest mounted the 9p share again before the save; once more",
                    );
                }
                _ => break r,
            }
        };
        if let Err(e) = &r
            && e.to_string().contains("already exists")
        {
            {
                self.note(format!("replacing the existing snapshot {tag}"));
                r = match self.snapshot_job("delete", tag).await {
                    Ok(()) => self.snapshot_job("save", tag).await,
                    Err(e) => Err(e),
                };
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let said = match &r {
            Ok(()) => format!("snapshot {tag} saved in {secs:.1}s"),
            Err(_) => format!("snapshot {tag} not saved"),
        };
        // Saving pauses the guest and resumes it; the agent answers at once. Unless the guest,
        // resumed onto a full file system, was paused again by QEMU: that state stays.
        if self.paused_full.load(Ordering::Relaxed) {
            self.note(said);
        } else {
            self.set_state(VmState::Ready, said);
            if was_mounted {
                self.mount_share().await?;
                self.note("mounted the 9p update share again");
            }
        }
        // QEMU reports a full disk under the state it writes as "Input/output error".
        r.map_err(explain_save_refused).map_err(|e| {
            crate::pipeline::explain_full_disk(e, &self.overlay_dir(), "the VM's saved state")
        })?;
        Ok(SnapshotDone {
            tag: tag.into(),
            secs,
            ready_secs: None,
            share_remounted: was_mounted,
            method: "QMP snapshot-save job".into(),
        })
    }

    /// The machine state into `file` for a booted image ([`Qmp::save_state`]), the share
    /// unmounted first. The guest stays stopped: its disk must stay what the state expects
    /// (the booted-image maker cuts the power next). A failed save resumes it.
    async fn state_save(&self, file: &Path) -> Result<SnapshotDone> {
        let st = self.state();
        if st != VmState::Ready {
            let detail = self.detail();
            bail!("can only save the state of a ready VM (state: {st}: {detail})");
        }
        let t = Instant::now();
        let unmounted = self.unmount_share().await?;
        if unmounted {
            self.note(UNMOUNTED_FOR_SAVE);
        }
        self.drop_agent().await;
        self.set_state(
            VmState::Saving,
            format!("saving the machine state to {}", file.display()),
        );
        let r = self.qmp().save_state(file, Duration::from_secs(900)).await;
        let secs = t.elapsed().as_secs_f64();
        match r {
            Ok(()) => {
                self.set_state(
                    VmState::Paused,
                    format!("machine state saved in {secs:.1}s; the guest stays stopped"),
                );
                Ok(SnapshotDone {
                    tag: file.display().to_string(),
                    secs,
                    ready_secs: None,
                    share_remounted: false,
                    method: "QMP migrate to a mapped-ram file".into(),
                })
            }
            Err(e) => {
                if let Err(c) = self.qmp().cont().await {
                    self.note(format!("could not resume the guest: {c:#}"));
                }
                self.set_state(VmState::Ready, "machine state not saved");
                Err(crate::pipeline::explain_full_disk(
                    e,
                    file.parent().unwrap_or(Path::new(".")),
                    "the VM's saved state",
                ))
            }
        }
    }

    async fn snapshot_restore(&self, tag: &str, within: Duration) -> Result<SnapshotDone> {
        let st = self.state();
        if matches!(
            st,
            VmState::Stopping | VmState::Stopped | VmState::Saving | VmState::Restoring
        ) {
            bail!("cannot restore a snapshot now (state: {st})");
        }
        let was_mounted = self.rec.lock().unwrap().share_mounted;
        if was_mounted && st == VmState::Ready {
            if let Err(e) = self.unmount_share().await {
                self.note(format!(
                    "could not unmount the 9p share before restoring: {e:#}"
                ));
            } else {
                self.note("unmounted the 9p update share before loading the snapshot");
            }
        }
        self.agent_hold.store(true, Ordering::Relaxed);
        self.drop_agent().await;
        self.set_state(VmState::Restoring, format!("loading snapshot {tag}"));
        let t = Instant::now();
        let r = self.snapshot_job("load", tag).await;
        let secs = t.elapsed().as_secs_f64();
        self.rec.lock().unwrap().share_mounted = false;
        self.drop_agent().await;
        *self.clock.lock().unwrap() = t;
        // The last boot's phases are not this guest's any more (nor a boot to time).
        *self.boot.lock().unwrap() = super::boot_phase::BootTimeline::new();
        self.agent_hold.store(false, Ordering::Relaxed);
        if let Err(e) = r {
            // The old state may be gone: treat it like a reboot and let the agent loop decide.
            self.set_state(VmState::Rebooting, format!("snapshot load failed: {e:#}"));
            return Err(e);
        }
        let status = self.qmp().query_status().await?;
        if !status.running {
            self.qmp().cont().await?;
        }
        self.wait_state(VmState::Ready, within).await?;
        let ready_secs = t.elapsed().as_secs_f64();
        Ok(SnapshotDone {
            tag: tag.into(),
            secs,
            ready_secs: Some(ready_secs),
            share_remounted: self.rec.lock().unwrap().share_mounted,
            method: "QMP snapshot-load job".into(),
        })
    }

    async fn handle(self: &Arc<Self>, req: Request) -> Result<serde_json::Value> {
        use serde_json::to_value;
        Ok(match req {
            Request::Status => to_value(self.rec.lock().unwrap().clone())?,
            Request::WaitReady { timeout_secs } => {
                self.wait_state(VmState::Ready, Duration::from_secs(timeout_secs))
                    .await?;
                to_value(self.rec.lock().unwrap().clone())?
            }
            Request::Exec {
                argv,
                timeout_secs,
                input_b64,
            } => {
                let input = match input_b64 {
                    Some(s) => Some(base64::engine::general_purpose::STANDARD.decode(s)?),
                    None => None,
                };
                to_value(
                    self.agent()
                        .await?
                        .exec(&argv, input, Duration::from_secs(timeout_secs))
                        .await?,
                )?
            }
            Request::ReadFile { path, max_bytes } => {
                let bytes = self.agent().await?.read_file(&path, max_bytes).await?;
                to_value(base64::engine::general_purpose::STANDARD.encode(bytes))?
            }
            Request::Reboot => {
                let agent = self.agent().await?;
                let mut resets = self.resets.subscribe();
                self.agent_hold.store(true, Ordering::Relaxed);
                self.set_state(
                    VmState::Rebooting,
                    "reboot requested (systemctl reboot in the guest)",
                );
                let r = agent.spawn(&["systemctl".into(), "reboot".into()]).await;
                self.drop_agent().await;
                if let Err(e) = r {
                    self.agent_hold.store(false, Ordering::Relaxed);
                    return Err(e);
                }
                let reset = reset_within(&mut resets, Duration::from_secs(300)).await;
                self.agent_hold.store(false, Ordering::Relaxed);
                if !reset {
                    bail!("guest did not reset within 300 s of `systemctl reboot`");
                }
                serde_json::Value::Null
            }
            Request::Powerdown { timeout_secs } => {
                let prev = self.state();
                if prev == VmState::Paused {
                    // A paused guest cannot see the power button.
                    let detail = self.detail();
                    bail!(
                        "the guest is paused ({detail}): resume it first, or cut the power (--force)"
                    );
                }
                self.set_state(VmState::Stopping, "ACPI power button (system_powerdown)");
                if let Err(e) = self.qmp().system_powerdown().await {
                    self.set_state(prev, "the power button was not pressed");
                    return Err(e);
                }
                if !self
                    .press_until_off(Duration::from_secs(timeout_secs))
                    .await
                {
                    self.set_state(prev, "guest ignored the power button");
                    bail!(
                        "the guest did not power off within {timeout_secs}s (use --force for a power cut)"
                    );
                }
                to_value(self.last_shutdown.lock().unwrap().clone())?
            }
            Request::Powercut => {
                self.cut("power cut (QMP quit)").await;
                to_value(self.last_shutdown.lock().unwrap().clone())?
            }
            Request::Reset => {
                let mut resets = self.resets.subscribe();
                self.qmp().system_reset().await?;
                if !reset_within(&mut resets, Duration::from_secs(30)).await {
                    bail!("QEMU did not reset within 30 s of system_reset");
                }
                serde_json::Value::Null
            }
            Request::Pause => {
                let prev = self.state();
                self.qmp().stop().await?;
                if prev != VmState::Paused {
                    *self.before_pause.lock().unwrap() = Some(prev);
                }
                self.set_state(VmState::Paused, "vCPUs stopped");
                serde_json::Value::Null
            }
            Request::Resume => {
                self.resume(VmState::Booting, "vCPUs running".into())
                    .await?;
                serde_json::Value::Null
            }
            Request::SnapshotSave { tag } => to_value(self.snapshot_save(&tag).await?)?,
            Request::StateSave { path } => to_value(self.state_save(&path).await?)?,
            Request::SnapshotRestore { tag, timeout_secs } => to_value(
                self.snapshot_restore(&tag, Duration::from_secs(timeout_secs))
                    .await?,
            )?,
            Request::MountShare => to_value(self.mount_share().await?)?,
            Request::SetRecipe { recipe, version } => {
                {
                    let mut r = self.rec.lock().unwrap();
                    r.recipe = Some(recipe);
                    r.version = version;
                }
                self.save();
                serde_json::Value::Null
            }
            Request::UnmountShare => {
                let r = self.unmount_share().await?;
                self.share_wanted.store(false, Ordering::Relaxed);
                to_value(r)?
            }
            Request::Screendump { path } => {
                self.qmp().screendump(Path::new(&path)).await?;
                serde_json::Value::Null
            }
            Request::Subscribe => unreachable!("handled by the connection"),
        })
    }
}

async fn serve(sup: Arc<Sup>, listener: UnixListener) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let sup = sup.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(sup, conn).await {
                log_line!("client: {e:#}");
            }
        });
    }
}

async fn connection(sup: Arc<Sup>, conn: UnixStream) -> Result<()> {
    let (r, mut w) = conn.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::err(format!("bad request: {e}")),
            Ok(Request::Subscribe) => {
                // Subscribe before replying so nothing between the two is lost.
                let mut rx = sup.events.subscribe();
                let rec = sup.rec.lock().unwrap().clone();
                send(&mut w, &Reply::ok(rec)).await?;
                loop {
                    tokio::select! {
                        ev = rx.recv() => match ev {
                            Ok(ev) => send(&mut w, &ev).await?,
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                send(&mut w, &VmStamped::now(VmEvent::Note { text: format!("{n} events dropped (slow reader)") })).await?
                            }
                            Err(_) => return Ok(()),
                        },
                        // The client hung up.
                        l = lines.next_line() => if !matches!(l, Ok(Some(_))) { return Ok(()) },
                    }
                }
            }
            Ok(req) => match sup.handle(req).await {
                Ok(v) => Reply {
                    ok: true,
                    error: None,
                    data: v,
                },
                Err(e) => Reply::err(format!("{e:#}")),
            },
        };
        send(&mut w, &reply).await?;
    }
    Ok(())
}

async fn send(w: &mut tokio::net::unix::OwnedWriteHalf, v: &impl serde::Serialize) -> Result<()> {
    let mut s = serde_json::to_string(v)?;
    s.push('\n');
    w.write_all(s.as_bytes()).await?;
    Ok(())
}

async fn qmp_loop(sup: Arc<Sup>, mut rx: broadcast::Receiver<QmpEvent>) {
    // A QEMU's first SHUTDOWN says why; the quit that follows it brings another.
    let mut shut = false;
    // The connection's own end: its event channel stays open while `sup.qmp` holds it.
    let mut closed = sup.qmp().closed();
    loop {
        let ev = tokio::select! {
            biased;
            ev = rx.recv() => ev,
            _ = closed.cancelled() => rx.try_recv().map_err(|e| match e {
                broadcast::error::TryRecvError::Lagged(n) => broadcast::error::RecvError::Lagged(n),
                _ => broadcast::error::RecvError::Closed,
            }),
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => {
                // The monitor connection ended: QEMU exited (for a reset a new one follows) or a
                // message the schema could not parse ended qapi's stream. Connect again for as
                // long as a QEMU runs: with `shutdown=pause`, a QEMU nobody watches would stay
                // paused at its next SHUTDOWN.
                let mut q = None;
                while q.is_none() && !sup.exited.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    tokio::select! {
                        r = Qmp::connect(&sup.qmp_path, Duration::from_secs(10)) => match r {
                            Ok(c) => q = Some(c),
                            Err(e) => log_line!("QMP: {e:#}; trying again"),
                        },
                        _ = sup.exited.cancelled() => {}
                    }
                }
                let Some(q) = q else { return };
                rx = q.subscribe();
                closed = q.closed();
                shut = false;
                *sup.qmp.lock().unwrap() = q.clone();
                if sup.state() == VmState::Rebooting {
                    sup.note("QMP connected to the new QEMU");
                } else {
                    sup.note("QMP connection lost and re-established");
                }
                // What happened while nobody listened: a new QEMU waits for `cont` (-S); one
                // stopped at a SHUTDOWN is let go (its reason is lost).
                match q.query_status().await.map(|st| st.status) {
                    Ok(RunState::prelaunch) => {
                        if let Err(e) = q.cont().await {
                            sup.note(format!("could not start the new QEMU's vCPUs: {e:#}"));
                        }
                    }
                    Ok(RunState::shutdown) => {
                        shut = true;
                        if sup.state() != VmState::Stopping {
                            sup.set_state(VmState::Stopping, "QEMU found stopped at a SHUTDOWN");
                        }
                        sup.quit_stopped().await;
                    }
                    Ok(_) => {}
                    Err(e) => log_line!("query-status after reconnecting: {e:#}"),
                }
                continue;
            }
        };
        let (name, detail) = describe_event(&ev);
        log_line!("qmp: {name} {detail}");
        sup.emit(VmEvent::Qmp {
            event: name,
            detail: detail.clone(),
        });
        match ev {
            // With `-action reboot=shutdown` a reset comes as SHUTDOWN (below); a RESET is one
            // QEMU did in place all the same.
            QmpEvent::RESET { data, .. } => {
                sup.guest_reset(&format!("guest reset ({})", enum_name(&data.reason)))
                    .await;
            }
            QmpEvent::BLOCK_IO_ERROR { data, .. } if enum_name(&data.action) == "stop" => {
                // Disks given as -blockdev have no device name, only their node's.
                let disk = match (data.device.as_str(), &data.node_name) {
                    ("", Some(node)) => node.as_str(),
                    (d, _) => d,
                };
                sup.paused_on_io_error(
                    disk,
                    &enum_name(&data.operation),
                    data.nospace == Some(true),
                    &data.reason,
                );
            }
            QmpEvent::SHUTDOWN { .. } if shut => {}
            QmpEvent::SHUTDOWN { data, .. } => {
                shut = true;
                let reason = enum_name(&data.reason);
                let reset = matches!(reason.as_str(), "guest-reset" | "host-qmp-system-reset");
                if reset && sup.state() != VmState::Stopping {
                    // Quit first: the guest_reset below may wait on the agent's lock.
                    sup.restart_pending.store(true, Ordering::SeqCst);
                    sup.quit_stopped().await;
                    sup.guest_reset(&format!("guest reset ({reason}); starting a new QEMU"))
                        .await;
                } else {
                    *sup.last_shutdown.lock().unwrap() =
                        Some(format!("guest={} reason={reason}", data.guest));
                    if sup.state() != VmState::Stopping {
                        sup.set_state(VmState::Stopping, format!("SHUTDOWN {detail}"));
                    }
                    sup.quit_stopped().await;
                }
            }
            _ => {}
        }
    }
}

/// Whether the guest reset (the count moved) within `within`.
async fn reset_within(resets: &mut watch::Receiver<u64>, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, resets.changed()).await,
        Ok(Ok(()))
    )
}

/// Follows the thread that runs QEMU: a QEMU that exits after the guest reset is started
/// again (same disk, sockets and console log); any other exit ends the supervisor.
async fn qemu_proc_loop(
    sup: Arc<Sup>,
    mut procs: tokio::sync::mpsc::UnboundedReceiver<QemuProc>,
    again: std::sync::mpsc::Sender<()>,
    exit_status: Arc<Mutex<Option<String>>>,
) {
    while let Some(p) = procs.recv().await {
        let QemuProc::Exited(mut status) = p else {
            continue;
        };
        if sup.restart_pending.swap(false, Ordering::SeqCst)
            && sup.state() != VmState::Stopping
            && again.send(()).is_ok()
        {
            log_line!("QEMU exited ({status}) after the guest reset; starting a new one");
            match procs.recv().await {
                Some(QemuProc::Started(pid)) => {
                    sup.rec.lock().unwrap().qemu_pid = Some(pid as i32);
                    sup.save();
                    // Stopped meanwhile (a power cut while it started): this one goes too.
                    if sup.state() == VmState::Stopping {
                        sup.signal_qemu(nix::sys::signal::Signal::SIGTERM);
                    }
                    continue;
                }
                Some(QemuProc::Failed(e)) => {
                    sup.note(format!("QEMU did not start again: {e}"));
                    status = format!("{status}; a new QEMU did not start: {e}");
                }
                _ => {}
            }
        }
        *exit_status.lock().unwrap() = Some(status);
        break;
    }
    sup.exited.cancel();
}

async fn console_loop(sup: Arc<Sup>) {
    let path = sup.rec.lock().unwrap().console_log.clone();
    console::Follower::from_start(&path)
        .follow(Duration::from_millis(200), move |line| {
            sup.console_line(line);
            true
        })
        .await;
}

/// Waits for the guest agent whenever the guest is (re)booting or restoring; declares the VM ready
/// once a fresh connection is synced, and mounts the update share again when it was wanted.
async fn agent_loop(sup: Arc<Sup>) {
    let qga_path = sup.rec.lock().unwrap().sockets.qga.clone();
    let mut state_rx = sup.state_tx.subscribe();
    // Whether this load's guest clock was set (tried once per load, see set_guest_clock).
    let mut clock_tried = false;
    loop {
        let st = *state_rx.borrow_and_update();
        if st != VmState::Restoring {
            clock_tried = false;
        }
        let waiting = matches!(
            st,
            VmState::Booting | VmState::Rebooting | VmState::Restoring
        );
        if !waiting || sup.agent_hold.load(Ordering::Relaxed) {
            tokio::select! {
                _ = state_rx.changed() => {},
                _ = tokio::time::sleep(Duration::from_millis(200)) => {},
            }
            continue;
        }
        match Qga::connect(&qga_path, Duration::from_secs(3)).await {
            Ok(q) => {
                if sup.agent_hold.load(Ordering::Relaxed) || sup.state() != st {
                    continue; // the guest went away while we synced
                }
                *sup.agent.lock().await = Some(Arc::new(q));
                let secs = sup.clock.lock().unwrap().elapsed().as_secs_f64();
                sup.rec.lock().unwrap().ready_secs = Some(secs);
                // After a boot the console told about (not a snapshot load): its phases.
                let (phases, timed) = {
                    let mut b = sup.boot.lock().unwrap();
                    // A timeline the agent already ended is a boot that was over (the guest
                    // never went down after a reboot request, a failed snapshot load).
                    let fresh = b.began(super::boot_phase::BootPhase::Agent).is_none();
                    b.agent(secs);
                    let told = b.began(super::boot_phase::BootPhase::Bootloader).is_some();
                    if told && st != VmState::Restoring {
                        (format!(" ({})", b.summary()), fresh)
                    } else {
                        (String::new(), false)
                    }
                };
                // A whole boot the console told about is this machine's latest of its kind.
                if timed
                    && let (Some(key), Some(t)) = (sup.boot_key(st), sup.timings.as_ref())
                    && let Err(e) = t.record(&key, secs)
                {
                    sup.note(format!("could not keep the boot's duration: {e:#}"));
                }
                if st == VmState::Restoring && !clock_tried {
                    set_guest_clock(&sup).await;
                    let poisoned = sup
                        .agent
                        .lock()
                        .await
                        .as_ref()
                        .is_some_and(|a| a.is_poisoned());
                    if poisoned || sup.state() != st {
                        // Connect again, once (or the VM went on meanwhile: a stop, another
                        // load, whose clock is set in turn).
                        clock_tried = sup.state() == st;
                        sup.drop_agent().await;
                        continue;
                    }
                }
                if sup.share_wanted.load(Ordering::Relaxed) {
                    // The agent answers before the state says ready, so `guest()` can't be used.
                    match mount_now(&sup).await {
                        Ok(()) => {
                            sup.note(format!("mounted the update share at {}", sup.share_dir()))
                        }
                        Err(e) => sup.note(format!("could not mount the update share: {e:#}")),
                    }
                }
                sup.set_state(
                    VmState::Ready,
                    format!("guest agent answered after {secs:.1}s{phases}"),
                );
                clock_tried = false;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// A loaded state's guest believes it is still the moment the state was saved: its clock is
/// set to the host's before the VM is ready (a lab's `date`, journal and file times are now).
async fn set_guest_clock(sup: &Sup) {
    let Some(agent) = sup.agent.lock().await.clone() else {
        return;
    };
    // Three agent calls, each answered in milliseconds; a guest that does not answer holds the
    // VM back from ready for 2 s at most: the call that timed out poisons the connection (the
    // calls after it fail at once, and the agent loop connects again). No timeout around the
    // whole: one that dropped a call in flight would leave its answer to be read as the next.
    match agent.set_time_to_host(Duration::from_secs(2)).await {
        Ok(off) if off.abs() >= 1.0 => sup.note(format!(
            "the guest's clock was {:.0} s {}: set to the host's time",
            off.abs(),
            if off < 0.0 { "behind" } else { "ahead" }
        )),
        Ok(_) => {}
        Err(e) => sup.note(format!("could not set the guest's clock: {e:#}")),
    }
}

async fn mount_now(sup: &Sup) -> Result<()> {
    let agent = sup.agent.lock().await.clone().context("no agent")?;
    mount_share_with(&agent, &sup.share_dir()).await?;
    sup.rec.lock().unwrap().share_mounted = true;
    sup.save();
    Ok(())
}

const UNMOUNTED_FOR_SAVE: &str =
    "unmounted the 9p update share: a mounted VirtFS export blocks saving VM state";

/// Whether `dir` is a mount point in the guest, from /proc/self/mountinfo read by the agent
/// itself: no process started in the guest (after a snapshot load TCG translates every new
/// process's code anew, ~0.3 s for the first one, measured).
async fn share_mounted(agent: &Qga, dir: &str) -> Result<bool> {
    let info = agent.read_file("/proc/self/mountinfo", 4 << 20).await?;
    Ok(is_mount_point(&String::from_utf8_lossy(&info), dir))
}

/// Whether a mountinfo text (proc(5)) has a mount at `dir` (its fifth field; `dir` has no
/// blanks, which mountinfo would escape).
fn is_mount_point(mountinfo: &str, dir: &str) -> bool {
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(dir))
}

/// Mounts the update share at `dir` unless something is mounted there; true when it mounted
/// it. After a snapshot load (the folder is there, the share is not: QEMU saves no state with it
/// mounted) that is one process in the guest, `mount`, instead of a shell running `mountpoint`,
/// `mkdir` and `mount` (measured: the share mounted 0.3-0.4 s sooner); the folder is made only
/// when the mount fails (after a boot /run is empty), then the mount is tried again.
async fn mount_share_with(agent: &Qga, dir: &str) -> Result<bool> {
    if share_mounted(agent, dir).await? {
        return Ok(false);
    }
    let t = Duration::from_secs(30);
    let mount = [
        "mount",
        "-t",
        "9p",
        "-o",
        "trans=virtio,version=9p2000.L,ro",
        SHARE_TAG,
        dir,
    ];
    let argv: Vec<String> = mount.map(String::from).to_vec();
    if agent.exec(&argv, None, t).await?.success() {
        return Ok(true);
    }
    guest_ok(agent, &["mkdir", "-p", dir], t).await?;
    guest_ok(agent, &mount, t).await?;
    Ok(true)
}

/// Runs `argv` in the guest through `agent`; an error with its exit status and stderr when it
/// fails.
async fn guest_ok(
    agent: &Qga,
    argv: &[&str],
    within: Duration,
) -> Result<crate::tools::qmp::qga::ExecOutput> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let out = agent.exec(&argv, None, within).await?;
    if !out.success() {
        bail!(
            "guest command `{}` failed (exit {}): {}",
            argv.join(" "),
            out.status(),
            out.stderr.trim()
        );
    }
    Ok(out)
}

/// QEMU saves a VM's state only when every disk in the chain can be migrated: a VM whose golden
/// disk is vmdk, vhdx or vdi (a converted disk) boots, but its state cannot be saved.
fn explain_save_refused(e: anyhow::Error) -> anyhow::Error {
    if e.to_string().contains("does not support live migration") {
        e.context(
            "this VM's golden disk is in a format QEMU cannot save VM state over (vmdk, vhdx \
and vdi block it); boot the raw or qcow2 disk for snapshots",
        )
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::is_mount_point;

    /// A guest's /proc/self/mountinfo (trixie, the share mounted), as the agent reads it.
    const MOUNTINFO: &str = "\
25 1 0:23 / / ro,relatime shared:1 - overlay composefs ro,lowerdir+=/run/ostree/.private/cfsroot-lower\n\
30 25 252:2 /ostree/deploy/debian/var /var rw,relatime shared:5 - ext4 /dev/vda2 rw\n\
31 25 0:26 / /run rw,nosuid,nodev shared:6 - tmpfs tmpfs rw,size=401412k,nr_inodes=819200,mode=755\n\
92 31 0:54 / /run/bootlab/updates ro,relatime shared:48 - 9p bootlab-updates ro,access=client,trans=virtio\n\
93 31 0:55 / /run/bootlab/updates\\040two rw,relatime shared:49 - tmpfs tmpfs rw\n";

    #[test]
    fn a_mount_point_is_the_fifth_field_of_a_mountinfo_line() {
        assert!(is_mount_point(MOUNTINFO, "/run/bootlab/updates"));
        assert!(is_mount_point(MOUNTINFO, "/var"));
        // a folder under a mount, a prefix, a source or a root field is not one
        assert!(!is_mount_point(MOUNTINFO, "/run/bootlab"));
        assert!(!is_mount_point(MOUNTINFO, "/run/bootlab/update"));
        assert!(!is_mount_point(MOUNTINFO, "/ostree/deploy/debian/var"));
        assert!(!is_mount_point(MOUNTINFO, "/var/mnt/share"));
        assert!(!is_mount_point("", "/run/bootlab/updates"));
    }
}
