//! A learner's progress through one lab, kept in `<state>/labs/<lab-id>.json` so a lab resumes
//! after the guest reboots and after bootlab restarts. Written atomically: a crash never leaves
//! half a file.

use crate::paths::{Paths, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    pub lab: String,
    /// The step the learner is on (the next one to do), `None` before the first.
    pub current: Option<String>,
    /// Steps whose checks all passed, in the order they passed.
    pub passed: Vec<String>,
    /// Per step: how many hints were revealed.
    pub hints_revealed: BTreeMap<String, usize>,
    /// The VM the lab runs in.
    pub vm: Option<String>,
    pub updated_unix: u64,
}

impl Progress {
    pub fn file(paths: &Paths, lab_id: &str) -> PathBuf {
        paths.lab_progress().join(format!("{lab_id}.json"))
    }

    /// The saved progress, or a fresh one when the lab was never started.
    pub fn load(paths: &Paths, lab_id: &str) -> Result<Progress> {
        let f = Self::file(paths, lab_id);
        match std::fs::read(&f) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", f.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress {
                lab: lab_id.to_string(),
                ..Default::default()
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", f.display())),
        }
    }

    pub fn save(&mut self, paths: &Paths) -> Result<()> {
        self.updated_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let f = Self::file(paths, &self.lab);
        write_atomic(&f, &serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", f.display()))
    }

    /// Forget a lab's progress (start over).
    pub fn reset(paths: &Paths, lab_id: &str) -> Result<()> {
        match std::fs::remove_file(Self::file(paths, lab_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub fn start_step(&mut self, step: &str) {
        self.current = Some(step.to_string());
    }

    /// The step passed: record it once and move `current` to `next` (None at the end).
    pub fn mark_passed(&mut self, step: &str, next: Option<&str>) {
        if !self.passed.iter().any(|s| s == step) {
            self.passed.push(step.to_string());
        }
        self.current = next.map(str::to_string);
    }

    pub fn is_passed(&self, step: &str) -> bool {
        self.passed.iter().any(|s| s == step)
    }

    /// Reveal one more hint of `step` (bounded by how many it has); returns how many are shown.
    pub fn reveal_hint(&mut self, step: &str, available: usize) -> usize {
        let n = self.hints_revealed.entry(step.to_string()).or_insert(0);
        *n = (*n + 1).min(available);
        *n
    }

    pub fn hints_shown(&self, step: &str) -> usize {
        self.hints_revealed.get(step).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_survives_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::under(d.path());
        let mut p = Progress::load(&paths, "upgrade").unwrap();
        assert_eq!(p.current, None);
        p.start_step("boot-v1");
        p.mark_passed("boot-v1", Some("leave-marks"));
        p.mark_passed("boot-v1", Some("leave-marks"));
        assert_eq!(p.reveal_hint("leave-marks", 2), 1);
        assert_eq!(p.reveal_hint("leave-marks", 2), 2);
        assert_eq!(p.reveal_hint("leave-marks", 2), 2);
        p.save(&paths).unwrap();
        let q = Progress::load(&paths, "upgrade").unwrap();
        assert_eq!(q.passed, ["boot-v1"]);
        assert_eq!(q.current.as_deref(), Some("leave-marks"));
        assert_eq!(q.hints_shown("leave-marks"), 2);
        Progress::reset(&paths, "upgrade").unwrap();
        assert!(Progress::load(&paths, "upgrade").unwrap().passed.is_empty());
    }
}
