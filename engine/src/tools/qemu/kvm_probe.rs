//! Is KVM really usable here? `/dev/kvm` existing is not enough.
//!
//! On our machine kind `/dev/kvm` comes from a nested "PVM" module (`kvm_pvm`) meant for specially
//! built guest kernels: SeaBIOS and a stock kernel's real-mode setup run, but once the CPU leaves
//! real mode the guest crawls forever or dies with "KVM internal error … emulation failure".
//! So the probe boots a 512-byte guest ([`PAYLOAD`], source in `assets/probes/kvm-probe.asm`) as
//! the machine's firmware (no SeaBIOS, which alone takes 3–11 s under that PVM) and it walks the
//! same road: real mode → protected mode → PAE paging + long mode → cmpxchg16b and
//! xsave/xrstor → a memory-touching loop whose checksum is known ([`EXPECTED_CHECKSUM`]). It runs
//! under TCG as a baseline (proving the probe itself works) and under KVM with a short timeout.
//! KVM counts as usable only when the payload finishes under KVM, with the right checksum, and no
//! slower than TCG. The result is cached per QEMU version and kernel release so `vm up` does not
//! probe again ([`cached`], [`load`]).

use crate::events::{CancellationToken, Emitter, Event, Stream};
use crate::paths::Paths;
use crate::tools::cmd::HostCmd;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// The probe guest: a BIOS boot sector assembled from `assets/probes/kvm-probe.asm` with
/// `nasm -f bin` (embedded so building bootlab needs no nasm; a test checks they still match).
pub const PAYLOAD: [u8; 512] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xba, 0xf8, 0x03, 0xb0,
    0x52, 0xee, 0xe4, 0x92, 0x0c, 0x02, 0x24, 0xfe, 0xe6, 0x92, 0x0f, 0x01, 0x16, 0xb8, 0x7d, 0x0f,
    0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0, 0xea, 0x2e, 0x7c, 0x08, 0x00, 0x66, 0xb8,
    0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0x00, 0x00, 0x66, 0xba, 0xf8,
    0x03, 0xb0, 0x50, 0xee, 0xbf, 0x00, 0x10, 0x00, 0x00, 0x31, 0xc0, 0xb9, 0x00, 0x0c, 0x00, 0x00,
    0xf3, 0xab, 0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x20,
    0x00, 0x00, 0x03, 0x30, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x30, 0x00, 0x00, 0x83, 0x00, 0x00, 0x00,
    0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22,
    0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f,
    0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0xea, 0xa1, 0x7c, 0x00, 0x00, 0x18,
    0x00, 0x66, 0xba, 0xf8, 0x03, 0xb0, 0x4c, 0xee, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2, 0x41,
    0x89, 0xcc, 0x41, 0x0f, 0xba, 0xe4, 0x0d, 0x73, 0x14, 0x31, 0xc0, 0x31, 0xd2, 0xbb, 0x34, 0x12,
    0x00, 0x00, 0x31, 0xc9, 0x48, 0x0f, 0xc7, 0x0c, 0x25, 0x00, 0x40, 0x00, 0x00, 0x66, 0xba, 0xf8,
    0x03, 0xb0, 0x43, 0xee, 0x41, 0x0f, 0xba, 0xe4, 0x1a, 0x73, 0x20, 0x0f, 0x20, 0xe0, 0x48, 0x0f,
    0xba, 0xe8, 0x12, 0x0f, 0x22, 0xe0, 0x31, 0xc9, 0x0f, 0x01, 0xd0, 0x0f, 0xae, 0x24, 0x25, 0x00,
    0x50, 0x00, 0x00, 0x0f, 0xae, 0x2c, 0x25, 0x00, 0x50, 0x00, 0x00, 0x66, 0xba, 0xf8, 0x03, 0xb0,
    0x58, 0xee, 0xbf, 0x00, 0x00, 0x10, 0x00, 0x31, 0xc0, 0xb9, 0x00, 0x00, 0x02, 0x00, 0xf3, 0x48,
    0xab, 0x48, 0xb8, 0x15, 0x7c, 0x4a, 0x7f, 0xb9, 0x79, 0x37, 0x9e, 0xb9, 0x00, 0x00, 0x00, 0x03,
    0x48, 0x89, 0xc3, 0x48, 0xc1, 0xe3, 0x0d, 0x48, 0x31, 0xd8, 0x48, 0x89, 0xc3, 0x48, 0xc1, 0xeb,
    0x07, 0x48, 0x31, 0xd8, 0x48, 0x89, 0xc3, 0x48, 0xc1, 0xe3, 0x11, 0x48, 0x31, 0xd8, 0x48, 0x89,
    0xc3, 0x81, 0xe3, 0xf8, 0xff, 0x0f, 0x00, 0x48, 0x01, 0x83, 0x00, 0x00, 0x10, 0x00, 0x48, 0x03,
    0x83, 0x00, 0x00, 0x10, 0x00, 0xff, 0xc9, 0xf7, 0xc1, 0xff, 0xff, 0x3f, 0x00, 0x75, 0xc1, 0x50,
    0xb0, 0x2e, 0xee, 0x58, 0x85, 0xc9, 0x75, 0xb8, 0x48, 0x89, 0xc3, 0xb9, 0x10, 0x00, 0x00, 0x00,
    0x66, 0xba, 0xf8, 0x03, 0x48, 0xc1, 0xc3, 0x04, 0x88, 0xd8, 0x24, 0x0f, 0x04, 0x30, 0x3c, 0x39,
    0x76, 0x02, 0x04, 0x27, 0xee, 0xff, 0xc9, 0x75, 0xeb, 0xb0, 0x0a, 0xee, 0xb8, 0x10, 0x00, 0x00,
    0x00, 0xe7, 0xf4, 0xf4, 0xeb, 0xfd, 0x90, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00, 0x1f, 0x00, 0x98, 0x7d, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x55, 0xaa,
];

/// The reset stub (`assets/probes/kvm-probe-reset.asm`, assembled with `nasm -f bin`): copies the
/// payload from F000:0000 to 0000:7C00 and jumps there, as a BIOS would after loading it.
pub const RESET_STUB: [u8; 31] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xb8, 0x00, 0xf0, 0x8e, 0xd8, 0x31,
    0xf6, 0xbf, 0x00, 0x7c, 0xb9, 0x00, 0x02, 0xfc, 0xf3, 0xa4, 0xea, 0x00, 0x7c, 0x00, 0x00,
];
/// At the reset vector (0xFFFFFFF0): `jmp 0xF000:0x0200`, into [`RESET_STUB`].
pub const RESET_JUMP: [u8; 5] = [0xea, 0x00, 0x02, 0x00, 0xf0];

/// QEMU's exit code when the payload writes its value (0x10) to isa-debug-exit: (v << 1) | 1.
pub const PAYLOAD_EXIT_CODE: i32 = 33;
/// Iterations of the payload's work loop (`ITERATIONS` in the asm).
pub const PAYLOAD_ITERATIONS: u32 = 48 << 20;
/// Progress dots the payload prints during its loop (one every 4 Mi iterations).
pub const PAYLOAD_DOTS: usize = 12;
/// The loop's checksum, as the payload prints it in hex; [`expected_checksum`] recomputes it.
pub const EXPECTED_CHECKSUM: u64 = 0x6d1d_baca_77b5_f1fc;
/// How long the payload may run under KVM once it has started (its first serial byte). A working
/// KVM finishes it in milliseconds; TCG takes ≈ 0.7 s.
pub const KVM_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the payload may run under TCG once started (generous: 2 shared cores).
pub const TCG_TIMEOUT: Duration = Duration::from_secs(30);
/// How long QEMU may take to start the payload (its first serial byte). It is the firmware, so
/// this is QEMU's own start-up: ~0.1 s here, under KVM and TCG.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bumped when the probe's logic or payload changes, so old cached results are not trusted.
const PROBE_REVISION: u32 = 1;

const STAGE: &str = "kvm-probe";
const QEMU: &str = "qemu-system-x86_64";

/// The accelerator a payload run (or a VM) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// One run of the payload under one accelerator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadRun {
    /// "kvm" or "tcg".
    pub accel: String,
    /// The `-cpu` model passed; empty when QEMU's default model was used.
    pub cpu: String,
    /// Finished with the right exit code, every stage marker and the right checksum.
    pub passed: bool,
    /// Wall-clock seconds from starting QEMU to its exit (or to giving up on it).
    pub secs: f64,
    /// Seconds until the payload's first serial byte (QEMU start-up), when seen while running.
    pub start_secs: Option<f64>,
    /// Killed because it did not finish within the timeout.
    pub timed_out: bool,
    /// QEMU's exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// What the payload wrote on COM1 (stage markers, progress dots, checksum).
    pub serial: String,
    /// How far the guest got, in words ("long mode with paging", "the work loop (3/12)").
    pub reached: String,
    /// QEMU's own complaint (first stderr lines), e.g. "KVM internal error. Suberror: 1".
    pub error: Option<String>,
    /// Everything QEMU printed on stderr (up to 200 lines: a KVM failure's register dump).
    #[serde(default)]
    pub qemu_stderr: Vec<String>,
}

/// The probe's verdict: what `vm up` needs to choose KVM or TCG, and what doctor reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvmProbe {
    /// `/dev/kvm` exists.
    pub present: bool,
    /// A guest really runs under KVM here (the payload passed, no slower than TCG).
    pub usable: bool,
    /// Why KVM is or is not usable, in one line for people.
    pub reason: String,
    /// The accelerator VMs should use: "kvm" or "tcg".
    pub accel: String,
    /// The `-cpu` model VMs should use with that accelerator ("host", "max", or "" for QEMU's
    /// default model).
    pub cpu: String,
    /// KVM kernel modules loaded (`kvm_intel`, `kvm_amd`, `kvm_pvm`, …).
    pub kvm_modules: Vec<String>,
    /// Seconds the payload took under KVM (last attempt), when it ran.
    pub kvm_secs: Option<f64>,
    /// Seconds the payload took under TCG.
    pub tcg_secs: Option<f64>,
    /// Every KVM attempt (with `-cpu host` first; QEMU's default model when that cannot start).
    pub kvm_runs: Vec<PayloadRun>,
    /// The TCG baseline run.
    pub tcg_run: Option<PayloadRun>,
    /// Cache key: first line of `qemu-system-x86_64 --version`.
    pub qemu_version: String,
    /// Cache key: `uname -r`.
    pub kernel_release: String,
    /// Cache key: probe revision.
    pub revision: u32,
    /// When the probe ran.
    pub probed_at: chrono::DateTime<chrono::Utc>,
    /// Set when this result was read from the cache rather than measured just now.
    #[serde(default)]
    pub from_cache: bool,
}

impl KvmProbe {
    /// QEMU arguments selecting the accelerator and CPU model this probe chose, e.g.
    /// `-accel kvm -cpu host` or `-accel tcg,thread=multi -cpu max`.
    pub fn qemu_args(&self) -> Vec<String> {
        let mut v = vec!["-accel".to_string()];
        if self.usable {
            v.push("kvm".into());
        } else {
            v.push("tcg,thread=multi".into());
        }
        if !self.cpu.is_empty() {
            v.push("-cpu".into());
            v.push(self.cpu.clone());
        }
        v
    }
}

/// Recompute the payload loop's checksum (the same xorshift64 walk over a zeroed 1 MiB buffer).
pub fn expected_checksum() -> u64 {
    let mut buf = vec![0u64; (1 << 20) / 8];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..PAYLOAD_ITERATIONS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = ((x as u32) & 0xF_FFF8) as usize / 8;
        buf[i] = buf[i].wrapping_add(x);
        x = x.wrapping_add(buf[i]);
    }
    x
}

/// Describe how far the payload got from its serial transcript, and what it was doing next.
pub fn progress(serial: &str) -> (String, String) {
    let markers: String = serial.chars().filter(|c| "RPLCX".contains(*c)).collect();
    let dots = serial.chars().filter(|c| *c == '.').count();
    let done = serial.contains(&format!("{EXPECTED_CHECKSUM:016x}"));
    let (reached, next) = match markers.as_str() {
        "" => ("nothing", "starting the boot sector (BIOS)"),
        "R" => ("real mode", "switching to 32-bit protected mode"),
        "RP" => ("protected mode", "enabling PAE paging and long mode"),
        "RPL" => ("long mode with paging", "cmpxchg16b"),
        "RPLC" => ("long mode, cmpxchg16b", "xsave/xrstor"),
        _ if done => ("the end (checksum printed)", "exiting"),
        _ => {
            return (
                format!("the work loop ({dots}/{PAYLOAD_DOTS})"),
                "the work loop".into(),
            );
        }
    };
    (reached.into(), next.into())
}

/// First line of `qemu-system-x86_64 --version`.
pub async fn qemu_version() -> Result<String> {
    let out = HostCmd::new(QEMU)
        .arg("--version")
        .output(STAGE, &Emitter::null())
        .await?;
    Ok(out.lines().next().unwrap_or_default().trim().to_string())
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// KVM modules currently loaded.
pub fn kvm_modules() -> Vec<String> {
    ["kvm_intel", "kvm_amd", "kvm_pvm", "kvm"]
        .into_iter()
        .filter(|m| Path::new("/sys/module").join(m).exists())
        .map(String::from)
        .collect()
}

/// The 64 KiB firmware image QEMU boots (`-bios`): [`PAYLOAD`] at its start (0xF0000 once
/// mapped), [`RESET_STUB`] right after it, and [`RESET_JUMP`] at the reset vector.
pub fn firmware_image() -> Vec<u8> {
    let mut rom = vec![0xffu8; 64 * 1024];
    rom[..PAYLOAD.len()].copy_from_slice(&PAYLOAD);
    rom[0x200..0x200 + RESET_STUB.len()].copy_from_slice(&RESET_STUB);
    rom[0xfff0..0xfff0 + RESET_JUMP.len()].copy_from_slice(&RESET_JUMP);
    rom
}

/// SIGKILL the QEMU whose `-pidfile` is `pidfile`. Only called while its `HostCmd` run is still
/// pending, i.e. before the child is reaped, so the pid cannot have been reused.
fn kill_qemu(pidfile: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return false;
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .is_ok()
}

/// Boot [`PAYLOAD`] as the firmware under `accel` with `-cpu cpu` (QEMU's default model when
/// `None`). QEMU is killed when the payload has not started within [`START_TIMEOUT`], when it has
/// not finished `timeout` after it started, or at once when QEMU reports a KVM internal error
/// (it would sit paused forever).
pub async fn run_payload(
    accel: Accel,
    cpu: Option<&str>,
    timeout: Duration,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PayloadRun> {
    let dir = tempfile::Builder::new()
        .prefix("bootlab-kvm-probe")
        .tempdir()?;
    let rom = dir.path().join("probe.rom");
    let serial = dir.path().join("serial.txt");
    let pidfile = dir.path().join("qemu.pid");
    std::fs::write(&rom, firmware_image())?;
    let mut cmd =
        HostCmd::new(QEMU).args(["-nodefaults", "-machine", "pc", "-accel", accel.name()]);
    if let Some(cpu) = cpu {
        cmd = cmd.args(["-cpu", cpu]);
    }
    cmd = cmd
        .args(["-m", "32", "-display", "none", "-no-reboot", "-bios"])
        .arg(&rom)
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-pidfile")
        .arg(&pidfile);

    // QEMU's stderr arrives here as events; we watch it for a KVM internal error and pass
    // everything on to the caller.
    let (tap, mut rx) = Emitter::channel();
    let mut stderr: Vec<String> = Vec::new();
    let mut internal_error = false;
    let mut timed_out = false;
    let mut stopped_at = None;
    let mut killed = false;
    let mut first_byte: Option<Duration> = None;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let observe = |s: crate::events::Stamped, stderr: &mut Vec<String>| -> bool {
        let mut hit = false;
        if let Event::Log {
            stream: Stream::Stderr,
            line,
            ..
        } = &s.event
        {
            hit = line.contains("KVM internal error");
            if stderr.len() < 200 && !line.trim().is_empty() {
                stderr.push(line.trim().to_string());
            }
            // QEMU's stderr (a KVM failure is a 30-line register dump) stays in the probe's
            // record and log, not in the caller's pane: the caller gets the verdict line.
            return hit;
        }
        ev.emit(s.event);
        hit
    };
    let result = {
        let run = cmd.run_unchecked(STAGE, &tap, cancel);
        tokio::pin!(run);
        loop {
            tokio::select! {
                r = &mut run => break r,
                Some(s) = rx.recv() => {
                    if observe(s, &mut stderr) && !internal_error {
                        internal_error = true;
                        stopped_at = Some(start.elapsed());
                    }
                }
                _ = tick.tick(), if !killed => {
                    let now = start.elapsed();
                    if let Some(at) = stopped_at.filter(|_| internal_error) {
                        // A moment for QEMU to finish the report ("emulation failure"), then go.
                        if now >= at + Duration::from_millis(100) {
                            killed = kill_qemu(&pidfile);
                        }
                        continue;
                    }
                    if first_byte.is_none() && std::fs::metadata(&serial).is_ok_and(|m| m.len() > 0) {
                        first_byte = Some(now);
                    }
                    let limit = first_byte.map_or(START_TIMEOUT, |f| f + timeout);
                    if now >= limit {
                        timed_out = true;
                        stopped_at = Some(now);
                        killed = kill_qemu(&pidfile);
                    }
                }
            }
        }
    };
    let elapsed = start.elapsed();
    drop(tap);
    while let Some(s) = rx.recv().await {
        observe(s, &mut stderr);
    }
    let exit_code = match result {
        Ok(out) => out.status.code(),
        Err(e) => return Err(e), // Cancelled, or QEMU missing
    };
    let serial = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let (reached, _) = progress(&serial);
    let passed = exit_code == Some(PAYLOAD_EXIT_CODE)
        && serial.starts_with("RPLCX")
        && serial.matches('.').count() == PAYLOAD_DOTS
        && serial.contains(&format!("{EXPECTED_CHECKSUM:016x}"));
    let error = if internal_error {
        // The headline and the "emulation failure" line, not the register dump.
        Some(
            stderr
                .iter()
                .filter(|l| l.contains("KVM internal error") || l.contains("emulation failure"))
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else {
        stderr
            .iter()
            .find(|l| !l.contains("warning:"))
            .or(stderr.first())
            .cloned()
    };
    if let Some(e) = &error {
        ev.note(
            STAGE,
            format!(
                "{} {}: {e} (QEMU's full report: `bootlab doctor --json`, {})",
                accel.name(),
                cpu.unwrap_or("default cpu"),
                LOG_NAME
            ),
        );
    }
    Ok(PayloadRun {
        accel: accel.name().into(),
        cpu: cpu.unwrap_or_default().into(),
        passed,
        secs: stopped_at.unwrap_or(elapsed).as_secs_f64(),
        start_secs: first_byte.map(|d| d.as_secs_f64()),
        timed_out,
        exit_code,
        serial,
        reached,
        error,
        qemu_stderr: stderr,
    })
}

/// A real guest kernel booted as far as its first message (the cross-check for the payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelRun {
    pub kernel: std::path::PathBuf,
    /// "kvm" or "tcg".
    pub accel: String,
    /// The kernel got past its real-mode setup and decompressor: it printed "Linux version".
    pub passed: bool,
    /// Seconds until "Linux version" appeared, or until QEMU was given up on.
    pub secs: f64,
    pub timed_out: bool,
    /// The last line the kernel printed (e.g. "Probing EDD (edd=off to disable)... ok").
    pub last_line: String,
    /// QEMU's complaint, if any.
    pub error: Option<String>,
}

/// Boot `kernel` (no initrd, no disk) under `accel` until it prints "Linux version" (then QEMU is
/// killed: that is all we wanted to know) or `timeout` passes. Measured here: a Debian 6.1 kernel
/// prints it after ~13 s under TCG (SeaBIOS included), and under the nested PVM "KVM" stops
/// after "Probing EDD" for good.
pub async fn run_kernel(
    kernel: &Path,
    accel: Accel,
    timeout: Duration,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<KernelRun> {
    let dir = tempfile::Builder::new()
        .prefix("bootlab-kernel-probe")
        .tempdir()?;
    let serial = dir.path().join("serial.txt");
    let pidfile = dir.path().join("qemu.pid");
    let cpu = match accel {
        Accel::Kvm => None,
        Accel::Tcg => Some("max"),
    };
    let mut cmd =
        HostCmd::new(QEMU).args(["-nodefaults", "-machine", "pc", "-accel", accel.name()]);
    if let Some(cpu) = cpu {
        cmd = cmd.args(["-cpu", cpu]);
    }
    cmd = cmd
        .args(["-m", "512", "-display", "none", "-no-reboot", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 earlyprintk=serial panic=-1"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-pidfile")
        .arg(&pidfile);
    let (tap, mut rx) = Emitter::channel();
    let mut stderr = Vec::new();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut killed = false;
    let mut seen: Option<Duration> = None;
    let mut timed_out = false;
    let result = {
        let run = cmd.run_unchecked(STAGE, &tap, cancel);
        tokio::pin!(run);
        loop {
            tokio::select! {
                r = &mut run => break r,
                Some(s) = rx.recv() => {
                    if let Event::Log { stream: Stream::Stderr, line, .. } = &s.event {
                        // Kept for the verdict (and the probe's log), not shown in the pane.
                        if stderr.len() < 50 {
                            stderr.push(line.trim().to_string());
                        }
                    } else {
                        ev.emit(s.event);
                    }
                }
                _ = tick.tick(), if !killed => {
                    let text = std::fs::read(&serial).unwrap_or_default();
                    if seen.is_none() && String::from_utf8_lossy(&text).contains("Linux version") {
                        seen = Some(start.elapsed());
                        killed = kill_qemu(&pidfile);
                    } else if start.elapsed() >= timeout {
                        timed_out = true;
                        killed = kill_qemu(&pidfile);
                    }
                }
            }
        }
    };
    let elapsed = start.elapsed();
    drop(tap);
    result?;
    let text = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let passed = seen.is_some() || text.contains("Linux version");
    Ok(KernelRun {
        kernel: kernel.to_path_buf(),
        accel: accel.name().into(),
        passed,
        secs: seen.unwrap_or(elapsed).as_secs_f64(),
        timed_out: timed_out && !passed,
        last_line: text
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_string(),
        error: stderr.into_iter().find(|l| {
            !l.is_empty() && !l.contains("warning:") && !l.contains("terminating on signal")
        }),
    })
}

/// Why a failed KVM run failed, in words.
fn kvm_failure(run: &PayloadRun) -> String {
    let (reached, next) = progress(&run.serial);
    let cpu = if run.cpu.is_empty() {
        "QEMU's default CPU model".to_string()
    } else {
        format!("-cpu {}", run.cpu)
    };
    if run.timed_out && run.serial.is_empty() {
        format!(
            "with {cpu} QEMU did not start the probe guest within {:.0} s",
            run.secs
        )
    } else if run.timed_out {
        format!(
            "with {cpu} the probe guest did not finish within {:.1} s (reached {reached}; stuck in {next})",
            run.secs
        )
    } else if let Some(e) = run
        .error
        .as_deref()
        .filter(|e| e.contains("KVM internal error"))
    {
        format!(
            "with {cpu} the probe guest reached {reached}, then {e} (at {next}, after {:.2} s)",
            run.secs
        )
    } else if run.serial.is_empty() {
        format!(
            "with {cpu} QEMU could not start a KVM guest: {}",
            run.error.as_deref().unwrap_or("no output")
        )
    } else if !run.passed && run.exit_code == Some(PAYLOAD_EXIT_CODE) {
        format!("with {cpu} the probe guest computed a wrong checksum")
    } else {
        format!(
            "with {cpu} the probe guest stopped after {reached} (exit code {:?}){}",
            run.exit_code,
            run.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    }
}

/// Measure: the TCG baseline, then KVM (when `/dev/kvm` exists and opens). Fails only when QEMU
/// itself cannot be run; every other outcome is a verdict.
pub async fn probe(ev: &Emitter, cancel: &CancellationToken) -> Result<KvmProbe> {
    let qemu_version = qemu_version()
        .await
        .context("the KVM probe needs qemu-system-x86_64")?;
    let present = Path::new("/dev/kvm").exists();
    let modules = kvm_modules();
    ev.note(STAGE, "booting the probe guest under TCG (baseline)");
    let tcg = run_payload(Accel::Tcg, Some("max"), TCG_TIMEOUT, ev, cancel).await?;
    let tcg_secs = tcg.passed.then_some(tcg.secs);

    let mut kvm_runs = Vec::new();
    let mut verdict: std::result::Result<String, String> =
        Err("no /dev/kvm (no KVM module loaded, or virtualization is off in the firmware)".into());
    let mut cpu = String::new();
    if present {
        let open = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm");
        if let Err(e) = open {
            verdict = Err(format!("/dev/kvm exists but cannot be opened: {e}"));
        } else {
            ev.note(STAGE, "booting the probe guest under KVM");
            for model in [Some("host"), None] {
                let run = run_payload(Accel::Kvm, model, KVM_TIMEOUT, ev, cancel).await?;
                let started = !run.serial.is_empty() || run.timed_out;
                kvm_runs.push(run.clone());
                if run.passed {
                    cpu = model.unwrap_or_default().to_string();
                    verdict = match tcg_secs {
                        Some(t) if run.secs > t => Err(format!(
                            "the probe guest finished under KVM in {:.2} s, slower than TCG ({t:.2} s)",
                            run.secs
                        )),
                        Some(t) => Ok(format!(
                            "the probe guest reached long mode and finished under KVM in {:.2} s (TCG: {t:.2} s)",
                            run.secs
                        )),
                        None => Ok(format!(
                            "the probe guest finished under KVM in {:.2} s (the TCG baseline failed)",
                            run.secs
                        )),
                    };
                    if model.is_none()
                        && let Ok(r) = &mut verdict
                    {
                        r.push_str(&format!(
                            " with QEMU's default CPU model ({})",
                            kvm_failure(&kvm_runs[0])
                        ));
                    }
                    break;
                }
                // Only when QEMU could not even start the guest with -cpu host is another CPU
                // model worth a try (nested hosts refuse some host MSRs); a guest that ran and
                // failed has answered the question.
                if started {
                    verdict = Err(kvm_failure(&run));
                    break;
                }
                verdict = Err(kvm_failure(&run));
            }
            if kvm_runs.len() == 2 && !kvm_runs[1].passed && kvm_runs[0].serial.is_empty() {
                verdict = Err(format!(
                    "{}; {}",
                    kvm_failure(&kvm_runs[0]),
                    kvm_failure(&kvm_runs[1])
                ));
            }
        }
    }
    let module_note = if modules.is_empty() {
        String::new()
    } else {
        format!(" [modules: {}]", modules.join(", "))
    };
    let (usable, reason) = match verdict {
        Ok(r) => (true, r),
        Err(r) => {
            let baseline = match tcg_secs {
                Some(t) => {
                    format!("; TCG is the fallback (the same guest passed under TCG in {t:.2} s)")
                }
                None => format!(
                    "; TCG is the fallback, but the TCG baseline failed too ({})",
                    tcg.error.as_deref().unwrap_or(&tcg.reached)
                ),
            };
            let what = if present {
                "KVM present but unusable: "
            } else {
                "KVM absent: "
            };
            (false, format!("{what}{r}{baseline}{module_note}"))
        }
    };
    Ok(KvmProbe {
        present,
        usable,
        reason,
        accel: if usable { "kvm" } else { "tcg" }.into(),
        cpu: if usable { cpu } else { "max".into() },
        kvm_modules: modules,
        kvm_secs: kvm_runs.last().map(|r| r.secs),
        tcg_secs: Some(tcg.secs),
        kvm_runs,
        tcg_run: Some(tcg),
        qemu_version,
        kernel_release: kernel_release(),
        revision: PROBE_REVISION,
        probed_at: chrono::Utc::now(),
        from_cache: false,
    })
}

fn cache_file(paths: &Paths) -> std::path::PathBuf {
    paths.probes().join("kvm.json")
}

/// The cached verdict, if one exists for this QEMU version, kernel release and probe revision.
/// Never probes (cheap enough for `vm up`: one `qemu-system-x86_64 --version`).
pub async fn load(paths: &Paths) -> Option<KvmProbe> {
    let text = std::fs::read_to_string(cache_file(paths)).ok()?;
    let mut p: KvmProbe = serde_json::from_str(&text).ok()?;
    let qemu = qemu_version().await.ok()?;
    if p.qemu_version != qemu
        || p.kernel_release != kernel_release()
        || p.revision != PROBE_REVISION
    {
        return None;
    }
    p.from_cache = true;
    Some(p)
}

/// Write a verdict to the cache (atomically).
pub fn store(paths: &Paths, probe: &KvmProbe) -> Result<()> {
    let mut p = probe.clone();
    p.from_cache = false;
    crate::paths::write_atomic(
        &cache_file(paths),
        serde_json::to_string_pretty(&p)?.as_bytes(),
    )?;
    crate::paths::write_atomic(&paths.probes().join(LOG_NAME), log_text(&p).as_bytes())?;
    Ok(())
}

/// The probe's log beside its verdict: what QEMU printed in each run.
pub const LOG_NAME: &str = "kvm-probe.log";

fn log_text(p: &KvmProbe) -> String {
    let mut o = format!("KVM probe {} — {}\n", p.probed_at, p.reason);
    for r in p.kvm_runs.iter().chain(&p.tcg_run) {
        o.push_str(&format!(
            "\n== {} cpu={} passed={} {:.1}s reached: {}\n",
            r.accel,
            if r.cpu.is_empty() { "default" } else { &r.cpu },
            r.passed,
            r.secs,
            r.reached
        ));
        for l in &r.qemu_stderr {
            o.push_str(l);
            o.push('\n');
        }
    }
    o
}

/// The cached verdict when it is still valid, else a fresh [`probe`] (which is then cached).
pub async fn cached(paths: &Paths, ev: &Emitter, cancel: &CancellationToken) -> Result<KvmProbe> {
    if let Some(p) = load(paths).await {
        return Ok(p);
    }
    let p = probe(ev, cancel).await?;
    store(paths, &p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_a_boot_sector() {
        assert_eq!(&PAYLOAD[510..], &[0x55, 0xAA]);
        assert_eq!(PAYLOAD[0], 0xfa, "starts with cli");
    }

    #[test]
    fn expected_checksum_matches_the_payload_loop() {
        assert_eq!(expected_checksum(), EXPECTED_CHECKSUM);
    }

    /// The embedded bytes are the assembled asm sources. Needs nasm (not in CI: skipped loudly).
    #[test]
    fn embedded_bytes_match_asm_sources() {
        for (file, bytes) in [
            ("kvm-probe.asm", &PAYLOAD[..]),
            ("kvm-probe-reset.asm", &RESET_STUB[..]),
        ] {
            let asm = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../assets/probes")
                .join(file);
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("p.bin");
            match std::process::Command::new("nasm")
                .args(["-f", "bin", "-o"])
                .arg(&out)
                .arg(&asm)
                .status()
            {
                Ok(s) => {
                    assert!(s.success(), "nasm failed on {}", asm.display());
                    assert_eq!(std::fs::read(&out).unwrap(), bytes, "{}", asm.display());
                }
                Err(_) => eprintln!(
                    "SKIPPED: nasm not installed; cannot re-assemble {}",
                    asm.display()
                ),
            }
        }
    }

    #[test]
    fn firmware_image_has_reset_vector_and_payload() {
        let rom = firmware_image();
        assert_eq!(rom.len(), 65536);
        assert_eq!(&rom[..512], &PAYLOAD[..]);
        assert_eq!(&rom[0xfff0..0xfff5], &RESET_JUMP[..]);
        // The far jump targets the stub's offset.
        assert_eq!(u16::from_le_bytes([RESET_JUMP[1], RESET_JUMP[2]]), 0x200);
        assert_eq!(&rom[0x200..0x200 + RESET_STUB.len()], &RESET_STUB[..]);
    }

    #[test]
    fn progress_names_the_stage() {
        assert_eq!(progress("").0, "nothing");
        assert_eq!(progress("RPL").1, "cmpxchg16b");
        assert_eq!(progress("RPLCX...").0, "the work loop (3/12)");
        let done = format!("RPLCX............{EXPECTED_CHECKSUM:016x}\n");
        assert_eq!(progress(&done).1, "exiting");
    }

    #[test]
    fn qemu_args_follow_the_verdict() {
        let mut p = KvmProbe {
            present: true,
            usable: false,
            reason: String::new(),
            accel: "tcg".into(),
            cpu: "max".into(),
            kvm_modules: vec![],
            kvm_secs: None,
            tcg_secs: None,
            kvm_runs: vec![],
            tcg_run: None,
            qemu_version: String::new(),
            kernel_release: String::new(),
            revision: PROBE_REVISION,
            probed_at: chrono::Utc::now(),
            from_cache: false,
        };
        assert_eq!(p.qemu_args(), ["-accel", "tcg,thread=multi", "-cpu", "max"]);
        p.usable = true;
        p.cpu = "host".into();
        assert_eq!(p.qemu_args(), ["-accel", "kvm", "-cpu", "host"]);
    }
}
