//! VMs end to end, with real QEMU and the `debian-minimal` golden disk (built through the
//! pipeline in the tests' shared home, once; `BOOTLAB_TEST_GOLDEN=<raw disk>` reuses one instead).
//! One VM at a time (heavy_lock), and no QEMU may outlive a test.

mod common;

use bootlab::events::{CancellationToken, Emitter, Event};
use bootlab::paths::Paths;
use bootlab::tools::qemu::img::Format;
use bootlab::vm::{self, UpOptions, VmClient, VmEvent, VmRecord, VmState, images, procs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Asserts on drop that no process (QEMU or supervisor) names this VM's folder any more; kills
/// leftovers first so a failing test does not leak a VM into the next one.
struct NoLeftovers(PathBuf);

impl NoLeftovers {
    fn new(paths: &Paths, name: &str) -> NoLeftovers {
        NoLeftovers(VmRecord::dir(paths, name))
    }
}

impl Drop for NoLeftovers {
    fn drop(&mut self) {
        let needle = self.0.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut left = procs::mentioning(&needle);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = procs::mentioning(&needle);
        }
        for p in &left {
            procs::kill_verified(*p, &needle);
        }
        if !std::thread::panicking() {
            assert!(
                left.is_empty(),
                "processes left behind for {needle}: {left:?}"
            );
        }
        assert!(procs::qemus_under(&self.0).is_empty());
    }
}

fn paths() -> Paths {
    Paths::under(&common::shared_home())
}

/// The debian-minimal v1 golden disk in the shared home.
async fn golden(paths: &Paths) -> PathBuf {
    if let Some(g) = std::env::var_os("BOOTLAB_TEST_GOLDEN").filter(|v| !v.is_empty()) {
        // Linked into the shared home so cached booted images land there, not beside the source.
        let link = paths.disks().join("test-golden-debian-minimal-v1.raw");
        std::fs::create_dir_all(paths.disks()).unwrap();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&g, &link).unwrap();
        return link;
    }
    let r = bootlab::recipe::find("debian-minimal").unwrap();
    let v = r.resolve_version(Some("v1")).unwrap().clone();
    let (ev, rx) = Emitter::channel();
    let printer = print(rx);
    let cancel = CancellationToken::new();
    let b = bootlab::pipeline::build::build_image(paths, &r, &v, &ev, &cancel)
        .await
        .expect("build debian-minimal v1");
    let d = bootlab::pipeline::disk::make_disk(paths, r.name(), &v.id, &b.commit, &ev, &cancel)
        .await
        .expect("golden disk of debian-minimal v1");
    drop(ev);
    printer.await.unwrap();
    d.path
}

fn print(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<bootlab::events::Stamped>,
) -> tokio::task::JoinHandle<Vec<Event>> {
    tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(s) = rx.recv().await {
            match &s.event {
                Event::Log { .. } => {}
                e => eprintln!("{e:?}"),
            }
            all.push(s.event);
        }
        all
    })
}

fn options(name: &str) -> UpOptions {
    let r = bootlab::recipe::find("debian-minimal").unwrap();
    let mut o = UpOptions::new(name).for_recipe(&r, "v1");
    o.boot_timeout = Some(Duration::from_secs(400)); // a loaded CI machine; 240 s is the default
    o
}

#[tokio::test(flavor = "multi_thread")]
async fn boot_exec_snapshot_restore_powerdown() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let paths = paths();
    let golden = golden(&paths).await;
    // The golden disk as qcow2 (what `disk make --format qcow2` writes): the guest boots, saves
    // and restores its state over it as over the raw disk (a vmdk one boots but cannot save:
    // `golden_disk_in_every_format`).
    let qcow2 = bootlab::pipeline::disk::in_format(
        &golden,
        Format::Qcow2,
        &Emitter::null(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let name = format!("e2e-{}", std::process::id());
    let _guard = NoLeftovers::new(&paths, &name);
    let mut o = options(&name);
    o.golden = Some(qcow2);

    let (ev, rx) = Emitter::channel();
    let events = print(rx);
    let t = Instant::now();
    let rec = vm::up(&paths, o, &ev, &CancellationToken::new())
        .await
        .expect("boots");
    let boot = t.elapsed().as_secs_f64();
    assert_eq!(rec.state, VmState::Ready);
    assert!(rec.accel_reason.contains("TCG") || rec.accel_reason.contains("KVM"));
    drop(ev);
    let seen = events.await.unwrap();
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Log { line, .. } if !line.is_empty())),
        "console lines arrive as events while booting"
    );

    let info = std::process::Command::new("qemu-img")
        .args(["info", "-U"])
        .arg(&rec.overlay)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("backing file format: qcow2"), "{info}");

    let c = VmClient::connect(&paths, &name).await.unwrap();
    let st = c.exec(&["ostree", "admin", "status"]).await.unwrap();
    println!("ostree admin status:\n{}", st.stdout);
    assert!(st.success(), "{st:?}");
    assert!(st.stdout.contains("* debian "), "{}", st.stdout);
    assert!(st.stdout.contains("Version: v1"), "{}", st.stdout);
    let osr = c.exec(&["cat", "/etc/os-release"]).await.unwrap();
    assert!(osr.stdout.contains("Debian GNU/Linux 13"), "{}", osr.stdout);

    // Exit code and both streams come back as the guest produced them.
    let f = c.sh("echo out; echo err >&2; exit 3").await.unwrap();
    assert_eq!(
        (f.code, f.stdout.as_str(), f.stderr.as_str()),
        (Some(3), "out\n", "err\n")
    );
    let cli = common::bootlab()
        .args([
            "vm",
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo from-cli; exit 5",
        ])
        .output()
        .unwrap();
    assert_eq!(
        cli.status.code(),
        Some(5),
        "bootlab exits with the guest's code"
    );
    assert_eq!(String::from_utf8_lossy(&cli.stdout), "from-cli\n");
    let ls = common::bootlab()
        .args(["vm", "ls", "--json"])
        .output()
        .unwrap();
    let listed: Vec<VmRecord> = serde_json::from_slice(&ls.stdout).unwrap();
    assert!(
        listed
            .iter()
            .any(|r| r.name == name && r.state == VmState::Ready)
    );
    let hostname = c.read_file("/etc/os-release").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&hostname), osr.stdout);

    // dpkg's database is whole in /var: the disk maker unpacked the seed's info tar.
    let listed = c.exec(&["dpkg", "-L", "bash"]).await.unwrap();
    assert!(listed.success(), "{}", listed.stderr);
    assert!(listed.stdout.lines().any(|l| l == "/usr/bin/bash"));
    let tar = c
        .exec(&["test", "-e", "/var/lib/dpkg/info.tar"])
        .await
        .unwrap();
    assert!(!tar.success(), "the tar is unpacked and removed");

    // The update share is mounted once ready.
    let fs = c
        .exec(&["findmnt", "-n", "-o", "FSTYPE", "/run/bootlab/updates"])
        .await
        .unwrap();
    assert_eq!(fs.stdout.trim(), "9p");

    // Snapshot: save, change the guest, restore: the change is gone, the agent answers.
    let saved = c.snapshot_save("e2e").await.expect("snapshot save");
    assert!(
        saved.share_remounted,
        "the 9p share was unmounted for savevm and mounted again"
    );
    assert!(
        c.sh("touch /var/tmp/after-snapshot")
            .await
            .unwrap()
            .success()
    );
    let t = Instant::now();
    let restored = c
        .snapshot_restore("e2e", Duration::from_secs(120))
        .await
        .expect("restore");
    let restore = t.elapsed().as_secs_f64();
    let gone = c.sh("test -e /var/tmp/after-snapshot").await.unwrap();
    assert_eq!(gone.code, Some(1), "restore rewound the guest");
    let fs = c
        .exec(&["findmnt", "-n", "-o", "FSTYPE", "/run/bootlab/updates"])
        .await
        .unwrap();
    assert_eq!(fs.stdout.trim(), "9p", "share mounted again after restore");

    println!("\n{:<34} {:>8}", "", "seconds");
    println!(
        "{:<34} {:>8.1}",
        format!("cold boot to ready ({})", rec.accel.as_str()),
        boot
    );
    println!(
        "{:<34} {:>8.1}",
        "  (QEMU start to agent answering)",
        rec.ready_secs.unwrap()
    );
    println!("{:<34} {:>8.1}", "snapshot save", saved.secs);
    println!("{:<34} {:>8.1}", "snapshot restore to ready", restore);
    println!(
        "{:<34} {:>8.1}",
        "  (of which the snapshot-load job)", restored.secs
    );
    println!("{:<34} {:>8.1}x\n", "restore is faster by", boot / restore);
    // The ≥10× goal is measured by `cargo bench --bench workbench`, not asserted in a timed test.

    // Clean power-down: SHUTDOWN from the guest.
    let mut sub = c.subscribe().await.unwrap();
    let reason = c
        .powerdown(Duration::from_secs(180))
        .await
        .expect("powers down");
    assert!(
        reason.as_deref().unwrap_or("").contains("guest-shutdown"),
        "{reason:?}"
    );
    let mut saw_shutdown = false;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
        match &e.event {
            VmEvent::Qmp { event, .. } if event == "SHUTDOWN" => saw_shutdown = true,
            // Such as pressing the power button again (a press before logind watches it is lost).
            VmEvent::Note { text } => println!("power-down: {text}"),
            _ => {}
        }
    }
    assert!(saw_shutdown, "SHUTDOWN event delivered to subscribers");
    assert_eq!(
        VmRecord::load(&paths, &name).unwrap().state,
        VmState::Stopped
    );
    vm::down(&paths, &name, false, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!VmRecord::dir(&paths, &name).exists());
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_up(golden: &Path, name: &str) -> std::process::Child {
    common::bootlab()
        .args(["vm", "up", "debian-minimal", "--name", name, "--disk"])
        .arg(golden)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn booting(paths: &Paths, name: &str) -> Option<VmRecord> {
    VmRecord::load(paths, name)
        .ok()
        .filter(|r| r.state == VmState::Booting && r.qemu_pid.is_some())
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_supervisor_takes_qemu_along_and_is_reaped() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let paths = paths();
    let golden = golden(&paths).await;

    // 1. SIGKILL the supervisor (and the `vm up` that waited for it) mid-boot.
    let name = format!("kill-{}", std::process::id());
    let guard = NoLeftovers::new(&paths, &name);
    let mut up = spawn_up(&golden, &name);
    wait_for("booting", Duration::from_secs(60), || {
        booting(&paths, &name).is_some()
    });
    let rec = booting(&paths, &name).unwrap();
    let (sup, qemu) = (rec.supervisor_pid.unwrap(), rec.qemu_pid.unwrap());
    let qmp = rec.sockets.qmp.to_string_lossy().into_owned();
    assert!(procs::alive_with(qemu, &qmp));
    let _ = up.kill();
    let _ = up.wait();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        "QEMU to die with its supervisor",
        Duration::from_secs(10),
        || !procs::alive_with(qemu, &qmp),
    );
    // The record is stale until the next start clears it.
    assert_eq!(
        VmRecord::load(&paths, &name).unwrap().state,
        VmState::Booting
    );
    let reaped = vm::reap_stale(&paths);
    assert!(reaped.iter().any(|l| l.contains(&name)), "{reaped:?}");
    assert!(
        !VmRecord::dir(&paths, &name).exists(),
        "stale record cleared"
    );
    drop(guard);

    // 2. A supervisor whose record disappears ends its VM by itself.
    let name = format!("norec-{}", std::process::id());
    let guard = NoLeftovers::new(&paths, &name);
    let mut up = spawn_up(&golden, &name);
    wait_for("booting", Duration::from_secs(60), || {
        booting(&paths, &name).is_some()
    });
    let rec = booting(&paths, &name).unwrap();
    let _ = up.kill();
    let _ = up.wait();
    std::fs::remove_file(VmRecord::file(&VmRecord::dir(&paths, &name))).unwrap();
    let dir = VmRecord::dir(&paths, &name).to_string_lossy().into_owned();
    wait_for(
        "the supervisor to end its VM",
        Duration::from_secs(20),
        || {
            !procs::alive_with(rec.supervisor_pid.unwrap(), &dir)
                && !procs::alive_with(rec.qemu_pid.unwrap(), &dir)
        },
    );
    vm::reap_stale(&paths);
    let _ = std::fs::remove_dir_all(VmRecord::dir(&paths, &name));
    drop(guard);
}

#[tokio::test(flavor = "multi_thread")]
async fn start_from_booted_image_then_reboot() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let paths = paths();
    let golden = golden(&paths).await;
    let name = format!("booted-{}", std::process::id());
    let _guard = NoLeftovers::new(&paths, &name);
    let mut o = options(&name);
    let (ev, rx) = Emitter::channel();
    let printer = print(rx);
    let cancel = CancellationToken::new();
    let img = images::booted_image(&paths, &golden, &o, &ev, &cancel)
        .await
        .expect("booted image");
    o.image = Some(img);
    o.from_snapshot = Some(images::BOOTED_TAG.into());
    let t = Instant::now();
    let rec = vm::up(&paths, o, &ev, &cancel)
        .await
        .expect("starts from the booted snapshot");
    let start = t.elapsed().as_secs_f64();
    drop(ev);
    printer.await.unwrap();
    println!(
        "start from booted image to ready: {start:.1}s (agent after {:.1}s)",
        rec.ready_secs.unwrap()
    );
    assert!(start < 60.0, "a snapshot start took {start:.1}s");

    let c = VmClient::connect(&paths, &name).await.unwrap();
    assert!(c.exec(&["true"]).await.unwrap().success());
    let fs = c
        .exec(&["findmnt", "-n", "-o", "FSTYPE", "/run/bootlab/updates"])
        .await
        .unwrap();
    assert_eq!(
        fs.stdout.trim(),
        "9p",
        "share mounted after a snapshot start"
    );
    let boot_id = c
        .exec(&["cat", "/proc/sys/kernel/random/boot_id"])
        .await
        .unwrap()
        .stdout;

    // A guest started from the booted image saves and loads its own snapshots as any other
    // (a lab's step snapshots): the state file's load must leave no migration setting behind
    // that a snapshot's save into the qcow2 cannot use.
    assert!(
        c.exec(&["touch", "/run/before-snapshot"])
            .await
            .unwrap()
            .success()
    );
    c.snapshot_save("after-start").await.expect("snapshot save");
    assert!(
        c.exec(&["touch", "/run/after-snapshot"])
            .await
            .unwrap()
            .success()
    );
    // The restored guest's clock would go on from the save, 6 s behind; it is set to the host's.
    tokio::time::sleep(Duration::from_secs(6)).await;
    c.snapshot_restore("after-start", Duration::from_secs(120))
        .await
        .expect("snapshot restore");
    let guest_now = c.exec(&["date", "+%s.%N"]).await.unwrap().stdout;
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let skew = guest_now.trim().parse::<f64>().unwrap() - host_now;
    assert!(
        skew.abs() < 2.0,
        "the guest's clock after a snapshot load is {skew:.1} s off the host's"
    );
    let files = c
        .exec(&["ls", "/run/before-snapshot", "/run/after-snapshot"])
        .await
        .unwrap();
    assert!(
        files.stdout.contains("/run/before-snapshot") && !files.stdout.contains("after-snapshot"),
        "{files:?}"
    );

    // A guest reboot: QEMU stops at the reset (SHUTDOWN guest-reset) and the supervisor runs
    // the guest on in a new QEMU, from its disk (not the snapshot): rebooting, then ready.
    let mut sub = c.subscribe().await.unwrap();
    let qemu = rec.qemu_pid.unwrap();
    let t = Instant::now();
    c.reboot().await.expect("reboot");
    let after = c
        .wait_ready(Duration::from_secs(400))
        .await
        .expect("ready after reboot");
    println!("reboot to ready: {:.1}s", t.elapsed().as_secs_f64());
    let new_qemu = after.qemu_pid.expect("a QEMU after the reboot");
    assert_ne!(new_qemu, qemu, "a new QEMU after a guest reboot");
    assert!(
        !Path::new(&format!("/proc/{qemu}")).exists(),
        "the old QEMU {qemu} is gone"
    );
    let comm = std::fs::read_to_string(format!("/proc/{new_qemu}/comm")).unwrap();
    // The kernel keeps 15 bytes of a process name.
    let want = format!("bootlab-{name}");
    assert_eq!(comm.trim(), &want[..want.len().min(15)], "{comm}");
    let new_id = c
        .exec(&["cat", "/proc/sys/kernel/random/boot_id"])
        .await
        .unwrap()
        .stdout;
    assert_ne!(boot_id, new_id, "the guest really rebooted");
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
        seen.push(e.event);
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, VmEvent::Qmp { event, detail }
            if event == "SHUTDOWN" && detail.contains("reason=guest-reset"))),
        "{seen:?}"
    );
    let states: Vec<VmState> = seen
        .iter()
        .filter_map(|e| match e {
            VmEvent::State { state, .. } => Some(*state),
            _ => None,
        })
        .collect();
    let r = states
        .iter()
        .position(|s| *s == VmState::Rebooting)
        .expect("rebooting state");
    assert!(states[r..].contains(&VmState::Ready), "{states:?}");
    let fs = c
        .exec(&["findmnt", "-n", "-o", "FSTYPE", "/run/bootlab/updates"])
        .await
        .unwrap();
    assert_eq!(
        fs.stdout.trim(),
        "9p",
        "share mounted again after the reboot"
    );
    // /boot and /var are mounted by the initramfs (fstab: x-initrd.mount); systemd knows them
    // by their fstab lines (it also makes units from the mount table alone), never mounted
    // them itself, and the boot is clean.
    let boot = c
        .exec(&[
            "sh",
            "-c",
            "findmnt -n -o SOURCE,FSTYPE /boot; systemctl show -P SourcePath boot.mount; \
             findmnt -n -o SOURCE /var; systemctl show -P SourcePath var.mount; \
             systemctl is-system-running --wait; ls /boot/loader/entries; \
             systemctl show -P FragmentPath qemu-guest-agent.service; \
             echo share-modules $(systemctl show -P ConditionResult bootlab-share-modules.service) \
             $(systemctl show -P ExecMainStatus bootlab-share-modules.service); \
             journalctl -b -o cat -u boot.mount -u var.mount",
        ])
        .await
        .unwrap();
    let lines: Vec<&str> = boot.stdout.lines().map(str::trim).collect();
    assert!(
        lines.len() >= 6
            && lines[0].ends_with(" ext4")
            && lines[1] == "/etc/fstab"
            && lines[2].ends_with("[/ostree/deploy/debian/var]")
            && lines[3] == "/etc/fstab"
            && lines[4] == "running"
            && lines[5].ends_with(".conf")
            // bootlab's agent unit (no wait for udev's device of the port) answered.
            && lines.contains(&"/etc/systemd/system/qemu-guest-agent.service")
            // The 9p modules were loaded beside the boot.
            && lines.contains(&"share-modules yes 0")
            && !boot.stdout.contains("Mounting"),
        "{}\n{}",
        boot.stdout,
        boot.stderr
    );

    // Power cut: no clean shutdown, QEMU reports a host quit.
    let reason = c.powercut().await.unwrap();
    assert!(
        reason.as_deref().unwrap_or("").contains("host-qmp-quit"),
        "{reason:?}"
    );
    vm::down(&paths, &name, true, Duration::from_secs(10))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn boot_timeout_and_cancel_leave_nothing_behind() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let paths = paths();
    let golden = golden(&paths).await;

    // A guest that is not ready in time: a clear error with the console tail, nothing left.
    let name = format!("slow-{}", std::process::id());
    let guard = NoLeftovers::new(&paths, &name);
    let mut o = options(&name);
    o.golden = Some(golden.clone());
    // 4 s: the firmware, the bootloader and the kernel alone take ~3.6 s under TCG on the
    // fastest machine of this kind seen (2026-12-06: the agent after 9.5 s), where 12 s no
    // longer was too short.
    o.boot_timeout = Some(Duration::from_secs(4));
    let t = Instant::now();
    let err = vm::up(&paths, o, &Emitter::null(), &CancellationToken::new())
        .await
        .expect_err("4 s is too short for a TCG boot");
    let msg = format!("{err:#}");
    println!("{msg}");
    assert!(t.elapsed() < Duration::from_secs(60));
    assert!(
        msg.contains("did not become ready") && msg.contains("console tail"),
        "{msg}"
    );
    assert!(!VmRecord::dir(&paths, &name).exists());
    drop(guard);

    // Cancelled while booting: the caller gets `Cancelled` at once, the VM is gone.
    let name = format!("cancel-{}", std::process::id());
    let guard = NoLeftovers::new(&paths, &name);
    let mut o = options(&name);
    o.golden = Some(golden);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let p2 = paths.clone();
    let n2 = name.clone();
    tokio::spawn(async move {
        while booting(&p2, &n2).is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c2.cancel();
    });
    let err = vm::up(&paths, o, &Emitter::null(), &cancel)
        .await
        .expect_err("cancelled");
    assert!(
        err.root_cause().is::<bootlab::events::Cancelled>(),
        "{err:#}"
    );
    assert!(!VmRecord::dir(&paths, &name).exists());
    drop(guard);
}

/// Two `bootlab vm up` processes for the same name at the same moment (a presenter's double
/// click, a script run twice): exactly one starts the VM and its guest answers, the other is
/// refused with a message that says why, and there is only ever one QEMU for the name. Three
/// rounds, started from the booted snapshot so the two really overlap.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_racing_to_start_one_vm() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let paths = paths();
    let golden = golden(&paths).await;
    // Made once (cached); both racers then start from it.
    let img = images::booted_image(
        &paths,
        &golden,
        &options("race-prep"),
        &Emitter::null(),
        &CancellationToken::new(),
    )
    .await
    .expect("booted image");
    assert!(img.exists());
    for round in 0..3 {
        let name = format!("race-{}-{round}", std::process::id());
        let guard = NoLeftovers::new(&paths, &name);
        let spawn = || {
            common::bootlab()
                .args(["vm", "up", "debian-minimal", "--name", &name])
                .arg("--disk")
                .arg(&golden)
                .args(["--from-snapshot", "booted"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
        let lost: Vec<_> = outs.iter().filter(|o| !o.status.success()).collect();
        let text = |o: &std::process::Output| {
            format!(
                "exit {:?}\n{}{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        assert_eq!(
            (won.len(), lost.len()),
            (1, 1),
            "round {round}: one start, one refusal\n{}\n---\n{}",
            text(&outs[0]),
            text(&outs[1])
        );
        let refusal = String::from_utf8_lossy(&lost[0].stderr).into_owned();
        assert!(
            refusal.contains("being started by another bootlab process")
                || refusal.contains("already runs")
                || refusal.contains("is running"),
            "round {round}: the refusal says why: {refusal}"
        );
        let rec = VmRecord::load(&paths, &name).unwrap();
        assert_eq!(rec.state, VmState::Ready, "round {round}");
        let dir = VmRecord::dir(&paths, &name);
        assert_eq!(procs::qemus_under(&dir).len(), 1, "round {round}: one QEMU");
        let c = VmClient::connect(&paths, &name).await.unwrap();
        assert!(c.exec(&["true"]).await.unwrap().success(), "round {round}");
        eprintln!(
            "round {round}: refused with: {}",
            refusal.lines().last().unwrap_or_default()
        );
        vm::down(&paths, &name, true, Duration::from_secs(30))
            .await
            .unwrap();
        drop(guard);
    }
}

/// `disk make --format F` writes the golden disk as each format a learner may take elsewhere;
/// each holds exactly the golden's bytes (`qemu-img compare`), is named with its purpose, and is
/// reused on the next call. The vmdk one boots to a guest that answers, and saving its state is
/// refused with the reason (QEMU cannot migrate vmdk, vhdx or vdi). The qcow2 one boots, saves
/// and restores in `boot_exec_snapshot_restore_powerdown`.
#[tokio::test(flavor = "multi_thread")]
async fn golden_disk_in_every_format() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let paths = paths();
    let golden = golden(&paths).await;
    let make = |f: Format| {
        common::bootlab()
            .args([
                "disk",
                "make",
                "debian-minimal",
                "--version",
                "v1",
                "--format",
            ])
            .arg(f.name())
            .output()
            .unwrap()
    };
    for f in [Format::Qcow2, Format::Vmdk, Format::Vhdx, Format::Vdi] {
        let t = Instant::now();
        let out = make(f);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text
            .lines()
            .find(|l| l.starts_with(f.name()))
            .unwrap_or_else(|| panic!("no {} line in:\n{text}", f.name()));
        let path = PathBuf::from(line.split_whitespace().nth(1).unwrap());
        assert!(line.contains(f.purpose()), "{line}");
        assert_eq!(path.extension().unwrap(), f.name(), "{}", path.display());
        let info = std::process::Command::new("qemu-img")
            .args(["info", "-U", "--output=json"])
            .arg(&path)
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(
            info.contains(&format!("\"format\": \"{}\"", f.name())),
            "{info}"
        );
        let cmp = std::process::Command::new("qemu-img")
            .args(["compare", "-U", "-f", "raw", "-F", f.name()])
            .arg(&golden)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            cmp.status.success(),
            "{} differs from the golden: {}{}",
            path.display(),
            String::from_utf8_lossy(&cmp.stdout),
            String::from_utf8_lossy(&cmp.stderr)
        );
        let size = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "{}: {} ({:.0} MB) in {:.1}s, identical to the golden",
            f.name(),
            path.display(),
            size as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        // Made once: the next call reuses it.
        // (The golden disk's own "reusing" note is printed too: look for the conversion's.)
        let again = make(f);
        assert!(again.status.success());
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&again.stdout),
            String::from_utf8_lossy(&again.stderr)
        );
        assert!(
            said.contains(&format!("reusing {}", path.display()))
                && said.contains("made from this golden disk"),
            "{said}"
        );
    }
    let name = format!("vmdk-{}", std::process::id());
    let guard = NoLeftovers::new(&paths, &name);
    let mut o = options(&name);
    o.golden = Some(golden.with_extension("vmdk"));
    vm::up(&paths, o, &Emitter::null(), &CancellationToken::new())
        .await
        .expect("boots from the vmdk");
    let c = VmClient::connect(&paths, &name).await.unwrap();
    let v = c
        .exec(&["cat", "/usr/share/bootlab/version"])
        .await
        .unwrap();
    assert_eq!(v.stdout.trim(), "v1");
    let save = common::bootlab()
        .args(["vm", "snapshot", &name, "save", "s1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&save.stderr);
    assert!(!save.status.success(), "{err}");
    assert!(
        err.contains("cannot save VM state over") && err.contains("vmdk"),
        "{err}"
    );
    // Refused, not broken: the guest still answers.
    assert!(c.exec(&["true"]).await.unwrap().success());
    vm::down(&paths, &name, true, Duration::from_secs(30))
        .await
        .unwrap();
    drop(guard);

    let bad = common::bootlab()
        .args(["disk", "make", "debian-minimal", "--format", "iso"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("possible values"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// The same golden disk boots with UEFI: OVMF finds the GRUB on the disk's EFI system partition,
/// which boots what ostree's syslinux.cfg names (the deployment extlinux boots under BIOS).
/// Measured live beyond this test: the upgrade and rollback drills pass on such a VM (GRUB reads
/// the syslinux.cfg each deploy rewrites).
#[tokio::test(flavor = "multi_thread")]
async fn the_golden_disk_boots_with_uefi() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let paths = paths();
    let golden = golden(&paths).await;
    if std::env::var_os("BOOTLAB_TEST_GOLDEN").is_none() {
        assert_eq!(
            bootlab::pipeline::disk::golden_has_uefi(&golden),
            Some(true),
            "the disk maker put the UEFI loader on the ESP"
        );
    }
    let name = format!("uefi-{}", std::process::id());
    let _guard = NoLeftovers::new(&paths, &name);
    let mut o = options(&name);
    o.golden = Some(golden);
    o.firmware = bootlab::tools::qemu::Firmware::Uefi;
    let t = Instant::now();
    let rec = vm::up(&paths, o, &Emitter::null(), &CancellationToken::new())
        .await
        .expect("boots with UEFI");
    eprintln!(
        "UEFI boot to the guest agent {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(rec.firmware, bootlab::tools::qemu::Firmware::Uefi);
    let c = VmClient::connect(&paths, &name).await.unwrap();
    let efi = c
        .sh("cat /sys/firmware/efi/fw_platform_size && grep -o 'ostree=[^ ]*' /proc/cmdline")
        .await
        .unwrap();
    assert!(
        efi.success(),
        "the kernel was started by UEFI firmware: {efi:?}"
    );
    assert!(
        efi.stdout.starts_with("64\nostree=/ostree/boot."),
        "{efi:?}"
    );
    let console = String::from_utf8_lossy(&std::fs::read(&rec.console_log).unwrap()).into_owned();
    assert!(console.contains("GNU GRUB"), "GRUB's menu on the console");
    let st = c.exec(&["ostree", "admin", "status"]).await.unwrap();
    assert!(st.stdout.contains("Version: v1"), "{}", st.stdout);
    vm::down(&paths, &name, true, Duration::from_secs(30))
        .await
        .unwrap();
}
