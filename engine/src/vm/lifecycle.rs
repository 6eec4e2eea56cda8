//! Starting, listing, stopping VMs, and clearing what a crash left behind.

use super::client::VmClient;
use super::{VmRecord, VmState, check_name, procs, socket_paths};
use crate::events::{CancellationToken, Cancelled, Emitter, Event};
use crate::paths::Paths;
use crate::tools::cmd::HostCmd;
use crate::tools::qemu::{self, Accel};
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default boot timeout under TCG (a Debian guest answers in ~45 s on QEMU 10 here).
pub const TCG_BOOT_TIMEOUT: Duration = Duration::from_secs(240);
pub const KVM_BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// What to start.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub name: String,
    pub recipe: Option<String>,
    pub version: Option<String>,
    /// Golden raw disk: the VM gets a fresh qcow2 overlay on it.
    pub golden: Option<PathBuf>,
    /// A qcow2 image (with internal snapshots, e.g. a cached "booted" image) copied as the VM's
    /// disk instead of a fresh overlay.
    pub image: Option<PathBuf>,
    /// Start from this internal snapshot (`-loadvm`) instead of booting.
    pub from_snapshot: Option<String>,
    pub ssh: bool,
    pub known_password: Option<String>,
    pub memory_mib: u32,
    pub cpus: u32,
    /// `None`: 240 s under TCG, 90 s under KVM.
    pub boot_timeout: Option<Duration>,
    /// Share the host update folder read-only (mounted in the guest once ready).
    pub share: bool,
    /// Guest folder of the share; `None`: /run/bootlab/updates.
    pub share_dir: Option<String>,
    /// Keep the overlay and record after the VM stops.
    pub keep: bool,
    /// Force an accelerator (otherwise the doctor's KVM probe decides).
    pub accel: Option<Accel>,
    /// SeaBIOS (the default) or OVMF.
    pub firmware: qemu::Firmware,
}

impl UpOptions {
    pub fn new(name: impl Into<String>) -> UpOptions {
        UpOptions {
            name: name.into(),
            recipe: None,
            version: None,
            golden: None,
            image: None,
            from_snapshot: None,
            ssh: false,
            known_password: None,
            memory_mib: 2048,
            cpus: 2,
            boot_timeout: None,
            share: true,
            share_dir: None,
            keep: false,
            accel: None,
            firmware: qemu::Firmware::Bios,
        }
    }
    /// Fill in what the recipe says about its guest (ssh, known password label).
    pub fn for_recipe(mut self, r: &crate::recipe::Recipe, version: &str) -> UpOptions {
        self.recipe = Some(r.name().to_string());
        self.version = Some(version.to_string());
        self.ssh = r.file.guest.ssh;
        if r.file.family == crate::recipe::Family::Bootc {
            self.share_dir = Some(crate::pipeline::bootc::install::BOOTC_SHARE_DIR.to_string());
        }
        self.known_password = r
            .file
            .guest
            .known_password
            .as_ref()
            .map(|l| format!("{}/{}", l.user, l.password));
        self
    }
}

static THIS_EXE_SUPERVISES: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Called by the bootlab binary's `main`: this very executable runs supervisors
/// (`/proc/self/exe vm supervise …`), whatever its file name and even if it was replaced on disk
/// since it started.
pub fn supervise_with_this_exe() {
    THIS_EXE_SUPERVISES.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The bootlab binary that runs supervisors: `BOOTLAB_BIN` when set, else this executable when it
/// is bootlab (see [`supervise_with_this_exe`]), else — for programs that link the engine, like
/// test binaries in target/debug/deps — a `bootlab` next to it or one folder up.
pub fn bootlab_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BOOTLAB_BIN").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if THIS_EXE_SUPERVISES.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(PathBuf::from("/proc/self/exe"));
    }
    let me = std::env::current_exe()?;
    for dir in me.ancestors().skip(1).take(2) {
        let c = dir.join("bootlab");
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!(
        "cannot find the bootlab binary to run the VM supervisor: {} is not bootlab (set BOOTLAB_BIN)",
        me.display()
    )
}

/// Start a VM and wait until its guest agent answers. Events (state changes, console lines,
/// QMP events) go to `ev` while it boots. On failure or cancel the VM is powered off and what this
/// start created is removed (a kept VM that was started again stays, recorded stopped with the
/// reason); the error carries the console tail.
pub async fn up(
    paths: &Paths,
    opts: UpOptions,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<VmRecord> {
    check_name(&opts.name)?;
    // Held until the guest is ready or the start is undone: a second starter is told at once.
    let _lock = super::lock::VmLock::acquire(paths, &opts.name)?;
    reap_stale(paths);
    let dir = VmRecord::dir(paths, &opts.name);
    let existing = VmRecord::file(&dir).exists();
    if existing {
        let r = VmRecord::load_dir(&dir)?;
        if r.state != VmState::Stopped {
            bail!(
                "VM {} already runs (state {}); `bootlab vm down {}` first",
                opts.name,
                r.state,
                opts.name
            );
        }
        if opts.golden.is_some() || opts.image.is_some() {
            bail!(
                "a stopped VM named {} exists; `bootlab vm rm {}` it or pick another --name",
                opts.name,
                opts.name
            );
        }
    }
    let mut supervisor = None;
    let r = start(paths, &opts, existing, &mut supervisor, ev, cancel).await;
    match r {
        Ok(rec) => Ok(rec),
        Err(e) => {
            // Nothing lingers after a failed or cancelled start.
            let _ = stop(paths, &opts.name, true, Duration::from_secs(5)).await;
            if let Some(pid) = supervisor {
                procs::kill_verified(pid, &dir.to_string_lossy());
            }
            let why = format!("start failed: {e:#}");
            if existing {
                if let Ok(rec) = VmRecord::load_dir(&dir) {
                    end_record(&dir, rec, &why, true);
                }
            } else {
                let _ = remove_dir(&dir);
            }
            let what = if supervisor.is_some() {
                "did not become ready"
            } else {
                "could not be started"
            };
            Err(e.context(format!("VM {} {what}", opts.name)))
        }
    }
}

/// A VM's own link to the machine state of the booted image it started from.
const OWN_STATE: &str = "booted.vmstate";

/// The part of [`up`] that creates things; [`up`] undoes them when this fails.
async fn start(
    paths: &Paths,
    opts: &UpOptions,
    existing: bool,
    supervisor: &mut Option<i32>,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<VmRecord> {
    let dir = VmRecord::dir(paths, &opts.name);
    let stage = crate::events::vm_stage(&opts.name);
    crate::paths::create_private_dir(&dir)?;
    let overlay = dir.join("disk.qcow2");
    let mut golden = None;
    let mut load_state = None;
    if !existing {
        if let Some(img) = &opts.image {
            // A booted image with its machine state in a file beside it: its disk holds only
            // what the boot wrote (a few MB to copy) and the state loads straight into memory.
            let state = super::images::state_file(img);
            if opts.from_snapshot.as_deref() == Some(super::images::BOOTED_TAG) && state.is_file() {
                ev.note(
                    &stage,
                    format!(
                        "copying {} (the booted disk); its machine state loads from {}",
                        img.display(),
                        state.display()
                    ),
                );
                // The VM keeps its own link to the state file: a booted image made again
                // meanwhile (its state renamed over this one) must not hand this VM's disk
                // another boot's memory. Where the two folders are on different file systems,
                // the shared file is read.
                let own = dir.join(OWN_STATE);
                let _ = std::fs::remove_file(&own);
                load_state = Some(match std::fs::hard_link(&state, &own) {
                    Ok(()) => own,
                    Err(_) => state,
                });
            } else {
                ev.note(
                    &stage,
                    format!("copying {} (with its snapshots)", img.display()),
                );
            }
            HostCmd::new("cp")
                .args(["--reflink=auto", "--sparse=always"])
                .arg(img)
                .arg(&overlay)
                .run(&stage, ev, cancel)
                .await?;
        } else {
            let g = opts
                .golden
                .as_ref()
                .ok_or_else(|| anyhow!("no disk: give a golden disk or an image"))?;
            let g =
                std::fs::canonicalize(g).with_context(|| format!("golden disk {}", g.display()))?;
            if opts.firmware == qemu::Firmware::Uefi
                && crate::pipeline::disk::golden_has_uefi(&g) == Some(false)
            {
                bail!(
                    "{} has no UEFI loader on its EFI system partition (made before bootlab \
                     put one there, or on a host without grub-efi and mtools): make the disk \
                     again (`bootlab disk make`), or boot it with BIOS",
                    g.display()
                );
            }
            qemu::img::overlay(&g, &overlay, &stage, ev, cancel).await?;
            golden = Some(g);
        }
    }
    let (accel, reason) = match opts.accel {
        Some(a) => (a, format!("{} asked for", a.as_str())),
        None => qemu::choose_accel(paths, ev, cancel).await,
    };
    ev.note(&stage, format!("accelerator {}: {reason}", accel.as_str()));
    let boot_timeout = opts.boot_timeout.unwrap_or(match accel {
        Accel::Tcg => TCG_BOOT_TIMEOUT,
        Accel::Kvm => KVM_BOOT_TIMEOUT,
    });
    let share = if opts.share {
        let s = paths.update_share();
        std::fs::create_dir_all(&s)?;
        Some(s)
    } else {
        None
    };
    let ssh_port = if opts.ssh {
        Some(qemu::free_local_port()?)
    } else {
        None
    };
    let mut rec = if existing {
        let mut r = VmRecord::load_dir(&dir)?;
        if let Some(tag) = &opts.from_snapshot {
            // Said now, not by a QEMU that fails to start: a VM started from a booted image's
            // saved state keeps no snapshot of it in its own disk.
            let tags = qemu::img::snapshot_tags(&r.overlay, &stage, ev).await?;
            if !tags.contains(tag) {
                let hint = if tag == super::images::BOOTED_TAG {
                    format!(
                        "; a VM started from a booted image loaded the image's saved state and \
                         keeps no copy of it: `bootlab vm rm {}` and start it again with \
                         --from-snapshot booted",
                        r.name
                    )
                } else {
                    String::new()
                };
                let has = if tags.is_empty() {
                    "none".to_string()
                } else {
                    tags.join(", ")
                };
                bail!(
                    "VM {}'s disk has no snapshot {tag} (it has: {has}){hint}",
                    r.name
                );
            }
        }
        r.loadvm = opts.from_snapshot.clone();
        r.load_state = None;
        // The link to the state it first started from is of no use again; it would keep a
        // booted image's state (~200 MB) alive after that image was made again.
        let _ = std::fs::remove_file(dir.join(OWN_STATE));
        r
    } else {
        VmRecord {
            name: opts.name.clone(),
            recipe: opts.recipe.clone(),
            version: opts.version.clone(),
            state: VmState::Starting,
            detail: String::new(),
            supervisor_pid: None,
            qemu_pid: None,
            accel,
            accel_reason: reason.clone(),
            memory_mib: opts.memory_mib,
            cpus: opts.cpus,
            ssh_port,
            sockets: socket_paths(&dir),
            console_log: dir.join("console.log"),
            supervisor_log: dir.join("supervisor.log"),
            overlay: overlay.clone(),
            golden,
            guest_share_dir: share.as_ref().and(opts.share_dir.clone()),
            share,
            share_mounted: false,
            // Either the image's internal snapshot or its saved state file, never both.
            loadvm: if load_state.is_some() {
                None
            } else {
                opts.from_snapshot.clone()
            },
            load_state,
            firmware: opts.firmware,
            known_password: opts.known_password.clone(),
            keep: opts.keep,
            boot_timeout_secs: boot_timeout.as_secs(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ready_secs: None,
        }
    };
    rec.state = VmState::Starting;
    rec.detail = "starting the supervisor".into();
    rec.accel = accel;
    rec.accel_reason = reason;
    rec.save_dir(&dir)?;
    if let Some(k) = &rec.known_password {
        ev.note(
            &stage,
            format!("LAB VM: console login with a known password ({k}); never expose it"),
        );
    }
    // The VM's own key pair, made before the boot so a failure costs no boot.
    let ssh_key = match rec.ssh_port {
        Some(p) => {
            let key = crate::tools::ssh::ensure_key(
                &dir,
                &format!("bootlab-{}", rec.name),
                &stage,
                ev,
                cancel,
            )
            .await?;
            ev.note(
                &stage,
                format!("ssh forwarded on 127.0.0.1:{p}; `bootlab vm ssh {}` logs in with this VM's key", rec.name),
            );
            Some(key)
        }
        None => None,
    };

    let (pid, mut exited) = spawn_supervisor(&dir, &rec.supervisor_log, ev, &stage)?;
    *supervisor = Some(pid);
    let log = rec.supervisor_log.clone();
    let result = async {
        let connect = VmClient::connect_within(paths, &opts.name, Duration::from_secs(30));
        // A supervisor that dies before it answers (wrong binary, bad record) fails the start
        // now, not after the connect timeout.
        let client = tokio::select! {
            c = connect => c,
            st = &mut exited => Err(anyhow!(
                "the supervisor (pid {pid}) exited ({}) before it answered",
                st.map(|s| s.to_string()).unwrap_or_else(|_| "status unknown".into())
            )),
        }
        .map_err(|e| {
            let log = crate::vm::console::tail(&log, 15).join("\n  ");
            anyhow!("{e:#}; supervisor log:\n  {log}")
        })?;
        // Forward the boot's events until the VM is ready (or stopped), then stop forwarding.
        let mut sub = client.subscribe().await?;
        let (fev, vm_name) = (ev.clone(), opts.name.clone());
        let mut fwd = tokio::spawn(async move {
            while let Some(e) = sub.recv().await {
                fev.emit(e.to_engine(&vm_name).event);
                if matches!(
                    e.event,
                    super::VmEvent::State {
                        state: VmState::Ready | VmState::Stopped,
                        ..
                    }
                ) {
                    break;
                }
            }
        });
        let r = client.wait_ready(boot_timeout).await;
        if let (Ok(_), Some(key)) = (&r, &ssh_key) {
            install_ssh_key(&client, key, ev, &stage).await?;
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut fwd)
            .await
            .is_err()
        {
            fwd.abort();
        }
        r
    };
    tokio::select! {
        r = result => r,
        _ = cancel.cancelled() => Err(Cancelled.into()),
    }
}

/// Make `key` root's authorized key in the guest, through the guest agent.
async fn install_ssh_key(client: &VmClient, key: &str, ev: &Emitter, stage: &str) -> Result<()> {
    let out = client
        .exec_with(
            &["/bin/sh", "-c", crate::tools::ssh::INSTALL_KEY_SCRIPT],
            Some(format!("{key}\n").as_bytes()),
            Duration::from_secs(60),
        )
        .await?;
    if !out.success() {
        bail!(
            "could not give the guest this VM's ssh key (exit {}): {}",
            out.status(),
            out.stderr.trim()
        );
    }
    ev.note(
        stage,
        "root's authorized_keys in the guest holds this VM's key",
    );
    Ok(())
}

/// Start the detached supervisor; returns its pid and a receiver that fires when it exits.
fn spawn_supervisor(
    dir: &Path,
    log: &Path,
    ev: &Emitter,
    stage: &str,
) -> Result<(
    i32,
    tokio::sync::oneshot::Receiver<std::process::ExitStatus>,
)> {
    let exe = bootlab_exe()?;
    // What the user sees: the real file, not /proc/self/exe.
    let shown = if exe == Path::new("/proc/self/exe") {
        std::env::current_exe().unwrap_or_else(|_| exe.clone())
    } else {
        exe.clone()
    };
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    // The supervisor is this very executable, not an external program: the one spawn outside
    // `tools` besides the supervisor's own QEMU (it must outlive this process, so no HostCmd).
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["vm", "supervise", "--dir"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf);
    // SAFETY: setsid is async-signal-safe; a new session detaches the supervisor from the
    // terminal (Ctrl-C in the CLI must not take the VM down).
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.arg0(&shown);
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    ev.emit(Event::Command {
        stage: stage.into(),
        argv: std::iter::once(shown.to_string_lossy().into_owned())
            .chain(["vm", "supervise", "--dir"].map(String::from))
            .chain([dir.to_string_lossy().into_owned()])
            .collect(),
    });
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting the VM supervisor {}", shown.display()))?;
    let pid = child.id() as i32;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Reap it when it ends (a long-lived caller, like the TUI, must not collect zombies).
    std::thread::spawn(move || {
        if let Ok(st) = child.wait() {
            let _ = tx.send(st);
        }
    });
    Ok((pid, rx))
}

/// Power a VM off: ACPI powerdown and wait (or a power cut when `force`), then wait for its
/// supervisor to go. Returns the SHUTDOWN reason QEMU reported, when there was one. Afterwards
/// the record says stopped, whatever state it was left in.
pub async fn stop(
    paths: &Paths,
    name: &str,
    force: bool,
    within: Duration,
) -> Result<Option<String>> {
    let rec = VmRecord::load(paths, name)?;
    let reason = match VmClient::connect(paths, name).await {
        Ok(c) => {
            if force {
                c.powercut().await?
            } else {
                c.powerdown(within).await?
            }
        }
        Err(_) => None,
    };
    // The supervisor exits right after QEMU; wait for it, then clear whatever is left.
    let dir = VmRecord::dir(paths, name);
    let dir_s = dir.to_string_lossy().into_owned();
    if let Some(pid) = live_supervisor(&dir, &rec) {
        let gone =
            crate::events::retry_until(Duration::from_secs(10), Duration::from_millis(50), || {
                let dir_s = dir_s.clone();
                async move { (!procs::alive_with(pid, &dir_s)).then_some(()) }
            })
            .await;
        if gone.is_none() {
            procs::kill_verified(pid, &dir_s);
        }
    }
    // The supervisor records the stop itself; a record nobody is left to update is settled here.
    if let Ok(r) = VmRecord::load_dir(&dir)
        && r.state != VmState::Stopped
        && live_supervisor(&dir, &r).is_none()
    {
        let why = if r.state == VmState::Starting {
            "stopped: its supervisor never ran".to_string()
        } else {
            format!("stopped: its supervisor was gone (state was {})", r.state)
        };
        end_record(&dir, r, &why, true);
    }
    reap_stale(paths);
    Ok(reason)
}

/// `vm down`: stop, and remove the VM unless it was started with `keep`.
pub async fn down(
    paths: &Paths,
    name: &str,
    force: bool,
    within: Duration,
) -> Result<Option<String>> {
    let rec = VmRecord::load(paths, name)?;
    let reason = stop(paths, name, force, within).await?;
    if !rec.keep {
        remove_dir(&VmRecord::dir(paths, name))?;
    }
    Ok(reason)
}

/// Remove a stopped VM (record, overlay, logs). A record that claims to run but has no live
/// supervisor is stale and removed too.
pub fn remove(paths: &Paths, name: &str) -> Result<()> {
    let rec = VmRecord::load(paths, name)?;
    let dir = VmRecord::dir(paths, name);
    if rec.state != VmState::Stopped {
        if super::lock::is_held(paths, name) {
            bail!(
                "VM {name} is being started by another bootlab process; `bootlab vm down {name} --force` stops it"
            );
        }
        if let Some(pid) = live_supervisor(&dir, &rec) {
            bail!(
                "VM {name} is {} (supervisor pid {pid}); `bootlab vm down {name}` first",
                rec.state
            );
        }
        end_record(&dir, rec, "removed: its supervisor was gone", false);
    }
    remove_dir(&dir)
}

/// The pid of the live supervisor of the VM in `dir`: the recorded one if it still is that
/// process, else any `vm supervise --dir <dir>` process (one that has not recorded itself yet).
fn live_supervisor(dir: &Path, rec: &VmRecord) -> Option<i32> {
    let dir_s = dir.to_string_lossy().into_owned();
    if let Some(p) = rec.supervisor_pid
        && procs::alive_with(p, &dir_s)
    {
        return Some(p);
    }
    procs::mentioning(&dir_s).into_iter().find(|p| {
        procs::cmdline(*p).is_some_and(|c| {
            c.iter().any(|a| a == "supervise")
                && c.windows(2).any(|w| w[0] == "--dir" && w[1] == dir_s)
        })
    })
}

/// End what a record without a live supervisor still holds (its QEMU, its sockets) and make the
/// record tell the truth: stopped with `why` when `keep_record`, else removed.
fn end_record(dir: &Path, rec: VmRecord, why: &str, keep_record: bool) -> Vec<String> {
    let mut done = Vec::new();
    let qmp = rec.sockets.qmp.to_string_lossy().into_owned();
    if let Some(q) = rec.qemu_pid
        && procs::kill_verified(q, &qmp)
    {
        done.push(format!(
            "VM {}: killed QEMU {q} (its supervisor was gone)",
            rec.name
        ));
    }
    for p in [
        &rec.sockets.control,
        &rec.sockets.qmp,
        &rec.sockets.qga,
        &rec.sockets.serial,
    ] {
        let _ = std::fs::remove_file(p);
    }
    if keep_record {
        let mut r = rec;
        r.state = VmState::Stopped;
        r.detail = why.to_string();
        r.qemu_pid = None;
        r.supervisor_pid = None;
        r.share_mounted = false;
        let _ = r.save_dir(dir);
    } else {
        let _ = remove_dir(dir);
    }
    done
}

fn remove_dir(dir: &Path) -> Result<()> {
    if let Ok(r) = VmRecord::load_dir(dir)
        && let Some(p) = r.sockets.control.parent()
        && p != dir
    {
        let _ = std::fs::remove_dir_all(p);
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// All VM records (after clearing stale ones), by name.
pub fn list(paths: &Paths) -> Vec<VmRecord> {
    reap_stale(paths);
    let mut out: Vec<VmRecord> = std::fs::read_dir(paths.vms())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| VmRecord::load_dir(&e.path()).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Find and end what a crash left: a QEMU whose supervisor is gone, a supervisor whose record is
/// gone, a record whose processes are gone. Recorded pids are checked against /proc (their
/// command line must name this VM's folder or socket), so a reused pid is never killed.
/// Returns what was done, one line per action.
pub fn reap_stale(paths: &Paths) -> Vec<String> {
    let mut done = Vec::new();
    let vms = paths.vms();
    for e in std::fs::read_dir(&vms).into_iter().flatten().flatten() {
        let dir = e.path();
        let Ok(rec) = VmRecord::load_dir(&dir) else {
            continue;
        };
        if rec.state == VmState::Stopped {
            continue;
        }
        if live_supervisor(&dir, &rec).is_some() {
            continue;
        }
        // A record a live `vm up` is writing right now has no supervisor yet.
        if rec.state == VmState::Starting && super::lock::is_held(paths, &rec.name) {
            continue;
        }
        let name = rec.name.clone();
        let keep = rec.keep;
        let was = rec.state;
        done.extend(end_record(
            &dir,
            rec,
            &format!("stopped: its supervisor was gone (state was {was})"),
            keep,
        ));
        done.push(format!(
            "VM {name}: cleared the stale record (state {was}, supervisor gone){}",
            if keep { "; kept, recorded stopped" } else { "" }
        ));
    }
    // Processes that name the VM folder but belong to no live record.
    let vms_s = vms.to_string_lossy().into_owned();
    for pid in procs::mentioning(&vms_s) {
        let Some(cmd) = procs::cmdline(pid) else {
            continue;
        };
        let is_qemu = cmd.first().is_some_and(|a| a.contains("qemu-system"));
        let is_sup = cmd.iter().any(|a| a == "supervise");
        if !is_qemu && !is_sup {
            continue;
        }
        // The VM folder this process belongs to.
        let Some(vm_dir) = cmd.iter().find_map(|a| {
            let i = a.find(&vms_s)?;
            let rest = &a[i + vms_s.len()..];
            let name = rest.trim_start_matches('/').split('/').next()?;
            (!name.is_empty()).then(|| vms.join(name))
        }) else {
            continue;
        };
        let rec = VmRecord::load_dir(&vm_dir).ok();
        let owned = match &rec {
            None => false,
            Some(r) if is_sup => r.supervisor_pid == Some(pid) || r.state == VmState::Starting,
            // A QEMU is owned while its parent is a live supervisor.
            Some(_) => procs::ppid(pid).is_some_and(|pp| {
                procs::cmdline(pp).is_some_and(|c| c.iter().any(|a| a == "supervise"))
            }),
        };
        if !owned && procs::kill_verified(pid, &vms_s) {
            done.push(format!(
                "killed orphaned {} {pid} of {}",
                if is_qemu { "QEMU" } else { "supervisor" },
                vm_dir.display()
            ));
        }
    }
    done
}
