//! `bootlab vm …`: start, list, drive and stop VMs (each owned by a detached supervisor).

use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::vm::{self, VmClient, VmRecord};
use crate::workflow::{self, BootPlan, Start, Target, VmFor};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum VmCmd {
    /// Boot a recipe's golden disk in a new VM (a qcow2 overlay; the golden disk is untouched).
    /// What is missing is made first: the image built, the disk made (progress shown).
    Up {
        /// Recipe name (e.g. debian-minimal).
        recipe: String,
        #[arg(long)]
        version: Option<String>,
        /// VM name (default: the recipe name).
        #[arg(long)]
        name: Option<String>,
        /// Golden raw disk to boot instead of the recipe's (made when missing).
        #[arg(long)]
        disk: Option<PathBuf>,
        /// Start from this snapshot (`-loadvm`): of a kept, stopped VM of that name, or `booted`
        /// for the cached booted image next to the golden disk (made once on first use).
        #[arg(long)]
        from_snapshot: Option<String>,
        /// Seconds to wait for the guest agent (default 240 under TCG, 90 under KVM).
        #[arg(long)]
        boot_timeout: Option<u64>,
        #[arg(long, default_value_t = 2048)]
        memory: u32,
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Keep the VM's disk and record after it stops.
        #[arg(long)]
        keep: bool,
        /// Do not share the host update folder into the guest.
        #[arg(long)]
        no_share: bool,
        /// Force TCG (software emulation).
        #[arg(long)]
        tcg: bool,
        /// Firmware: `bios` (SeaBIOS, extlinux) or `uefi` (OVMF, the GRUB on the disk's EFI
        /// system partition). Both boot the same deployments.
        #[arg(long, default_value = "bios")]
        firmware: crate::tools::qemu::Firmware,
    },
    /// List VMs.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Run a command in the guest (through the guest agent); exits with the guest's exit code.
    Exec {
        name: String,
        /// Seconds the command may run.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Log in over ssh with this VM's own key (127.0.0.1 only), or run a command that way.
    /// For VMs whose recipe runs sshd (`ssh = true`).
    Ssh {
        name: String,
        /// Log in with the recipe's known lab password instead of the key (no key offered):
        /// what anyone who knows the password could do.
        #[arg(long)]
        password: bool,
        /// Print the login methods the guest's sshd accepts (offering none) and exit.
        #[arg(long, conflicts_with = "password")]
        methods: bool,
        #[arg(last = true)]
        argv: Vec<String>,
    },
    /// Follow the serial console (Ctrl-C to stop; the VM keeps running). With --interactive,
    /// what you type goes to the guest's serial port.
    Console {
        name: String,
        /// Print what is there and exit.
        #[arg(long)]
        no_follow: bool,
        #[arg(long, short)]
        interactive: bool,
    },
    /// Power down (ACPI) and remove the VM; --force cuts the power instead.
    Down {
        name: String,
        #[arg(long)]
        force: bool,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Power cut (QMP quit): the guest gets no clean shutdown. The VM record stays (stopped).
    Powercut { name: String },
    /// Reboot the guest from inside and wait until it is ready again.
    Reboot {
        name: String,
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Save or restore the running guest's full state on its qcow2 disk.
    Snapshot {
        name: String,
        #[arg(value_parser = ["save", "restore"])]
        action: String,
        #[arg(default_value = "snap")]
        tag: String,
    },
    /// Mount (or with --off unmount) the host update folder at /run/bootlab/updates.
    Share {
        name: String,
        #[arg(long)]
        off: bool,
    },
    /// Show one VM's record.
    Status { name: String },
    /// Remove a stopped VM.
    Rm { name: String },
    /// Run a VM's supervisor (started by `vm up`; not for direct use).
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        dir: PathBuf,
    },
}

pub fn run(c: VmCmd) -> Result<ExitCode> {
    if let VmCmd::Supervise { dir } = &c {
        crate::vm::supervisor::main(dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let paths = Paths::from_env();
    paths.ensure()?;
    let rt = super::runtime()?;
    rt.block_on(run_async(c, paths))
}

async fn run_async(c: VmCmd, paths: Paths) -> Result<ExitCode> {
    for line in vm::reap_stale(&paths) {
        eprintln!("bootlab: {line}");
    }
    match c {
        VmCmd::Up {
            recipe,
            version,
            name,
            disk,
            from_snapshot,
            boot_timeout,
            memory,
            cpus,
            keep,
            no_share,
            tcg,
            firmware,
        } => {
            let t = Target::find(&recipe, version.as_deref())?;
            let name = name.unwrap_or_else(|| workflow::vm_name(VmFor::Recipe(t.name())));
            let mut plan = BootPlan::new(t, &name);
            let o = &mut plan.up;
            o.memory_mib = memory;
            o.cpus = cpus;
            o.keep = keep;
            o.share = !no_share;
            o.boot_timeout = boot_timeout.map(Duration::from_secs);
            o.accel = tcg.then_some(crate::tools::qemu::Accel::Tcg);
            o.firmware = firmware;
            plan.disk = disk;
            // A kept VM of that name starts again (from `--from-snapshot TAG` if given); a new
            // one gets the recipe's disk, built and made first when missing.
            let exists = VmRecord::file(&VmRecord::dir(&paths, &name)).exists();
            match from_snapshot.as_deref() {
                Some(tag) if exists => plan.up.from_snapshot = Some(tag.to_string()),
                Some(vm::images::BOOTED_TAG) => plan.start = Start::Booted,
                Some(tag) => bail!(
                    "--from-snapshot {tag}: a new VM has no snapshots; use `booted` (cached booted image) or start a kept VM by --name"
                ),
                None => {}
            }
            let (ev, rx) = super::channel();
            let printer = super::print_events(rx, false);
            let cancel = CancellationToken::new();
            let c2 = cancel.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                c2.cancel();
            });
            let t = std::time::Instant::now();
            let res = if exists {
                // Restarting a kept VM of that name.
                vm::up(&paths, plan.up, &ev, &cancel).await
            } else {
                workflow::boot(&paths, plan, &ev, &cancel).await
            };
            drop(ev);
            let _ = printer.await;
            let rec = res?;
            println!(
                "{} ready in {:.1}s ({}{}){}{}",
                rec.name,
                t.elapsed().as_secs_f64(),
                rec.accel.as_str(),
                match rec.firmware {
                    crate::tools::qemu::Firmware::Bios => "",
                    crate::tools::qemu::Firmware::Uefi => ", uefi",
                },
                rec.ssh_port
                    .map(|p| format!(", ssh 127.0.0.1:{p}"))
                    .unwrap_or_default(),
                rec.known_password
                    .as_ref()
                    .map(|k| format!(", LAB VM: known password {k}"))
                    .unwrap_or_default(),
            );
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Ls { json } => {
            let vms = vm::list(&paths);
            if json {
                println!("{}", serde_json::to_string_pretty(&vms)?);
            } else if vms.is_empty() {
                println!("no VMs");
            } else {
                println!(
                    "{:<20} {:<10} {:<5} {:<22} {:<8} NOTE",
                    "NAME", "STATE", "ACCEL", "RECIPE", "SSH"
                );
                for v in vms {
                    println!(
                        "{:<20} {:<10} {:<5} {:<22} {:<8} {}",
                        v.name,
                        v.state,
                        v.accel.as_str(),
                        format!(
                            "{}:{}",
                            v.recipe.as_deref().unwrap_or("-"),
                            v.version.as_deref().unwrap_or("-")
                        ),
                        v.ssh_port
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "-".into()),
                        match (&v.known_password, v.state) {
                            // Why it stopped (a failed start, a dead supervisor) is worth a look.
                            (_, vm::VmState::Stopped) => v.detail.clone(),
                            (Some(k), _) => format!("known password {k}"),
                            (None, _) => String::new(),
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Exec {
            name,
            timeout,
            argv,
        } => {
            let c = VmClient::connect(&paths, &name).await?;
            // A VM still coming up (e.g. adopted after its `vm up` was killed) answers once
            // booted: wait for it rather than fail.
            let rec = c.status().await?;
            if matches!(
                rec.state,
                vm::VmState::Starting
                    | vm::VmState::Booting
                    | vm::VmState::Restoring
                    | vm::VmState::Rebooting
            ) {
                eprintln!(
                    "bootlab: VM {name} is {}; waiting for its guest agent",
                    rec.state
                );
                c.wait_ready(Duration::from_secs(rec.boot_timeout_secs.max(30)))
                    .await?;
            }
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = c
                .exec_with(&argv, None, Duration::from_secs(timeout))
                .await?;
            use std::io::Write;
            std::io::stdout().write_all(out.stdout.as_bytes())?;
            std::io::stderr().write_all(out.stderr.as_bytes())?;
            if out.truncated {
                eprintln!("bootlab: the guest agent truncated the output");
            }
            Ok(ExitCode::from(out.status().clamp(0, 255) as u8))
        }
        VmCmd::Ssh {
            name,
            password,
            methods,
            argv,
        } => ssh(&paths, &name, password, methods, &argv).await,
        VmCmd::Console {
            name,
            no_follow,
            interactive,
        } => console(&paths, &name, no_follow, interactive).await,
        VmCmd::Down {
            name,
            force,
            timeout,
        } => {
            let reason = vm::down(&paths, &name, force, Duration::from_secs(timeout)).await?;
            println!(
                "{name} stopped{}",
                reason
                    .map(|r| format!(" (SHUTDOWN {r})"))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Powercut { name } => {
            let reason = vm::lifecycle::stop(&paths, &name, true, Duration::from_secs(10)).await?;
            println!(
                "{name}: power cut{}",
                reason
                    .map(|r| format!(" (SHUTDOWN {r})"))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Reboot { name, timeout } => {
            let c = VmClient::connect(&paths, &name).await?;
            let t = std::time::Instant::now();
            c.reboot_and_wait(Duration::from_secs(timeout)).await?;
            // The ready detail holds the boot's phases (firmware … systemd).
            let phases = c
                .status()
                .await
                .map(|r| format!(": {}", r.detail))
                .unwrap_or_default();
            println!(
                "{name} rebooted and ready in {:.1}s{phases}",
                t.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Snapshot { name, action, tag } => {
            let c = VmClient::connect(&paths, &name).await?;
            let mut events = c.subscribe().await?;
            tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    if let vm::VmEvent::Note { text } = e.event {
                        eprintln!("[{name}] {text}");
                    }
                }
            });
            let d = if action == "save" {
                c.snapshot_save(&tag).await?
            } else {
                c.snapshot_restore(&tag, Duration::from_secs(120)).await?
            };
            match d.ready_secs {
                Some(r) => println!(
                    "snapshot {} restored in {:.1}s, guest agent ready after {r:.1}s ({})",
                    d.tag, d.secs, d.method
                ),
                None => println!("snapshot {} saved in {:.1}s ({})", d.tag, d.secs, d.method),
            }
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Share { name, off } => {
            let c = VmClient::connect(&paths, &name).await?;
            if off {
                c.unmount_share().await?;
                println!("{name}: update share unmounted");
            } else {
                c.mount_share().await?;
                println!(
                    "{name}: update share mounted at {}",
                    crate::tools::qemu::GUEST_SHARE_DIR
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Status { name } => {
            let rec = match VmClient::connect(&paths, &name).await {
                Ok(c) => c.status().await?,
                Err(_) => VmRecord::load(&paths, &name)?,
            };
            println!("{}", serde_json::to_string_pretty(&rec)?);
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Rm { name } => {
            vm::remove(&paths, &name)?;
            println!("{name} removed");
            Ok(ExitCode::SUCCESS)
        }
        VmCmd::Supervise { .. } => unreachable!(),
    }
}

async fn console(
    paths: &Paths,
    name: &str,
    no_follow: bool,
    interactive: bool,
) -> Result<ExitCode> {
    let rec = VmRecord::load(paths, name)?;
    let mut f = vm::console::Follower::from_start(&rec.console_log);
    for l in f.poll() {
        println!("{l}");
    }
    if no_follow {
        return Ok(ExitCode::SUCCESS);
    }
    if interactive {
        // Raw bytes both ways over the serial socket (QEMU takes one client at a time).
        let _raw = RawMode::enable();
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 1024];
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A guest that resets runs on in a new QEMU (vm::supervisor) with a new serial
        // socket: the session connects again instead of ending.
        'session: loop {
            let Some(sock) = connect_serial(paths, name, &rec.sockets.serial).await? else {
                eprint!("[{name} stopped]\r\n");
                break;
            };
            eprint!("[connected to {name}'s serial console; Ctrl-] to leave]\r\n");
            let (mut r, mut w) = sock.into_split();
            let mut out = tokio::spawn(async move {
                let mut stdout = tokio::io::stdout();
                let _ = tokio::io::copy(&mut r, &mut stdout).await;
            });
            loop {
                tokio::select! {
                    n = stdin.read(&mut buf) => {
                        let n = n?;
                        if n == 0 || buf[..n].contains(&0x1d) {
                            out.abort();
                            break 'session;
                        }
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    _ = &mut out => break,
                }
            }
            out.abort();
            if VmRecord::load(paths, name).is_ok_and(|r| r.state == vm::VmState::Rebooting) {
                eprint!("[{name} reset: connecting to its new QEMU]\r\n");
            }
        }
        // tokio's stdin read waits in a blocking thread that the runtime would wait for (until
        // a key is pressed): leave now, the terminal restored first.
        drop(_raw);
        std::process::exit(0);
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                for l in f.poll() { println!("{l}"); }
                if !VmRecord::file(&VmRecord::dir(paths, name)).exists() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

/// Connect to a VM's serial socket, waiting (up to 60 s) while a reset's new QEMU comes up;
/// `None` once the VM is stopped or gone.
async fn connect_serial(
    paths: &Paths,
    name: &str,
    sock: &std::path::Path,
) -> Result<Option<tokio::net::UnixStream>> {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::net::UnixStream::connect(sock).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) => {
                let stopped = VmRecord::load(paths, name)
                    .map(|r| matches!(r.state, vm::VmState::Stopped | vm::VmState::Stopping))
                    .unwrap_or(true);
                if stopped {
                    return Ok(None);
                }
                if std::time::Instant::now() > until {
                    return Err(e).with_context(|| format!("connecting to {}", sock.display()));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Terminal raw mode for the interactive console, restored on drop.
struct RawMode(Option<nix::sys::termios::Termios>);
impl RawMode {
    fn enable() -> RawMode {
        use nix::sys::termios::*;
        let stdin = std::io::stdin();
        let Ok(orig) = tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}
impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// `vm ssh`: the VM's own key, its known password, or the methods its sshd accepts.
async fn ssh(
    paths: &Paths,
    name: &str,
    password: bool,
    methods: bool,
    remote: &[String],
) -> Result<ExitCode> {
    let rec = VmRecord::load(paths, name)?;
    if !rec.state.is_running() {
        bail!(
            "VM {name} is {}: start it first (`bootlab vm up`)",
            rec.state
        );
    }
    let login = rec.ssh_login(paths).ok_or_else(|| {
        anyhow::anyhow!(
            "VM {name} was started without ssh: its recipe ({}) says `ssh = false`",
            rec.recipe.as_deref().unwrap_or("unknown")
        )
    })?;
    if methods {
        let got =
            crate::tools::ssh::methods(&login, "ssh", &Emitter::null(), &CancellationToken::new())
                .await?;
        println!("{}", got.join(","));
        return Ok(ExitCode::SUCCESS);
    }
    let mut cmd;
    if password {
        let known = rec
            .known_password
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("VM {name} has no known lab password to try"))?;
        let (_, pw) = known.split_once('/').unwrap_or(("", known));
        let askpass = login.write_askpass(pw)?;
        let argv = login.password_argv(remote);
        eprintln!("$ SSH_ASKPASS={} {}", askpass.display(), argv.join(" "));
        cmd = crate::tools::cmd::foreground(&argv[0], &[]);
        cmd.args(&argv[1..])
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force");
    } else {
        let argv = login.key_argv(remote);
        eprintln!("$ {}", argv.join(" "));
        cmd = crate::tools::cmd::foreground(&argv[0], &[]);
        cmd.args(&argv[1..]);
    }
    let st = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run ssh: {e}"))?;
    Ok(ExitCode::from(st.code().unwrap_or(255).clamp(0, 255) as u8))
}
