//! The guest bases of the bootc family, offline:
//!
//! - [`OSTREE_BASE_TAG`]: trixie with libostree/composefs from testing, kernel, systemd, dracut
//!   initramfs with the ostree module in /usr/lib/modules, composefs on, the state folders in
//!   /var, podman and skopeo (bootc needs podman at run time), slim (no documentation, manual
//!   pages, translations or kernel modules for hardware QEMU never has: fewer files for every
//!   deploy and prune). No bootc: the offline ostree family can build on it too.
//! - [`BOOTC_BASE_TAG`]: that plus bootc from [`super::binary`], laid out as upstream does,
//!   `containers.bootc=1`, the small initramfs of [`crate::pipeline::initramfs`] and the
//!   housekeeping units masked as in the offline family's guests. `debian-bootc` recipes build FROM it.
//!
//! Both carry a key label and are reused while the key is the same.

use super::binary::{self, BootcBuild};
use super::trixie::{self, RootSpec};
use crate::events::{CancellationToken, Emitter, StageTimer, StageTiming};
use crate::paths::Paths;
use crate::pipeline::{GIB, HostLock, check_free_space};
use crate::tools::podman::{BuildSpec, Podman};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub const OSTREE_BASE_TAG: &str = "localhost/bootlab/debian-ostree-base:trixie";
pub const BOOTC_BASE_TAG: &str = "localhost/bootlab/debian-bootc-base:trixie";
pub const KEY_LABEL: &str = "bootlab.base-key";

/// From trixie. podman is needed by bootc itself (`bootc upgrade` fails "Creating imgstorage"
/// without it); dosfstools and fdisk by `bootc install`.
pub const PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "systemd-sysv",
    "udev",
    "dbus",
    "dracut",
    "skopeo",
    "podman",
    "dosfstools",
    "fdisk",
    "e2fsprogs",
    "qemu-guest-agent",
    "iproute2",
    "procps",
    "less",
    "kmod",
];
/// From testing (exact versions at build time).
pub const TESTING: &[&str] = &[
    "ostree",
    "libostree-1-1",
    "ostree-boot",
    "libcomposefs1",
    "libgpgme45",
];
pub const HOOK: &str = include_str!("guest-base.sh");

pub fn ostree_base_key() -> String {
    let mut h = Sha256::new();
    for part in [
        trixie::SUITE,
        &PACKAGES.join(","),
        &TESTING.join(","),
        trixie::TESTING_HOOK,
        HOOK,
    ] {
        h.update(part);
        h.update("\0");
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// What a base ensure found or made.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GuestBase {
    pub tag: String,
    pub image_id: String,
    pub key: String,
    pub cached: bool,
    pub timings: Vec<StageTiming>,
}

/// The trixie ostree base (no bootc): the offline family builds FROM it, the bootc base on it.
/// `rebuild` makes it again even when its key is the same.
pub async fn ensure_ostree_base(
    paths: &Paths,
    rebuild: bool,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<GuestBase> {
    let podman = Podman::probe(paths, ev, cancel).await?;
    let stage = "base";
    let timer = StageTimer::start(ev, stage);
    let key = ostree_base_key();
    let _lock = HostLock::acquire("base-trixie", ev, cancel).await?;
    if !rebuild
        && podman
            .image_label(OSTREE_BASE_TAG, KEY_LABEL, cancel)
            .await?
            .as_deref()
            == Some(&key)
    {
        ev.note(stage, format!("reusing {OSTREE_BASE_TAG} (key {key})"));
        return finish_base(&podman, key, true, timer, cancel).await;
    }
    let dir = paths.base();
    std::fs::create_dir_all(&dir)?;
    check_free_space(&dir, 3 * GIB, "the trixie base rootfs")?;
    let work = tempfile::Builder::new()
        .prefix(".trixie-")
        .tempdir_in(&dir)?;
    let hook = work.path().join("guest-base.sh");
    std::fs::write(&hook, HOOK)?;
    let tar = work.path().join("rootfs.tar");
    let spec = RootSpec {
        include: PACKAGES,
        testing: TESTING,
        hooks: vec![format!("sh {} \"$1\"", hook.display())],
    };
    trixie::make_rootfs(&spec, work.path(), &tar, stage, ev, cancel).await?;
    podman
        .import(
            &tar,
            OSTREE_BASE_TAG,
            &[
                "CMD [\"/bin/bash\"]".to_string(),
                format!("LABEL {KEY_LABEL}={key}"),
                "LABEL bootlab.known-password=root:bootlab".to_string(),
            ],
            stage,
            ev,
            cancel,
        )
        .await
        .context("podman could not import the trixie base")?;
    finish_base(&podman, key, false, timer, cancel).await
}

async fn finish_base(
    podman: &Podman,
    key: String,
    cached: bool,
    timer: StageTimer,
    cancel: &CancellationToken,
) -> Result<GuestBase> {
    let image_id = podman
        .image_id(OSTREE_BASE_TAG, cancel)
        .await?
        .context("the trixie base vanished")?;
    Ok(GuestBase {
        tag: OSTREE_BASE_TAG.into(),
        image_id,
        key,
        cached,
        timings: vec![timer.finish(cached)],
    })
}

/// The Containerfile that puts bootc on the ostree base.
const BOOTC_LAYER_HEAD: &str = r#"FROM localhost/bootlab/debian-ostree-base:trixie
# bootc as upstream's `make install install-ostree-hooks` lays it out (built by bootlab).
COPY root/ /
# What every bootc base has (lint baseimage-root): the sysroot mount point, /ostree into it;
# also in bootc's reference copy of a base root, as upstream's Makefile lays it out.
# /run is runtime-only (lint nonempty-run-tmp): the package installs left /run/lock in it.
RUN for r in / /usr/share/doc/bootc/baseimage/base/; do \
      mkdir -p ${r}sysroot && ln -sfn sysroot/ostree ${r}ostree; done \
 && rm -rf /run/lock \
 && (systemctl enable qemu-guest-agent.service 2>/dev/null || true)
LABEL containers.bootc=1
"#;

/// A shell command writing `text` (no `'` in it) to `dest`, its folder made first, on one line
/// for the Containerfile: printf turns the `\n` back into line breaks.
fn printf_to(text: &str, dest: &str) -> String {
    let dir = std::path::Path::new(dest).parent().unwrap().display();
    format!(
        "mkdir -p {dir} && printf '%b' '{}' > {dest}",
        text.replace('\n', "\\n")
    )
}

/// The awk program that writes what `layout::static_nodes_tmpfiles` writes (kmod-static-nodes
/// is masked in both families): the bootc layer runs it on the image's own modules.devname.
const STATIC_NODES_AWK: &str = r#"/^#/ || NF == 0 { next }
NF != 3 || $3 !~ /^[cb][0-9]+:[0-9]+$/ { print "modules.devname line " NR ": " $0 > "/dev/stderr"; exit 1 }
{ n = $2; if (n ~ /\//) { d = n; sub(/\/[^\/]*$/, "", d); print "d /dev/" d " 0755 - - -" }
  print substr($3, 1, 1) "! /dev/" n " 0600 - - - " substr($3, 2) }"#;

/// The bootc base's kargs.d file.
const BOOTLAB_KARGS: &str = "/usr/lib/bootc/kargs.d/10-bootlab.toml";

/// Where the bootc base's build context has the initramfs scripts ([`INITRAMFS_FILES`]), and
/// where the layer copies them for its RUN.
const INITRAMFS_DIR: &str = "/tmp/bootlab-initramfs";
/// The initramfs scripts in the bootc base's build context: (file name, text).
pub const INITRAMFS_FILES: &[(&str, &str)] = &[
    ("make.sh", crate::pipeline::initramfs::MAKE_SH),
    ("init.sh", crate::pipeline::initramfs::INIT_SH),
];

/// [`BOOTC_LAYER_HEAD`] plus bootlab's initramfs (`pipeline::initramfs`: a shell /init, no
/// systemd or udev), as the offline family's guests boot with: the base's generic one is 40 MB
/// of gzip -9 that the firmware reads through BIOS calls and the kernel inflates under TCG on
/// every boot, and its systemd and udev take seconds more. The deployment's initramfs comes from
/// the image here (bootc installs and upgrades the image as it is), so it is made in the image.
pub fn bootc_layer() -> String {
    let make = crate::pipeline::initramfs::make_argv(INITRAMFS_DIR, "$kver", "$img", true)
        .iter()
        .map(|a| {
            if a.starts_with('$') {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    // The member names from the cpio's headers (`cpio -it`), not a grep of its bytes: init.sh's
    // own text names the other members.
    let checks = std::iter::once(format!(
        "cpio -it --quiet < \"$img\" > {INITRAMFS_DIR}/members"
    ))
    .chain(
        crate::pipeline::initramfs::MEMBERS
            .iter()
            .map(|m| format!("grep -qxF {m} {INITRAMFS_DIR}/members")),
    )
    .collect::<Vec<_>>()
    .join(" && ");
    // The offline Debian families' own kernel arguments (pipeline::disk::DEBIAN_KARGS): bootc
    // applies kargs.d on install and upgrade.
    let kargs = printf_to(
        &format!(
            "# Written by bootlab: boot time under TCG (engine/src/pipeline/disk.rs, DEBIAN_KARGS).\nkargs = [{}]\n",
            crate::pipeline::disk::DEBIAN_KARGS
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        BOOTLAB_KARGS,
    );
    let files = INITRAMFS_FILES
        .iter()
        .map(|(f, _)| f.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    // Masked in /etc as in the offline family's guests (a learner can unmask them).
    let masks = crate::pipeline::layout::MASKS
        .iter()
        .flat_map(|(dir, names)| {
            std::iter::once(format!("mkdir -p /etc/{dir}")).chain(
                names
                    .iter()
                    .map(move |u| format!("ln -sfn /dev/null /etc/{dir}/{u}")),
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    // bootlab's own files under /etc (what udev's coldplug replays, the drivers it does not
    // load, the journal's flush only into a persistent journal).
    let own_files = crate::pipeline::layout::OWN_FILES
        .iter()
        .map(|(path, text)| printf_to(text, &format!("/etc/{path}")))
        .collect::<Vec<_>>()
        .join(" && ");
    // bootlab's own units, written and enabled as the offline family's.
    let own_units = crate::pipeline::layout::OWN_UNITS
        .iter()
        .map(|((path, text), (link, target))| {
            format!(
                "{} && mkdir -p /etc/{} && ln -sfn {target} /etc/{link}",
                printf_to(text, &format!("/etc/{path}")),
                std::path::Path::new(link).parent().unwrap().display()
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let static_nodes = format!(
        "awk '{}' \"/usr/lib/modules/$kver/modules.devname\" > /{}",
        STATIC_NODES_AWK.replace('\n', " "),
        crate::pipeline::layout::STATIC_NODES
    );
    format!(
        "{BOOTC_LAYER_HEAD}RUN {masks} && {own_files} && {own_units}\n\
         RUN {kargs}\n\
         COPY {files} {INITRAMFS_DIR}/\n\
         RUN set -- /usr/lib/modules/*/vmlinuz && [ $# -eq 1 ] && [ -f \"$1\" ] \\\n \
         && kver=$(basename \"$(dirname \"$1\")\") && img=/usr/lib/modules/$kver/initramfs.img \\\n \
         && {make} \\\n \
         && {checks} && chmod 0644 \"$img\" && rm -rf {INITRAMFS_DIR} \\\n \
         && {static_nodes}\n"
    )
}

/// The bootc base: the ostree base plus bootc (built or cached first).
pub async fn ensure_bootc_base(
    paths: &Paths,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<(GuestBase, BootcBuild)> {
    let bootc = binary::ensure_bootc(paths, ev, cancel).await?;
    let base = ensure_ostree_base(paths, false, ev, cancel).await?;
    let podman = Podman::probe(paths, ev, cancel).await?;
    let stage = "bootc-base";
    let timer = StageTimer::start(ev, stage);
    let key = {
        let mut h = Sha256::new();
        h.update(&base.image_id);
        h.update("\0");
        h.update(&bootc.key);
        h.update("\0");
        h.update(bootc_layer());
        h.update(crate::pipeline::initramfs::method_id());
        hex::encode(h.finalize())[..16].to_string()
    };
    let mut timings = base.timings.clone();
    timings.extend(bootc.timings.clone());
    let _lock = HostLock::acquire("base-trixie", ev, cancel).await?;
    let cached = podman
        .image_label(BOOTC_BASE_TAG, KEY_LABEL, cancel)
        .await?
        .as_deref()
        == Some(&key);
    if cached {
        ev.note(stage, format!("reusing {BOOTC_BASE_TAG} (key {key})"));
    } else {
        std::fs::create_dir_all(paths.base())?;
        let work = tempfile::Builder::new()
            .prefix(".bootc-base-")
            .tempdir_in(paths.base())?;
        let ctx = work.path();
        std::fs::write(ctx.join("Containerfile"), bootc_layer())?;
        for (name, text) in INITRAMFS_FILES {
            std::fs::write(ctx.join(name), text)?;
        }
        crate::tools::fetch::copy_tree(&bootc.root, &ctx.join("root"), stage, ev, cancel).await?;
        let iid = ctx.join("iid");
        let id = podman
            .build(
                &BuildSpec {
                    context_dir: ctx,
                    containerfile: &ctx.join("Containerfile"),
                    build_args: vec![],
                    target: None,
                    iidfile: &iid,
                },
                stage,
                ev,
                cancel,
            )
            .await
            .context("putting bootc on the trixie base")?;
        // The key goes on as a label of a tag-only layer so the cache check above sees it.
        let labelled = ctx.join("Containerfile.label");
        std::fs::write(&labelled, format!("FROM {id}\nLABEL {KEY_LABEL}={key}\n"))?;
        let id = podman
            .build(
                &BuildSpec {
                    context_dir: ctx,
                    containerfile: &labelled,
                    build_args: vec![],
                    target: None,
                    iidfile: &iid,
                },
                stage,
                ev,
                cancel,
            )
            .await?;
        podman.tag(&id, BOOTC_BASE_TAG, ev, cancel).await?;
    }
    let image_id = podman
        .image_id(BOOTC_BASE_TAG, cancel)
        .await?
        .context("the bootc base vanished")?;
    timings.push(timer.finish(cached));
    Ok((
        GuestBase {
            tag: BOOTC_BASE_TAG.into(),
            image_id,
            key,
            cached,
            timings,
        },
        bootc,
    ))
}

#[cfg(test)]
mod layer_tests {
    use super::*;

    /// The layer's awk writes the lines kmod wrote in a real guest (and the Rust the offline
    /// family uses): run with the host's awk on the captured modules.devname, as the layer's
    /// RUN line spells it.
    #[test]
    fn the_bootc_layers_static_nodes_are_kmods() {
        let dir = tempfile::tempdir().unwrap();
        let devname = include_str!(
            "../../../../tests/fixtures/static-nodes/modules.devname-6.12.118+deb13-amd64"
        );
        let kmod = include_str!(
            "../../../../tests/fixtures/static-nodes/kmod-static-nodes-6.12.118+deb13-amd64.conf"
        );
        let l = bootc_layer();
        let cmd = &l[l.find("awk '").unwrap()..];
        let cmd = cmd[..cmd.find(" > /").unwrap()].replace("$kver", "k");
        let run = |text: &str| {
            std::fs::create_dir_all(dir.path().join("usr/lib/modules/k")).unwrap();
            std::fs::write(dir.path().join("usr/lib/modules/k/modules.devname"), text).unwrap();
            std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd.replace("\"/usr", "\"usr"))
                .current_dir(dir.path())
                .output()
                .unwrap()
        };
        let out = run(devname);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), kmod);
        assert_eq!(
            crate::pipeline::layout::static_nodes_tmpfiles(devname).unwrap(),
            kmod
        );
        assert!(!run("tun net/tun c10\n").status.success());
        assert!(l.contains(&format!("> /{}\n", crate::pipeline::layout::STATIC_NODES)));
        assert!(!STATIC_NODES_AWK.contains('\''));
    }

    /// The layer's last RUN makes bootlab's initramfs with the scripts the build context has
    /// (copied in just before): one Containerfile instruction (every line but the last
    /// continued), exactly one kernel, the result checked, the scripts removed, the static
    /// nodes written for the same kernel; the housekeeping units are masked as in the offline
    /// family.
    #[test]
    fn the_bootc_layer_makes_bootlabs_initramfs() {
        let l = bootc_layer();
        assert!(
            l.contains("COPY make.sh init.sh /tmp/bootlab-initramfs/\n"),
            "{l}"
        );
        let run = &l[l.rfind("RUN set -- /usr/lib/modules/*/vmlinuz").unwrap()..];
        let lines: Vec<&str> = run.lines().collect();
        assert!(lines.len() > 1, "{run}");
        for line in &lines[..lines.len() - 1] {
            assert!(line.ends_with('\\'), "{line}");
        }
        assert!(run.contains("[ $# -eq 1 ]"), "{run}");
        assert!(
            run.contains(
                "sh /tmp/bootlab-initramfs/make.sh \"$kver\" \"$img\" \
                 /tmp/bootlab-initramfs/init.sh crc32c_generic,ext4,erofs \
                 virtio_pci,virtio_blk,autofs4,ip_tables,loop,overlay"
            ),
            "{run}"
        );
        assert!(
            run.contains(
                "cpio -it --quiet < \"$img\" > /tmp/bootlab-initramfs/members && grep -qxF init \
                 /tmp/bootlab-initramfs/members && grep -qxF etc/bootlab-modules \
                 /tmp/bootlab-initramfs/members"
            ),
            "{run}"
        );
        assert!(
            run.contains("rm -rf /tmp/bootlab-initramfs \\\n && awk '"),
            "{run}"
        );
        assert!(
            run.trim_end()
                .ends_with("> /usr/lib/tmpfiles.d/static-nodes.conf"),
            "{run}"
        );
        assert!(
            l.contains("printf '%b' '# Written by bootlab: boot time under TCG (engine/src/pipeline/disk.rs, DEBIAN_KARGS).\\nkargs = [\"lsm=lockdown,capability,landlock,yama,apparmor,tomoyo,ipe,ima,evm\"]\\n' > /usr/lib/bootc/kargs.d/10-bootlab.toml"),
            "{l}"
        );
        let names: Vec<&str> = INITRAMFS_FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["make.sh", "init.sh"]);
        assert!(
            l.contains("mkdir -p /etc/systemd/system/systemd-udev-trigger.service.d && printf '%b' '# Written by bootlab: udev coldplug replays"),
            "{l}"
        );
        assert!(
            l.contains("--prioritized-subsystem=virtio-ports,block,tpmrm,net,input\\n' > /etc/systemd/system/systemd-udev-trigger.service.d/bootlab-coldplug.conf"),
            "{l}"
        );
        // the drivers udev does not load, as in the offline family
        assert!(
            l.contains(
                "mkdir -p /etc/modprobe.d && printf '%b' '# Written by bootlab: drivers udev loaded"
            ),
            "{l}"
        );
        assert!(
            l.contains("blacklist aesni_intel\\n")
                && l.contains("\\n' > /etc/modprobe.d/bootlab-unused.conf"),
            "{l}"
        );
        for u in crate::pipeline::layout::MASKED_UNITS {
            assert!(
                l.contains(&format!("ln -sfn /dev/null /etc/systemd/system/{u}")),
                "{u} not masked in\n{l}"
            );
        }
        for g in crate::pipeline::layout::MASKED_GENERATORS {
            assert!(
                l.contains(&format!(
                    "ln -sfn /dev/null /etc/systemd/system-generators/{g}"
                )),
                "{g} not masked in\n{l}"
            );
        }
        // the journal's flush only with a persistent journal, as in the offline family
        assert!(
            l.contains(
                "> /etc/systemd/system/systemd-journal-flush.service.d/bootlab-volatile.conf"
            ),
            "{l}"
        );
        // The guest agent's own unit, written and enabled as the offline family's.
        assert!(
            l.contains("> /etc/systemd/system/qemu-guest-agent.service && mkdir -p /etc/systemd/system/multi-user.target.wants && ln -sfn ../qemu-guest-agent.service /etc/systemd/system/multi-user.target.wants/qemu-guest-agent.service"),
            "{l}"
        );
        assert!(l.contains("--path=/dev/$${p##*/}"), "{l}");
        assert!(
            l.contains("ln -sfn ../bootlab-share-modules.service /etc/systemd/system/sysinit.target.wants/bootlab-share-modules.service"),
            "{l}"
        );
    }
}
