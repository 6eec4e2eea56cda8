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

/// Build `version` and publish it in the recipe's OCI layout under its own tag (`v3`) and, with
/// `make_stable`, as `stable` too. The returned image is what a guest should follow: `stable`
/// when it was moved (what `bootc upgrade` on a guest installed from it fetches), else the
/// version's own tag (a `bootc switch` target that pins that version).
pub async fn publish(
    paths: &Paths,
    recipe: &Recipe,
    version: &Version,
    make_stable: bool,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<Published> {
    let b = crate::pipeline::build_image(paths, recipe, version, ev, cancel).await?;
    let p = install::publish_oci(paths, &b, make_stable, ev, cancel).await?;
    let tag = if make_stable {
        STABLE_TAG
    } else {
        version.id.as_str()
    };
    let short = |d: &str| {
        let d = d.strip_prefix("sha256:").unwrap_or(d);
        d[..d.len().min(12)].to_string()
    };
    let summary = if make_stable {
        format!(
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
        )
    } else {
        format!(
            "{} {}: {} image {}; {}:{tag} is {} ({STABLE_TAG} not moved)",
            recipe.name(),
            version.id,
            if b.cached { "cached" } else { "built" },
            short(&b.image_id),
            p.layout.display(),
            short(&p.digest),
        )
    };
    Ok(Published {
        recipe: recipe.name().to_string(),
        version: version.id.clone(),
        branch: String::new(),
        commit: None,
        image: Some(format!("oci:{}", install::guest_imgref(recipe.name(), tag))),
        digest: Some(p.digest),
        summary,
    })
}
