//! How long work took before, so the faces can say what to expect while it runs: `[disk]
//! started (~6.1 s before)` (CLI), `… · disk 2.0s of ~6.1s before` (the TUI's status line), a
//! boot's phase line `… · ~16.7 s to the agent before`.
//!
//! Each finished stage that did its work (not a cache hit) and each boot to the guest agent is
//! kept under a key — the stage and what it worked on (`disk debian-minimal`, `boot
//! debian-minimal tcg cold`) — in `<state>/timings.json`: the last [`KEEP`] durations, whose
//! median is the expectation (one slow run on a busy machine does not set it). The file is a
//! record of this machine's past, not a promise: a key never measured has no expectation. Writers
//! take `<state>/locks/timings.lock` (a CLI, the TUI and VM supervisors write it), a file that does
//! not parse is set aside as `timings.json.broken` and the record starts again.

use crate::paths::Paths;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Durations kept per key.
pub const KEEP: usize = 5;

/// The timing record of one bootlab home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    file: PathBuf,
    lock: PathBuf,
}

type Record = BTreeMap<String, Vec<f64>>;

impl Timings {
    pub fn new(paths: &Paths) -> Timings {
        Timings::in_state(&paths.state)
    }

    /// The record of the state folder `state` (a VM supervisor knows its VM's folder only).
    pub fn in_state(state: &Path) -> Timings {
        Timings {
            file: state.join("timings.json"),
            lock: state.join("locks").join("timings.lock"),
        }
    }

    /// The median of the durations kept for `key`, if it was ever measured.
    pub fn expected(&self, key: &str) -> Option<f64> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        let rec: Record = serde_json::from_str(&text).ok()?;
        median(rec.get(key)?)
    }

    /// Keep `secs` as the latest duration of `key` (the oldest beyond [`KEEP`] goes).
    pub fn record(&self, key: &str, secs: f64) -> Result<()> {
        if !secs.is_finite() || secs < 0.0 {
            return Ok(());
        }
        let _lock = Lock::take(&self.lock)?;
        let mut rec: Record = match std::fs::read_to_string(&self.file) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(r) => r,
                Err(_) => {
                    // Kept for a look, never read again; the record starts afresh.
                    let aside = self.file.with_extension("json.broken");
                    std::fs::rename(&self.file, &aside)
                        .with_context(|| format!("set aside {}", self.file.display()))?;
                    Record::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Record::new(),
            Err(e) => return Err(e).with_context(|| format!("read {}", self.file.display())),
        };
        let v = rec.entry(key.to_string()).or_default();
        v.push((secs * 10.0).round() / 10.0);
        let drop = v.len().saturating_sub(KEEP);
        v.drain(..drop);
        let text = serde_json::to_string_pretty(&rec)?;
        crate::paths::write_atomic(&self.file, text.as_bytes())
            .with_context(|| format!("write {}", self.file.display()))
    }
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The key of a stage's timing: the stage, and what it worked on when that is known.
pub fn stage_key(stage: &str, subject: Option<&str>) -> String {
    match subject {
        Some(s) if !s.is_empty() => format!("{stage} {s}"),
        _ => stage.to_string(),
    }
}

/// An exclusive flock held while the record is read and written.
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn take(path: &Path) -> Result<Lock> {
        if let Some(d) = path.parent() {
            crate::paths::create_private_dir(d)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        // SAFETY: flock on a valid open fd; blocking, held for a read and a small write.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("lock {}", path.display()));
        }
        Ok(Lock { _file: f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        // One slow run on a busy machine does not set the expectation.
        assert_eq!(median(&[10.0, 11.0, 95.0]), Some(11.0));
    }

    #[test]
    fn keeps_the_last_five_per_key() {
        let d = tempfile::tempdir().unwrap();
        let t = Timings::new(&Paths::under(d.path()));
        assert_eq!(t.expected("disk debian-minimal"), None);
        for s in [9.0, 1.0, 2.0, 3.0, 4.0, 5.0] {
            t.record("disk debian-minimal", s).unwrap();
        }
        t.record("boot debian-minimal tcg cold", 17.04).unwrap();
        // 9.0 went: 1..5 are kept.
        assert_eq!(t.expected("disk debian-minimal"), Some(3.0));
        assert_eq!(t.expected("boot debian-minimal tcg cold"), Some(17.0));
        assert_eq!(t.expected("disk debian-web"), None);
    }

    #[test]
    fn a_damaged_record_is_set_aside() {
        let d = tempfile::tempdir().unwrap();
        let p = Paths::under(d.path());
        std::fs::create_dir_all(&p.state).unwrap();
        std::fs::write(p.state.join("timings.json"), "{\"disk\": [1.0,").unwrap();
        let t = Timings::new(&p);
        assert_eq!(t.expected("disk"), None);
        t.record("disk", 2.0).unwrap();
        assert_eq!(t.expected("disk"), Some(2.0));
        assert_eq!(
            std::fs::read_to_string(p.state.join("timings.json.broken")).unwrap(),
            "{\"disk\": [1.0,"
        );
    }

    #[test]
    fn keys_name_the_subject() {
        assert_eq!(
            stage_key("disk", Some("debian-minimal")),
            "disk debian-minimal"
        );
        assert_eq!(stage_key("disk", None), "disk");
        assert_eq!(stage_key("disk", Some("")), "disk");
    }
}
