//! A learner's progress through one lab, kept in `<state>/labs/<lab-id>.json` so a lab resumes
//! after the guest reboots and after bootlab restarts. One type for every face: the TUI and
//! `bootlab lab run` read and write the same file, so either picks up where the other stopped.
//! Written atomically: a crash never leaves half a file.
//!
//! Steps are named by id (not position) so an edited step file keeps the learner's place. Files
//! of the previous release load too: the engine's (no `lab` field needed) and the TUI's
//! (`{"step": 1, "done": [0], "hints": 1}`, positions), migrated with the lab's step ids.

use crate::paths::{Paths, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
// Unknown fields refused: otherwise any JSON object would load as an empty progress.
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Filled from the file name when an older file lacks it.
    #[serde(default)]
    pub lab: String,
    /// The step the learner is on (the next one to do), `None` before the first and after the
    /// last passed.
    #[serde(default)]
    pub current: Option<String>,
    /// Steps whose checks all passed, in the order they passed.
    #[serde(default)]
    pub passed: Vec<String>,
    /// Per step: how many hints were revealed.
    #[serde(default)]
    pub hints_revealed: BTreeMap<String, usize>,
    /// The VM the lab runs in.
    #[serde(default)]
    pub vm: Option<String>,
    #[serde(default)]
    pub updated_unix: u64,
    /// Per passed step: the snapshot of the lab's VM taken when it passed, which is the state the
    /// step after it starts from (going back, skipping or resuming restores it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshots: BTreeMap<String, StepSnapshot>,
    /// The step whose end the guest was last put at (it passed there, or its snapshot was
    /// restored): the guest is then where the step after it starts, and nothing is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_at: Option<String>,
}

/// An internal snapshot in the lab VM's disk, named by its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSnapshot {
    pub vm: String,
    pub tag: String,
    /// When the VM holding it was made: a VM made again under the same name (a fresh boot)
    /// has a new disk without the old snapshots.
    pub vm_created_unix: u64,
    pub saved_unix: u64,
}

impl StepSnapshot {
    /// The tag a step's snapshot has in the lab VM's disk (one per step, replaced when the
    /// step passes again).
    pub fn tag_for(step: &str) -> String {
        format!("lab-step-{step}")
    }
}

/// The TUI's file of the previous release: positions, not ids.
#[derive(Deserialize)]
struct TuiV1 {
    step: usize,
    #[serde(default)]
    done: BTreeSet<usize>,
    #[serde(default)]
    hints: usize,
}

/// Either format a file may hold; the old TUI one first (it alone has `step`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OnDisk {
    TuiV1(TuiV1),
    Current(Progress),
}

impl Progress {
    pub fn file(paths: &Paths, lab_id: &str) -> PathBuf {
        paths.lab_progress().join(format!("{lab_id}.json"))
    }

    /// A fresh progress (the lab was never started).
    pub fn new(lab_id: &str) -> Progress {
        Progress {
            lab: lab_id.to_string(),
            ..Default::default()
        }
    }

    /// The saved progress, or a fresh one when the lab was never started. `steps` are the lab's
    /// step ids in order: they turn an old TUI file's positions into ids.
    pub fn load(paths: &Paths, lab_id: &str, steps: &[String]) -> Result<Progress> {
        let f = Self::file(paths, lab_id);
        match std::fs::read(&f) {
            Ok(b) => {
                Self::parse(&b, lab_id, steps).with_context(|| format!("reading {}", f.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new(lab_id)),
            Err(e) => Err(e).with_context(|| format!("reading {}", f.display())),
        }
    }

    /// Like [`Progress::load`], but a file that does not read (cut short by a crash of an older
    /// release, edited by hand) does not block the lab: it is kept beside as `<id>.json.broken`
    /// and the lab starts afresh. The second value says so (file, line, column, where it went).
    pub fn load_or_set_aside(
        paths: &Paths,
        lab_id: &str,
        steps: &[String],
    ) -> Result<(Progress, Option<String>)> {
        match Self::load(paths, lab_id, steps) {
            Ok(p) => Ok((p, None)),
            // The file could not be read at all: nothing to set aside.
            Err(e) if e.root_cause().is::<std::io::Error>() => Err(e),
            Err(e) => {
                let f = Self::file(paths, lab_id);
                let aside = f.with_extension("json.broken");
                std::fs::rename(&f, &aside)
                    .with_context(|| format!("setting {} aside", f.display()))?;
                Ok((
                    Self::new(lab_id),
                    Some(format!(
                        "{e:#}; kept as {}, starting {lab_id} afresh",
                        aside.display()
                    )),
                ))
            }
        }
    }

    /// A progress file's text, in either format.
    pub fn parse(bytes: &[u8], lab_id: &str, steps: &[String]) -> Result<Progress> {
        let on_disk: OnDisk = serde_json::from_slice(bytes).map_err(|e| {
            anyhow::anyhow!(
                "line {} column {}: not a lab progress file ({e})",
                e.line(),
                e.column()
            )
        })?;
        let mut p = match on_disk {
            OnDisk::Current(p) => p,
            OnDisk::TuiV1(old) => {
                let id = |i: usize| steps.get(i).cloned();
                let current = id(old.step);
                let mut hints_revealed = BTreeMap::new();
                if let Some(c) = &current
                    && old.hints > 0
                {
                    hints_revealed.insert(c.clone(), old.hints);
                }
                Progress {
                    lab: lab_id.to_string(),
                    current,
                    passed: old.done.into_iter().filter_map(id).collect(),
                    hints_revealed,
                    vm: None,
                    updated_unix: 0,
                    snapshots: BTreeMap::new(),
                    guest_at: None,
                }
            }
        };
        if p.lab.is_empty() {
            p.lab = lab_id.to_string();
        }
        Ok(p)
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

    /// The step's checks all passed (recorded once); the learner stays where they are.
    pub fn record_pass(&mut self, step: &str) {
        if !self.is_passed(step) {
            self.passed.push(step.to_string());
        }
    }

    /// The step passed: record it once and move `current` to `next` (None at the end).
    pub fn mark_passed(&mut self, step: &str, next: Option<&str>) {
        self.record_pass(step);
        self.current = next.map(str::to_string);
    }

    pub fn is_passed(&self, step: &str) -> bool {
        self.passed.iter().any(|s| s == step)
    }

    /// Every step of `steps` passed.
    pub fn is_complete(&self, steps: &[String]) -> bool {
        !steps.is_empty() && steps.iter().all(|s| self.is_passed(s))
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

    /// Where the learner is among `steps` (the lab's ids in order): the current step; without
    /// one (or one the lab no longer has), the first step not passed, else the last.
    pub fn position(&self, steps: &[String]) -> usize {
        self.current
            .as_ref()
            .and_then(|c| steps.iter().position(|s| s == c))
            .or_else(|| steps.iter().position(|s| !self.is_passed(s)))
            .unwrap_or(steps.len().saturating_sub(1))
    }

    /// Put the learner on step `i` of `steps`.
    pub fn set_position(&mut self, i: usize, steps: &[String]) {
        self.current = steps.get(i).cloned();
    }

    /// The step whose end step `i` of `steps` starts from (the one before it), with its
    /// snapshot when one was taken. `None` for the first step: it starts from nothing saved.
    pub fn start_of<'a>(
        &'a self,
        steps: &'a [String],
        i: usize,
    ) -> Option<(&'a str, Option<&'a StepSnapshot>)> {
        let before = steps.get(i.checked_sub(1)?)?;
        Some((before.as_str(), self.snapshots.get(before)))
    }

    /// The positions of the passed steps among `steps`.
    pub fn passed_positions(&self, steps: &[String]) -> BTreeSet<usize> {
        steps
            .iter()
            .enumerate()
            .filter(|(_, s)| self.is_passed(s))
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn progress_survives_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::under(d.path());
        let steps = ids(&["boot-v1", "leave-marks"]);
        let mut p = Progress::load(&paths, "upgrade", &steps).unwrap();
        assert_eq!(p.current, None);
        p.start_step("boot-v1");
        p.mark_passed("boot-v1", Some("leave-marks"));
        p.mark_passed("boot-v1", Some("leave-marks"));
        assert_eq!(p.reveal_hint("leave-marks", 2), 1);
        assert_eq!(p.reveal_hint("leave-marks", 2), 2);
        assert_eq!(p.reveal_hint("leave-marks", 2), 2);
        p.save(&paths).unwrap();
        let q = Progress::load(&paths, "upgrade", &steps).unwrap();
        assert_eq!(q.passed, ["boot-v1"]);
        assert_eq!(q.current.as_deref(), Some("leave-marks"));
        assert_eq!(q.hints_shown("leave-marks"), 2);
        assert_eq!(q.position(&steps), 1);
        Progress::reset(&paths, "upgrade").unwrap();
        assert!(
            Progress::load(&paths, "upgrade", &steps)
                .unwrap()
                .passed
                .is_empty()
        );
    }

    /// A file cut in half: `load` refuses it with its line and column; `load_or_set_aside`
    /// keeps it beside (nothing lost) and starts afresh, and the next load is clean.
    #[test]
    fn a_progress_file_cut_in_half_is_set_aside() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::under(d.path());
        let steps = ids(&["boot-v1", "leave-marks"]);
        let mut p = Progress::new("upgrade");
        p.mark_passed("boot-v1", Some("leave-marks"));
        p.save(&paths).unwrap();
        let f = Progress::file(&paths, "upgrade");
        let whole = std::fs::read(&f).unwrap();
        std::fs::write(&f, &whole[..whole.len() / 2]).unwrap();
        let e = format!(
            "{:#}",
            Progress::load(&paths, "upgrade", &steps).unwrap_err()
        );
        assert!(e.contains("upgrade.json") && e.contains("line "), "{e}");

        let (q, said) = Progress::load_or_set_aside(&paths, "upgrade", &steps).unwrap();
        assert!(q.passed.is_empty());
        let said = said.expect("it says so");
        assert!(
            said.contains("upgrade.json.broken") && said.contains("line "),
            "{said}"
        );
        let aside = f.with_extension("json.broken");
        assert_eq!(std::fs::read(&aside).unwrap(), &whole[..whole.len() / 2]);
        assert!(!f.exists());
        let (_, again) = Progress::load_or_set_aside(&paths, "upgrade", &steps).unwrap();
        assert_eq!(again, None);
    }

    #[test]
    fn the_previous_releases_files_load() {
        let steps = ids(&["build", "boot", "look"]);
        // The TUI's file: on step 2 (index 1) after passing step 1, one hint shown there.
        let tui = br#"{ "step": 1, "done": [0], "hints": 1 }"#;
        let p = Progress::parse(tui, "first-boot", &steps).unwrap();
        assert_eq!(p.lab, "first-boot");
        assert_eq!(p.current.as_deref(), Some("boot"));
        assert_eq!(p.passed, ["build"]);
        assert_eq!(p.hints_shown("boot"), 1);
        // The engine's file before `lab` could be left out, and one without it.
        let engine = br#"{"lab":"first-boot","current":"look","passed":["build","boot"],
            "hints_revealed":{},"vm":"lab-first-boot","updated_unix":5}"#;
        let p = Progress::parse(engine, "first-boot", &steps).unwrap();
        assert_eq!(p.position(&steps), 2);
        assert_eq!(p.vm.as_deref(), Some("lab-first-boot"));
        let bare = br#"{"current":"boot","passed":["build"]}"#;
        assert_eq!(
            Progress::parse(bare, "first-boot", &steps).unwrap().lab,
            "first-boot"
        );
        let bad = b"{\n \"step\": \"two\"\n}";
        let e = Progress::parse(bad, "first-boot", &steps).unwrap_err();
        assert!(e.to_string().contains("line"), "{e}");
    }

    #[test]
    fn a_step_starts_from_the_snapshot_of_the_step_before() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::under(d.path());
        let steps = ids(&["boot", "upgrade", "rollback"]);
        let mut p = Progress::new("upgrade");
        assert_eq!(
            p.start_of(&steps, 0),
            None,
            "the first step starts from nothing"
        );
        assert_eq!(p.start_of(&steps, 1), Some(("boot", None)));
        let s = StepSnapshot {
            vm: "lab-upgrade".into(),
            tag: StepSnapshot::tag_for("boot"),
            vm_created_unix: 7,
            saved_unix: 9,
        };
        p.snapshots.insert("boot".into(), s.clone());
        p.guest_at = Some("boot".into());
        p.save(&paths).unwrap();
        let q = Progress::load(&paths, "upgrade", &steps).unwrap();
        assert_eq!(q.start_of(&steps, 1), Some(("boot", Some(&s))));
        assert_eq!(q.start_of(&steps, 2), Some(("upgrade", None)));
        assert_eq!(q.guest_at.as_deref(), Some("boot"));
        assert_eq!(s.tag, "lab-step-boot");
        // Files without snapshots (every earlier one) load with none, and write none.
        let old = br#"{"lab":"upgrade","current":"upgrade","passed":["boot"]}"#;
        let o = Progress::parse(old, "upgrade", &steps).unwrap();
        assert!(o.snapshots.is_empty() && o.guest_at.is_none());
        let text = String::from_utf8(serde_json::to_vec(&o).unwrap()).unwrap();
        assert!(
            !text.contains("snapshots") && !text.contains("guest_at"),
            "{text}"
        );
    }

    #[test]
    fn position_follows_current_else_the_first_step_not_passed() {
        let steps = ids(&["a", "b", "c"]);
        let mut p = Progress::new("l");
        assert_eq!(p.position(&steps), 0);
        p.mark_passed("a", Some("b"));
        assert_eq!(p.position(&steps), 1);
        p.current = Some("gone".into());
        assert_eq!(p.position(&steps), 1);
        p.mark_passed("b", Some("c"));
        p.mark_passed("c", None);
        assert!(p.is_complete(&steps));
        assert_eq!(p.position(&steps), 2);
        assert_eq!(p.passed_positions(&steps), [0, 1, 2].into());
    }
}
