//! Disks VMs start from: the pipeline's golden raw disks, and cached "booted" images (a qcow2
//! overlay on a golden disk plus the machine state of the guest just after it became ready: a
//! `mapped-ram` file beside it, or with a QEMU older than 9 an internal snapshot inside it), so
//! tests and labs start a ready guest in about a second instead of a cold boot.

use super::lifecycle::{UpOptions, up};
use super::{VmClient, VmRecord};
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The snapshot tag inside a booted image.
pub const BOOTED_TAG: &str = "booted";

/// Path of the booted image for `golden` with this machine shape. The machine shape is in the
/// name because a snapshot only loads into the same devices, memory and accelerator.
pub fn booted_path(golden: &Path, o: &UpOptions, accel: crate::tools::qemu::Accel) -> PathBuf {
    // `x.raw` → `x.booted-…`; a converted golden keeps its extension (`x.vmdk.booted-…`), so
    // the two never share (and keep remaking) one booted image.
    let stem = match golden.extension() {
        Some(e) if e == "raw" => golden.file_stem(),
        _ => golden.file_name(),
    }
    .map(|s| s.to_string_lossy().into_owned())
    .unwrap_or_default();
    golden.with_file_name(format!(
        "{stem}.booted-{}-{}m-{}c{}{}.qcow2",
        accel.as_str(),
        o.memory_mib,
        o.cpus,
        if o.share { "" } else { "-noshare" },
        match o.firmware {
            crate::tools::qemu::Firmware::Bios => "",
            crate::tools::qemu::Firmware::Uefi => "-uefi",
        }
    ))
}

/// Which file this is, not what it is called: device, inode and modification time (a file
/// renamed over the old one, as the disk maker does, has another inode).
fn file_identity(p: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).with_context(|| format!("golden disk {}", p.display()))?;
    Ok(format!(
        "golden {}:{} {}.{:09} {}",
        m.dev(),
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.len()
    ))
}

/// The machine state saved beside a booted image (`x.booted-….vmstate`), when the QEMU that
/// made it saves state files (QEMU 9 and later, [`crate::tools::qemu::saves_state_files`]);
/// with an older QEMU the state is an internal snapshot inside the image.
pub fn state_file(image: &Path) -> PathBuf {
    image.with_extension("vmstate")
}

/// What a booted image's stamp says: the QEMU and golden file it was saved with, its length and,
/// when its machine state is a file beside it, that file's length.
fn stamp_text(qemu_and_golden: &str, image_len: u64, state_len: Option<u64>) -> String {
    match state_len {
        Some(n) => format!(
            "{qemu_and_golden}\nbooted image {image_len} bytes\nmachine state file {n} bytes"
        ),
        None => format!("{qemu_and_golden}\nbooted image {image_len} bytes"),
    }
}

/// The booted image for `golden`, made on first use: boot a throwaway VM once, save its machine
/// state when the agent answers (a state file, [`state_file`], or an internal snapshot), cut the
/// power and keep its qcow2 next to the golden disk.
pub async fn booted_image(
    paths: &Paths,
    golden: &Path,
    o: &UpOptions,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PathBuf> {
    // The image lives beside the golden disk as named (a symlinked golden keeps its images in
    // the linking folder); the overlay is backed by the real file.
    let named = golden.to_path_buf();
    let golden = std::fs::canonicalize(golden)
        .with_context(|| format!("golden disk {}", golden.display()))?;
    let accel = match o.accel {
        Some(a) => a,
        None => crate::tools::qemu::choose_accel(paths, ev, cancel).await.0,
    };
    let dest = booted_path(&named, o, accel);
    // A saved VM state only loads into the QEMU that saved it, and only over the very golden
    // file it was saved on (a golden made again at the same path — kernel arguments changed, a
    // disk cut short — has new filesystems under the same name): the image records both.
    let stamp = dest.with_extension("qemu");
    let version = crate::tools::qemu::kvm_probe::qemu_version().await?;
    let state_files = crate::tools::qemu::saves_state_files(&version);
    let qemu = format!("{version}\n{}", file_identity(&golden)?);
    let state = state_file(&dest);
    // The image's own length is recorded too (and its state file's): one cut short (a crash,
    // a full disk) is made again, never booted. An image of the other kind (an internal
    // snapshot where this QEMU saves a state file) has another stamp and is made again too.
    let fresh = |dest: &Path| {
        let state_len = match std::fs::metadata(&state) {
            Ok(m) if state_files => Some(m.len()),
            Err(_) if state_files => return false,
            _ => None,
        };
        std::fs::metadata(dest).is_ok_and(|m| {
            std::fs::read_to_string(&stamp)
                .is_ok_and(|s| s.trim() == stamp_text(&qemu, m.len(), state_len))
        })
    };
    if fresh(&dest) {
        return Ok(dest);
    }
    // One maker at a time; the others then find it made.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dest.with_extension("lock"))?;
    let lock = tokio::task::spawn_blocking(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a valid fd we own.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        lock
    })
    .await?;
    if fresh(&dest) {
        return Ok(dest);
    }
    // Under the lock no other maker runs: a `booted-…` VM still up on this golden disk belongs
    // to a maker that was killed (its VM would otherwise run on, unowned, for good).
    for r in super::lifecycle::list(paths) {
        if r.name.starts_with("booted-") && r.golden.as_deref() == Some(golden.as_path()) {
            ev.note(
                "vm",
                format!(
                    "reaping {}: left by a booted-image maker that did not finish",
                    r.name
                ),
            );
            let _ = super::lifecycle::stop(paths, &r.name, true, Duration::from_secs(10)).await;
            let _ = std::fs::remove_dir_all(VmRecord::dir(paths, &r.name));
        }
    }
    let _ = std::fs::remove_file(&dest);
    let _ = std::fs::remove_file(&state);
    let name = format!("booted-{}", fastrand::u32(..));
    let stage = crate::events::vm_stage(&name);
    ev.note(
        &stage,
        format!(
            "making the booted image {} (one cold boot, then a snapshot)",
            dest.display()
        ),
    );
    let mut vo = UpOptions::new(&name);
    vo.golden = Some(golden.clone());
    vo.memory_mib = o.memory_mib;
    vo.cpus = o.cpus;
    vo.share = o.share;
    vo.accel = Some(accel);
    vo.firmware = o.firmware;
    vo.boot_timeout = o.boot_timeout;
    vo.keep = true;
    let rec = match up(paths, vo, ev, cancel).await {
        Ok(r) => r,
        Err(e) => {
            // `up` undoes a failed start; make sure no `booted-…` record outlives it either way.
            let _ = super::lifecycle::stop(paths, &name, true, Duration::from_secs(10)).await;
            let _ = std::fs::remove_dir_all(VmRecord::dir(paths, &name));
            return Err(e);
        }
    };
    let result = async {
        let c = VmClient::connect(paths, &name).await?;
        let state_tmp = state.with_extension("vmstate-tmp");
        let state_len = if state_files {
            // The guest stays stopped after the save, so the power cut below leaves its disk
            // exactly as the state expects it.
            let d = c.state_save(&state_tmp).await?;
            ev.note(&stage, format!("machine state saved in {:.1}s", d.secs));
            Some(std::fs::metadata(&state_tmp)?.len())
        } else {
            let d = c.snapshot_save(BOOTED_TAG).await?;
            ev.note(
                &stage,
                format!("snapshot {BOOTED_TAG} saved in {:.1}s", d.secs),
            );
            None
        };
        c.powercut().await?;
        super::lifecycle::stop(paths, &name, true, Duration::from_secs(10)).await?;
        let tmp = dest.with_extension("tmp");
        if std::fs::rename(&rec.overlay, &tmp).is_err() {
            std::fs::copy(&rec.overlay, &tmp)?;
        }
        let len = std::fs::metadata(&tmp)?.len();
        if state_files {
            std::fs::rename(&state_tmp, &state)?;
        }
        std::fs::write(&stamp, stamp_text(&qemu, len, state_len))?;
        std::fs::rename(&tmp, &dest)?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = super::lifecycle::stop(paths, &name, true, Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(VmRecord::dir(paths, &name));
    let _ = std::fs::remove_file(state.with_extension("vmstate-tmp"));
    result?;
    drop(lock);
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk maker renames a new golden over the old path: the booted image must notice.
    #[test]
    fn a_golden_made_again_has_another_identity() {
        let t = tempfile::tempdir().unwrap();
        let g = t.path().join("g.raw");
        std::fs::write(&g, b"old").unwrap();
        let before = file_identity(&g).unwrap();
        assert_eq!(before, file_identity(&g).unwrap());
        let tmp = t.path().join(".tmp-g.raw");
        std::fs::write(&tmp, b"new").unwrap();
        std::fs::rename(&tmp, &g).unwrap();
        assert_ne!(before, file_identity(&g).unwrap());
    }
}
