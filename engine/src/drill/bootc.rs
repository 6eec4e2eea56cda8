//! The host side of drills (and labs) on bootc recipes: a version is built (a cache hit when
//! unchanged), written to the recipe's OCI layout in the update share and made `stable`, the tag
//! a bootc guest's `bootc upgrade` follows. The guest side is bootc itself (see `flows`, which
//! drives `bootc upgrade`, `bootc rollback` and `bootc switch` through [`super::Tooling::Bootc`]).

use super::ops::Published;
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::pipeline::bootc::install::{self, STABLE_TAG};
use crate::recipe::{Recipe, Version};
use anyhow::Result;

/// Build `version` and publish it as the recipe's `stable` in its OCI layout.
pub async fn publish(
    paths: &Paths,
    recipe: &Recipe,
    version: &Version,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<Published> {
    let b = crate::pipeline::build_image(paths, recipe, version, ev, cancel).await?;
    let p = install::publish_oci(paths, &b, true, ev, cancel).await?;
    let short = |d: &str| {
        let d = d.strip_prefix("sha256:").unwrap_or(d);
        d[..d.len().min(12)].to_string()
    };
    let summary = format!(
        "{} {}: {} image {}; {}:{STABLE_TAG} → {} (was {})",
        recipe.name(),
        version.id,
        if b.cached { "cached" } else { "built" },
        short(&b.image_id),
        p.layout.display(),
        short(&p.digest),
        p.previous_stable
            .as_deref()
            .map(short)
            .unwrap_or_else(|| "new".into()),
    );
    Ok(Published {
        recipe: recipe.name().to_string(),
        version: version.id.clone(),
        branch: String::new(),
        commit: None,
        image: Some(format!(
            "oci:{}",
            install::guest_imgref(recipe.name(), STABLE_TAG)
        )),
        digest: Some(p.digest),
        summary,
    })
}
