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
    /// Keep the overlay and record after the VM stops.
    pub keep: bool,
    /// Force an accelerator (otherwise the doctor's KVM probe decides).
    pub accel: Option<Accel>,
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
            keep: false,
            accel: None,
        }
    }
    /// Fill in what the recipe says about its guest (ssh, known password label).
    pub fn for_recipe(mut self, r: &crate::recipe::Recipe, version: &str) -> UpOptions {
        self.recipe = Some(r.name().to_string());
        self.version = Some(version.to_string());
        self.ssh = r.file.guest.ssh;
        self.known_password = r
            .file
            .guest
            .known_password
            .as_ref()
            .map(|l| format!("{}/{}", l.user, l.password));
        self
    }
}

/// The bootlab binary that runs supervisors: `BOOTLAB_BIN`, else this executable when it is
/// bootlab, else a `bootlab` next to it or one folder up (tests run from target/debug/deps).
pub fn bootlab_exe() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BOOTLAB_BIN").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    if me.file_name().is_some_and(|n| n == "bootlab") {
        return Ok(me);
    }
    for dir in me.ancestors().skip(1).take(2) {
        let c = dir.join("bootlab");
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!("cannot find the bootlab binary to run the VM supervisor (set BOOTLAB_BIN)")
}

/// Start a VM and wait until its guest agent answers. Events (state changes, console lines,
/// QMP events) go to `ev` while it boots. On failure or cancel the VM is powered off and removed
/// (unless `keep`), and the error carries the console tail.
pub async fn up(
    paths: &Paths,
    opts: UpOptions,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<VmRecord> {
    check_name(&opts.name)?;
    reap_stale(paths);
    let dir = VmRecord::dir(paths, &opts.name);
    let stage = format!("vm:{}", opts.name);
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
    std::fs::create_dir_all(&dir)?;
    let overlay = dir.join("disk.qcow2");
    let mut golden = None;
    if !existing {
        if let Some(img) = &opts.image {
            ev.note(
                &stage,
                format!("copying {} (with its snapshots)", img.display()),
            );
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
            HostCmd::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                .arg(&g)
                .arg(&overlay)
                .run(&stage, ev, cancel)
                .await?;
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
        r.loadvm = opts.from_snapshot.clone();
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
            share,
            share_mounted: false,
            loadvm: opts.from_snapshot.clone(),
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
    if let Some(p) = rec.ssh_port {
        ev.note(&stage, format!("ssh forwarded on 127.0.0.1:{p}"));
    }

    spawn_supervisor(&dir, &rec.supervisor_log, ev, &stage)?;
    let result = async {
        let client = VmClient::connect_within(paths, &opts.name, Duration::from_secs(30))
            .await
            .map_err(|e| {
                let log = crate::vm::console::tail(&rec.supervisor_log, 15).join("\n  ");
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
        if tokio::time::timeout(Duration::from_secs(2), &mut fwd)
            .await
            .is_err()
        {
            fwd.abort();
        }
        r
    };
    let r = tokio::select! {
        r = result => r,
        _ = cancel.cancelled() => Err(Cancelled.into()),
    };
    match r {
        Ok(rec) => Ok(rec),
        Err(e) => {
            // Nothing lingers after a failed or cancelled start.
            let _ = stop(paths, &opts.name, true, Duration::from_secs(5)).await;
            if !opts.keep {
                let _ = remove_dir(&dir);
            }
            Err(e.context(format!("VM {} did not become ready", opts.name)))
        }
    }
}

fn spawn_supervisor(dir: &Path, log: &Path, ev: &Emitter, stage: &str) -> Result<()> {
    let exe = bootlab_exe()?;
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
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
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    ev.emit(Event::Command {
        stage: stage.into(),
        argv: std::iter::once(exe.to_string_lossy().into_owned())
            .chain(["vm", "supervise", "--dir"].map(String::from))
            .chain([dir.to_string_lossy().into_owned()])
            .collect(),
    });
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    // Reap it when it ends (a long-lived caller, like the TUI, must not collect zombies).
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// Power a VM off: ACPI powerdown and wait (or a power cut when `force`), then wait for its
/// supervisor to go. Returns the SHUTDOWN reason QEMU reported, when there was one.
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
    let dir = VmRecord::dir(paths, name).to_string_lossy().into_owned();
    if let Some(pid) = rec.supervisor_pid {
        let gone =
            crate::events::retry_until(Duration::from_secs(10), Duration::from_millis(50), || {
                let dir = dir.clone();
                async move { (!procs::alive_with(pid, &dir)).then_some(()) }
            })
            .await;
        if gone.is_none() {
            procs::kill_verified(pid, &dir);
        }
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

/// Remove a stopped VM (record, overlay, logs).
pub fn remove(paths: &Paths, name: &str) -> Result<()> {
    let rec = VmRecord::load(paths, name)?;
    if rec.state != VmState::Stopped {
        bail!("VM {name} is {}; `bootlab vm down {name}` first", rec.state);
    }
    remove_dir(&VmRecord::dir(paths, name))
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
        let dir_s = dir.to_string_lossy().into_owned();
        let sup_alive = rec
            .supervisor_pid
            .is_some_and(|p| procs::alive_with(p, &dir_s));
        if sup_alive {
            continue;
        }
        // A record being written by a concurrent `vm up` has no supervisor yet.
        if rec.state == VmState::Starting && rec.supervisor_pid.is_none() {
            let age = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .saturating_sub(rec.created_unix);
            if age < 60 {
                continue;
            }
        }
        let qmp = rec.sockets.qmp.to_string_lossy().into_owned();
        if let Some(q) = rec.qemu_pid
            && procs::kill_verified(q, &qmp)
        {
            {
                done.push(format!(
                    "VM {}: killed QEMU {q} (its supervisor was gone)",
                    rec.name
                ));
            }
        }
        for p in [
            &rec.sockets.control,
            &rec.sockets.qmp,
            &rec.sockets.qga,
            &rec.sockets.serial,
        ] {
            let _ = std::fs::remove_file(p);
        }
        if rec.keep {
            let mut r = rec.clone();
            r.state = VmState::Stopped;
            r.detail = "supervisor died; VM ended by reap".into();
            r.qemu_pid = None;
            r.supervisor_pid = None;
            let _ = r.save_dir(&dir);
        } else {
            let _ = remove_dir(&dir);
        }
        done.push(format!(
            "VM {}: cleared the stale record (supervisor gone)",
            rec.name
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
