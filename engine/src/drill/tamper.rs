//! The tamper drill: does the root notice when the bytes behind a file under /usr change?
//!
//! With composefs every file under / is an overlay entry whose content is an object in
//! `/sysroot/ostree/repo/objects`. The drill changes a few bytes of the object behind
//! [`FILE`] (as root: `/sysroot` remounted read-write), reads the file through `/` before and
//! after a reboot, then writes the saved bytes back. Detected means: the write was refused or the
//! read failed (what fs-verity does, `[composefs] enabled = verity`). With `enabled = true` the
//! changed bytes are served: the drill says so as a FAIL, "not detected", with the evidence.
//!
//! When the write is refused (an object with fs-verity cannot be opened for writing, even by
//! root), the drill goes one level down, as a bad disk or someone holding the disk would: it
//! changes the same bytes on the block device under the file system (`filefrag` gives the
//! object's block), reads the file through `/` (fs-verity must answer with an I/O error), and
//! writes the saved bytes back the same way.

use super::ops::{GuestOps, HostOps};
use super::run::{CheckFailed, Run, StepRec, argv};
use crate::deploy::composefs;
use anyhow::{Context, Result, anyhow};
use base64::Engine as _;

/// A file every Debian guest has (base-files), small, and read by nobody at boot.
pub const FILE: &str = "/usr/share/base-files/motd";
/// What is written at offset 1 of the object (the original bytes are saved and put back).
const BYTES: &str = "TAMPERED-by-bootlab";

fn sh(script: &str) -> Vec<String> {
    argv(&["sh", "-c", script])
}

/// `ostree ls -C COMMIT PATH` prints `-00644 0 0    286 <checksum> <path>`: the content object.
pub fn object_of_ls(line: &str) -> Option<String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let c = f.get(4)?;
    (c.len() == 64 && c.chars().all(|x| x.is_ascii_hexdigit()))
        .then(|| format!("/sysroot/ostree/repo/objects/{}/{}.file", &c[..2], &c[2..]))
}

/// The file's sha256 through `/`, after dropping the page cache so the bytes come from disk.
fn read_argv() -> Vec<String> {
    sh(&format!(
        "sync; echo 3 > /proc/sys/vm/drop_caches; sha256sum {FILE}"
    ))
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or_default().to_string()
}

/// Write `payload_cmd`'s output at offset 1 of `obj` with /sysroot briefly read-write. Only the
/// bind mount's flag changes: a plain `remount,ro` would make the whole file system read-only,
/// /var included (measured: `touch /var/y` then fails until the next boot).
fn write_argv(obj: &str, payload_cmd: &str) -> Vec<String> {
    sh(&format!(
        "mount -o remount,bind,rw /sysroot || exit 90; {payload_cmd} | dd of={obj} bs=1 seek=1 conv=notrunc; rc=$?; mount -o remount,bind,ro /sysroot; exit $rc"
    ))
}

/// Print `<device> <block>`: the block device under /sysroot and the physical 4 KiB block that
/// holds the first bytes of `obj` (its extent at logical block 0, as `filefrag -v` lists it).
fn locate_argv(obj: &str) -> Vec<String> {
    sh(&format!(
        "dev=$(findmnt -n -o SOURCE /sysroot | sed 's/\\[.*//'); \
         blk=$(filefrag -v -b4096 {obj} | awk '$1==\"0:\" && $2==\"0..\" {{print $4}}' | tr -d '.:'); \
         [ -b \"$dev\" ] && [ -n \"$blk\" ] || exit 91; echo \"$dev $blk\""
    ))
}

/// Write `payload_cmd`'s output on `dev` at byte 1 of block `blk`: under the file system, where
/// neither permissions nor fs-verity's write protection apply.
fn raw_write_argv(dev: &str, blk: u64, payload_cmd: &str) -> Vec<String> {
    sh(&format!(
        "{payload_cmd} | dd of={dev} bs=1 seek={} conv=notrunc,fsync",
        blk * 4096 + 1
    ))
}

/// Parse [`locate_argv`]'s `<device> <block>`.
fn parse_location(out: &str) -> Option<(String, u64)> {
    let mut w = out.split_whitespace();
    let dev = w.next()?.to_string();
    let blk = w.next()?.parse().ok()?;
    dev.starts_with("/dev/").then_some((dev, blk))
}

async fn read<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    s: &mut StepRec,
) -> Result<std::result::Result<String, String>> {
    let out = run.exec(s, read_argv(), &[FILE, "error"]).await?;
    Ok(if out.success() {
        Ok(first_word(&out.stdout))
    } else {
        Err(out.stderr.trim().to_string())
    })
}

/// Write the saved bytes back with `repair` and require the file to read as `before` again.
async fn put_back<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    step: &str,
    repair: Vec<String>,
    before: &str,
) -> Result<()> {
    let s = run.begin(step);
    let (mut s, _) = run.exec_ok(s, repair, &["copied"]).await?;
    let repaired = read(run, &mut s).await?;
    let repaired_s = repaired.unwrap_or_else(|e| format!("error: {e}"));
    let s = run.require(
        s,
        "the file reads as before after the repair",
        repaired_s == before,
        before.to_string(),
        repaired_s,
    )?;
    run.end(s, "the original bytes are back");
    Ok(())
}

pub async fn tamper<G: GuestOps, H: HostOps>(run: &mut Run<'_, G, H>) -> Result<String> {
    // 1. What protects the root right now.
    let mut s = run.begin("composefs state");
    let st = run
        .exec(&mut s, crate::deploy::ostree::status_argv(), &["*"])
        .await?;
    let status = crate::deploy::ostree::parse_text(&st.stdout)?;
    let booted = status
        .booted()
        .ok_or_else(|| anyhow!("the guest reports no booted deployment"))?
        .clone();
    let fm = run
        .exec(&mut s, argv(&["findmnt", "-J", "/"]), &["source", "fstype"])
        .await?;
    let mounted = fm.success() && composefs::root_is_composefs(&fm.stdout)?;
    let rec = run
        .exec(&mut s, argv(&["base64", "-w0", "/run/ostree-booted"]), &[])
        .await?;
    let verity = if rec.success() {
        let b = base64::engine::general_purpose::STANDARD
            .decode(rec.stdout.trim())
            .context("/run/ostree-booted from the guest")?;
        composefs::parse_booted_record(&b)?
            .into_iter()
            .find(|(k, _)| k == "composefs.verity")
            .map(|(_, v)| v)
            .unwrap_or(false)
    } else {
        false
    };
    run.fact("composefs.mounted", if mounted { "yes" } else { "no" });
    run.fact("verity.enforced", if verity { "yes" } else { "no" });
    run.end(
        s,
        format!(
            "root {} a composefs mount; fs-verity {} (/run/ostree-booted)",
            if mounted { "is" } else { "is not" },
            if verity { "enforced" } else { "not enforced" }
        ),
    );

    // 2. The object behind the file, its hash through /, the bytes we will change.
    let s = run.begin("find the object behind the file");
    let (mut s, ls) = run
        .exec_ok(
            s,
            argv(&["ostree", "ls", "-C", &booted.checksum, FILE]),
            &[FILE],
        )
        .await?;
    let obj = object_of_ls(ls.stdout.trim())
        .ok_or_else(|| anyhow!("no content checksum in `ostree ls` output {:?}", ls.stdout))?;
    let before = match read(run, &mut s).await? {
        Ok(h) => h,
        Err(e) => return Err(anyhow!("{FILE} cannot be read before tampering: {e}")),
    };
    let (s, saved) = run
        .exec_ok(
            s,
            sh(&format!(
                "dd if={obj} bs=1 skip=1 count={} 2>/dev/null | base64 -w0",
                BYTES.len()
            )),
            &[],
        )
        .await?;
    let saved = saved.stdout.trim().to_string();
    run.fact("object", obj.clone());
    run.fact("before.sha256", before.clone());
    run.end(s, format!("{FILE} is {obj}"));

    // 3. Change the object's bytes.
    let mut s = run.begin("change the object's bytes");
    let w = run
        .exec(
            &mut s,
            write_argv(&obj, &format!("printf %s {BYTES}")),
            &["copied", "denied", "ermission", "error"],
        )
        .await?;
    if !w.success() {
        let refused = w.stderr.trim().to_string();
        run.fact("tamper.write", "refused");
        run.end(
            s,
            format!("the object could not be opened for writing: {refused}"),
        );
        return under_the_file_system(run, &obj, &before, &saved, &refused).await;
    }
    run.end(s, format!("{} bytes written at offset 1", BYTES.len()));

    // 4. Read through /, now and after a reboot.
    let mut s = run.begin("read the file through /");
    let now = read(run, &mut s).await?;
    run.end(s, format!("{now:?}"));
    let mut s = run.begin("reboot, read again");
    run.reboot(&mut s).await?;
    let rebooted = read(run, &mut s).await?;
    run.end(s, format!("{rebooted:?}"));

    // 5. Put the saved bytes back, so the guest is as it was.
    let repair = write_argv(&obj, &format!("echo {saved} | base64 -d"));
    put_back(run, "repair the object", repair, &before).await?;

    let show = |r: &std::result::Result<String, String>| match r {
        Ok(h) => h.clone(),
        Err(e) => format!("read error: {e}"),
    };
    run.fact("after.sha256", show(&now));
    run.fact("after_reboot.sha256", show(&rebooted));
    let detected = now.is_err() || rebooted.is_err();
    run.fact(
        "tamper.detected",
        if detected { "read error" } else { "no" },
    );
    if detected {
        return Ok(format!(
            "detected: {FILE} could not be read after its object changed ({} / after reboot: {})",
            show(&now),
            show(&rebooted)
        ));
    }
    let why = if !mounted {
        "the root is not a composefs mount"
    } else if !verity {
        "fs-verity not enforced (prepare-root.conf [composefs] enabled = true)"
    } else {
        "fs-verity was reported enforced, yet the changed bytes were served"
    };
    Err(CheckFailed(format!(
        "not detected: {why}; {FILE} changed from {} to {} and stayed so after a reboot ({})",
        &before[..12.min(before.len())],
        show(&now).get(..12).unwrap_or_default(),
        show(&rebooted).get(..12).unwrap_or_default()
    ))
    .into())
}

/// The write through the file system was refused: change the same bytes on the block device,
/// read the file through `/`, put the bytes back (see the module docs).
async fn under_the_file_system<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    obj: &str,
    before: &str,
    saved: &str,
    refused: &str,
) -> Result<String> {
    let s = run.begin("change the bytes on the disk under the object");
    let (mut s, loc) = run.exec_ok(s, locate_argv(obj), &[]).await?;
    let (dev, blk) = parse_location(&loc.stdout)
        .ok_or_else(|| anyhow!("no `<device> <block>` for {obj}: {:?}", loc.stdout))?;
    let w = run
        .exec(
            &mut s,
            raw_write_argv(&dev, blk, &format!("printf %s {BYTES}")),
            &["copied", "error"],
        )
        .await?;
    let s = run.require(
        s,
        "the bytes are written on the block device",
        w.success(),
        "exit 0",
        if w.success() {
            "exit 0".to_string()
        } else {
            format!("exit {}: {}", w.exit, w.stderr.trim())
        },
    )?;
    run.fact("disk.block", format!("{dev} block {blk}"));
    run.end(
        s,
        format!("{} bytes written on {dev} in block {blk}", BYTES.len()),
    );

    let mut s = run.begin("read the file through /");
    let now = read(run, &mut s).await?;
    run.end(s, format!("{now:?}"));

    let repair = raw_write_argv(&dev, blk, &format!("echo {saved} | base64 -d"));
    put_back(run, "put the bytes on the disk back", repair, before).await?;

    match now {
        Err(e) => {
            run.fact("after.sha256", format!("read error: {e}"));
            run.fact("tamper.detected", "write refused; read error");
            Ok(format!(
                "detected: writing {obj} was refused ({refused}); the same bytes changed on {dev} \
                 under it could not be read through / ({e})"
            ))
        }
        Ok(h) => {
            run.fact("after.sha256", h.clone());
            run.fact(
                "tamper.detected",
                "write refused; changed bytes on the disk served",
            );
            Err(CheckFailed(format!(
                "half detected: writing {obj} was refused ({refused}), but the same bytes changed \
                 on {dev} under it were served through / ({FILE} changed from {} to {})",
                &before[..12.min(before.len())],
                &h[..12.min(h.len())]
            ))
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ostree_ls_line_names_the_object() {
        // Printed by `ostree ls -C` in the debian-bootc guest (ostree 2026.4).
        let l = "-00644 0 0    286 a00d99bf1ddfdd07f9514fced811f3233443aa61f9afd4de3b81fd2ae65a87bf /usr/share/base-files/motd";
        assert_eq!(
            object_of_ls(l).unwrap(),
            "/sysroot/ostree/repo/objects/a0/0d99bf1ddfdd07f9514fced811f3233443aa61f9afd4de3b81fd2ae65a87bf.file"
        );
        assert_eq!(object_of_ls("error: No such file"), None);
    }

    fn fx(n: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/composefs")
                .join(n),
        )
        .unwrap()
    }

    use crate::drill::ops::ExecOutput;
    use crate::drill::replay::{ReplayGuest, ReplayHost};
    use crate::drill::report::Verdict;

    const OBJ: &str = "/sysroot/ostree/repo/objects/a0/0d99bf1ddfdd07f9514fced811f3233443aa61f9afd4de3b81fd2ae65a87bf.file";
    const BEFORE: &str = "a378977155fb42bb006496321cbe31f74cbda803c3f6ca590f30e76d1afad921";
    const SAVED: &str = "VGhlIHByb2dyYW1zIGluY2x1ZA==";

    fn sum(h: &str) -> ExecOutput {
        ExecOutput::ok(format!("{h}  {FILE}\n"))
    }

    /// Run the drill against `guest`'s answers; its report.
    async fn replay(guest: &mut ReplayGuest, vm: &str) -> crate::drill::report::Report {
        let mut host = ReplayHost::new(vec![]);
        let mut run = Run::new(
            guest,
            &mut host,
            crate::events::Emitter::null(),
            crate::events::CancellationToken::new(),
        );
        let r = tamper(&mut run).await;
        run.finish("tamper", vm, "bootc", String::new(), r)
    }

    /// The guest's answers up to the write, as the debian-bootc guest gave them: commit `c`
    /// booted, its `/run/ostree-booted` and `findmnt -J /` from the fixtures `<prefix>-…`.
    fn answers_before_the_write(c: &str, prefix: &str) -> ReplayGuest {
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(fx(&format!("{prefix}-run-ostree-booted.gvariant")));
        ReplayGuest::new()
            .exec(
                &["ostree", "admin", "status"],
                ExecOutput::ok(format!("* default {c}.0\n    origin: <unknown origin type>\n")),
            )
            .exec(
                &["findmnt", "-J", "/"],
                ExecOutput::ok(
                    String::from_utf8(fx(&format!("{prefix}-findmnt-root.json"))).unwrap(),
                ),
            )
            .exec(&["base64", "-w0", "/run/ostree-booted"], ExecOutput::ok(b64))
            .exec(
                &["ostree", "ls", "-C", c, FILE],
                ExecOutput::ok(format!("-00644 0 0    286 a00d99bf1ddfdd07f9514fced811f3233443aa61f9afd4de3b81fd2ae65a87bf {FILE}\n")),
            )
            .exec_owned(read_argv(), sum(BEFORE))
            .exec_owned(
                sh(&format!("dd if={OBJ} bs=1 skip=1 count=19 2>/dev/null | base64 -w0")),
                ExecOutput::ok(SAVED),
            )
    }

    /// The drill against what the debian-bootc guest answered (ostree 2026.4, `enabled = true`):
    /// the change is served before and after the reboot, so the verdict is FAIL "not detected".
    #[tokio::test]
    async fn replayed_bootc_guest_without_verity_is_not_detected() {
        let c = "df923b856d76a15fcb9ff5c1674843fa4d64e3ee61c455217369ed42816f59c8";
        let (obj, before, saved) = (OBJ, BEFORE, SAVED);
        let after = "a79d0316f1671cc91e45fac36e3c055c755ec27aebbb84116bc1c4e62224d50b";
        let mut guest = answers_before_the_write(c, "bootc")
            .exec_owned(
                write_argv(obj, &format!("printf %s {BYTES}")),
                ExecOutput::ok(""),
            )
            .exec_owned(read_argv(), sum(after))
            .reboot()
            .exec_owned(read_argv(), sum(after))
            .exec_owned(
                write_argv(obj, &format!("echo {saved} | base64 -d")),
                ExecOutput::ok(""),
            )
            .exec_owned(read_argv(), sum(before));
        let report = replay(&mut guest, "b").await;
        assert_eq!(report.verdict, Verdict::Fail, "{}", report.reason);
        assert!(
            report
                .reason
                .starts_with("not detected: fs-verity not enforced"),
            "{}",
            report.reason
        );
        assert_eq!(report.facts["tamper.detected"], "no");
        assert_eq!(report.facts["after_reboot.sha256"], after);
        assert!(guest.remaining().is_empty(), "{:?}", guest.remaining());
    }

    /// The drill against what the debian-bootc v4 guest answered (`enabled = verity`, every
    /// object with fs-verity, 2026-12-02): the write through the file system is refused, the same
    /// bytes changed on the block device read as an I/O error, and the repair restores the file.
    /// The answers are those of the first live run (block 574560); the report kept in
    /// `bootc-verity-tamper-report.json` is of a later run on a fresh disk (another block).
    #[tokio::test]
    async fn replayed_bootc_guest_with_verity_refuses_and_reads_an_error() {
        let c = "273ad7b63f6619cfa64632c19fb705fd1ed596ef5d93e0b38d0dd8a398a60661";
        let (obj, before, saved) = (OBJ, BEFORE, SAVED);
        let mut guest = answers_before_the_write(c, "bootc-verity")
            .exec_owned(
                write_argv(obj, &format!("printf %s {BYTES}")),
                ExecOutput::failed(
                    1,
                    format!("dd: failed to open '{obj}': Operation not permitted\n"),
                ),
            )
            .exec_owned(locate_argv(obj), ExecOutput::ok("/dev/vda2 574560\n"))
            .exec_owned(
                raw_write_argv("/dev/vda2", 574560, &format!("printf %s {BYTES}")),
                ExecOutput::ok(""),
            )
            .exec_owned(
                read_argv(),
                ExecOutput::failed(1, format!("sha256sum: {FILE}: Input/output error\n")),
            )
            .exec_owned(
                raw_write_argv("/dev/vda2", 574560, &format!("echo {saved} | base64 -d")),
                ExecOutput::ok(""),
            )
            .exec_owned(read_argv(), sum(before));
        let report = replay(&mut guest, "c").await;
        assert_eq!(report.verdict, Verdict::Pass, "{}", report.reason);
        assert!(
            report.reason.contains("Operation not permitted"),
            "{}",
            report.reason
        );
        assert!(
            report.reason.contains("Input/output error"),
            "{}",
            report.reason
        );
        assert_eq!(report.facts["verity.enforced"], "yes");
        assert_eq!(report.facts["tamper.detected"], "write refused; read error");
        assert_eq!(report.facts["disk.block"], "/dev/vda2 block 574560");
        assert!(guest.remaining().is_empty(), "{:?}", guest.remaining());
        // The live run said the same.
        let live: serde_json::Value =
            serde_json::from_slice(&fx("bootc-verity-tamper-report.json")).unwrap();
        assert_eq!(live["verdict"], "pass");
        assert!(
            live["facts"]["disk.block"]
                .as_str()
                .is_some_and(|b| b.starts_with("/dev/vda2 block ")),
            "{}",
            live["facts"]
        );
        assert_eq!(
            live["facts"]["tamper.detected"],
            "write refused; read error"
        );
    }

    #[test]
    fn the_location_is_a_device_and_a_block() {
        assert_eq!(
            parse_location("/dev/vda2 574560\n"),
            Some(("/dev/vda2".into(), 574560))
        );
        assert_eq!(parse_location("574560"), None);
        assert_eq!(parse_location("vda2 x"), None);
    }

    /// fs-verity refuses the write, yet the bytes changed on the block device are served (no
    /// verity enforced on read): the drill must not call that detected.
    #[tokio::test]
    async fn a_refused_write_with_changed_bytes_served_is_half_detected() {
        let c = "273ad7b63f6619cfa64632c19fb705fd1ed596ef5d93e0b38d0dd8a398a60661";
        let after = "a79d0316f1671cc91e45fac36e3c055c755ec27aebbb84116bc1c4e62224d50b";
        let mut guest = answers_before_the_write(c, "bootc-verity")
            .exec_owned(
                write_argv(OBJ, &format!("printf %s {BYTES}")),
                ExecOutput::failed(1, "dd: failed to open: Operation not permitted\n"),
            )
            .exec_owned(locate_argv(OBJ), ExecOutput::ok("/dev/vda2 574560\n"))
            .exec_owned(
                raw_write_argv("/dev/vda2", 574560, &format!("printf %s {BYTES}")),
                ExecOutput::ok(""),
            )
            .exec_owned(read_argv(), sum(after))
            .exec_owned(
                raw_write_argv("/dev/vda2", 574560, &format!("echo {SAVED} | base64 -d")),
                ExecOutput::ok(""),
            )
            .exec_owned(read_argv(), sum(BEFORE));
        let report = replay(&mut guest, "c").await;
        assert_eq!(report.verdict, Verdict::Fail, "{}", report.reason);
        assert!(
            report.reason.starts_with("half detected"),
            "{}",
            report.reason
        );
        assert_eq!(
            report.facts["tamper.detected"],
            "write refused; changed bytes on the disk served"
        );
        assert_eq!(report.facts["after.sha256"], after);
        assert!(guest.remaining().is_empty(), "{:?}", guest.remaining());
    }
}
