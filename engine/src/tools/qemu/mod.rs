//! qemu-system-x86_64: command lines, accelerator choice, the KVM probe; qemu-img in [`img`].
//!
//! Only the command line lives here; the process itself is owned by a VM supervisor
//! (`vm::supervisor`), which is the one place QEMU is spawned.

pub mod img;
pub mod kvm_probe;

use std::path::PathBuf;

pub const QEMU: &str = "qemu-system-x86_64";
/// 9p mount tag of the host update folder; the guest mounts it at [`GUEST_SHARE_DIR`].
pub const SHARE_TAG: &str = "bootlab-updates";
/// Where an offline guest mounts the share: the one definition (the disk's remote URL, the
/// drills and the supervisor's mount use it). bootc guests use
/// [`crate::pipeline::bootc::install::BOOTC_SHARE_DIR`], which their image references name.
pub const GUEST_SHARE_DIR: &str = "/run/bootlab/updates";
/// Block node name of the VM's disk (snapshot jobs name it).
pub const DISK_NODE: &str = "disk0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the machine starts with: SeaBIOS (the disk's MBR and extlinux) or OVMF (the disk's EFI
/// system partition and its GRUB). Every golden disk carries both loaders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    #[default]
    Bios,
    Uefi,
}

impl Firmware {
    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

impl std::str::FromStr for Firmware {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Firmware> {
        match s {
            "bios" => Ok(Firmware::Bios),
            "uefi" => Ok(Firmware::Uefi),
            _ => anyhow::bail!("unknown firmware {s:?} (bios or uefi)"),
        }
    }
}

/// Everything a VM's QEMU command line is made of.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    pub name: String,
    pub disk: PathBuf,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub qmp: PathBuf,
    pub qga: PathBuf,
    pub serial: PathBuf,
    /// Every console byte lands here (the serial socket itself need not be read).
    pub console_log: PathBuf,
    /// Host folder shared read-only over virtio-9p.
    pub share: Option<PathBuf>,
    /// Host port (127.0.0.1) forwarded to the guest's port 22.
    pub ssh_port: Option<u16>,
    /// Start from this internal snapshot of the disk instead of booting.
    pub loadvm: Option<String>,
    /// Wait for a saved machine state instead of booting (`-incoming defer`; the supervisor
    /// loads it over QMP, see [`crate::tools::qmp::Qmp::load_state`]).
    pub incoming: bool,
    /// OVMF to boot with (`-bios`, read only, so a snapshot holds the whole machine); `None`:
    /// SeaBIOS.
    pub uefi: Option<PathBuf>,
}

impl QemuSpec {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-name".into(),
            format!("bootlab-{},process=bootlab-{}", self.name, self.name),
            "-machine".into(),
            "pc".into(),
            // No default VGA, floppy, CD-ROM, parallel port or NIC: the guest's udev would load
            // a driver for each (seconds under TCG), and the firmware would initialise them.
            "-nodefaults".into(),
            // A reset (the guest's reboot, QMP system_reset) stops the guest instead, and so
            // does a power-off: the supervisor then starts a new QEMU for a reset, or quits.
            // Under TCG a reset guest boots ~20 % slower than a new process (measured: 22.4–24.0
            // s to the login against 17.5–18.8 s), the old boot's translated code being in the
            // way; a power-off stays visible as the guest's own SHUTDOWN reason.
            "-action".into(),
            "reboot=shutdown,shutdown=pause".into(),
        ];
        match self.accel {
            Accel::Kvm => a.extend(["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()]),
            Accel::Tcg => a.extend([
                "-accel".into(),
                "tcg,thread=multi".into(),
                "-cpu".into(),
                "max".into(),
            ]),
        }
        if let Some(ovmf) = &self.uefi {
            a.extend(["-bios".into(), ovmf.to_string_lossy().into_owned()]);
        }
        a.extend([
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-display".into(),
            "none".into(),
            // Explicit node name: snapshot jobs and -loadvm address the disk by it.
            "-blockdev".into(),
            format!(
                "driver=qcow2,node-name={DISK_NODE},file.driver=file,file.filename={}",
                qemu_escape(&self.disk.to_string_lossy())
            ),
            "-device".into(),
            // OVMF would try network boot first without an order; SeaBIOS keeps its own.
            if self.uefi.is_some() {
                format!("virtio-blk-pci,drive={DISK_NODE},bootindex=0")
            } else {
                format!("virtio-blk-pci,drive={DISK_NODE}")
            },
            "-chardev".into(),
            format!(
                // Appended to: a reboot runs a new QEMU on the same log (`vm::supervisor`).
                "socket,id=ser0,path={},server=on,wait=off,logfile={},logappend=on",
                qemu_escape(&self.serial.to_string_lossy()),
                qemu_escape(&self.console_log.to_string_lossy())
            ),
            "-serial".into(),
            "chardev:ser0".into(),
            "-qmp".into(),
            format!(
                "unix:{},server=on,wait=off",
                qemu_escape(&self.qmp.to_string_lossy())
            ),
            "-device".into(),
            "virtio-serial-pci".into(),
            "-chardev".into(),
            format!(
                "socket,id=qga0,path={},server=on,wait=off",
                qemu_escape(&self.qga.to_string_lossy())
            ),
            "-device".into(),
            "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0".into(),
        ]);
        let mut net = "user,id=net0".to_string();
        if let Some(p) = self.ssh_port {
            // 127.0.0.1 only: a lab VM with a known password must not be reachable from outside.
            net.push_str(&format!(",hostfwd=tcp:127.0.0.1:{p}-:22"));
        }
        a.extend([
            "-netdev".into(),
            net,
            "-device".into(),
            // romfile= : no iPXE option ROM for SeaBIOS to load (the disk boots).
            "virtio-net-pci,netdev=net0,romfile=".into(),
        ]);
        if let Some(dir) = &self.share {
            a.extend([
                "-virtfs".into(),
                format!(
                    "local,path={},mount_tag={SHARE_TAG},security_model=none,readonly=on",
                    qemu_escape(&dir.to_string_lossy())
                ),
            ]);
        }
        if let Some(tag) = &self.loadvm {
            a.extend(["-loadvm".into(), tag.clone()]);
        }
        if self.incoming {
            a.extend(["-incoming".into(), "defer".into()]);
        }
        a
    }
}

/// Whether this QEMU (`qemu-system-x86_64 --version`'s first line) saves and loads machine
/// states as `mapped-ram` files ([`crate::tools::qmp::Qmp::save_state`]): QEMU 9.0 and later.
pub fn saves_state_files(version_line: &str) -> bool {
    let number = version_line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()));
    let major = number.and_then(|n| n.split('.').next()?.parse::<u32>().ok());
    major.is_some_and(|m| m >= 9)
}

/// QEMU option values use `,` as separator; a literal comma is written `,,`.
pub fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// Pick the accelerator: KVM only when the doctor's probe says a guest really runs under it
/// (on this machine kind /dev/kvm exists but guests never get past early boot). Returns the
/// choice and the reason, which the VM's event log shows. The probe's verdict is cached per QEMU
/// version and kernel; an unknown verdict is probed now (a few seconds), and a probe that fails
/// counts as "KVM unusable".
pub async fn choose_accel(
    paths: &crate::paths::Paths,
    ev: &crate::events::Emitter,
    cancel: &crate::events::CancellationToken,
) -> (Accel, String) {
    match std::env::var("BOOTLAB_ACCEL").as_deref() {
        Ok("tcg") => return (Accel::Tcg, "TCG forced by BOOTLAB_ACCEL=tcg".into()),
        Ok("kvm") => return (Accel::Kvm, "KVM forced by BOOTLAB_ACCEL=kvm".into()),
        _ => {}
    }
    if !std::path::Path::new("/dev/kvm").exists() {
        return (Accel::Tcg, "TCG: no /dev/kvm on this host".into());
    }
    match kvm_probe::cached(paths, ev, cancel).await {
        Ok(p) if p.usable => (Accel::Kvm, format!("KVM: {}", p.reason)),
        Ok(p) => (Accel::Tcg, format!("TCG: {}", p.reason)),
        Err(e) => (Accel::Tcg, format!("TCG: the KVM probe failed ({e:#})")),
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; QEMU binds it a moment later).
pub fn free_local_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> QemuSpec {
        QemuSpec {
            name: "t".into(),
            disk: "/x/a,b.qcow2".into(),
            accel: Accel::Tcg,
            memory_mib: 2048,
            cpus: 2,
            qmp: "/s/qmp.sock".into(),
            qga: "/s/qga.sock".into(),
            serial: "/s/serial.sock".into(),
            console_log: "/s/console.log".into(),
            share: Some("/u".into()),
            ssh_port: Some(2222),
            loadvm: None,
            incoming: false,
            uefi: None,
        }
    }

    #[test]
    fn tcg_line_has_the_measured_options() {
        let a = spec().args().join(" ");
        assert!(
            a.contains("-accel tcg,thread=multi -cpu max -smp 2 -m 2048"),
            "{a}"
        );
        assert!(a.contains("file.filename=/x/a,,b.qcow2"), "{a}");
        assert!(a.contains("hostfwd=tcp:127.0.0.1:2222-:22"), "{a}");
        assert!(a.contains("logfile=/s/console.log,logappend=on"), "{a}");
        // A reset is a SHUTDOWN the supervisor answers with a new QEMU (vm::supervisor).
        assert!(a.contains("-action reboot=shutdown,shutdown=pause"), "{a}");
        assert!(a.contains("mount_tag=bootlab-updates,security_model=none,readonly=on"));
        assert!(!a.contains("-no-reboot"), "{a}");
        assert!(a.contains("-machine pc -nodefaults"), "{a}");
        assert!(a.contains("virtio-net-pci,netdev=net0,romfile="), "{a}");
        assert!(!a.contains("-bios") && !a.contains("bootindex"), "{a}");
    }

    #[test]
    fn uefi_boots_ovmf_from_the_disk() {
        let mut s = spec();
        s.uefi = Some("/usr/share/ovmf/OVMF.fd".into());
        let a = s.args().join(" ");
        assert!(a.contains("-bios /usr/share/ovmf/OVMF.fd"), "{a}");
        assert!(a.contains("virtio-blk-pci,drive=disk0,bootindex=0"), "{a}");
        assert_eq!("uefi".parse::<Firmware>().unwrap(), Firmware::Uefi);
        assert!("efi".parse::<Firmware>().is_err());
    }

    #[test]
    fn a_saved_state_starts_with_incoming_defer() {
        let mut s = spec();
        assert!(!s.args().contains(&"-incoming".to_string()));
        s.incoming = true;
        let a = s.args().join(" ");
        assert!(a.ends_with("-incoming defer"), "{a}");
    }

    #[test]
    fn state_files_need_qemu_9() {
        let v = |l: &str| saves_state_files(l);
        assert!(v(
            "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"
        ));
        assert!(v("QEMU emulator version 9.0.0"));
        assert!(!v(
            "QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)"
        ));
        assert!(!v(
            "QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u12)"
        ));
        assert!(!v(""));
    }
}
