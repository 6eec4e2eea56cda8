//! Publishing a commit to the update share: `Paths::update_share()/repo`, an `archive` repo the
//! vm module shares read-only into guests at [`crate::tools::qemu::GUEST_SHARE_DIR`]. Every golden disk has
//! the remote [`super::REMOTE`] pointing there, so in the guest
//! `ostree admin upgrade` (origin `bootlab:bootlab/<recipe>`) or
//! `ostree pull bootlab bootlab/<recipe>` finds exactly the published commit.

use super::branch;
use crate::events::{CancellationToken, Emitter, StageTimer, StageTiming};
use crate::paths::Paths;
use crate::tools::ostree::{Mode, Repo};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// What [`publish`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublishResult {
    /// The archive repo on the host.
    pub repo: PathBuf,
    /// The branch the guest pulls (`bootlab/<recipe>`), now pointing at `commit`.
    pub branch: String,
    pub commit: String,
    /// What the branch pointed at before (`None` the first time).
    pub previous: Option<String>,
    pub timings: Vec<StageTiming>,
}

/// The update share's repo on the host.
pub fn update_repo(paths: &Paths) -> Repo {
    Repo::at(paths.update_share().join("repo"))
}

/// Make `commit` (from the host repo) the head of `bootlab/<recipe>` in the update share.
/// Publishing an older commit (to test a rollback through the remote) works the same way.
pub async fn publish(
    paths: &Paths,
    recipe: &str,
    commit: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<PublishResult> {
    let t = StageTimer::start(&ev.about(recipe), "publish");
    let host = Repo::at(paths.ostree_repo());
    if !host.has_commit(commit, cancel).await? {
        anyhow::bail!(
            "commit {commit} is not in bootlab's repo {} (build the recipe first)",
            host.path.display()
        );
    }
    let repo = update_repo(paths);
    repo.ensure(Mode::Archive, ev, cancel)
        .await
        .context("creating the update share's repo")?;
    let br = branch(recipe);
    let previous = repo.rev_parse(&br, cancel).await?;
    if let Err(e) = repo
        .pull_local(&host.path, &[commit], "publish", ev, cancel)
        .await
    {
        return Err(super::remove_damaged(paths, e, "publish", ev, cancel).await);
    }
    repo.set_ref(&br, commit, "publish", ev, cancel).await?;
    // A pull through the summary must see the new head.
    repo.update_summary("publish", ev, cancel).await?;
    ev.note(
        "publish",
        format!("{br} → {commit} in {}", repo.path.display()),
    );
    Ok(PublishResult {
        repo: repo.path.clone(),
        branch: br,
        commit: commit.to_string(),
        previous,
        timings: vec![t.finish(false)],
    })
}
