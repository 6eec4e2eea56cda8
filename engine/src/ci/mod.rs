//! CI exports: a recipe → a CI workflow that runs, on a CI runner, the steps bootlab runs here
//! (build the image, lint it, push it, make a bootable disk). Only GitHub Actions so far
//! ([`github`]); the CLI face is `bootlab ci export RECIPE --github`.
//!
//! Which steps a recipe gets depends on where its base image comes from ([`Route`]): a bootc
//! recipe built `FROM` a registry image is plain podman + bootc-image-builder, which any runner
//! can do; a recipe whose base bootlab makes itself (`localhost/bootlab/…`: the offline Debian
//! family and debian-bootc) needs bootlab's own pipeline, so its workflow builds and runs bootlab.

pub mod github;
pub mod local;

use crate::recipe::{Family, Origin, Recipe};
use std::path::Path;

/// How a recipe's image and disk get made on a CI runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// bootc family from a registry base: `podman build`, `bootc container lint`, push, then
    /// bootc-image-builder makes the disk from the pushed image.
    Registry,
    /// A base bootlab builds itself: `bootlab image build` and `bootlab disk make` on the runner
    /// (mmdebstrap → podman → OSTree commit → disk, or bootlab's bootc base → `bootc install`).
    Bootlab,
}

impl Route {
    pub fn of(recipe: &Recipe) -> Route {
        // bootlab never pulls `localhost/…` bases from anywhere: it makes them (see
        // pipeline::base and pipeline::bootc::guest), so only bootlab can on a runner too.
        if recipe.file.family == Family::Bootc && !recipe.file.base.starts_with("localhost/") {
            Route::Registry
        } else {
            Route::Bootlab
        }
    }
}

/// Where the recipe's folder sits in the repository the workflow runs in, `/`-separated, and a
/// note when that is a guess the user should check.
pub fn repo_path(recipe: &Recipe) -> (String, Option<String>) {
    if let Some(p) = git_relative(&recipe.dir) {
        return (p, None);
    }
    match recipe.origin {
        // An installed bootlab reads an unpacked copy of its assets; in bootlab's repository the
        // shipped recipes live here.
        Origin::Shipped => (format!("assets/recipes/{}", recipe.name()), None),
        Origin::Yours => {
            let p = format!("recipes/{}", recipe.name());
            let note = format!(
                "{} is not inside a git repository: the workflow expects the recipe at {p}/ in the repository it runs in (commit it there, or export again from a checkout)",
                recipe.dir.display()
            );
            (p, Some(note))
        }
    }
}

/// `dir` relative to the root of the git work tree holding it (a folder with `.git`).
fn git_relative(dir: &Path) -> Option<String> {
    let dir = std::path::absolute(dir).ok()?;
    let root = dir.ancestors().find(|a| a.join(".git").exists())?;
    let rel = dir.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}
