//! Labs: step files in `labs/` with text for the learner, one typed action per step, and checks
//! that verify the action worked.
//!
//! - [`model`]: the validated types a runner, the TUI and the CLI use ([`Lab`], [`Step`],
//!   [`Action`], [`Check`], [`RetryPolicy`]).
//! - [`parse`]: TOML → [`Lab`], every mistake of a file as `file:line:col: message`.
//! - [`check`]: pure evaluation of a check against what a runner captured.
//! - [`jsonpath`]: the small `a.b[0].c` paths checks use on JSON output.
//! - [`runner`]: runs a step's action (host, pipeline, the lab's VM) and its checks, retried by
//!   their policy, reporting events; [`progress`]: where a learner is, saved per lab;
//!   [`report`]: `selftest` of a whole lab and its JUnit/JSON reports; [`rewind`]: a snapshot of
//!   the guest when a step passes, restored when the learner goes back, skips or resumes.
//!
//! The format is documented for authors in `labs/README.md`.

pub mod check;
pub mod jsonpath;
pub mod model;
pub mod parse;
pub mod progress;
pub mod report;
pub mod rewind;
pub mod runner;
pub mod trust;

pub use check::{Captured, DeploymentsSeen, Observation, Verdict, evaluate, evaluate_check};
pub use model::{
    Action, Check, DeploymentsExpect, Expect, Lab, Probe, Requires, RetryPolicy, SCHEMA, Slot, Step,
};
pub use parse::{find, load_file, load_paths, parse_lab, shipped};
pub use progress::{Progress, StepSnapshot};
pub use rewind::Rewind;
pub use runner::{CheckResult, LabRunner, StepOutcome};

/// The environment a runner gives `host` commands of a lab (documented in `labs/README.md`):
/// bootlab's folders and the host OSTree repository, so checks need no hard-coded paths.
pub fn host_env(paths: &crate::paths::Paths) -> Vec<(&'static str, std::path::PathBuf)> {
    // This very executable, so a lab's `"$BOOTLAB" recipe lint …` needs no bootlab on PATH.
    let exe = std::env::current_exe().unwrap_or_else(|_| "bootlab".into());
    vec![
        ("BOOTLAB", exe),
        ("BOOTLAB_CACHE", paths.cache.clone()),
        ("BOOTLAB_STATE", paths.state.clone()),
        ("BOOTLAB_OSTREE_REPO", paths.ostree_repo()),
        // The learner's own recipes (`bootlab recipe new` writes there): lab *Your own image*.
        ("BOOTLAB_RECIPES", crate::paths::user_recipes_dir()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_env_names_what_the_readme_promises() {
        let p = crate::paths::Paths::under(std::path::Path::new("/h"));
        let env = host_env(&p);
        let readme = include_str!("../../../labs/README.md");
        for (k, _) in &env {
            assert!(
                readme.contains(k),
                "{k} is not documented in labs/README.md"
            );
        }
        assert!(env.contains(&("BOOTLAB_OSTREE_REPO", "/h/cache/ostree/repo".into())));
    }

    #[test]
    fn solve_plan_runs_the_action_then_the_solve_with_recipes_filled_in() {
        let (labs, errors) = shipped();
        assert!(errors.is_empty(), "{errors:?}");
        let first = labs.iter().find(|l| l.id == "first-boot").unwrap();
        assert_eq!(
            first.solve_plan(first.step("build").unwrap()),
            [Action::Build {
                recipe: Some("debian-minimal".into()),
                version: Some("v1".into())
            }]
        );
        assert_eq!(
            first.solve_plan(first.step("etc").unwrap()),
            [Action::Guest {
                run: "echo 'written at first boot' > /etc/bootlab-first-boot".into()
            }]
        );
        assert!(first.solve_plan(first.step("status").unwrap()).is_empty());
    }
}
