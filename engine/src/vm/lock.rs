//! One bootlab process at a time starts a given VM: `vm up` holds an exclusive lock on
//! `<state>/locks/vm-<name>.lock` while it creates the record and waits for the guest. A second
//! process gets a clear message instead of two supervisors fighting over one overlay, and the
//! reaper can tell a record being written right now (locked) from one a crash left (unlocked).

use crate::paths::Paths;
use anyhow::{Result, bail};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

pub fn lock_path(paths: &Paths, name: &str) -> PathBuf {
    paths.state.join("locks").join(format!("vm-{name}.lock"))
}

/// Held while a VM is being started; the file is removed when released.
#[derive(Debug)]
pub struct VmLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl VmLock {
    /// Take the lock or say who holds it. A reaper probing the lock holds it for microseconds,
    /// so a busy lock is retried briefly before giving up.
    pub fn acquire(paths: &Paths, name: &str) -> Result<VmLock> {
        let path = lock_path(paths, name);
        if let Some(d) = path.parent() {
            crate::paths::create_private_dir(d)?;
        }
        for _ in 0..20 {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)?;
            // SAFETY: flock on a valid open fd.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                // The holder before us may have removed the file between our open and our lock:
                // then this lock guards nothing; take the new file's.
                let same = std::fs::metadata(&path)
                    .ok()
                    .zip(f.metadata().ok())
                    .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
                if !same {
                    continue;
                }
                let _ = f.set_len(0);
                let _ = std::io::Write::write_all(
                    &mut &f,
                    format!("{}\n", std::process::id()).as_bytes(),
                );
                return Ok(VmLock { path, _file: f });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let holder = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        bail!(
            "VM {name} is being started by another bootlab process{}; wait for it to finish (or `bootlab vm down {name} --force`)",
            holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )
    }
}

impl Drop for VmLock {
    fn drop(&mut self) {
        // Removed while still held, so nobody can lock the old file after we let go.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// True while some process holds the start lock of `name`.
pub fn is_held(paths: &Paths, name: &str) -> bool {
    let Ok(f) = std::fs::File::open(lock_path(paths, name)) else {
        return false;
    };
    // SAFETY: flock on a valid open fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        false
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_starter_is_refused_with_the_holder_named() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::under(d.path());
        assert!(!is_held(&paths, "a"));
        let l = VmLock::acquire(&paths, "a").unwrap();
        assert!(is_held(&paths, "a"));
        // flock locks belong to open files, so a second open in this process conflicts too.
        let e = VmLock::acquire(&paths, "a").unwrap_err().to_string();
        assert!(
            e.contains("another bootlab process") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        assert!(VmLock::acquire(&paths, "b").is_ok());
        drop(l);
        assert!(!is_held(&paths, "a"));
        assert!(!lock_path(&paths, "a").exists());
        let _again = VmLock::acquire(&paths, "a").unwrap();
    }
}
