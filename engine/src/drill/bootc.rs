//! The host side of drills (and labs) on bootc recipes: a version is built (a cache hit when
//! unchanged) and written where the guest reads it, as [`Via`] says: the recipe's OCI layout in
//! the update share under the version's tag (and `stable`, the tag a bootc guest's `bootc
//! upgrade` follows), or an oci-archive file beside it. The guest side is bootc itself
//! (`deploy::bootc` has the commands; `flows` drives them through [`super::Tooling::Bootc`]).

use super::ops::{Published, Via};
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use crate::pipeline::bootc::install::{self, STABLE_TAG};
use crate::recipe::{Recipe, Version};
use anyhow::Result;

fn short(d: &str) -> String {
    let d = d.strip_prefix("sha256:").unwrap_or(d);
    d[..d.len().min(12)].to_string()
}

/// Build `version` and publish it as `via` says. The returned image is the target the guest
/// should follow: `oci:…/<recipe>.oci:stable`, `oci:…/<recipe>.oci:<version>` or
/// `oci-archive:…/<recipe>-<version>.oci-archive`.
pub async fn publish(
    paths: &Paths,
    recipe: &Recipe,
    version: &Version,
    via: Via,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<Published> {
    let b = crate::pipeline::build_image(paths, recipe, version, ev, cancel).await?;
    let built = if b.cached { "cached" } else { "built" };
    let head = format!(
        "{} {}: {built} image {}",
        recipe.name(),
        version.id,
        short(&b.image_id)
    );
    let (image, digest, summary) = match via {
        Via::Archive => {
            let (archive, written) = install::publish_archive(paths, &b, ev, cancel).await?;
            let image = format!(
                "oci-archive:{}",
                install::guest_archive(recipe.name(), &version.id)
            );
            let how = if written { "written" } else { "unchanged" };
            (image, None, format!("{head}; {} {how}", archive.display()))
        }
        Via::Stable | Via::Tag => {
            let stable = via == Via::Stable;
            let p = install::publish_oci(paths, &b, stable, ev, cancel).await?;
            let tag = if stable { STABLE_TAG } else { &version.id };
            let image = format!("oci:{}", install::guest_imgref(recipe.name(), tag));
            let summary = if stable {
                format!(
                    "{head}; {}:{STABLE_TAG} → {} (was {})",
                    p.layout.display(),
                    short(&p.digest),
                    p.previous_stable
                        .as_deref()
                        .map(short)
                        .unwrap_or_else(|| "new".into()),
                )
            } else {
                format!(
                    "{head}; {}:{tag} is {} ({STABLE_TAG} not moved)",
                    p.layout.display(),
                    short(&p.digest),
                )
            };
            (image, Some(p.digest), summary)
        }
    };
    Ok(Published {
        recipe: recipe.name().to_string(),
        version: version.id.clone(),
        branch: String::new(),
        commit: None,
        image: Some(image),
        digest,
        summary,
        requires_verity: crate::deploy::composefs::Mode::from_enabled(&b.composefs)
            .is_some_and(|m| m.enforces_verity()),
    })
}
