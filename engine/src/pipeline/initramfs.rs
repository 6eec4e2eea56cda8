//! bootlab's initramfs for offline-family guests: a shell `/init` instead of systemd and udev,
//! made once per kernel and package set.
//!
//! A guest of bootlab's always boots the same way (virtio disk, ext4, an OSTree root), so the
//! initramfs only has to load the virtio disk, ext4 and composefs drivers (and two the real
//! root's systemd would load first thing), mount the root the
//! kernel command line names, run ostree-prepare-root, mount the deployment's /boot (its fstab
//! line marked `x-initrd.mount`, so systemd does not wait for udev) and switch to the deployment
//! (`initramfs/init.sh`). Under TCG a systemd initramfs (dracut's, even cut to those modules)
//! spent ~6 s of every boot starting systemd, udev and their units; the shell does the same in
//! ~1.5 s (debian-minimal reboot, 2026-12-05: kernel + initramfs 9.1 s -> 4.4 s by
//! `systemd-analyze`, reboot to guest agent 24.4 s -> 17.7 s). A journald runs beside it, since
//! ostree-prepare-root writes its composefs lines to the journal (`composefs: mounted
//! successfully …`), which labs read in the guest; its other lines go to the console. It is
//! uncompressed: under TCG copying is cheaper than inflating.
//!
//! `initramfs/make.sh` builds it inside the recipe's own image (its kernel modules, its ostree,
//! its libc) in a throw-away container. The result is cached under `<cache>/initramfs/` by the
//! kernel version, the image's package database and how it is made ([`method_id`]), so the
//! versions of one recipe (same packages) share one; a recipe that installs packages gets its own.

use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::tools::podman::Podman;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bumped when the way the initramfs is made changes in a way the scripts do not show.
const FORMAT: u32 = 4;

/// The builder, run in the image: `sh make.sh KVER OUT INIT DRIVER...`.
pub const MAKE_SH: &str = include_str!("initramfs/make.sh");
/// The initramfs's `/init`.
pub const INIT_SH: &str = include_str!("initramfs/init.sh");

/// The kernel modules in it, in two lanes init.sh loads side by side (a guest has two vCPUs;
/// under TCG ext4's chain alone took ~1 s of one): ext4 with crc32c (loaded by name, not as a
/// dependency, so it is listed), and the virtio disk. The second lane, done long before the
/// first, also loads what the real root's systemd loads first thing itself (autofs4, ip_tables:
/// ~0.2 s of its start). Dependencies follow; built-in ones are skipped.
pub const LANES: [&[&str]; 2] = [
    &["crc32c_generic", "ext4"],
    &["virtio_pci", "virtio_blk", "autofs4", "ip_tables"],
];
/// Added to those lanes when the image requires composefs (the trixie base): ostree-prepare-root
/// mounts the deployment's `.ostree.cfs` (erofs, through a loop device) under an overlay. erofs
/// needs crc32c (through libcrc32c), so it joins ext4's lane.
pub const COMPOSEFS_LANES: [&[&str]; 2] = [&["erofs"], &["loop", "overlay"]];

/// The lanes of an initramfs for an image with or without composefs, each as `make.sh` takes
/// it: driver names joined by commas.
pub fn lanes(composefs: bool) -> Vec<String> {
    LANES
        .iter()
        .zip(COMPOSEFS_LANES)
        .map(|(lane, extra)| {
            let mut d = lane.to_vec();
            if composefs {
                d.extend(extra);
            }
            d.join(",")
        })
        .collect()
}

/// The command that makes the initramfs in the image, with [`MAKE_SH`] and [`INIT_SH`] in `dir`.
pub fn make_argv(dir: &str, kver: &str, out: &str, composefs: bool) -> Vec<String> {
    let mut a = vec![
        "sh".to_string(),
        format!("{dir}/make.sh"),
        kver.to_string(),
        out.to_string(),
        format!("{dir}/init.sh"),
    ];
    a.extend(lanes(composefs));
    a
}

/// Names every initramfs of bootlab's has in its cpio (checked after making one).
pub const MEMBERS: &[&str] = &[
    "init",
    "etc/bootlab-modules",
    "usr/lib/ostree/ostree-prepare-root",
];

/// What [`replace_initramfs`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct InitramfsReport {
    pub kernel: String,
    pub bytes: u64,
    pub cached: bool,
}

/// How the initramfs is made (format, the two scripts, the drivers): part of the offline
/// builds' cache key and of the bootc base's, so a change makes them again.
pub fn method_id() -> String {
    let mut h = Sha256::new();
    h.update(format!("format {FORMAT}\0"));
    h.update(MAKE_SH);
    h.update("\0");
    h.update(INIT_SH);
    h.update("\0");
    for composefs in [false, true] {
        h.update(lanes(composefs).join(" "));
        h.update("\0");
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// The cache key: how it is made ([`method_id`]), the kernel version, composefs or not, the
/// image's package database.
pub fn cache_key(kver: &str, dpkg_status: &[u8], composefs: bool) -> String {
    let mut h = Sha256::new();
    h.update(format!("{}\0{kver}\0composefs {composefs}\0", method_id()));
    h.update(dpkg_status);
    hex::encode(h.finalize())[..24].to_string()
}

/// The kernel version of an exported rootfs: the one `boot/vmlinuz-<kver>` with an initramfs
/// beside it. None when there is not exactly one (the layout conversion reports that case).
pub fn kernel_in(tree: &Path) -> Option<String> {
    let mut found: Vec<String> = std::fs::read_dir(tree.join("boot"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .collect();
    found.sort();
    found.dedup();
    match found.as_slice() {
        [k] if tree.join(format!("boot/initrd.img-{k}")).is_file() => Some(k.clone()),
        _ => None,
    }
}

/// The kernel version and the initramfs path of an exported rootfs: [`kernel_in`]'s
/// `boot/initrd.img-<kver>`, or, for an image laid out as ostree boots it (the trixie base),
/// the one `usr/lib/modules/<kver>/initramfs.img` beside a `vmlinuz`.
pub fn initramfs_in(tree: &Path) -> Option<(String, PathBuf)> {
    if let Some(k) = kernel_in(tree) {
        let p = tree.join(format!("boot/initrd.img-{k}"));
        return Some((k, p));
    }
    let modules = tree.join("usr/lib/modules");
    let found: Vec<String> = std::fs::read_dir(&modules)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|k| {
            modules.join(k).join("vmlinuz").is_file()
                && modules.join(k).join("initramfs.img").is_file()
        })
        .collect();
    match found.as_slice() {
        [k] => Some((k.clone(), modules.join(k).join("initramfs.img"))),
        _ => None,
    }
}

/// Replace `boot/initrd.img-<kver>` (or `usr/lib/modules/<kver>/initramfs.img`) of the exported `tree` (of image `image`) with the small one,
/// made by [`MAKE_SH`] in `image` or taken from the cache. Leaves the tree alone (and says so)
/// when it has no single kernel in `boot/` or no ostree-prepare-root.
pub async fn replace_initramfs(
    paths: &Paths,
    podman: &Podman,
    image: &str,
    tree: &Path,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<Option<InitramfsReport>> {
    let Some((kver, dest)) = initramfs_in(tree) else {
        ev.note(
            stage,
            "no single kernel with its initramfs (boot/ or usr/lib/modules/): keeping the image's",
        );
        return Ok(None);
    };
    if !tree.join("usr/lib/ostree/ostree-prepare-root").exists() {
        ev.note(
            stage,
            "no ostree-prepare-root in the image: keeping its initramfs",
        );
        return Ok(None);
    }
    let status = std::fs::read(tree.join("var/lib/dpkg/status")).unwrap_or_default();
    let composefs = std::fs::read_to_string(tree.join(super::PREPARE_ROOT_CONF))
        .is_ok_and(|c| super::composefs_required(&c));
    let key = cache_key(&kver, &status, composefs);
    let dir = paths.cache.join("initramfs");
    std::fs::create_dir_all(&dir)?;
    let cached_path = dir.join(format!("{key}.img"));
    let cached = cached_path.is_file();
    if cached {
        ev.note(
            stage,
            format!(
                "small initramfs for {kver}: reusing {}",
                cached_path.display()
            ),
        );
    } else {
        make(
            podman,
            image,
            &kver,
            composefs,
            &dir,
            &cached_path,
            stage,
            ev,
            cancel,
        )
        .await?;
    }
    let tmp = dest.with_extension("bootlab-tmp");
    std::fs::copy(&cached_path, &tmp).context("copy the small initramfs into the tree")?;
    // ostree checks the file into the commit with this mode; the bootloader reads it as root.
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    std::fs::rename(&tmp, &dest)?;
    let bytes = std::fs::metadata(&dest)?.len();
    ev.note(
        stage,
        format!(
            "initramfs: {:.1} MB uncompressed (a shell /init, virtio, ext4, ostree-prepare-root)",
            bytes as f64 / 1e6
        ),
    );
    Ok(Some(InitramfsReport {
        kernel: kver,
        bytes,
        cached,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn make(
    podman: &Podman,
    image: &str,
    kver: &str,
    composefs: bool,
    dir: &Path,
    dest: &PathBuf,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<()> {
    let work = tempfile::Builder::new().prefix(".tmp-").tempdir_in(dir)?;
    std::fs::write(work.path().join("make.sh"), MAKE_SH)?;
    std::fs::write(work.path().join("init.sh"), INIT_SH)?;
    let argv = make_argv("/out", kver, "/out/initramfs.img", composefs);
    podman
        .run_rm(image, work.path(), &argv, stage, ev, cancel)
        .await
        .with_context(|| format!("could not make the initramfs for {kver} in {image}"))?;
    let made = work.path().join("initramfs.img");
    let len = std::fs::metadata(&made)
        .with_context(|| format!("make.sh wrote no {}", made.display()))?
        .len();
    anyhow::ensure!(len > 1024 * 1024, "the initramfs is only {len} bytes");
    check_members(&std::fs::read(&made)?)?;
    std::fs::rename(&made, dest)?;
    Ok(())
}

/// The member names of an uncompressed initramfs: one or more newc cpio archives in a row (an
/// image may append one, as lab 12's v4 does), each ending in `TRAILER!!!`, with zero padding
/// between them.
pub fn cpio_names(cpio: &[u8]) -> Result<Vec<String>> {
    let field = |h: &[u8], i: usize| -> Result<usize> {
        let f = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i])?;
        Ok(usize::from_str_radix(f, 16)?)
    };
    let align = |n: usize| n.div_ceil(4) * 4;
    let mut names = Vec::new();
    let mut at = 0;
    while at < cpio.len() {
        if cpio[at] == 0 {
            at += 1;
            continue;
        }
        // newc, or newc with checksums (`-H crc`): the kernel reads both.
        anyhow::ensure!(
            cpio[at..].starts_with(b"070701") || cpio[at..].starts_with(b"070702"),
            "not an uncompressed newc cpio at byte {at}"
        );
        let h = cpio
            .get(at..at + 110)
            .with_context(|| format!("a cpio header cut short at byte {at}"))?;
        let (size, namesize) = (field(h, 6)?, field(h, 11)?);
        let name = cpio
            .get(at + 110..at + 110 + namesize.saturating_sub(1))
            .with_context(|| format!("a cpio name cut short at byte {at}"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        at = align(at + 110 + namesize);
        anyhow::ensure!(
            at + size <= cpio.len(),
            "the cpio member {name} is cut short (it ends past byte {})",
            cpio.len()
        );
        at = align(at + size);
        if name != "TRAILER!!!" {
            names.push(name);
        }
    }
    Ok(names)
}

/// Each of [`MEMBERS`] must be in the initramfs.
pub fn check_members(cpio: &[u8]) -> Result<()> {
    let names = cpio_names(cpio)?;
    for m in MEMBERS {
        anyhow::ensure!(names.iter().any(|n| n == m), "the initramfs has no {m}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The shell function `name` of init.sh, as written there (from `name() {` to the `}` that
    /// closes it at the start of a line).
    fn init_function(name: &str) -> String {
        let start = INIT_SH
            .find(&format!("\n{name}() {{\n"))
            .unwrap_or_else(|| panic!("init.sh has no {name}()"));
        let body = &INIT_SH[start + 1..];
        let end = body.find("\n}\n").expect("the function's end") + 3;
        body[..end].to_string()
    }

    /// Runs a script of init.sh's functions with dash on the host, in a temporary folder `dir`
    /// holding `file` (name, text) and a stub program `prog` first on the PATH (its text made
    /// from the path of the log it writes, `dir/prog.log`): returns dash's output and that log.
    fn dash_with_stub(
        prog: &str,
        stub: impl Fn(&Path) -> String,
        file: (&str, &str),
        script: impl Fn(&Path) -> String,
    ) -> (String, String) {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = d.path().join(format!("{prog}.log"));
        std::fs::write(bin.join(prog), stub(&log)).unwrap();
        std::fs::set_permissions(bin.join(prog), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.path().join(file.0), file.1).unwrap();
        let out = std::process::Command::new("dash")
            .arg("-c")
            .arg(script(d.path()))
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .expect("dash");
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        (String::from_utf8_lossy(&out.stdout).into_owned(), logged)
    }

    /// init.sh's `mount_initrd_lines` run by dash on the host, with a `mount` that logs its
    /// arguments (and fails for the source `FAILME`) and a `fail` that says so.
    fn mount_initrd_lines(fstab: &str) -> (String, String) {
        dash_with_stub(
            "mount",
            |log| {
                format!(
                    "#!/bin/sh\n\
                     for a in \"$@\"; do [ \"$a\" = FAILME ] && {{ echo 'mount: no such device' >&2; exit 32; }}; done\n\
                     echo \"$*\" >> {}\n",
                    log.display()
                )
            },
            ("fstab", fstab),
            |dir| {
                format!(
                    "fail() {{ echo \"FAIL $*\"; exit 3; }}\nMOUNT_ERR={dir}/mount.err\n{f}\n\
                     mount_initrd_lines {dir}/fstab /sysroot\necho done\n",
                    dir = dir.display(),
                    f = init_function("mount_initrd_lines"),
                )
            },
        )
    }

    /// init.sh's `load_drivers` run by dash on the host with an `insmod` that logs when it
    /// starts and ends a module (0.3 s each; `bad.ko` fails), while another child (journald's
    /// place) runs on: returns its output, the log's lines and how long it took.
    fn load_drivers(list: &str) -> (String, Vec<String>, Duration) {
        let t = std::time::Instant::now();
        let (out, log) = dash_with_stub(
            "insmod",
            |log| {
                format!(
                    "#!/bin/sh\necho \"start $1\" >> {l}\nsleep 0.3\n\
                     [ \"$1\" = bad.ko ] && exit 1\necho \"end $1\" >> {l}\n",
                    l = log.display()
                )
            },
            ("modules", list),
            // A bare `wait` in load_drivers would wait the 30 s of that other child.
            |dir| {
                format!(
                    "{}\n{}\nsleep 30 & other=$!\nload_drivers {}/modules\necho done\nkill $other\n",
                    init_function("load_drivers"),
                    init_function("load_lane"),
                    dir.display()
                )
            },
        );
        let took = t.elapsed();
        (out, log.lines().map(str::to_string).collect(), took)
    }

    #[test]
    fn init_loads_each_lane_in_order_and_the_lanes_side_by_side() {
        let (out, log, took) = load_drivers("1 a.ko\n1 b.ko\n2 c.ko\n2 bad.ko\n2 d.ko\n");
        // a failed module is said and the rest of its lane still loads
        assert_eq!(out, "bootlab initramfs: could not load bad.ko\ndone\n");
        let at = |what: &str| {
            log.iter()
                .position(|l| l == what)
                .unwrap_or_else(|| panic!("no {what} in {log:?}"))
        };
        // each lane in its order, dependencies first
        assert!(at("end a.ko") < at("start b.ko"), "{log:?}");
        assert!(at("start bad.ko") > at("end c.ko"), "{log:?}");
        assert!(at("start d.ko") > at("start bad.ko"), "{log:?}");
        // the lanes overlap: lane 2 started before lane 1's first module ended
        assert!(at("start c.ko") < at("end a.ko"), "{log:?}");
        assert_eq!(log.len(), 9, "{log:?}");
        // it waited for its lanes only, not for the other child (journald's place)
        assert!(took < Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn init_mounts_the_fstab_lines_marked_for_it() {
        // As layout.rs writes it (a comment naming x-initrd.mount), with a tab and a blank line:
        // the /var bind's source is a path of the real root, so under /sysroot here.
        let (out, log) = mount_initrd_lines(&format!(
            "# /boot by bootlab's initramfs (x-initrd.mount) before systemd starts\n\n\
             LABEL=bootlab-boot\t/boot ext4 defaults,noauto,x-initrd.mount 0 0\n\
             LABEL=data /data ext4 defaults 0 2\n{}",
            crate::pipeline::layout::var_fstab_line("debian")
        ));
        assert_eq!(out, "done\n");
        assert_eq!(
            log,
            "-t ext4 -o defaults,noauto,x-initrd.mount LABEL=bootlab-boot /sysroot/boot\n\
             -t none -o bind,x-initrd.mount /sysroot/sysroot/ostree/deploy/debian/var /sysroot/var\n"
        );
        // bootc's line as the disk maker marks it, last in a file without a final newline.
        let (_, log) = mount_initrd_lines(
            "UUID=db9ff383-ffc4-4e8e-8fb6-fe4538a065e2 /boot auto ro,noauto,x-initrd.mount 0 0",
        );
        assert_eq!(
            log,
            "-t auto -o ro,noauto,x-initrd.mount UUID=db9ff383-ffc4-4e8e-8fb6-fe4538a065e2 /sysroot/boot\n"
        );
        // A device given by its path is not a bind: it stays as it is.
        let (_, log) = mount_initrd_lines("/dev/vdb1 /data ext4 defaults,x-initrd.mount 0 0\n");
        assert_eq!(
            log,
            "-t ext4 -o defaults,x-initrd.mount /dev/vdb1 /sysroot/data\n"
        );
        // Nothing marked (an fstab from before), or a line for / (ostree-prepare-root's).
        let (out, log) = mount_initrd_lines(
            "LABEL=bootlab-boot /boot ext4 defaults 1 2\nLABEL=r / ext4 x-initrd.mount 0 0\n",
        );
        assert_eq!((out.as_str(), log.as_str()), ("done\n", ""));
        // A mount that fails stops the boot, saying which line and why.
        let (out, _) = mount_initrd_lines("FAILME /boot ext4 defaults,noauto,x-initrd.mount 0 0\n");
        assert_eq!(
            out,
            "FAIL could not mount /boot (FAILME, the deployment's /etc/fstab): mount: no such device\n"
        );
    }

    #[test]
    fn the_builder_gets_the_drivers_and_the_init() {
        let a = make_argv("/out", "6.12.1-amd64", "/out/initramfs.img", false).join(" ");
        assert_eq!(
            a,
            "sh /out/make.sh 6.12.1-amd64 /out/initramfs.img /out/init.sh \
             crc32c_generic,ext4 virtio_pci,virtio_blk,autofs4,ip_tables"
        );
        let c = make_argv("/out", "6.12.1-amd64", "/out/initramfs.img", true).join(" ");
        assert!(
            c.ends_with(
                " crc32c_generic,ext4,erofs virtio_pci,virtio_blk,autofs4,ip_tables,loop,overlay"
            ),
            "{c}"
        );
    }

    /// The marks the init writes are the ones the boot-phase line reads, and it writes the
    /// `systemd` mark just before it hands over.
    #[test]
    fn the_init_writes_the_marks_the_boot_phase_line_reads() {
        use crate::vm::boot_phase::{BootPhase, MARK};
        assert!(
            INIT_SH.contains(&format!("echo \"{MARK}$1 $up\"")),
            "{INIT_SH}"
        );
        for phase in [BootPhase::Initramfs, BootPhase::Systemd] {
            assert!(
                INIT_SH.contains(&format!("mark {}\n", phase.name())),
                "{INIT_SH}"
            );
        }
        let tail: Vec<&str> = INIT_SH.trim_end().lines().rev().take(2).collect();
        assert_eq!(
            tail,
            ["exec switch_root /sysroot /sbin/init", "mark systemd"]
        );
    }

    /// A newc member: header, name, data, each padded to 4 bytes.
    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut m = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            0o100644,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .into_bytes();
        m.extend_from_slice(name.as_bytes());
        m.push(0);
        m.resize(m.len().div_ceil(4) * 4, 0);
        m.extend_from_slice(data);
        m.resize(m.len().div_ceil(4) * 4, 0);
        m
    }

    #[test]
    fn members_are_read_from_the_cpio_headers_not_the_file_contents() {
        let mut cpio = Vec::new();
        for m in MEMBERS {
            cpio.extend(member(m, b"#!/bin/sh\n"));
        }
        // A file whose bytes name another path does not make that path a member.
        cpio.extend(member("usr/bin/x", b"/usr/lib/systemd/systemd\0"));
        cpio.extend(member("TRAILER!!!", b""));
        cpio.resize(cpio.len() + 512, 0);
        // An appended archive (lab 12's v4) is read too.
        cpio.extend(member("usr/lib/ostree/prepare-root.conf", b"[composefs]\n"));
        cpio.extend(member("TRAILER!!!", b""));
        let names = cpio_names(&cpio).unwrap();
        assert_eq!(names.len(), MEMBERS.len() + 2, "{names:?}");
        assert!(!names.iter().any(|n| n == "usr/lib/systemd/systemd"));
        assert_eq!(names.last().unwrap(), "usr/lib/ostree/prepare-root.conf");
        check_members(&cpio).unwrap();

        let e = check_members(&member("init", b"etc/bootlab-modules\0")).unwrap_err();
        assert!(format!("{e}").contains("no etc/bootlab-modules"), "{e}");
        let e = cpio_names(b"\x1f\x8b\x08\x00gzip").unwrap_err();
        assert!(
            format!("{e}").contains("not an uncompressed newc cpio"),
            "{e}"
        );
        let e = cpio_names(&member("init", b"x")[..50]).unwrap_err();
        assert!(format!("{e}").contains("cut short"), "{e}");
        // A member whose data the file does not hold in full.
        let e = cpio_names(&member("init", b"0123456789")[..120]).unwrap_err();
        assert!(format!("{e}").contains("member init is cut short"), "{e}");
        // newc with checksums (`cpio -H crc`), which the kernel reads too.
        let mut crc = member("init", b"x");
        crc[5] = b'2';
        assert_eq!(cpio_names(&crc).unwrap(), ["init"]);
    }

    #[test]
    fn key_changes_with_kernel_and_packages() {
        let k = cache_key("6.1.0-1-amd64", b"Package: a", false);
        assert_eq!(k, cache_key("6.1.0-1-amd64", b"Package: a", false));
        assert_ne!(k, cache_key("6.1.0-2-amd64", b"Package: a", false));
        assert_ne!(k, cache_key("6.1.0-1-amd64", b"Package: b", false));
        assert_ne!(k, cache_key("6.1.0-1-amd64", b"Package: a", true));
    }

    #[test]
    fn an_ostree_laid_out_kernel_is_found_in_usr_lib_modules() {
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("usr/lib/modules/6.12.1-amd64");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("vmlinuz"), "k").unwrap();
        assert_eq!(initramfs_in(t.path()), None);
        std::fs::write(m.join("initramfs.img"), "i").unwrap();
        assert_eq!(
            initramfs_in(t.path()),
            Some(("6.12.1-amd64".into(), m.join("initramfs.img")))
        );
    }

    #[test]
    fn kernel_is_found_only_with_its_initrd() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("boot")).unwrap();
        std::fs::write(t.path().join("boot/vmlinuz-6.1.0-9-amd64"), "k").unwrap();
        assert_eq!(kernel_in(t.path()), None);
        std::fs::write(t.path().join("boot/initrd.img-6.1.0-9-amd64"), "i").unwrap();
        assert_eq!(kernel_in(t.path()).as_deref(), Some("6.1.0-9-amd64"));
        std::fs::write(t.path().join("boot/vmlinuz-6.1.0-8-amd64"), "k").unwrap();
        assert_eq!(kernel_in(t.path()), None);
    }
}
