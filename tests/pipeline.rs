//! The offline pipeline end to end with the real tools (mmdebstrap, podman, ostree, losetup,
//! extlinux), as root. The Debian base and the builds live in the shared test home, so they are
//! made once per CI run and reused by every test file.

mod common;

use bootlab::events::{CancellationToken, Cancelled, Emitter, Event};
use bootlab::paths::Paths;
use bootlab::pipeline::{self, branch};
use bootlab::recipe::Recipe;
use bootlab::tools::disk::{LoopDevice, MbrLayout, Mount};
use bootlab::tools::ostree::Repo;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

fn paths() -> Paths {
    Paths::under(&common::shared_home())
}

fn minimal() -> Recipe {
    bootlab::recipe::find("debian-minimal").unwrap()
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// File object checksums of a commit (`ostree ls -R -C`): what two commits share on disk.
fn file_objects(repo: &Path, commit: &str) -> HashSet<String> {
    sh(&format!(
        "ostree --repo={} ls -R -C {commit}",
        repo.display()
    ))
    .lines()
    .filter(|l| l.starts_with('-'))
    .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
    .collect()
}

/// A recipe in a temp folder, FROM the Debian base.
fn temp_recipe(root: &Path, name: &str, containerfile: &str) -> Recipe {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("recipe.toml"),
        format!(
            "name = \"{name}\"\ntitle = \"t\"\nsummary = \"s\"\nfamily = \"debian-ostree\"\n\
             base = \"{}\"\n\n[[versions]]\nid = \"v1\"\nchanges = \"c\"\n",
            pipeline::BASE_TAG
        ),
    )
    .unwrap();
    std::fs::write(d.join("Containerfile"), containerfile).unwrap();
    Recipe::load(&d).unwrap()
}

fn image_exists(tag: &str) -> bool {
    Command::new("podman")
        .args(["image", "exists", tag])
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_two_versions_commits_them_and_makes_a_bootable_disk() {
    if !common::require_root() {
        return;
    }
    let _l = common::heavy_lock();
    let (p, ev, c) = (paths(), Emitter::null(), CancellationToken::new());
    p.ensure().unwrap();
    let r = minimal();
    let v1 = r.version("v1").unwrap().clone();
    let v2 = r.version("v2").unwrap().clone();

    let b1 = pipeline::build_image(&p, &r, &v1, &ev, &c).await.unwrap();
    let b2 = pipeline::build_image(&p, &r, &v2, &ev, &c).await.unwrap();
    assert_ne!(b1.commit, b2.commit);
    assert_eq!(b1.image_tag, "localhost/bootlab/debian-minimal:v1");
    assert!(image_exists(&b1.image_tag) && image_exists(&b2.image_tag));

    // Both versions on the branch, with their metadata.
    let repo = Repo::at(p.ostree_repo());
    let log = repo.log(&branch("debian-minimal"), &c).await.unwrap();
    for (b, v) in [(&b1, "v1"), (&b2, "v2")] {
        let e = log
            .iter()
            .find(|e| e.commit == b.commit)
            .unwrap_or_else(|| panic!("{v} commit {} not on the branch: {log:?}", b.commit));
        assert_eq!(e.version.as_deref(), Some(v));
        let md = |k: &str| {
            let repo = repo.clone();
            let (k, commit, c) = (k.to_string(), b.commit.clone(), c.clone());
            async move { repo.metadata(&commit, &k, &c).await.unwrap() }
        };
        assert_eq!(
            md("bootlab.recipe").await.as_deref(),
            Some("debian-minimal")
        );
        assert_eq!(
            md("bootlab.image-digest").await.as_deref(),
            Some(b.image_digest.as_str())
        );
        assert!(b.image_digest.starts_with("sha256:"), "{}", b.image_digest);
        assert!(md("bootlab.build-time").await.unwrap().starts_with("20"));
    }

    // The layout inside the commit.
    let tree = |paths: &str| {
        sh(&format!(
            "ostree --repo={} ls -R {} {paths}",
            p.ostree_repo().display(),
            b1.commit
        ))
    };
    let ls = tree("/usr/etc/fstab /usr/share/bootlab/version /usr/lib/modules");
    assert!(
        ls.contains(&format!("/usr/lib/modules/{}/vmlinuz", b1.kernel)),
        "{ls}"
    );
    assert!(ls.contains("initramfs.img"), "{ls}");
    // bootlab's initramfs (pipeline/initramfs): the shell /init with ostree-prepare-root, the
    // drivers in load order and journald; no systemd, no udev.
    let cat = Command::new("ostree")
        .arg(format!("--repo={}", p.ostree_repo().display()))
        .args(["cat", &b1.commit])
        .arg(format!("/usr/lib/modules/{}/initramfs.img", b1.kernel))
        .output()
        .unwrap();
    assert!(cat.status.success(), "{cat:?}");
    let initramfs = cat.stdout;
    pipeline::initramfs::check_members(&initramfs).unwrap();
    let names = pipeline::initramfs::cpio_names(&initramfs).unwrap();
    let has = |name: &str| names.iter().any(|n| n == name);
    assert!(has("usr/lib/systemd/systemd-journald"), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(&format!("usr/lib/modules/{}/ext4.ko", b1.kernel))),
        "{names:?}"
    );
    for gone in [
        "usr/lib/systemd/systemd",
        "usr/bin/udevadm",
        "etc/initrd-release",
    ] {
        assert!(!has(gone), "{gone} in the initramfs: {names:?}");
    }
    // The slim base (guest-base.sh): of the documentation only the copyright files, no manual
    // pages or translations, no kernel modules for hardware a QEMU guest never has; the
    // drivers and file systems the guests use are there.
    let doc = tree("/usr/share/doc");
    let doc_files: Vec<&str> = doc.lines().filter(|l| !l.starts_with('d')).collect();
    assert!(doc_files.len() > 50, "{doc}");
    assert!(doc_files.iter().all(|l| l.ends_with("/copyright")), "{doc}");
    for gone in ["/usr/share/man", "/usr/share/locale"] {
        let l = tree(gone);
        assert!(
            l.lines()
                .all(|l| l.starts_with('d') || l.ends_with("locale.alias")),
            "{l}"
        );
    }
    let kernel = tree(&format!("/usr/lib/modules/{}/kernel", b1.kernel));
    for kept in [
        "/virtio_net.ko",
        "/virtio_blk.ko",
        "/fs/erofs/",
        "/fs/overlayfs/",
        "/net/9p/",
    ] {
        assert!(kernel.contains(kept), "{kept} missing:\n{kernel}");
    }
    for gone in [
        "/kernel/sound/",
        "/drivers/media/",
        "/drivers/net/wireless/",
    ] {
        assert!(!kernel.contains(gone), "{gone} still there");
    }
    let fstab = sh(&format!(
        "ostree --repo={} cat {} /usr/etc/fstab",
        p.ostree_repo().display(),
        b1.commit
    ));
    // / is mounted by ostree-prepare-root; /boot and the /var bind are in the fstab, mounted
    // by the initramfs (x-initrd.mount); /boot is not waited for by systemd (noauto).
    assert!(
        fstab.contains("LABEL=bootlab-boot /boot ext4 defaults,noauto,x-initrd.mount 0 0"),
        "{fstab}"
    );
    assert!(
        fstab.contains("/sysroot/ostree/deploy/debian/var /var none bind,x-initrd.mount 0 0"),
        "{fstab}"
    );
    assert!(!fstab.contains(" / "), "{fstab}");
    let v2_file = sh(&format!(
        "ostree --repo={} cat {} /usr/share/bootlab/version",
        p.ostree_repo().display(),
        b2.commit
    ));
    assert_eq!(v2_file.trim(), "v2");

    // v2 shares almost all of its file objects with v1 (only the recipe's files differ).
    let o1 = file_objects(&p.ostree_repo(), &b1.commit);
    let o2 = file_objects(&p.ostree_repo(), &b2.commit);
    let shared = o1.intersection(&o2).count() as f64 / o2.len() as f64;
    assert!(o2.len() > 1000, "{} objects", o2.len());
    assert!(
        shared > 0.9,
        "only {:.1}% of v2's objects shared",
        shared * 100.0
    );

    // An unchanged version is a cache hit: same commit, nothing rebuilt.
    let again = pipeline::build_image(&p, &r, &v1, &ev, &c).await.unwrap();
    assert!(again.cached);
    assert_eq!(again.commit, b1.commit);
    for s in ["build", "export", "convert+commit"] {
        let row = again.timings.iter().find(|t| t.stage == s).unwrap();
        assert!(row.cached, "{s} should be a hit: {:?}", again.timings);
    }

    // The golden disk of v1.
    let d = pipeline::make_disk(&p, "debian-minimal", "v1", &b1.commit, &ev, &c)
        .await
        .unwrap();
    assert!(d.path.starts_with(p.disks()));
    assert!(
        d.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains(&b1.commit[..12])
    );
    inspect_golden(&d.path, &b1.commit).await;
    let d2 = pipeline::make_disk(&p, "debian-minimal", "v1", &b1.commit, &ev, &c)
        .await
        .unwrap();
    assert!(d2.cached && d2.path == d.path);

    // A per-VM overlay on it.
    let t = tempfile::tempdir().unwrap();
    let o =
        bootlab::tools::qemu::img::overlay(&d.path, &t.path().join("vm.qcow2"), "overlay", &ev, &c)
            .await
            .unwrap();
    let info = sh(&format!("qemu-img info -U {}", o.display()));
    assert!(info.contains(&d.path.display().to_string()), "{info}");

    // Publishing moves the update share's branch to exactly the given commit (also backwards).
    let pb = pipeline::publish(&p, "debian-minimal", &b2.commit, &ev, &c)
        .await
        .unwrap();
    let up = pipeline::publish::update_repo(&p);
    assert_eq!(pb.repo, up.path);
    assert!(sh(&format!("cat {}/config", up.path.display())).contains("mode=archive"));
    let head = |c: CancellationToken| {
        let up = up.clone();
        async move { up.rev_parse("bootlab/debian-minimal", &c).await.unwrap() }
    };
    assert_eq!(head(c.clone()).await.as_deref(), Some(b2.commit.as_str()));
    pipeline::publish(&p, "debian-minimal", &b1.commit, &ev, &c)
        .await
        .unwrap();
    assert_eq!(head(c.clone()).await.as_deref(), Some(b1.commit.as_str()));
}

/// Loop-mount the golden disk read-only and check what the guest will boot.
async fn inspect_golden(disk: &Path, commit: &str) {
    let ev = Emitter::null();
    let layout = MbrLayout::new(pipeline::disk::DISK_SIZE, pipeline::disk::BOOT_SIZE);
    let sfdisk = sh(&format!("sfdisk --dump {}", disk.display()));
    assert!(sfdisk.contains("bootable"), "{sfdisk}");
    let mnt = tempfile::tempdir().unwrap();
    // Guards: whatever fails below, mounts go first, then the loop devices.
    let root_loop = LoopDevice::attach_read_only(disk, layout.root, "t", &ev)
        .await
        .unwrap();
    let boot_loop = LoopDevice::attach_read_only(disk, layout.boot, "t", &ev)
        .await
        .unwrap();
    let root = Mount::mount(&root_loop.dev, mnt.path(), Some("ro,noload"), "t", &ev)
        .await
        .unwrap();
    let boot = Mount::mount(
        &boot_loop.dev,
        &mnt.path().join("boot"),
        Some("ro,noload"),
        "t",
        &ev,
    )
    .await
    .unwrap();
    let m = mnt.path().display();

    let status = sh(&format!("ostree admin status --sysroot={m}"));
    // Seen from the host nothing is booted, so no `*`: the one deployment of the stateroot.
    assert!(status.contains(&format!("debian {commit}.0")), "{status}");
    assert!(status.contains("Version: v1"), "{status}");
    assert!(
        status.contains("origin refspec: bootlab:bootlab/debian-minimal"),
        "{status}"
    );

    let cfg = sh(&format!("cat {m}/boot/syslinux/syslinux.cfg"));
    assert!(
        cfg.contains("SERIAL 0 115200") && cfg.contains("PROMPT 0"),
        "{cfg}"
    );
    assert!(cfg.contains("LABEL "), "{cfg}");
    // ostree writes /boot/ostree/…; on the boot partition `boot -> .` makes that resolve.
    let kernel = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("KERNEL "))
        .unwrap_or_else(|| panic!("no KERNEL line: {cfg}"));
    assert!(
        kernel.contains("/ostree/debian-") && kernel.contains("vmlinuz"),
        "{cfg}"
    );
    assert!(
        Path::new(&format!("{m}/boot"))
            .join(kernel.trim_start_matches('/'))
            .is_file(),
        "extlinux would not find {kernel} on the boot partition"
    );
    assert!(cfg.contains("root=LABEL=bootlab-root"), "{cfg}");
    assert!(cfg.contains("console=ttyS0,115200"), "{cfg}");
    assert!(Path::new(&format!("{m}/boot/syslinux/ldlinux.sys")).is_file());

    let remote = sh(&format!(
        "ostree --repo={m}/ostree/repo remote show-url bootlab"
    ));
    assert_eq!(remote.trim(), "file:///run/bootlab/updates/repo");
    // The disk is made without fsyncs (`core.fsync=false`); the guest's repo must not keep that.
    let config = std::fs::read_to_string(format!("{m}/ostree/repo/config")).unwrap();
    assert!(!config.contains("fsync"), "{config}");
    // /var seeded from the image (dpkg's database is there, root's home too).
    assert!(Path::new(&format!("{m}/ostree/deploy/debian/var/lib/dpkg/status")).is_file());
    assert!(Path::new(&format!("{m}/ostree/deploy/debian/var/roothome")).is_dir());

    boot.unmount("t", &ev).await.unwrap();
    root.unmount("t", &ev).await.unwrap();
    boot_loop.detach("t", &ev).await.unwrap();
    root_loop.detach("t", &ev).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_containerfile_names_the_failing_step_and_its_log() {
    if !common::require_root() {
        return;
    }
    let _l = common::heavy_lock();
    let (p, ev, c) = (paths(), Emitter::null(), CancellationToken::new());
    let t = tempfile::tempdir().unwrap();
    let name = format!("broken-{}", fastrand::u32(..));
    let r = temp_recipe(
        t.path(),
        &name,
        &format!(
            "FROM {}\nRUN echo step-two-fine\nRUN echo bootlab-broken-marker && exit 7\n",
            pipeline::BASE_TAG
        ),
    );
    let v = r.default_version().clone();
    let e = pipeline::build_image(&p, &r, &v, &ev, &c)
        .await
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("STEP 3/3"), "{msg}");
    assert!(msg.contains("exit 7"), "{msg}");
    assert!(msg.contains("bootlab-broken-marker"), "{msg}");
    assert!(!image_exists(&r.image_tag("v1")));
    assert!(pipeline::build::last_build(&p, &name, "v1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_build_registers_nothing_and_leaves_no_container() {
    if !common::require_root() {
        return;
    }
    let _l = common::heavy_lock();
    let p = paths();
    let t = tempfile::tempdir().unwrap();
    let name = format!("cancelled-{}", fastrand::u32(..));
    // A unique marker defeats podman's layer cache, so the RUN really runs when we cancel.
    let r = temp_recipe(
        t.path(),
        &name,
        &format!(
            "FROM {}\nRUN echo {name} && sleep 300\n",
            pipeline::BASE_TAG
        ),
    );
    let v = r.default_version().clone();
    let containers = || sh("podman ps -a --external --format '{{.ID}}'");
    // The base first, so the only long thing below is the RUN.
    pipeline::ensure_base(&p, false, &Emitter::null(), &CancellationToken::new())
        .await
        .unwrap();
    let before: HashSet<String> = containers().lines().map(str::to_string).collect();

    let (ev, mut rx) = Emitter::channel();
    let cancel = CancellationToken::new();
    let job = {
        let (p, r, v, cancel) = (p.clone(), r.clone(), v.clone(), cancel.clone());
        tokio::spawn(async move { pipeline::build_image(&p, &r, &v, &ev, &cancel).await })
    };
    // Cancel once the slow RUN step is under way.
    let mut saw_progress = false;
    while let Some(s) = rx.recv().await {
        if let Event::Progress { label, .. } = &s.event {
            saw_progress = true;
            if label.contains("sleep 300") {
                break;
            }
        }
    }
    assert!(saw_progress, "no STEP progress events");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let started = std::time::Instant::now();
    cancel.cancel();
    let e = job.await.unwrap().unwrap_err();
    assert!(e.is::<Cancelled>(), "{e:#}");
    assert!(
        started.elapsed().as_secs() < 30,
        "cancel took {:?}",
        started.elapsed()
    );

    assert!(
        !image_exists(&r.image_tag("v1")),
        "a cancelled build was tagged"
    );
    assert!(pipeline::build::last_build(&p, &name, "v1").is_none());
    let repo = Repo::at(p.ostree_repo());
    assert!(
        repo.rev_parse(&branch(&name), &CancellationToken::new())
            .await
            .unwrap()
            .is_none()
    );
    // No build or export container of ours is left behind.
    let left: Vec<String> = containers()
        .lines()
        .filter(|id| !before.contains(*id))
        .map(str::to_string)
        .collect();
    let ours: Vec<&String> = left
        .iter()
        .filter(|id| {
            let info = sh(&format!(
                "podman ps -a --external --filter id={id} --format '{{{{.Names}}}} {{{{.Command}}}}'"
            ));
            // buildah's working container of the killed build, or our export container.
            info.contains("buildah") || info.contains("bootlab-export")
        })
        .collect();
    assert!(ours.is_empty(), "containers left: {ours:?}");
    // And no leftover staging folders.
    let work: Vec<_> = std::fs::read_dir(p.cache.join("builds"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".work-"))
        .collect();
    assert!(work.is_empty(), "staging left: {work:?}");
}

#[test]
fn cli_build_then_disk_make_again_is_all_cache_hits() {
    if !common::require_root() {
        return;
    }
    let _l = common::heavy_lock();
    let home = common::shared_home();
    for _ in 0..2 {
        let out = common::bootlab_in(&home, &["image", "build", "debian-minimal"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = common::bootlab_in(&home, &["disk", "make", "debian-minimal"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = common::bootlab_in(&home, &["disk", "make", "debian-minimal"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("5/5 stages were hits"), "{stdout}");
    for stage in ["base", "build", "export", "convert+commit", "disk"] {
        let row = stdout
            .lines()
            .skip_while(|l| !l.starts_with("stage "))
            .find(|l| l.starts_with(&format!("{stage} ")))
            .unwrap_or_else(|| panic!("no {stage} row: {stdout}"));
        assert!(row.ends_with("hit"), "{row}");
    }
    assert!(
        stdout.contains("disk    ") && stdout.contains(".raw"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_killed_disk_maker_are_reaped() {
    if !common::require_root() {
        return;
    }
    let ev = Emitter::null();
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join(".tmp-x-v1-1.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(32 * 1024 * 1024)
        .unwrap();
    sh(&format!("mkfs.ext4 -q -F {}", raw.display()));
    let part = bootlab::tools::disk::Part {
        offset: 0,
        size: 32 * 1024 * 1024,
    };
    // What a SIGKILLed disk maker leaves: a loop device and a mount nobody will undo.
    let lo = LoopDevice::attach(&raw, part, "t", &ev).await.unwrap();
    let mnt = d.path().join(".mnt-abc");
    let m = Mount::mount(&lo.dev, &mnt, None, "t", &ev).await.unwrap();
    let dev = lo.dev.clone();
    std::mem::forget(m);
    std::mem::forget(lo);
    assert!(sh("losetup -a").contains(&raw.display().to_string()));

    pipeline::disk::reap_leftovers(d.path(), &ev).await;
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    assert!(!sh("cat /proc/mounts").contains(&mnt.display().to_string()));
    let still = sh("losetup -a");
    assert!(
        !still.contains(&format!("{}:", dev.display())) || !still.contains(".tmp-x-v1-1.raw"),
        "{still}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_disk_leaves_no_disk_mount_or_loop_device() {
    if !common::require_root() {
        return;
    }
    let _l = common::heavy_lock();
    let (shared, c) = (paths(), CancellationToken::new());
    let r = minimal();
    let b1 = pipeline::build_image(&shared, &r, r.version("v1").unwrap(), &Emitter::null(), &c)
        .await
        .unwrap();
    // A home of its own (so no golden disk exists yet), holding the commit.
    let t = tempfile::tempdir().unwrap();
    let p = Paths::under(t.path());
    let own = Repo::at(p.ostree_repo());
    own.ensure(bootlab::tools::ostree::Mode::Bare, &Emitter::null(), &c)
        .await
        .unwrap();
    own.pull_local(
        &shared.ostree_repo(),
        &[&b1.commit],
        "t",
        &Emitter::null(),
        &c,
    )
    .await
    .unwrap();

    let (ev, mut rx) = Emitter::channel();
    let cancel = CancellationToken::new();
    let job = {
        let (p, commit, cancel) = (p.clone(), b1.commit.clone(), cancel.clone());
        tokio::spawn(async move {
            pipeline::make_disk(&p, "debian-minimal", "v1", &commit, &ev, &cancel).await
        })
    };
    // Cancel while both filesystems are mounted and ostree is deploying.
    while let Some(s) = rx.recv().await {
        if let Event::Command { argv, .. } = &s.event
            && argv.iter().any(|a| a == "deploy")
        {
            break;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    cancel.cancel();
    let e = job.await.unwrap().unwrap_err();
    assert!(e.is::<Cancelled>(), "{e:#}");

    // The UEFI loader, made beside the copy, is a cache every disk shares: it may stay.
    let left: Vec<String> = std::fs::read_dir(p.disks())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n != "uefi")
        .collect();
    assert!(left.is_empty(), "left in the disks folder: {left:?}");
    assert!(
        !sh("podman image mount").contains("debian-minimal"),
        "the image that deploys is left mounted"
    );
    let disks = p.disks().display().to_string();
    assert!(!sh("cat /proc/mounts").contains(&disks), "a mount is left");
    assert!(!sh("losetup -a").contains(&disks), "a loop device is left");
}
