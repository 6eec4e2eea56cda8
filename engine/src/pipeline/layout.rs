//! Container rootfs → the tree layout OSTree deploys and boots (Debian; the trixie base's
//! ostree 2026.4 in the guest, the host's 2022.7 commits it).
//!
//! What changes, and why (each step was needed for a boot in our measurements):
//! - kernel and initramfs move to `usr/lib/modules/$KVER/{vmlinuz,initramfs.img}` (0644):
//!   that is where `ostree admin deploy` looks; `/boot` is left empty and the `/vmlinuz*`,
//!   `/initrd.img*` symlinks go.
//! - `etc` becomes `usr/etc`: ostree makes each deployment's /etc from it and 3-way merges
//!   local changes on upgrade. It gets an fstab for /boot by label and an empty machine-id (each VM makes
//!   its own on first boot).
//! - /var is not part of a deployment (the host's ostree 2022.7 does not populate the stateroot's /var):
//!   a seed copy is kept at [`VAR_SEED`] (the disk maker copies it into the stateroot), and
//!   tmpfiles.d lines create the /var directories the symlinks below point to. dpkg's ~900
//!   info files are one tar in it ([`DPKG_INFO_TAR`]): fewer files for every deploy and prune.
//! - home, root, opt, srv, mnt, usr/local become symlinks into /var (their content moves into
//!   the seed), media → run/media, ostree → sysroot/ostree, an empty /sysroot.
//! - dev, proc, sys, run, tmp, var/tmp are left empty; apt lists and caches are dropped.
//! - housekeeping units and generators no lab uses are masked in /etc ([`MASKED_UNITS`],
//!   [`MASKED_GENERATORS`]): boot time under TCG.
//! - the first boot's catch-up work is the image's: the var seed has `/var/.updated`
//!   ([`UPDATED`]; the disk maker writes `/etc/.updated` into the first deployment, since ostree
//!   removes it from every deployment it writes), and the static device nodes are a tmpfiles.d
//!   file ([`static_nodes_tmpfiles`]).

use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Where the image's /var is kept inside /usr (relative to the rootfs).
pub const VAR_SEED: &str = "usr/share/bootlab/var-seed";
/// The tmpfiles.d file the conversion writes (relative to the rootfs).
pub const TMPFILES: &str = "usr/lib/tmpfiles.d/bootlab-ostree.conf";

/// Top-level directories that become symlinks into /var: (name, link target, dir under /var).
const VAR_LINKS: &[(&str, &str, &str)] = &[
    ("home", "var/home", "home"),
    ("root", "var/roothome", "roothome"),
    ("opt", "var/opt", "opt"),
    ("srv", "var/srv", "srv"),
    ("mnt", "var/mnt", "mnt"),
    ("usr/local", "../var/usrlocal", "usrlocal"),
];

/// What the conversion needs to know about the target disk.
#[derive(Debug, Clone)]
pub struct LayoutOptions {
    pub boot_label: String,
}

impl Default for LayoutOptions {
    fn default() -> Self {
        LayoutOptions {
            boot_label: super::BOOT_LABEL.into(),
        }
    }
}

/// What the conversion found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutReport {
    pub kernel_version: String,
    /// Paths (relative to the rootfs) that were removed or emptied.
    pub dropped: Vec<String>,
}

/// Convert the rootfs at `root` in place. Fails (leaving `root` for the caller to discard) when
/// the tree cannot boot: no kernel, no initramfs, more than one kernel, an existing usr/etc.
pub fn convert(root: &Path, opts: &LayoutOptions) -> Result<LayoutReport> {
    let mut dropped = Vec::new();
    if !root.join("usr").is_dir() {
        bail!("{} has no usr/: not a rootfs", root.display());
    }
    if root.join("usr/etc").exists() {
        bail!(
            "{} already has usr/etc (is it converted already?)",
            root.display()
        );
    }

    // 1. kernel + initramfs
    let kver = move_kernel(root)?;
    for name in list_names(root)? {
        if name.starts_with("vmlinuz") || name.starts_with("initrd.img") {
            remove_any(&root.join(&name))?;
            dropped.push(name);
        }
    }
    empty_dir(&root.join("boot"), 0o755)?;

    // 2. API filesystems and scratch space are empty in a commit.
    for d in ["dev", "proc", "sys", "run", "tmp"] {
        empty_dir(&root.join(d), if d == "tmp" { 0o1777 } else { 0o755 })?;
    }
    for d in [
        "var/lib/apt/lists",
        "var/cache/apt",
        "var/tmp",
        "var/log/journal",
    ] {
        if root.join(d).exists() {
            empty_dir(&root.join(d), if d == "var/tmp" { 0o1777 } else { 0o755 })?;
            dropped.push(d.to_string());
        }
    }
    if root.join("var/lib/apt/lists").is_dir() {
        fs::create_dir_all(root.join("var/lib/apt/lists/partial"))?;
    }

    // 3. /etc → /usr/etc with an fstab by label and an empty machine-id.
    let etc = root.join("etc");
    if !etc.is_dir() {
        bail!("{} has no etc/", root.display());
    }
    // podman export adds empty files it bind-mounts at run time; they are not the image's.
    for f in ["hosts", "resolv.conf", "hostname"] {
        let p = etc.join(f);
        if fs::symlink_metadata(&p)
            .map(|m| m.is_file() && m.len() == 0)
            .unwrap_or(false)
        {
            fs::remove_file(&p)?;
            dropped.push(format!("etc/{f}"));
        }
    }
    fs::write(
        etc.join("fstab"),
        // No line for /: ostree-prepare-root mounts the deployment (a read-only composefs on
        // the trixie base), and systemd-remount-fs, given an ext4 line for /, fails remounting
        // it and leaves the guest "degraded".
        format!(
            "{FSTAB_HEAD}LABEL={} /boot ext4 defaults,{BOOT_FSTAB_OPTIONS} 0 0\n{}",
            opts.boot_label,
            var_fstab_line(super::STATEROOT)
        ),
    )?;
    fs::write(etc.join("machine-id"), "")?;
    fs::set_permissions(etc.join("machine-id"), fs::Permissions::from_mode(0o444))?;
    mask_units(&etc)?;
    write_own_files(&etc)?;
    write_own_units(&etc)?;
    fs::rename(&etc, root.join("usr/etc")).context("move etc to usr/etc")?;

    // 4. /var: the image's content becomes the seed; dirs the symlinks need come from tmpfiles.
    let seed = root.join(VAR_SEED);
    fs::create_dir_all(seed.parent().unwrap())?;
    let var = root.join("var");
    if var.is_dir() && !var.is_symlink() {
        fs::rename(&var, &seed).context("move var to the var seed")?;
    } else {
        remove_any(&var)?;
        fs::create_dir_all(&seed)?;
    }
    fs::create_dir(&var)?;
    fs::set_permissions(&var, fs::Permissions::from_mode(0o755))?;
    write_updated(&seed)?;
    pack_dpkg_info(&seed)?;

    // 5. Symlinks into /var; their content joins the seed.
    for (name, target, under_var) in VAR_LINKS {
        let p = root.join(name);
        let dest = seed.join(under_var);
        if p.is_dir() && !p.is_symlink() {
            if dest.exists() {
                remove_any(&dest)?;
            }
            fs::rename(&p, &dest).with_context(|| format!("move {name} into the var seed"))?;
        } else {
            remove_any(&p)?;
            if !dest.exists() {
                fs::create_dir_all(&dest)?;
                if *under_var == "roothome" {
                    fs::set_permissions(&dest, fs::Permissions::from_mode(0o700))?;
                }
            }
        }
        symlink(target, &p)?;
    }
    remove_any(&root.join("media"))?;
    symlink("run/media", root.join("media"))?;
    remove_any(&root.join("ostree"))?;
    symlink("sysroot/ostree", root.join("ostree"))?;
    remove_any(&root.join("sysroot"))?;
    fs::create_dir(root.join("sysroot"))?;

    let tmpfiles = root.join(TMPFILES);
    fs::create_dir_all(tmpfiles.parent().unwrap())?;
    fs::write(
        &tmpfiles,
        "# Written by bootlab: the /var directories an OSTree deployment's symlinks point to.\n\
         d /var/home 0755 root root -\n\
         d /var/roothome 0700 root root -\n\
         d /var/opt 0755 root root -\n\
         d /var/srv 0755 root root -\n\
         d /var/mnt 0755 root root -\n\
         d /var/usrlocal 0755 root root -\n\
         d /var/usrlocal/bin 0755 root root -\n\
         d /var/tmp 1777 root root -\n\
         d /run/media 0755 root root -\n",
    )?;
    // 6. The static device nodes (kmod-static-nodes is masked), from this kernel's modules.
    let devname = root.join(format!("usr/lib/modules/{kver}/modules.devname"));
    if devname.is_file() {
        let text =
            fs::read_to_string(&devname).with_context(|| format!("read {}", devname.display()))?;
        let lines = static_nodes_tmpfiles(&text)
            .with_context(|| format!("usr/lib/modules/{kver}/modules.devname"))?;
        fs::write(root.join(STATIC_NODES), lines)?;
    }

    Ok(LayoutReport {
        kernel_version: kver,
        dropped,
    })
}

/// The head of the offline family's /etc/fstab.
const FSTAB_HEAD: &str = "# Written by bootlab: the deployment's root is mounted by ostree-prepare-root,\n\
     # /boot and /var by bootlab's initramfs (x-initrd.mount) before systemd starts, so systemd\n\
     # does not wait for udev to announce their disk (~2 s of every boot under TCG); noauto:\n\
     # /boot is mounted only there. /var is the stateroot's, shared by every deployment.\n";

/// What follows the source in the /boot line of a guest's /etc/fstab, both families (the bootc
/// disk maker rewrites bootc's line with it): bootlab's initramfs mounts the lines marked
/// `x-initrd.mount` (`pipeline/initramfs/init.sh`), `noauto` keeps the real root's systemd from
/// ordering local-fs.target after the disk's udev event. Passno 0: the initramfs does not fsck
/// (nor did systemd: `fsck.mode=skip`).
pub const BOOT_FSTAB_OPTIONS: &str = "noauto,x-initrd.mount";

/// The /var line of an ostree-family guest's /etc/fstab: the stateroot's var bound on /var, as
/// the var.mount ostree-system-generator writes when fstab has no /var line, but mounted by
/// bootlab's initramfs (`x-initrd.mount`). That var.mount waited for udev to announce the root
/// disk (the bind's source lies on it): under TCG ~2 s of every boot, with the journal's flush,
/// systemd-tmpfiles and so sysinit.target (and the guest agent) behind it. Not `noauto`: should
/// the initramfs not have mounted it, systemd still does. The stateroot is the disk's: a
/// deployment in another stateroot (`ostree admin os-init`, `deploy --os=`) made from this
/// /usr/etc would bind this one's /var, unless its /etc/fstab is edited.
pub fn var_fstab_line(stateroot: &str) -> String {
    format!("/sysroot/ostree/deploy/{stateroot}/var /var none bind,x-initrd.mount 0 0\n")
}

/// `fstab` with [`var_fstab_line`] added, unless it mounts /var already (the bootc disk maker's,
/// after `bootc install` wrote the file).
pub fn with_var_line(fstab: &str, stateroot: &str) -> String {
    let has_var = fstab.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 2 && !f[0].starts_with('#') && f[1] == "/var"
    });
    let mut out = fstab.to_string();
    if !has_var {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&var_fstab_line(stateroot));
    }
    out
}

/// `fstab` with its /boot line marked as the offline family's is ([`BOOT_FSTAB_OPTIONS`] added
/// to its options, passno 0): for the bootc disk maker, where `bootc install` wrote the line.
/// An fstab without a /boot line is an error naming `origin`.
pub fn mark_boot_for_initramfs(fstab: &str, origin: &str) -> Result<String> {
    let mut out = String::new();
    let mut found = false;
    for line in fstab.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 4 && !f[0].starts_with('#') && f[1] == "/boot" {
            found = true;
            let mut opts: Vec<&str> = f[3].split(',').filter(|o| *o != "auto").collect();
            for o in BOOT_FSTAB_OPTIONS.split(',') {
                if !opts.contains(&o) {
                    opts.push(o);
                }
            }
            out.push_str(&format!(
                "{} {} {} {} 0 0\n",
                f[0],
                f[1],
                f[2],
                opts.join(",")
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        bail!("{origin}: no /boot line to mark for bootlab's initramfs");
    }
    Ok(out)
}

/// Units masked in every guest bootlab builds (the offline family here, the bootc base in
/// `pipeline::bootc::guest::bootc_layer`): housekeeping no lab uses, which under TCG costs seconds
/// of a boot (e2scrub_reap alone ~8 s) or wakes the guest later. What the labs teach stays:
/// ostree-prepare-root, ostree-remount, /etc merge, /var, the guest agent, sshd, the 9p mount.
/// A learner can `systemctl unmask` any of them: the masks are in /etc.
pub const MASKED_UNITS: &[&str] = &[
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "systemd-pstore.service",
    "modprobe@drm.service",
    "dev-hugepages.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    // It unpacks the booted initramfs into /run at every shutdown, for a dracut initramfs's
    // own shutdown stage; bootlab's initramfs has none (pipeline/initramfs).
    "dracut-shutdown.service",
    // It heads the chain before udev (0.7 s under TCG) to write the same lines at every boot:
    // they are made with the image instead ([`STATIC_NODES`]), so /dev/net/tun and the like are
    // there as before.
    "kmod-static-nodes.service",
    // The same `systemd-tmpfiles --prefix=/dev --create --boot` as systemd-tmpfiles-setup-dev,
    // run first "gracefully" (for users a first boot's sysusers has yet to make; the images
    // bring theirs): ~1-2 s under TCG ahead of udevd and so of sysinit.target.
    "systemd-tmpfiles-setup-dev-early.service",
    // Seven more started beside udev's chain at every boot, each a process (or two) TCG
    // translates anew, for nothing a lab or its guest uses: udev's credentials (none are
    // passed), configfs and fusectl with the modprobes that precede them (fuse is built into
    // Debian's kernel: /dev/fuse works as before), the POSIX message queue folder (a container
    // mounts its own), and a tmpfs for /run/lock (the folder stays, on /run). Measured, the
    // agent after a reboot's reset: 13.8-14.7 s on a disk made with them, 14.6-15.1 s with
    // them masked in a running guest, 15.0-15.6 s without.
    "systemd-udev-load-credentials.service",
    "modprobe@configfs.service",
    "sys-kernel-config.mount",
    "modprobe@fuse.service",
    "sys-fs-fuse-connections.mount",
    "dev-mqueue.mount",
    "run-lock.mount",
    // It loads a saved seed into the kernel's pool at boot (0.4 s under TCG) and writes a new one
    // at every shutdown (0.6 s of it), for a kernel that trusts no CPU source; QEMU's `-cpu max`
    // has RDRAND, and the guest's kernel says `random: crng init done` at 0.09 s, long before.
    "systemd-random-seed.service",
];

/// Generators disabled in every guest bootlab builds (a link to /dev/null in
/// /etc/systemd/system-generators, as systemd.generator(7) says): each is a process systemd
/// runs and waits for before it loads a unit, 52-80 ms under TCG, for what a bootlab guest never
/// has: partitions to discover on the root's GPT disk (the root is ostree's composefs, named
/// on the kernel command line), a resume device (no swap), sshd over AF_VSOCK or AF_UNIX (sshd
/// listens on TCP), an offline update (`/system-update`: neither ostree nor bootc uses it), a
/// TPM. Run by hand in a guest, none of them wrote a unit. Measured at boot: the generators
/// 0.62 s instead of 0.98 s. The ones that do something here stay:
/// ostree's, fstab's, getty's, podman's quadlet, sysv's and rc.local's (a learner's
/// init script), the kernel command line's (`systemd.mask=`, `systemd.debug_shell`, `systemd.run=`).
pub const MASKED_GENERATORS: &[&str] = &[
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-ssh-generator",
    "systemd-system-update-generator",
    "systemd-tpm2-generator",
];

/// Each masked list with the folder (relative to /etc) its links to /dev/null go into: written
/// by [`convert`] for the offline family and by the bootc base's layer.
pub const MASKS: [(&str, &[&str]); 2] = [
    ("systemd/system", MASKED_UNITS),
    ("systemd/system-generators", MASKED_GENERATORS),
];

/// `/etc/.updated` and `/var/.updated` as systemd-update-done writes them. With them in a
/// golden disk's first deployment (/usr's mtime is 0 in a deployment), `ConditionNeedsUpdate=`
/// is false on its first boot, so ldconfig, the journal catalog and sysusers do not redo what
/// the image's package installs did (measured: ldconfig.service 1.3 s on the first boot's path
/// to the agent; /etc/ld.so.cache, passwd, group and shadow byte-identical to the image's after
/// they ran). ostree removes `etc/.updated` from every deployment it writes, so after an upgrade
/// they run once on the new deployment's first boot, as ostree means them to.
pub const UPDATED: &str = "# Written by bootlab: the image was updated when it was made.\n\
     # See man:systemd-update-done.service(8).\n\
     TIMESTAMP_NSEC=0\n";

/// Writes [`UPDATED`] as `dir/.updated` (an /etc or a /var).
pub fn write_updated(dir: &Path) -> Result<()> {
    let p = dir.join(".updated");
    fs::write(&p, UPDATED).with_context(|| format!("write {}", p.display()))
}

/// The tmpfiles.d file with the static device nodes (relative to the rootfs). Its name is
/// kmod-static-nodes' own output's (/run/tmpfiles.d/static-nodes.conf), which takes precedence
/// if a learner unmasks the unit.
pub const STATIC_NODES: &str = "usr/lib/tmpfiles.d/static-nodes.conf";

/// What `kmod static-nodes --format=tmpfiles` writes for a kernel's `modules.devname`: a
/// character or block node (0600) for each module that creates one on first open, its folder
/// first. Errors name the line.
pub fn static_nodes_tmpfiles(devname: &str) -> Result<String> {
    let mut out = String::new();
    for (i, line) in devname.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let node = match f.as_slice() {
            [_module, dev, node] => Some((*dev, *node)),
            _ => None,
        };
        let parsed = node.and_then(|(dev, node)| {
            let kind = node.chars().next().filter(|c| matches!(c, 'c' | 'b'))?;
            let (maj, min) = node[1..].split_once(':')?;
            let (maj, min) = (maj.parse::<u32>().ok()?, min.parse::<u32>().ok()?);
            Some((dev, kind, maj, min))
        });
        let Some((dev, kind, maj, min)) = parsed else {
            bail!(
                "line {}: expected `module device c|bMAJOR:MINOR`, found {line:?}",
                i + 1
            );
        };
        if let Some((dir, _)) = dev.rsplit_once('/') {
            out.push_str(&format!("d /dev/{dir} 0755 - - -\n"));
        }
        out.push_str(&format!("{kind}! /dev/{dev} 0600 - - - {maj}:{min}\n"));
    }
    Ok(out)
}

/// A drop-in (path under /etc, text) that sets what udev's coldplug in the real root replays,
/// in place of systemd 257's `udevadm trigger --type=all` (Debian trixie). bootlab's initramfs
/// runs no udev, so coldplug is where every device is first seen; under TCG it was the largest
/// work of the boot besides systemd itself (531 events, `trigger` + `settle` 2.8 s in a running
/// guest). It replays:
/// - the ttys a guest uses (the serial console `ttyS*`, `tty1`'s getty, `console`, `ptmx`,
///   `tty`) first, then every other device, the guest agent's virtio port first among them
///   (measured before the agent had its own unit: its device came 1.6 s after basic.target
///   when last, 0.3 s after udevd's start when first).
/// - not the subsystem events (`/sys/module`, `/sys/bus`: 244): their only rules here are for
///   fusectl's and configfs's mounts (masked, [`MASKED_UNITS`]), a CD-ROM's polling and ppdev.
/// - not the virtual consoles `tty2`-`tty63` and `vcs*` (83): a bootlab guest has no display;
///   their rules only give them the group `tty`, so they stay root's (0600).
///
/// 160 events, `trigger` + `settle` 1.3 s in the same guest. (No `'` in the text: the bootc
/// layer writes it with a single-quoted printf.)
pub const UDEV_TRIGGER_DROPIN: (&str, &str) = (
    "systemd/system/systemd-udev-trigger.service.d/bootlab-coldplug.conf",
    "# Written by bootlab: udev coldplug replays the devices a guest uses: the serial console\n\
     # and tty1 first, then all others but the virtual consoles tty2-tty63 and vcs* (no display),\n\
     # the port of the guest agent first; not the subsystems (/sys/module, /sys/bus).\n\
     [Service]\n\
     ExecStart=\n\
     ExecStart=-udevadm trigger --type=devices --action=add --subsystem-match=tty \
     --sysname-match=ttyS* --sysname-match=tty1 --sysname-match=console --sysname-match=ptmx \
     --sysname-match=tty\n\
     ExecStart=-udevadm trigger --type=devices --action=add --subsystem-nomatch=tty \
     --subsystem-nomatch=vc --prioritized-subsystem=virtio-ports,block,tpmrm,net,input\n",
);

/// A modprobe.d file (path under /etc, text) that keeps udev's coldplug from loading drivers for
/// parts of QEMU's PC no lab uses. It loaded ~20 of them at every boot (aesni_intel and four
/// other CPU-feature crypto drivers, libata and scsi_mod for an IDE controller with no disk,
/// qemu_fw_cfg, …), ~0.1-0.5 s of a vCPU each under TCG, the last ~2 s after the agent answered
/// (no second of the boot came back: that vCPU time was beside the chain to the agent; the guest
/// does less and its console shows no refused loads). `module_blacklist=` on the
/// kernel command line ([`super::disk::KARGS`]) refuses some of them too, but only after the
/// kernel has read, unpacked and checked the file, and after modprobe loaded its dependencies
/// (libata for ata_piix). A `blacklist` line stops udev before that; an explicit `modprobe NAME`
/// still loads one. (No `'` in the text: the bootc layer writes it with a single-quoted printf.)
pub const UNUSED_MODULES: (&str, &str) = (
    "modprobe.d/bootlab-unused.conf",
    "# Written by bootlab: drivers udev loaded at every boot for parts of the QEMU PC no lab uses\n\
     # (each costs a fraction of a second of a vCPU under TCG). `modprobe NAME` still loads one.\n\
     # legacy PC devices, the IDE controller, the VGA card, the SMBus\n\
     blacklist floppy\nblacklist pcspkr\nblacklist parport_pc\nblacklist ppdev\n\
     blacklist psmouse\nblacklist serio_raw\nblacklist ata_piix\nblacklist ata_generic\n\
     blacklist bochs\nblacklist i2c_piix4\nblacklist qemu_fw_cfg\n\
     # the virtualization and crypto features of the CPU (`-cpu max` has them all)\n\
     blacklist kvm_amd\nblacklist kvm_intel\nblacklist aesni_intel\n\
     blacklist ghash_clmulni_intel\nblacklist sha1_ssse3\nblacklist sha256_ssse3\n\
     blacklist sha512_ssse3\nblacklist crc32_pclmul\nblacklist crct10dif_pclmul\n",
);

/// A drop-in (path under /etc, text) that runs the journal's flush to /var only when there is a
/// persistent journal to flush into. bootlab's guests keep their journal in /run (the images
/// have no /var/log/journal; labs 02 and 10 say so), and the flush, a `journalctl` process with
/// nothing to move, stood on the chain to sysinit.target (0.3-0.7 s under TCG, before
/// systemd-tmpfiles-setup) and stopped at every shutdown (0.36 s). A guest with a
/// /var/log/journal (a learner's `mkdir`, or an image that has one) flushes as before.
pub const JOURNAL_FLUSH_DROPIN: (&str, &str) = (
    "systemd/system/systemd-journal-flush.service.d/bootlab-volatile.conf",
    "# Written by bootlab: no flush without a persistent journal (/var/log/journal) to flush into.\n\
     [Unit]\n\
     ConditionPathIsDirectory=/var/log/journal\n",
);

/// The files bootlab writes under /etc in every guest it builds besides its units, each
/// (path, text): the offline family's [`convert`] and the bootc base's layer.
pub const OWN_FILES: &[EtcPair] = &[UDEV_TRIGGER_DROPIN, UNUSED_MODULES, JOURNAL_FLUSH_DROPIN];

/// The guest agent's unit (path under /etc, text), replacing Debian's whole (a drop-in cannot
/// drop a dependency): Debian's binds to the udev device of its virtio port, and that device is
/// announced once udevd has started and coldplug reached it, under TCG 1-3 s after
/// basic.target. The port is there from the kernel's start (virtio_console is built in), so the
/// agent finds it by its name in sysfs and starts right after basic.target, as before: "ready"
/// still means the system reached basic.target. A machine without virtio ports (the disk
/// exported to another hypervisor) skips it instead of failing. (`$$` is a literal `$` for
/// systemd; no `'` in the text: the bootc layer writes it with a single-quoted printf.)
pub const AGENT_UNIT: (&str, &str) = (
    "systemd/system/qemu-guest-agent.service",
    "# Written by bootlab: the agent opens its virtio port by the kernel name it has in sysfs,\n\
     # instead of waiting for udev to announce /dev/virtio-ports/org.qemu.guest_agent.0.\n\
     [Unit]\n\
     Description=QEMU Guest Agent\n\
     ConditionPathExistsGlob=/sys/class/virtio-ports/vport*\n\
     \n\
     [Service]\n\
     ExecStart=/bin/sh -c \"for p in /sys/class/virtio-ports/*; do read -r n < $$p/name; \
     [ x$$n = xorg.qemu.guest_agent.0 ] && exec /usr/sbin/qemu-ga --method=virtio-serial \
     --path=/dev/$${p##*/}; done; echo no virtio port named org.qemu.guest_agent.0 >&2; exit 1\"\n\
     Restart=always\n\
     RestartSec=1\n\
     \n\
     [Install]\n\
     WantedBy=multi-user.target\n",
);
/// Where [`AGENT_UNIT`] is enabled (relative to /etc), and what the link points to.
pub const AGENT_UNIT_WANTS: (&str, &str) = (
    "systemd/system/multi-user.target.wants/qemu-guest-agent.service",
    "../qemu-guest-agent.service",
);

/// A unit (path under /etc, text) that loads the 9p file system while the boot goes on: the
/// host mounts its update share through the guest agent once that answers, and the kernel's
/// loading of `9p` and its `netfs` then (on the mount's request) kept "ready" waiting ~1 s
/// under TCG. Not ordered before anything, so it runs beside the chain to the agent, on the
/// other vCPU (a `modules-load.d` line, in that chain, delayed the agent by as much). (No `'`:
/// the bootc layer writes it with a single-quoted printf.)
pub const SHARE_MODULES_UNIT: (&str, &str) = (
    "systemd/system/bootlab-share-modules.service",
    "# Written by bootlab: the 9p file system for the bootlab update share, loaded early.\n\
     [Unit]\n\
     Description=Load the 9p file system for the bootlab update share\n\
     DefaultDependencies=no\n\
     ConditionVirtualization=vm\n\
     \n\
     [Service]\n\
     Type=oneshot\n\
     ExecStart=-modprobe -a 9p 9pnet_virtio\n\
     \n\
     [Install]\n\
     WantedBy=sysinit.target\n",
);
/// Where [`SHARE_MODULES_UNIT`] is enabled (relative to /etc), and what the link points to.
pub const SHARE_MODULES_WANTS: (&str, &str) = (
    "systemd/system/sysinit.target.wants/bootlab-share-modules.service",
    "../bootlab-share-modules.service",
);

/// A path under /etc with what it holds: a file's text, or a symlink's target.
pub type EtcPair = (&'static str, &'static str);

/// bootlab's own units, each (path, text) with its enabling link (path, target), all relative
/// to /etc: written by [`convert`] for the offline family and by the bootc base's layer.
pub const OWN_UNITS: &[(EtcPair, EtcPair)] = &[
    (AGENT_UNIT, AGENT_UNIT_WANTS),
    (SHARE_MODULES_UNIT, SHARE_MODULES_WANTS),
];

/// Writes [`OWN_UNITS`] under `etc` and enables them.
fn write_own_units(etc: &Path) -> Result<()> {
    for &((path, text), (link, target)) in OWN_UNITS {
        write_etc_file(etc, path, text)?;
        let l = etc.join(link);
        fs::create_dir_all(l.parent().unwrap())?;
        remove_any(&l)?;
        symlink(target, &l).with_context(|| format!("enable {}", l.display()))?;
    }
    Ok(())
}

/// Masks [`MASKS`] under `etc`.
fn mask_units(etc: &Path) -> Result<()> {
    for (dir, names) in MASKS {
        let dir = etc.join(dir);
        fs::create_dir_all(&dir)?;
        for u in names {
            let p = dir.join(u);
            remove_any(&p)?;
            symlink("/dev/null", &p).with_context(|| format!("mask {u}"))?;
        }
    }
    Ok(())
}

/// Writes [`OWN_FILES`] under `etc`.
fn write_own_files(etc: &Path) -> Result<()> {
    for &(path, text) in OWN_FILES {
        write_etc_file(etc, path, text)?;
    }
    Ok(())
}

/// Writes `text` at `path` under `etc`, its folders first.
fn write_etc_file(etc: &Path, path: &str, text: &str) -> Result<()> {
    let p = etc.join(path);
    fs::create_dir_all(p.parent().unwrap())?;
    fs::write(&p, text).with_context(|| format!("write {}", p.display()))
}

/// Move `boot/vmlinuz-$KVER` and its initramfs to `usr/lib/modules/$KVER/`. Exactly one kernel.
fn move_kernel(root: &Path) -> Result<String> {
    let boot = root.join("boot");
    let mut kernels: Vec<String> = list_names(&boot)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
        .collect();
    // A kernel already in place (a recipe that did the move itself) counts too.
    let modules = root.join("usr/lib/modules");
    let in_place: Vec<String> = list_names(&modules)
        .unwrap_or_default()
        .into_iter()
        .filter(|k| modules.join(k).join("vmlinuz").is_file())
        .collect();
    kernels.sort();
    kernels.dedup();
    match (kernels.as_slice(), in_place.as_slice()) {
        ([], []) => bail!(
            "no kernel in the image: expected boot/vmlinuz-<version> (install linux-image-amd64)"
        ),
        ([], [k]) => {
            if !modules.join(k).join("initramfs.img").is_file() {
                bail!("usr/lib/modules/{k}/vmlinuz has no initramfs.img beside it");
            }
            Ok(k.clone())
        }
        ([k], _) => {
            let src_k = boot.join(format!("vmlinuz-{k}"));
            let initrd = ["initrd.img-", "initramfs-"]
                .iter()
                .map(|p| boot.join(format!("{p}{k}")))
                .chain([boot.join(format!("initramfs-{k}.img"))])
                .find(|p| p.is_file())
                .with_context(|| {
                    format!(
                        "kernel {k} has no initramfs in boot/ (expected boot/initrd.img-{k}; run dracut)"
                    )
                })?;
            let dest = modules.join(k);
            fs::create_dir_all(&dest)?;
            move_file(&src_k, &dest.join("vmlinuz"))?;
            move_file(&initrd, &dest.join("initramfs.img"))?;
            for f in ["vmlinuz", "initramfs.img"] {
                fs::set_permissions(dest.join(f), fs::Permissions::from_mode(0o644))?;
            }
            Ok(k.clone())
        }
        (many, _) => bail!(
            "more than one kernel in boot/ ({}): an OSTree deployment boots exactly one",
            many.join(", ")
        ),
    }
}

fn move_file(src: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        fs::remove_file(dest)?;
    }
    fs::rename(src, dest).with_context(|| format!("move {} to {}", src.display(), dest.display()))
}

fn list_names(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        v.push(e?.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(p).with_context(|| format!("remove {}", p.display()))
        }
        Ok(_) => fs::remove_file(p).with_context(|| format!("remove {}", p.display())),
    }
}

/// Make `p` an empty directory with `mode`.
fn empty_dir(p: &Path, mode: u32) -> Result<()> {
    remove_any(p)?;
    fs::create_dir_all(p)?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Path of the var seed inside a deployment checkout.
pub fn var_seed_in(deployment: &Path) -> PathBuf {
    deployment.join(VAR_SEED)
}

/// dpkg's per-package files in the var seed, one tar (relative to the seed, and to /var once
/// the disk maker has copied the seed there and unpacked it: [`DPKG_INFO_DIR`]). They were
/// ~900 of a deployment's ~9,000 files, and under TCG every deploy hard-links each file, writes
/// it into the composefs image, removes the old deployment's, and every prune walks them all;
/// no lab reads them from the seed (lab 04 reads the seed's www/, `bootlab diff` its
/// lib/dpkg/status, both stay files).
pub const DPKG_INFO_TAR: &str = "lib/dpkg/info.tar";
/// Where [`DPKG_INFO_TAR`] unpacks (relative to the seed or /var).
pub const DPKG_INFO_DIR: &str = "lib/dpkg/info";

/// Packs the seed's [`DPKG_INFO_DIR`] (regular files only, as dpkg writes it) into
/// [`DPKG_INFO_TAR`], then removes the folder. Names sorted, times 0 (a deployment's files
/// have mtime 0 anyway): the same files make the same bytes, so versions share the object.
fn pack_dpkg_info(seed: &Path) -> Result<()> {
    let dir = seed.join(DPKG_INFO_DIR);
    if !dir.is_dir() || dir.is_symlink() {
        return Ok(());
    }
    let mut names: Vec<String> = list_names(&dir)?;
    names.sort();
    let mut out = Vec::new();
    for name in &names {
        let p = dir.join(name);
        let md = fs::symlink_metadata(&p).with_context(|| format!("read {}", p.display()))?;
        if !md.file_type().is_file() {
            bail!(
                "{}: not a regular file (dpkg's info folder holds only files)",
                p.display()
            );
        }
        let data = fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        out.extend_from_slice(&ustar_header(name, &md, data.len() as u64)?);
        out.extend_from_slice(&data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    // Two zero blocks end the archive.
    out.resize(out.len() + 1024, 0);
    let tar = seed.join(DPKG_INFO_TAR);
    fs::write(&tar, &out).with_context(|| format!("write {}", tar.display()))?;
    fs::set_permissions(&tar, fs::Permissions::from_mode(0o644))?;
    fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    Ok(())
}

/// A POSIX ustar header for a regular file `name` (no folders: it is unpacked into one).
fn ustar_header(name: &str, md: &fs::Metadata, size: u64) -> Result<[u8; 512]> {
    use std::os::unix::fs::MetadataExt;
    if name.len() > 100 || name.contains('/') {
        bail!("{name}: a name tar's header cannot hold (over 100 bytes or a folder)");
    }
    // A number in octal filling its field, NUL last; one too large for it is an error, not a
    // truncated header.
    let octal = |v: u64, len: usize| -> Result<Vec<u8>> {
        let text = format!("{v:0w$o}\0", w = len - 1);
        if text.len() > len {
            bail!("{name}: {v} does not fit a tar header field of {len} bytes");
        }
        Ok(text.into_bytes())
    };
    let fields = [
        (100, octal(u64::from(md.mode() & 0o7777), 8)?),
        (108, octal(u64::from(md.uid()), 8)?),
        (116, octal(u64::from(md.gid()), 8)?),
        (124, octal(size, 12)?),
        (136, octal(0, 12)?),
    ];
    let mut h = [0u8; 512];
    let mut put = |at: usize, v: &[u8]| h[at..at + v.len()].copy_from_slice(v);
    put(0, name.as_bytes());
    for (at, v) in &fields {
        put(*at, v);
    }
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny rootfs shaped like the Debian image's: merged /usr, a kernel in /boot, /var, /root.
    fn synthetic_rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in [
            "usr/bin",
            "usr/lib/modules/6.1.0-99-amd64/kernel",
            "etc/ssh",
            "boot",
            "var/lib/dpkg/info",
            "var/lib/apt/lists",
            "var/cache/apt/archives",
            "var/log",
            "var/tmp",
            "root",
            "home",
            "opt",
            "srv",
            "mnt",
            "media",
            "usr/local/bin",
            "dev",
            "proc",
            "run/lock",
            "tmp",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(r.join("usr/bin/sh"), "#!").unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        fs::write(r.join("boot/vmlinuz-6.1.0-99-amd64"), "kernel").unwrap();
        fs::write(r.join("boot/initrd.img-6.1.0-99-amd64"), "initrd").unwrap();
        fs::write(r.join("boot/config-6.1.0-99-amd64"), "cfg").unwrap();
        fs::write(
            r.join("usr/lib/modules/6.1.0-99-amd64/modules.devname"),
            "# Device nodes to trigger on-demand module loading.\ntun net/tun c10:200\n",
        )
        .unwrap();
        symlink("boot/vmlinuz-6.1.0-99-amd64", r.join("vmlinuz")).unwrap();
        symlink("boot/initrd.img-6.1.0-99-amd64", r.join("initrd.img.old")).unwrap();
        fs::write(r.join("var/lib/dpkg/info/bash.list"), "/.\n/usr/bin/bash\n").unwrap();
        fs::write(r.join("var/lib/dpkg/info/bash.postinst"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            r.join("var/lib/dpkg/info/bash.postinst"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        fs::write(r.join("etc/hostname"), "bootlab\n").unwrap();
        fs::write(r.join("etc/hosts"), "").unwrap();
        fs::write(r.join("etc/machine-id"), "abc\n").unwrap();
        fs::write(r.join("etc/ssh/sshd_config"), "x").unwrap();
        fs::write(r.join("var/lib/dpkg/status"), "Package: x").unwrap();
        fs::write(r.join("var/lib/apt/lists/deb_Packages"), "big").unwrap();
        fs::write(r.join("var/cache/apt/archives/x.deb"), "deb").unwrap();
        fs::write(r.join("var/tmp/junk"), "j").unwrap();
        fs::write(r.join("root/.bashrc"), "PS1=").unwrap();
        fs::write(r.join("usr/local/bin/tool"), "t").unwrap();
        fs::write(r.join("tmp/x"), "x").unwrap();
        fs::write(r.join("run/lock/x"), "x").unwrap();
        t
    }

    #[test]
    fn boot_line_marked_for_the_initramfs() {
        // As bootc install to-filesystem wrote it (a debian-bootc guest, 2026-12-05).
        let bootc = "UUID=db9ff383-ffc4-4e8e-8fb6-fe4538a065e2 /boot auto ro 0 0\n";
        assert_eq!(
            mark_boot_for_initramfs(bootc, "etc/fstab").unwrap(),
            "UUID=db9ff383-ffc4-4e8e-8fb6-fe4538a065e2 /boot auto ro,noauto,x-initrd.mount 0 0\n"
        );
        let twice = mark_boot_for_initramfs(
            "# a comment /boot\nLABEL=b /boot ext4 defaults,auto,noauto 1 2\nLABEL=d /data ext4 defaults 0 2\n",
            "etc/fstab",
        )
        .unwrap();
        assert_eq!(
            twice,
            "# a comment /boot\nLABEL=b /boot ext4 defaults,noauto,x-initrd.mount 0 0\nLABEL=d /data ext4 defaults 0 2\n"
        );
        let e =
            mark_boot_for_initramfs("LABEL=d /data ext4 defaults 0 2\n", "deploy/x.0/etc/fstab")
                .unwrap_err();
        assert!(format!("{e}").contains("deploy/x.0/etc/fstab"), "{e}");
    }

    /// The same lines kmod wrote in a real guest from the same modules.devname.
    #[test]
    fn static_nodes_as_kmod_writes_them() {
        let devname = include_str!(
            "../../../tests/fixtures/static-nodes/modules.devname-6.12.118+deb13-amd64"
        );
        let kmod = include_str!(
            "../../../tests/fixtures/static-nodes/kmod-static-nodes-6.12.118+deb13-amd64.conf"
        );
        assert_eq!(static_nodes_tmpfiles(devname).unwrap(), kmod);
        let e = static_nodes_tmpfiles("# x\ntun net/tun c10:200\nbad line x10:1\n").unwrap_err();
        assert!(e.to_string().starts_with("line 3: "), "{e}");
        assert!(static_nodes_tmpfiles("tun net/tun c10\n").is_err());
    }

    fn link(p: &Path) -> String {
        fs::read_link(p).unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn converts_a_debian_shaped_rootfs() {
        let t = synthetic_rootfs();
        let r = t.path();
        let rep = convert(r, &LayoutOptions::default()).unwrap();
        assert_eq!(rep.kernel_version, "6.1.0-99-amd64");

        // kernel and initramfs where ostree looks, 0644; /boot empty; root symlinks gone
        let m = r.join("usr/lib/modules/6.1.0-99-amd64");
        assert_eq!(fs::read_to_string(m.join("vmlinuz")).unwrap(), "kernel");
        assert_eq!(
            fs::read_to_string(m.join("initramfs.img")).unwrap(),
            "initrd"
        );
        assert_eq!(
            fs::metadata(m.join("vmlinuz"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o644
        );
        assert!(m.join("kernel").is_dir());
        assert_eq!(fs::read_dir(r.join("boot")).unwrap().count(), 0);
        assert!(fs::symlink_metadata(r.join("vmlinuz")).is_err());
        assert!(fs::symlink_metadata(r.join("initrd.img.old")).is_err());

        // /etc moved, fstab by label, machine-id empty, podman's empty hosts dropped
        assert!(!r.join("etc").exists());
        let etc = r.join("usr/etc");
        assert_eq!(
            fs::read_to_string(etc.join("hostname")).unwrap(),
            "bootlab\n"
        );
        assert!(etc.join("ssh/sshd_config").is_file());
        let fstab = fs::read_to_string(etc.join("fstab")).unwrap();
        assert!(!fstab.contains(" / "), "{fstab}");
        assert!(
            fstab.contains("LABEL=bootlab-boot /boot ext4 defaults,noauto,x-initrd.mount 0 0"),
            "{fstab}"
        );
        assert_eq!(fs::read(etc.join("machine-id")).unwrap(), b"");
        assert!(!etc.join("hosts").exists());
        assert!(!etc.join(".updated").exists(), "ostree would remove it");
        assert!(UPDATED.ends_with("\nTIMESTAMP_NSEC=0\n"), "{UPDATED}");

        // /var: empty in the tree, its content in the seed, apt caches dropped
        assert_eq!(fs::read_dir(r.join("var")).unwrap().count(), 0);
        let seed = r.join(VAR_SEED);
        assert_eq!(
            fs::read_to_string(seed.join("lib/dpkg/status")).unwrap(),
            "Package: x"
        );
        // dpkg's info folder is one tar in the seed, which host tar unpacks as it was
        assert!(!seed.join(DPKG_INFO_DIR).exists());
        let out = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("tar")
            .arg("-xpf")
            .arg(seed.join(DPKG_INFO_TAR))
            .arg("-C")
            .arg(out.path())
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            fs::read_to_string(out.path().join("bash.list")).unwrap(),
            "/.\n/usr/bin/bash\n"
        );
        let md = fs::metadata(out.path().join("bash.postinst")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o755);
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 2);
        assert!(!seed.join("lib/apt/lists/deb_Packages").exists());
        assert!(!seed.join("cache/apt/archives/x.deb").exists());
        assert!(!seed.join("tmp/junk").exists());
        assert_eq!(
            fs::read_to_string(seed.join("roothome/.bashrc")).unwrap(),
            "PS1="
        );
        assert!(seed.join("usrlocal/bin/tool").is_file());
        assert_eq!(fs::read_to_string(seed.join(".updated")).unwrap(), UPDATED);
        // The static nodes from the kernel's modules.devname.
        assert_eq!(
            fs::read_to_string(r.join(STATIC_NODES)).unwrap(),
            "d /dev/net 0755 - - -\nc! /dev/net/tun 0600 - - - 10:200\n"
        );

        // symlinks into /var and the rest
        assert_eq!(link(&r.join("home")), "var/home");
        assert_eq!(link(&r.join("root")), "var/roothome");
        assert_eq!(link(&r.join("opt")), "var/opt");
        assert_eq!(link(&r.join("srv")), "var/srv");
        assert_eq!(link(&r.join("mnt")), "var/mnt");
        assert_eq!(link(&r.join("usr/local")), "../var/usrlocal");
        assert_eq!(link(&r.join("media")), "run/media");
        assert_eq!(link(&r.join("ostree")), "sysroot/ostree");
        assert_eq!(link(&r.join("bin")), "usr/bin");
        assert!(r.join("sysroot").is_dir());

        // empty API dirs, tmp sticky
        for d in ["dev", "proc", "sys", "run", "tmp"] {
            assert_eq!(fs::read_dir(r.join(d)).unwrap().count(), 0, "{d}");
        }
        assert_eq!(
            fs::metadata(r.join("tmp")).unwrap().permissions().mode() & 0o7777,
            0o1777
        );

        // housekeeping units masked in /etc (a learner can unmask them)
        for u in MASKED_UNITS {
            assert_eq!(
                link(&etc.join("systemd/system").join(u)),
                "/dev/null",
                "{u}"
            );
        }
        assert!(!MASKED_UNITS.iter().any(|u| u.contains("ostree")));
        // generators masked the same way; ostree's, fstab's and getty's run
        for g in MASKED_GENERATORS {
            assert_eq!(
                link(&etc.join("systemd/system-generators").join(g)),
                "/dev/null",
                "{g}"
            );
        }
        assert_eq!(
            MASKS.map(|(dir, _)| dir),
            ["systemd/system", "systemd/system-generators"]
        );
        for g in ["ostree", "fstab", "getty"] {
            assert!(!MASKED_GENERATORS.iter().any(|m| m.contains(g)), "{g}");
        }
        // the journal's flush runs only with a persistent journal to flush into
        let flush = fs::read_to_string(etc.join(JOURNAL_FLUSH_DROPIN.0)).unwrap();
        assert!(!flush.contains('\''), "the bootc layer single-quotes it");
        assert!(
            flush.contains("[Unit]\nConditionPathIsDirectory=/var/log/journal\n"),
            "{flush}"
        );
        // udev's coldplug: the ttys a guest uses first, then every other device but the virtual
        // consoles; no subsystem events
        let trig = fs::read_to_string(etc.join(UDEV_TRIGGER_DROPIN.0)).unwrap();
        assert!(
            !trig.contains('\''),
            "the bootc layer single-quotes it: {trig}"
        );
        assert!(trig.contains("ExecStart=\nExecStart=-udevadm trigger --type=devices --action=add --subsystem-match=tty --sysname-match=ttyS* --sysname-match=tty1 "), "{trig}");
        assert!(trig.contains("\nExecStart=-udevadm trigger --type=devices --action=add --subsystem-nomatch=tty --subsystem-nomatch=vc --prioritized-subsystem=virtio-ports,block,"), "{trig}");
        // udev's coldplug does not load the unused drivers: a modprobe.d file of blacklist lines
        let unused = fs::read_to_string(etc.join("modprobe.d/bootlab-unused.conf")).unwrap();
        assert!(!unused.contains('\''), "the bootc layer single-quotes it");
        let names: Vec<&str> = unused
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.strip_prefix("blacklist ").expect(l))
            .collect();
        for m in [
            "aesni_intel",
            "ata_piix",
            "kvm_amd",
            "qemu_fw_cfg",
            "floppy",
        ] {
            assert!(names.contains(&m), "{m} not in\n{unused}");
        }
        // what the guests need stays loadable: the root's drivers, the power button, the share
        for m in [
            "virtio_blk",
            "ext4",
            "crc32c_intel",
            "button",
            "evdev",
            "9p",
            "virtio_net",
        ] {
            assert!(!names.contains(&m), "{m} blacklisted");
        }
        // bootlab's own units, written and enabled (no `'`: the bootc layer single-quotes them).
        assert_eq!(OWN_UNITS.len(), 2);
        for &((path, _), (link, target)) in OWN_UNITS {
            let text = fs::read_to_string(etc.join(path)).unwrap();
            assert!(!text.contains('\''), "{text}");
            assert_eq!(fs::read_link(etc.join(link)).unwrap(), Path::new(target));
        }
        // The guest agent's binds to no udev device; the 9p unit is ordered before nothing.
        let agent = fs::read_to_string(etc.join(AGENT_UNIT.0)).unwrap();
        assert!(!agent.contains("BindsTo"), "{agent}");
        let share = fs::read_to_string(etc.join(SHARE_MODULES_UNIT.0)).unwrap();
        assert!(!share.contains("Before="), "{share}");

        // tmpfiles lines for every /var dir a symlink points to
        let tf = fs::read_to_string(r.join(TMPFILES)).unwrap();
        for d in ["home", "roothome", "opt", "srv", "mnt", "usrlocal", "tmp"] {
            assert!(tf.contains(&format!("d /var/{d} ")), "{d}: {tf}");
        }
    }

    /// The benchmark's plain script (bench/pick-to-guest.sh) masks the same units, so the
    /// "pick → guest" row compares the same guest boot.
    #[test]
    fn the_bench_script_masks_the_same_units() {
        let script = fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/pick-to-guest.sh"),
        )
        .unwrap();
        let words: Vec<&str> = script
            .split(|c: char| c.is_whitespace() || c == ';' || c == '\\')
            .collect();
        for u in MASKED_UNITS.iter().chain(MASKED_GENERATORS) {
            assert!(
                words.contains(u),
                "bench/pick-to-guest.sh does not mask {u}"
            );
        }
        assert!(
            script.contains(JOURNAL_FLUSH_DROPIN.0)
                && script.contains("ConditionPathIsDirectory=/var/log/journal"),
            "bench/pick-to-guest.sh does not write the journal flush's drop-in"
        );
        // the same coldplug: each of the drop-in's `udevadm trigger` lines, word for word
        assert!(script.contains(UDEV_TRIGGER_DROPIN.0));
        let triggers: Vec<&str> = UDEV_TRIGGER_DROPIN
            .1
            .lines()
            .filter(|l| l.starts_with("ExecStart=-udevadm"))
            .collect();
        assert_eq!(triggers.len(), 2, "{}", UDEV_TRIGGER_DROPIN.1);
        for t in triggers {
            assert!(
                script.contains(&format!("\\n{t}\\n")),
                "bench/pick-to-guest.sh does not run {t}"
            );
        }
    }

    #[test]
    fn a_number_too_large_for_its_tar_field_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("bash.list");
        fs::write(&f, "x").unwrap();
        let md = fs::metadata(&f).unwrap();
        let h = ustar_header("bash.list", &md, 1).unwrap();
        assert_eq!(&h[124..136], b"00000000001\0");
        let e = ustar_header("bash.list", &md, 1 << 33)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not fit a tar header field of 12 bytes"),
            "{e}"
        );
    }

    #[test]
    fn packing_refuses_what_dpkg_does_not_write() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("lib/dpkg/info/sub")).unwrap();
        let e = pack_dpkg_info(t.path()).unwrap_err().to_string();
        assert!(e.contains("lib/dpkg/info/sub: not a regular file"), "{e}");
        // nothing lost: the folder stays when packing fails
        assert!(t.path().join("lib/dpkg/info/sub").is_dir());
    }

    #[test]
    fn the_var_line_is_added_once() {
        let bootc = "UUID=ae5c /boot auto ro,noauto,x-initrd.mount 0 0";
        assert_eq!(
            with_var_line(bootc, "default"),
            "UUID=ae5c /boot auto ro,noauto,x-initrd.mount 0 0\n\
             /sysroot/ostree/deploy/default/var /var none bind,x-initrd.mount 0 0\n"
        );
        let once = with_var_line(bootc, "default");
        assert_eq!(with_var_line(&once, "default"), once);
        // A commented /var line does not count.
        assert!(
            with_var_line("# x /var none bind 0 0\n", "d")
                .ends_with("/var none bind,x-initrd.mount 0 0\n")
        );
    }

    #[test]
    fn no_kernel_is_a_clear_error() {
        let t = synthetic_rootfs();
        fs::remove_file(t.path().join("boot/vmlinuz-6.1.0-99-amd64")).unwrap();
        let e = convert(t.path(), &LayoutOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no kernel"), "{e}");
    }

    #[test]
    fn missing_initramfs_is_a_clear_error() {
        let t = synthetic_rootfs();
        fs::remove_file(t.path().join("boot/initrd.img-6.1.0-99-amd64")).unwrap();
        let e = convert(t.path(), &LayoutOptions::default()).unwrap_err();
        assert!(format!("{e:#}").contains("no initramfs"), "{e:#}");
    }

    #[test]
    fn two_kernels_are_refused() {
        let t = synthetic_rootfs();
        fs::write(t.path().join("boot/vmlinuz-6.1.0-98-amd64"), "k").unwrap();
        let e = convert(t.path(), &LayoutOptions::default()).unwrap_err();
        assert!(e.to_string().contains("more than one kernel"), "{e}");
    }

    #[test]
    fn converting_twice_is_refused() {
        let t = synthetic_rootfs();
        convert(t.path(), &LayoutOptions::default()).unwrap();
        let e = convert(t.path(), &LayoutOptions::default()).unwrap_err();
        assert!(e.to_string().contains("usr/etc"), "{e}");
    }
}
