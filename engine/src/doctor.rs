//! `bootlab doctor`: is this host ready for the default offline lab? Every check really exercises
//! its tool (runs a container, boots a probe guest, attaches a loop device) instead of asking
//! `which`, and every failure names the Debian/Ubuntu and Fedora fix.
//!
//! The engine returns a typed [`Report`]; the CLI only formats it (table or JSON).

use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::tools::cmd::HostCmd;
use crate::tools::podman::runtime::{self, RuntimeChoice};
use crate::tools::qemu::kvm_probe::{self, KvmProbe};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

const STAGE: &str = "doctor";
/// Below this much free space in the cache, doctor warns (base rootfs ~0.8 GB, podman images,
/// OSTree repo, 6 GiB sparse golden disks and their overlays add up).
pub const DISK_WARN_BYTES: u64 = 10 << 30;
/// Below this, the offline lab cannot finish: doctor fails.
pub const DISK_FAIL_BYTES: u64 = 4 << 30;
const SETUP: &str = "or run `bash .ci/setup`";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    /// What was found (version, measured result, error).
    pub detail: String,
    /// How to fix it on Debian/Ubuntu; `None` when there is nothing to fix.
    pub fix_debian: Option<String>,
    /// How to fix it on Fedora; `None` when there is nothing to fix.
    pub fix_fedora: Option<String>,
    /// Whether the default offline lab needs it (a failed required check fails doctor).
    pub required: bool,
}

/// podman's runtime situation on this host, and what bootlab does about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodmanReport {
    /// `podman --version`.
    pub version: String,
    /// podman's default OCI runtime (`podman info`).
    pub default_runtime: String,
    pub crun_installed: bool,
    pub runc_installed: bool,
    /// "v2", "hybrid" or "v1": crun 1.8 refuses hybrid.
    pub cgroups: String,
    /// The error of a plain `podman run` (no bootlab flags), `None` when it worked.
    pub plain_run_error: Option<String>,
    /// The runtime probe's result: what bootlab passes to podman.
    pub choice: Option<RuntimeChoice>,
    /// The flags bootlab adds to every podman call, as a command-line fragment.
    pub bootlab_flags: String,
    /// Whether a container runs with bootlab's flags.
    pub works: bool,
    /// The situation in one paragraph: what fails, why, and the workaround.
    pub situation: String,
}

/// Everything doctor found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// The KVM probe's verdict (from cache when still valid); `None` when QEMU could not run.
    pub kvm: Option<KvmProbe>,
    pub podman: Option<PodmanReport>,
    /// The accelerator VMs will use: "kvm" or "tcg".
    pub accel: String,
    /// The guest-kernel cross-check, when asked for (`--kernel`).
    pub kernel: Option<KernelReport>,
    /// No required check failed.
    pub ok: bool,
    /// Wall-clock seconds the checks took.
    pub secs: f64,
}

impl Report {
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail && c.required)
    }
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Probe KVM again even when a cached verdict is valid.
    pub refresh: bool,
    /// Also boot this guest kernel under KVM and TCG (cross-checks the payload probe; slow when
    /// KVM stalls, so only on request).
    pub kernel: Option<PathBuf>,
}

/// A guest kernel booted under both accelerators (`doctor --kernel`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelReport {
    pub kvm: Option<kvm_probe::KernelRun>,
    pub tcg: kvm_probe::KernelRun,
}

/// How long a guest kernel may take to print "Linux version" under KVM before we call it stuck.
pub const KERNEL_KVM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// The same under TCG (~13 s measured here, SeaBIOS included).
pub const KERNEL_TCG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// UEFI is optional: disks always boot with BIOS; this says whether they also carry the UEFI
/// loader and whether `vm up --firmware uefi` has a firmware to boot it with.
fn uefi_check() -> Check {
    let missing = crate::tools::uefi::loader_missing();
    let ovmf = crate::tools::uefi::find_ovmf();
    let c = match (&missing, &ovmf) {
        (None, Ok(f)) => check(
            "uefi",
            Status::Ok,
            format!(
                "disks get the UEFI loader; `vm up --firmware uefi` boots {}",
                f.display()
            ),
            false,
        ),
        _ => check(
            "uefi",
            Status::Warn,
            [
                missing.clone(),
                ovmf.as_ref().err().map(|e| format!("{e:#}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")
                + ": disks boot with BIOS only",
            false,
        ),
    };
    with_fixes(c, install_fixes("uefi"))
}

/// Package names for a tool: (Debian/Ubuntu, Fedora).
fn packages(tool: &str) -> (&'static str, &'static str) {
    match tool {
        "podman" => ("podman runc busybox-static", "podman runc busybox"),
        "qemu-system-x86_64" => ("qemu-system-x86", "qemu-system-x86"),
        "qemu-img" => ("qemu-utils", "qemu-img"),
        "ostree" => ("ostree", "ostree"),
        "mmdebstrap" => ("mmdebstrap", "mmdebstrap"),
        "extlinux" => ("extlinux syslinux-common", "syslinux syslinux-extlinux"),
        "sfdisk" => ("fdisk", "util-linux"),
        "mkfs.ext4" | "tune2fs" => ("e2fsprogs", "e2fsprogs"),
        "losetup" => ("mount", "util-linux"),
        "uefi" => (
            "grub-efi-amd64-bin mtools dosfstools ovmf",
            "grub2-efi-x64-modules grub2-tools mtools dosfstools edk2-ovmf",
        ),
        _ => ("", ""),
    }
}

fn install_fixes(tool: &str) -> (Option<String>, Option<String>) {
    let (deb, rpm) = packages(tool);
    let deb = if tool.starts_with("qemu") {
        // QEMU 10 from bookworm-backports boots guests faster, and bookworm's 7.2
        // qemu-system-x86 would remove a backports qemu-utils.
        format!(
            "apt-get install -y {deb} (on Debian 12 add `-t bookworm-backports` for QEMU 10), {SETUP}"
        )
    } else {
        format!("apt-get install -y {deb}, {SETUP}")
    };
    (Some(deb), Some(format!("dnf install -y {rpm}, {SETUP}")))
}

fn check(name: &str, status: Status, detail: impl Into<String>, required: bool) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
        fix_debian: None,
        fix_fedora: None,
        required,
    }
}

fn with_fixes(mut c: Check, (deb, rpm): (Option<String>, Option<String>)) -> Check {
    if c.status != Status::Ok {
        c.fix_debian = deb;
        c.fix_fedora = rpm;
    }
    c
}

/// Run `program args…` and return the first non-empty line it printed (stdout or stderr).
async fn version_line(
    program: &str,
    args: &[&str],
    cancel: &CancellationToken,
) -> Result<String, String> {
    let out = HostCmd::new(program)
        .args(args)
        .run_unchecked(STAGE, &Emitter::null(), cancel)
        .await
        .map_err(
            |e| match e.downcast_ref::<crate::tools::cmd::CmdMissing>() {
                Some(m) => format!("`{program}` not found ({})", m.source),
                None => format!("{e:#}"),
            },
        )?;
    let first = out
        .tail
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string();
    if !out.status.success() {
        return Err(format!("`{program} {}` failed: {first}", args.join(" ")));
    }
    Ok(first)
}

/// A tool that must be present and answer its version flag.
async fn tool_check(
    name: &str,
    args: &[&str],
    required: bool,
    cancel: &CancellationToken,
) -> Check {
    let c = match version_line(name, args, cancel).await {
        Ok(v) => check(name, Status::Ok, v, required),
        Err(e) => check(
            name,
            if required { Status::Fail } else { Status::Warn },
            e,
            required,
        ),
    };
    with_fixes(c, install_fixes(name))
}

/// ostree prints "libostree:\n Version: '2022.7'": report the version, not the header.
async fn ostree_check(cancel: &CancellationToken) -> Check {
    let out = HostCmd::new("ostree")
        .arg("--version")
        .capture()
        .run_unchecked(STAGE, &Emitter::null(), cancel)
        .await;
    let c = match out {
        Ok(o) if o.status.success() => {
            let v = o
                .stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix("Version:"))
                .map(|v| v.trim().trim_matches('\'').to_string())
                .unwrap_or_else(|| "unknown version".into());
            check("ostree", Status::Ok, format!("libostree {v}"), true)
        }
        Ok(o) => check(
            "ostree",
            Status::Fail,
            format!("`ostree --version` failed: {}", o.tail.join(" ")),
            true,
        ),
        Err(e) => check(
            "ostree",
            Status::Fail,
            format!("`ostree` not found ({})", root_cause(&e)),
            true,
        ),
    };
    with_fixes(c, install_fixes("ostree"))
}

fn root_cause(e: &anyhow::Error) -> String {
    e.root_cause().to_string()
}

/// Is `name` an executable in PATH or where podman looks for OCI runtimes?
fn find_program(name: &str) -> Option<PathBuf> {
    crate::tools::cmd::find_program(name)
        .or_else(|| Some(PathBuf::from("/usr/libexec/podman").join(name)).filter(|p| p.is_file()))
}

/// The telling end of an OCI runtime error: "error setting rlimit type 7: operation not
/// permitted" rather than runc's whole chain of context.
fn compact_error(e: &str) -> String {
    let e = e.trim().trim_start_matches("Error: ");
    let e = e
        .rsplit_once("error during container init: ")
        .map_or(e, |(_, tail)| tail);
    e.replace("rlimit type 7", "rlimit type 7 = RLIMIT_NOFILE")
        .replace("rlimit type 6", "rlimit type 6 = RLIMIT_NPROC")
}

/// The cgroup layout: "v2" (unified), "hybrid" (v1 controllers plus a v2 mount) or "v1".
pub fn cgroup_layout() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let fstype = |mnt: &str| {
        mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&mnt)).then(|| f.get(2).unwrap_or(&"").to_string())
        })
    };
    match fstype("/sys/fs/cgroup").as_deref() {
        Some("cgroup2") => "v2".into(),
        Some(_) if fstype("/sys/fs/cgroup/unified").as_deref() == Some("cgroup2") => {
            "hybrid".into()
        }
        Some(_) => "v1".into(),
        None => "unknown".into(),
    }
}

/// podman really runs a container: the runtime probe (fresh, then cached for the pipeline), and a
/// plain `podman run` to show what bootlab's flags are working around.
async fn podman_check(
    paths: &Paths,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> (Check, Option<PodmanReport>) {
    let fixes = install_fixes("podman");
    let version = match runtime::podman_version().await {
        Ok(v) => v,
        Err(e) => {
            let c = check(
                "podman",
                Status::Fail,
                format!("`podman` not found ({})", root_cause(&e)),
                true,
            );
            return (with_fixes(c, fixes), None);
        }
    };
    let choice = match runtime::probe(ev, cancel).await {
        Ok(c) => c,
        Err(e) => {
            let c = check(
                "podman",
                Status::Fail,
                format!("{version}: the runtime probe could not run: {e:#}"),
                true,
            );
            return (with_fixes(c, fixes), None);
        }
    };
    if choice.works {
        // The pipeline reads this instead of probing again.
        let _ = runtime::store(paths, &version, &choice);
    }
    let plain = match runtime::try_container(None, &[], cancel).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(format!("{e:#}")),
    };
    let crun = find_program("crun").is_some();
    let runc = find_program("runc").is_some();
    let cgroups = cgroup_layout();
    let flags = choice
        .global_args()
        .into_iter()
        .chain(choice.ulimit_args())
        .collect::<Vec<_>>()
        .join(" ");

    let mut s = vec![format!(
        "{version}; default runtime {} (crun {}, runc {}); cgroups {cgroups}",
        if choice.default_runtime.is_empty() {
            "?"
        } else {
            &choice.default_runtime
        },
        if crun { "installed" } else { "not installed" },
        if runc { "installed" } else { "not installed" },
    )];
    match &plain {
        Some(e) => s.push(format!(
            "a plain `podman run` fails here ({})",
            compact_error(e)
        )),
        None => s.push("a plain `podman run` works".into()),
    }
    if let Some(e) = &choice.default_error {
        if e.contains("hybrid") {
            s.push(format!(
                "{} refuses the hybrid cgroup layout ({e})",
                choice.default_runtime
            ));
        } else {
            s.push(format!(
                "with the default runtime and pinned ulimits: {}",
                compact_error(e)
            ));
        }
    } else if cgroups == "hybrid" && !crun {
        s.push(
            "crun (which refuses hybrid cgroups) is not installed, so podman defaults to runc"
                .into(),
        );
    }
    if choice.works {
        let mut how = Vec::new();
        if let Some(r) = &choice.runtime_override {
            how.push(format!("passes --runtime {r} on every call"));
        }
        if plain.is_some() || choice.runtime_override.is_none() {
            how.push(format!(
                "pins {} (at or below the inherited hard limits: podman cannot raise them without CAP_SYS_RESOURCE)",
                choice.ulimits.join(", ")
            ));
        }
        s.push(format!(
            "bootlab {}; a container runs that way; your containers.conf is never edited",
            how.join(" and ")
        ));
    } else {
        s.push(format!(
            "no configuration ran a container: {}",
            choice.summary
        ));
    }
    let situation = s.join("; ");
    let status = if choice.works {
        Status::Ok
    } else {
        Status::Fail
    };
    let report = PodmanReport {
        version,
        default_runtime: choice.default_runtime.clone(),
        crun_installed: crun,
        runc_installed: runc,
        cgroups,
        plain_run_error: plain,
        bootlab_flags: flags,
        works: choice.works,
        situation: situation.clone(),
        choice: Some(choice),
    };
    (
        with_fixes(check("podman", status, situation, true), fixes),
        Some(report),
    )
}

/// KVM, really probed (cached per QEMU version and kernel). Never required: TCG is the fallback.
async fn kvm_check(
    paths: &Paths,
    opts: &Options,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> (Check, Option<KvmProbe>) {
    let probe = if opts.refresh {
        match kvm_probe::probe(ev, cancel).await {
            Ok(p) => {
                let _ = kvm_probe::store(paths, &p);
                Ok(p)
            }
            Err(e) => Err(e),
        }
    } else {
        kvm_probe::cached(paths, ev, cancel).await
    };
    let p = match probe {
        Ok(p) => p,
        Err(e) => {
            let mut c = check(
                "kvm",
                Status::Warn,
                format!("could not probe KVM ({e:#}); VMs would use TCG"),
                false,
            );
            c.fix_debian = install_fixes("qemu-system-x86_64").0;
            c.fix_fedora = install_fixes("qemu-system-x86_64").1;
            return (c, None);
        }
    };
    let times = format!(
        "probe guest: TCG {}, KVM {}{}",
        p.tcg_secs.map_or("-".into(), |t| format!("{t:.2} s")),
        p.kvm_secs.map_or("-".into(), |t| format!("{t:.2} s")),
        if p.from_cache { ", cached result" } else { "" }
    );
    if p.usable {
        return (
            check(
                "kvm",
                Status::Ok,
                format!("usable: {} ({times}); VMs use -accel kvm", p.reason),
                false,
            ),
            Some(p),
        );
    }
    let detail = format!(
        "{} ({times}); VMs run with {}",
        p.reason,
        p.qemu_args().join(" ")
    );
    let nested_pvm = p.kvm_modules.iter().any(|m| m == "kvm_pvm");
    let fix = if nested_pvm {
        "nothing to install: this /dev/kvm comes from kvm_pvm (nested PVM), which runs only PVM-enabled guest kernels; bootlab uses TCG".to_string()
    } else if !p.present {
        "optional (TCG works): enable VT-x/AMD-V in the firmware, `modprobe kvm_intel` or `modprobe kvm_amd`; in a VM, enable nested virtualization".to_string()
    } else {
        "optional (TCG works): make /dev/kvm usable (`usermod -aG kvm $USER`, nested virtualization on the host)".to_string()
    };
    let mut c = check("kvm", Status::Warn, detail, false);
    c.fix_debian = Some(fix.clone());
    c.fix_fedora = Some(fix);
    (c, Some(p))
}

/// Boot a real guest kernel under KVM (when /dev/kvm exists) and TCG, concurrently.
async fn kernel_check(
    kernel: &Path,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> (Check, Option<KernelReport>) {
    let name = "kvm (guest kernel)";
    let kvm = async {
        if Path::new("/dev/kvm").exists() {
            Some(
                kvm_probe::run_kernel(
                    kernel,
                    kvm_probe::Accel::Kvm,
                    KERNEL_KVM_TIMEOUT,
                    ev,
                    cancel,
                )
                .await,
            )
        } else {
            None
        }
    };
    let tcg = kvm_probe::run_kernel(
        kernel,
        kvm_probe::Accel::Tcg,
        KERNEL_TCG_TIMEOUT,
        ev,
        cancel,
    );
    let (kvm, tcg) = tokio::join!(kvm, tcg);
    let tcg = match tcg {
        Ok(t) => t,
        Err(e) => {
            return (
                check(
                    name,
                    Status::Warn,
                    format!("could not boot {}: {e:#}", kernel.display()),
                    false,
                ),
                None,
            );
        }
    };
    let kvm = kvm.and_then(|r| r.ok());
    let describe = |r: &kvm_probe::KernelRun| {
        if r.passed {
            format!("{}: \"Linux version\" after {:.1} s", r.accel, r.secs)
        } else {
            format!(
                "{}: no \"Linux version\" within {:.0} s, last line {:?}{}",
                r.accel,
                r.secs,
                r.last_line,
                r.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )
        }
    };
    let mut parts = vec![format!("{}", kernel.display())];
    parts.extend(kvm.iter().map(describe));
    parts.push(describe(&tcg));
    let status = if kvm.as_ref().is_some_and(|k| k.passed) {
        Status::Ok
    } else {
        Status::Warn
    };
    (
        check(name, status, parts.join("; "), false),
        Some(KernelReport { kvm, tcg }),
    )
}

/// Detaches a loop device when dropped, so a failing check never leaks one.
struct LoopGuard(Option<String>);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        if let Some(dev) = self.0.take() {
            crate::tools::disk::detach_now(std::path::Path::new(&dev));
        }
    }
}

/// Loop devices really work: attach a small temp file, then detach it.
async fn loop_check(paths: &Paths, cancel: &CancellationToken) -> Check {
    let fail = |detail: String, deb: &str, rpm: &str| Check {
        name: "loop devices".into(),
        status: Status::Fail,
        detail,
        fix_debian: Some(deb.into()),
        fix_fedora: Some(rpm.into()),
        required: true,
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return fail(
            "making disks needs root (losetup, mount)".into(),
            "run bootlab as root (sudo bootlab …)",
            "run bootlab as root (sudo bootlab …)",
        );
    }
    let dir = nearest_existing(&paths.cache);
    let file = match tempfile::Builder::new()
        .prefix("bootlab-loop-probe")
        .tempfile_in(&dir)
    {
        Ok(f) => f,
        Err(e) => {
            return fail(
                format!("cannot create a temp file in {}: {e}", dir.display()),
                "make the cache directory writable (or set BOOTLAB_HOME)",
                "make the cache directory writable (or set BOOTLAB_HOME)",
            );
        }
    };
    if let Err(e) = file.as_file().set_len(1 << 20) {
        return fail(format!("cannot size the probe file: {e}"), "", "");
    }
    let (deb, rpm) = install_fixes("losetup");
    let attach = HostCmd::new("losetup")
        .args(["-f", "--show"])
        .arg(file.path())
        .capture()
        .run_unchecked(STAGE, &Emitter::null(), cancel)
        .await;
    let modprobe = "`modprobe loop`; in a container, start it with --privileged (or pass /dev/loop-control and /dev/loop*)";
    let out = match attach {
        Ok(o) => o,
        Err(e) => {
            return fail(
                format!("`losetup` not found ({})", root_cause(&e)),
                &deb.unwrap_or_default(),
                &rpm.unwrap_or_default(),
            );
        }
    };
    let dev = out.stdout.trim().to_string();
    if !out.status.success() || !dev.starts_with("/dev/") {
        return fail(
            format!("`losetup -f --show` failed: {}", out.tail.join(" ")),
            modprobe,
            modprobe,
        );
    }
    let mut guard = LoopGuard(Some(dev.clone()));
    let detach = HostCmd::new("losetup")
        .args(["-d", &dev])
        .run_unchecked(STAGE, &Emitter::null(), cancel)
        .await;
    match detach {
        Ok(o) if o.status.success() => {
            guard.0 = None;
            // Which way bootc disks are made here (`bootc install to-disk --via-loopback`
            // needs the kernel to find partitions on a loop device).
            let partitions = match crate::tools::disk::loop_parses_partitions(STAGE, &Emitter::null()).await {
                Ok(true) => "the kernel finds partitions on loop devices (bootc disks: `bootc install to-disk --via-loopback` for images with bootupd)".to_string(),
                Ok(false) => "the kernel finds no partitions on loop devices (bootc disks: `bootc install to-filesystem` onto bootlab's own partitions)".to_string(),
                Err(e) => format!("partition probe failed: {}", root_cause(&e)),
            };
            check(
                "loop devices",
                Status::Ok,
                format!("attached a 1 MiB file as {dev} and detached it; {partitions}"),
                true,
            )
        }
        Ok(o) => fail(
            format!(
                "attached {dev} but `losetup -d` failed: {}",
                o.tail.join(" ")
            ),
            modprobe,
            modprobe,
        ),
        Err(e) => fail(format!("`losetup -d {dev}`: {e:#}"), modprobe, modprobe),
    }
}

fn nearest_existing(p: &Path) -> PathBuf {
    let mut p = p.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(q) => p = q.to_path_buf(),
            None => return PathBuf::from("/"),
        }
    }
    p
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Free space where bootlab caches images and disks.
fn disk_check(paths: &Paths) -> Check {
    let at = nearest_existing(&paths.cache);
    let fix = format!(
        "free space on the filesystem of {} (or point BOOTLAB_HOME at a bigger disk)",
        at.display()
    );
    let c = match nix::sys::statvfs::statvfs(&at) {
        Ok(s) => {
            let free = s.blocks_available() * s.fragment_size();
            let detail = format!(
                "{} free for {} (warn below {}, fail below {})",
                gib(free),
                paths.cache.display(),
                gib(DISK_WARN_BYTES),
                gib(DISK_FAIL_BYTES)
            );
            let status = if free < DISK_FAIL_BYTES {
                Status::Fail
            } else if free < DISK_WARN_BYTES {
                Status::Warn
            } else {
                Status::Ok
            };
            check("disk space", status, detail, true)
        }
        Err(e) => check(
            "disk space",
            Status::Fail,
            format!("statvfs {}: {e}", at.display()),
            true,
        ),
    };
    with_fixes(c, (Some(fix.clone()), Some(fix)))
}

/// Run every check (concurrently where they are independent) and return the report.
pub async fn run(
    paths: &Paths,
    opts: &Options,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Report {
    let start = Instant::now();
    let kernel = async {
        match &opts.kernel {
            Some(k) => Some(kernel_check(k, ev, cancel).await),
            None => None,
        }
    };
    let (podman, kvm, qemu, qemu_img, ostree, mmdebstrap, extlinux, sfdisk, mkfs, loops, kernel) = tokio::join!(
        podman_check(paths, ev, cancel),
        kvm_check(paths, opts, ev, cancel),
        tool_check("qemu-system-x86_64", &["--version"], true, cancel),
        tool_check("qemu-img", &["--version"], true, cancel),
        ostree_check(cancel),
        tool_check("mmdebstrap", &["--version"], true, cancel),
        tool_check("extlinux", &["--version"], true, cancel),
        tool_check("sfdisk", &["--version"], true, cancel),
        tool_check("mkfs.ext4", &["-V"], true, cancel),
        loop_check(paths, cancel),
        kernel,
    );
    let (podman_check, podman) = podman;
    let (kvm_check, kvm) = kvm;
    let (kernel_check, kernel) = match kernel {
        Some((c, k)) => (Some(c), k),
        None => (None, None),
    };
    let mut checks = vec![
        podman_check,
        qemu,
        qemu_img,
        kvm_check,
        ostree,
        mmdebstrap,
        loops,
        disk_check(paths),
        extlinux,
        sfdisk,
        mkfs,
        uefi_check(),
    ];
    if let Some(c) = kernel_check {
        checks.insert(4, c);
    }
    let ok = !checks
        .iter()
        .any(|c| c.required && c.status == Status::Fail);
    Report {
        accel: kvm
            .as_ref()
            .map_or_else(|| "tcg".to_string(), |k| k.accel.clone()),
        kvm,
        podman,
        kernel,
        ok,
        secs: start.elapsed().as_secs_f64(),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_errors_are_compacted() {
        let e = "Error: runc: runc create failed: unable to start container process: error during container init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission denied";
        assert_eq!(
            compact_error(e),
            "error setting rlimits for ready process: error setting rlimit type 7 = RLIMIT_NOFILE: operation not permitted: OCI permission denied"
        );
    }

    #[test]
    fn every_required_tool_has_packages_for_both_families() {
        for t in [
            "podman",
            "qemu-system-x86_64",
            "qemu-img",
            "ostree",
            "mmdebstrap",
            "extlinux",
            "sfdisk",
            "mkfs.ext4",
            "losetup",
        ] {
            let (d, f) = packages(t);
            assert!(!d.is_empty() && !f.is_empty(), "{t}");
            let (d, f) = install_fixes(t);
            assert!(d.unwrap().contains("bash .ci/setup"));
            assert!(f.unwrap().starts_with("dnf install"));
        }
    }

    #[test]
    fn fixes_only_for_problems() {
        let ok = with_fixes(check("x", Status::Ok, "", true), install_fixes("ostree"));
        assert!(ok.fix_debian.is_none());
        let bad = with_fixes(check("x", Status::Fail, "", true), install_fixes("ostree"));
        assert_eq!(
            bad.fix_debian.as_deref(),
            Some("apt-get install -y ostree, or run `bash .ci/setup`")
        );
    }

    #[test]
    fn cgroup_layout_is_named() {
        assert!(["v2", "hybrid", "v1", "unknown"].contains(&cgroup_layout().as_str()));
    }

    #[test]
    fn disk_check_reads_the_real_filesystem() {
        let d = tempfile::tempdir().unwrap();
        let c = disk_check(&Paths::under(d.path()));
        assert!(c.detail.contains("GiB free"), "{}", c.detail);
    }
}
