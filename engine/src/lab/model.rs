//! The lab model a runner, the TUI and the CLI work with: plain types, already validated.
//!
//! Authors write TOML (see `labs/README.md`); `lab::parse` turns it into these types. Nothing here
//! carries source spans: errors with `file:line:col` are produced while loading, not later.

use crate::recipe::Family;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The only step-file schema this bootlab reads.
pub const SCHEMA: u32 = 1;

/// One lab: a file in `labs/`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lab {
    pub schema: u32,
    /// Short kebab-case id (`first-boot`); `bootlab lab show first-boot` finds it.
    pub id: String,
    pub title: String,
    /// How long a learner needs, roughly.
    pub minutes: u32,
    /// One or two sentences for the lab list.
    pub summary: String,
    /// Markdown shown before the first step: what the learner will do and learn.
    pub intro: Option<String>,
    /// Markdown shown once every step has passed: what they learned, what comes next.
    pub finish: Option<String>,
    pub requires: Requires,
    pub steps: Vec<Step>,
    /// The file it came from.
    pub path: PathBuf,
}

impl Lab {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
    /// The steps' ids in order (what progress files name steps by).
    pub fn step_ids(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.id.clone()).collect()
    }
    /// The recipe a step's action works on when it names none.
    pub fn default_recipe(&self) -> Option<&str> {
        self.requires.recipe.as_deref()
    }
    /// What `selftest` (or a learner's "skip") runs for a step, in order: the step's action
    /// (unless `none`), then its solve, every recipe filled in.
    pub fn solve_plan(&self, step: &Step) -> Vec<Action> {
        let mut plan = self.action_plan(step);
        plan.extend(self.solve_only(step));
        plan
    }

    /// The step's own action alone (empty when `none`), recipe filled in.
    pub fn action_plan(&self, step: &Step) -> Vec<Action> {
        let a = self.action_of(step);
        if a == Action::None { vec![] } else { vec![a] }
    }

    /// The step's solve alone (what the learner would do), recipes filled in.
    pub fn solve_only(&self, step: &Step) -> Vec<Action> {
        step.solve
            .iter()
            .filter(|a| **a != Action::None)
            .map(|a| a.with_default_recipe(self.default_recipe()))
            .collect()
    }

    /// A step's action with the lab's recipe filled in where the step names none.
    pub fn action_of(&self, step: &Step) -> Action {
        step.action.with_default_recipe(self.default_recipe())
    }
}

/// What a lab needs before it can start.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Requires {
    /// The recipe the lab's actions use unless they name another.
    pub recipe: Option<String>,
    /// The family the lab is written for (implied by `recipe` when absent).
    pub family: Option<Family>,
    /// Host programs that must be on PATH (`bootlab doctor` checks them).
    pub host_tools: Vec<String>,
}

/// One step: text for the learner, one action, checks that verify it worked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: String,
    pub title: String,
    /// Markdown.
    pub text: String,
    pub action: Action,
    /// Shown as a checklist; the step is done when all pass.
    pub checks: Vec<Check>,
    /// Revealed one at a time, in order.
    pub hints: Vec<String>,
    /// Markdown for the presenter only (`bootlab present`, the TUI's presenter mode): what to
    /// say or show while the step runs. Never shown to a learner.
    pub notes: Option<String>,
    /// What `selftest` (and the learner's "skip") runs to complete the step, in order, after the
    /// step's own action. Empty when the action alone completes the step.
    pub solve: Vec<Action>,
    /// Set by the author when the step reboots the guest in a way the action does not show
    /// (e.g. a `guest` command that runs `systemctl reboot`).
    pub reboot: bool,
}

impl Step {
    /// Whether the step asks the learner to do something: it has a solve (what the learner would
    /// do). Its checks must fail until that is done; `selftest` proves it.
    pub fn asks_learner(&self) -> bool {
        !self.solve.is_empty()
    }

    /// Whether the guest reboots during this step: checks must then wait for it to come back.
    pub fn spans_reboot(&self) -> bool {
        self.reboot || self.action.reboots() || self.solve.iter().any(Action::reboots)
    }
}

/// What a step does. Recipe fields left empty mean the lab's `requires.recipe`.
///
/// Written inline: `action = { kind = "build", recipe = "debian-minimal", version = "v2" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Reading and looking around; the learner acts in the guest themselves.
    None,
    /// Build a recipe version with podman (and, for debian-ostree, commit it to OSTree).
    Build {
        recipe: Option<String>,
        version: Option<String>,
    },
    /// Make a bootable disk of a recipe version.
    Disk {
        recipe: Option<String>,
        version: Option<String>,
    },
    /// Boot a VM of a recipe from its disk (a fresh overlay unless `fresh` is false).
    Boot {
        recipe: Option<String>,
        version: Option<String>,
        #[serde(default = "yes")]
        fresh: bool,
    },
    /// A clean reboot of the guest.
    Reboot,
    /// Pull the plug: the VM stops with no shutdown, then boots again.
    PowerCut,
    /// A shell command in the guest (through the guest agent, `sh -c`).
    Guest { run: String },
    /// A shell command on the host (always shown to the learner before it runs).
    Host { run: String },
    /// Build and publish `to` of `recipe` (default: the lab's recipe, and the version after the
    /// booted one) where the guest's updates come from, and nothing else: the guest finds it
    /// itself (an update timer) or a later step upgrades. Before a boot it sets what the new
    /// guest will find.
    Publish {
        recipe: Option<String>,
        to: Option<String>,
    },
    /// Build and publish `to` (default: the next version), then upgrade the guest to it;
    /// `apply` reboots into it.
    Upgrade {
        to: Option<String>,
        #[serde(default)]
        apply: bool,
    },
    /// Switch the guest to another recipe's image.
    Switch {
        recipe: String,
        version: Option<String>,
        #[serde(default)]
        apply: bool,
    },
    /// Make the rollback deployment the default; `apply` reboots into it.
    Rollback {
        #[serde(default)]
        apply: bool,
    },
}

fn yes() -> bool {
    true
}

impl Action {
    /// The kebab-case name authors write in `kind = "…"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Build { .. } => "build",
            Action::Disk { .. } => "disk",
            Action::Boot { .. } => "boot",
            Action::Reboot => "reboot",
            Action::PowerCut => "power-cut",
            Action::Guest { .. } => "guest",
            Action::Host { .. } => "host",
            Action::Publish { .. } => "publish",
            Action::Upgrade { .. } => "upgrade",
            Action::Switch { .. } => "switch",
            Action::Rollback { .. } => "rollback",
        }
    }

    /// Every kind, for error messages and docs.
    pub const KINDS: &'static [&'static str] = &[
        "none",
        "build",
        "disk",
        "boot",
        "reboot",
        "power-cut",
        "guest",
        "host",
        "publish",
        "upgrade",
        "switch",
        "rollback",
    ];

    /// Whether the guest goes down and comes back during this action.
    pub fn reboots(&self) -> bool {
        match self {
            Action::Reboot | Action::PowerCut => true,
            Action::Upgrade { apply, .. }
            | Action::Switch { apply, .. }
            | Action::Rollback { apply } => *apply,
            _ => false,
        }
    }

    /// The same action with an unset recipe filled in (the lab's `requires.recipe`): what a
    /// runner executes and what a list shows.
    pub fn with_default_recipe(&self, default: Option<&str>) -> Action {
        let fill = |r: &Option<String>| r.clone().or_else(|| default.map(String::from));
        match self {
            Action::Build { recipe, version } => Action::Build {
                recipe: fill(recipe),
                version: version.clone(),
            },
            Action::Disk { recipe, version } => Action::Disk {
                recipe: fill(recipe),
                version: version.clone(),
            },
            Action::Publish { recipe, to } => Action::Publish {
                recipe: fill(recipe),
                to: to.clone(),
            },
            Action::Boot {
                recipe,
                version,
                fresh,
            } => Action::Boot {
                recipe: fill(recipe),
                version: version.clone(),
                fresh: *fresh,
            },
            other => other.clone(),
        }
    }

    /// One line for lists and logs: `build debian-minimal v2`, `guest: touch /usr/x`.
    pub fn describe(&self) -> String {
        let rv = |r: &Option<String>, v: &Option<String>| {
            let mut s = String::new();
            if let Some(r) = r {
                s.push(' ');
                s.push_str(r);
            }
            if let Some(v) = v {
                s.push(' ');
                s.push_str(v);
            }
            s
        };
        let apply = |a: bool| if a { " (and reboot)" } else { "" };
        match self {
            Action::None => "none".into(),
            Action::Build { recipe, version } => format!("build{}", rv(recipe, version)),
            Action::Disk { recipe, version } => format!("disk{}", rv(recipe, version)),
            Action::Boot {
                recipe,
                version,
                fresh,
            } => format!(
                "boot{}{}",
                rv(recipe, version),
                if *fresh { "" } else { " (keep disk)" }
            ),
            Action::Reboot => "reboot".into(),
            Action::PowerCut => "power-cut".into(),
            Action::Guest { run } => format!("guest: {run}"),
            Action::Host { run } => format!("host: {run}"),
            Action::Publish { recipe, to } => format!("publish{}", rv(recipe, to)),
            Action::Upgrade { to, apply: a } => {
                format!("upgrade{}{}", rv(&None, to), apply(*a))
            }
            Action::Switch {
                recipe,
                version,
                apply: a,
            } => format!("switch{}{}", rv(&Some(recipe.clone()), version), apply(*a)),
            Action::Rollback { apply: a } => format!("rollback{}", apply(*a)),
        }
    }
}

/// One checklist item of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The checklist text: what should be true.
    pub title: String,
    pub probe: Probe,
    /// Expectations on the probe's result; for `Probe::Deployments` they are in the probe.
    pub expect: Expect,
    pub retry: RetryPolicy,
    /// Shown when the check fails: what to look at next.
    pub fail: String,
}

/// What a check looks at.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Probe {
    /// `sh -c CMD` in the guest, through the guest agent.
    Guest { run: String },
    /// `sh -c CMD` on the host.
    Host { run: String },
    /// The guest's deployments (booted / staged / rollback versions).
    Deployments(DeploymentsExpect),
}

/// Expectations on a command's result. All given ones must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Expect {
    /// Exit code; `None` means 0 for command probes.
    pub exit: Option<i32>,
    pub stdout_contains: Vec<String>,
    pub stdout_lacks: Vec<String>,
    /// Regexes (validated at load time) that must match somewhere in stdout.
    pub stdout_matches: Vec<String>,
    pub stderr_contains: Vec<String>,
    /// `(path, value)`: stdout parsed as JSON must hold `value` at `path` (see `lab::jsonpath`).
    pub json: Vec<(String, serde_json::Value)>,
}

impl Expect {
    pub fn exit_code(&self) -> i32 {
        self.exit.unwrap_or(0)
    }
}

/// A deployment slot as a check names it: a version id, or `Absent` ("none" in the file, and
/// in JSON output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Version(String),
    Absent,
}

impl Serialize for Slot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Slot::Version(v) => s.serialize_str(v),
            Slot::Absent => s.serialize_str("none"),
        }
    }
}

/// Expectations on deployments; unset slots are not checked.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DeploymentsExpect {
    pub booted: Option<Slot>,
    pub staged: Option<Slot>,
    pub rollback: Option<Slot>,
}

/// How a runner repeats a check: run it (each attempt bounded by `timeout`), and while it fails
/// and `window` has not elapsed since the first attempt, wait `interval` and run it again.
/// Waiting for a reboot is a window, never a sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetryPolicy {
    #[serde(with = "secs", rename = "timeout_secs")]
    pub timeout: Duration,
    #[serde(with = "secs", rename = "window_secs")]
    pub window: Duration,
    #[serde(with = "secs", rename = "interval_secs")]
    pub interval: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3);
    /// The window checks of a step that spans a reboot get when their author sets none: a TCG
    /// boot takes about a minute here, an upgrade reboot a little more.
    pub const REBOOT_WINDOW: Duration = Duration::from_secs(240);

    pub fn once() -> RetryPolicy {
        RetryPolicy {
            timeout: Self::DEFAULT_TIMEOUT,
            window: Duration::ZERO,
            interval: Self::DEFAULT_INTERVAL,
        }
    }

    /// After a failed attempt at `elapsed` since the first one: how long to wait before the next,
    /// or `None` when the window is spent.
    pub fn next_attempt_in(&self, elapsed: Duration) -> Option<Duration> {
        if elapsed + self.interval <= self.window {
            Some(self.interval)
        } else {
            None
        }
    }

    /// The longest a check can take: the window plus one last attempt.
    pub fn deadline(&self) -> Duration {
        self.window + self.timeout
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_policy_waits_within_the_window_only() {
        let p = RetryPolicy {
            timeout: Duration::from_secs(10),
            window: Duration::from_secs(30),
            interval: Duration::from_secs(5),
        };
        assert_eq!(
            p.next_attempt_in(Duration::ZERO),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            p.next_attempt_in(Duration::from_secs(25)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(p.next_attempt_in(Duration::from_secs(26)), None);
        assert_eq!(RetryPolicy::once().next_attempt_in(Duration::ZERO), None);
        assert_eq!(p.deadline(), Duration::from_secs(40));
    }

    #[test]
    fn reboots_follow_the_action() {
        assert!(Action::PowerCut.reboots());
        assert!(
            Action::Upgrade {
                to: None,
                apply: true
            }
            .reboots()
        );
        assert!(
            !Action::Upgrade {
                to: None,
                apply: false
            }
            .reboots()
        );
        assert!(!Action::Guest { run: "ls".into() }.reboots());
        // Publishing sends the guest nothing; a guest that reboots on its own marks its step.
        assert!(
            !Action::Publish {
                recipe: None,
                to: None
            }
            .reboots()
        );
        assert_eq!(Action::KINDS.len(), 12);
    }
}
