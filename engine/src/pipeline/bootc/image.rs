//! A bootc recipe version → a podman image, linted. No OSTree commit here: bootc makes the
//! deployment itself when it installs the image ([`super::install`]) or upgrades to it.
//!
//! Stages: `base` (the bootc base, built when missing: bootc binary, trixie ostree base, bootc
//! layer), `build` (`podman build`), `lint` (`bootc container lint` run in the built image; its
//! findings go to the build log and into the build record).
//!
//! Cache: the same record as the offline family (`<cache>/builds/<recipe>/<version>.json`),
//! keyed by the recipe folder, the base image id and the version's settings. The tag and the
//! record are written only after the lint passed.

use super::guest::{self, BOOTC_BASE_TAG};
use crate::events::{CancellationToken, Emitter, StageTimer, StageTiming};
use crate::paths::Paths;
use crate::pipeline::build::{BuildRecord, BuildResult, build_args, last_build, record_path};
use crate::recipe::{Recipe, Version};
use crate::tools::cmd::CmdFailed;
use crate::tools::podman::{BuildSpec, Podman};
use anyhow::{Context, Result, bail};

/// Bumped when what this module records changes (invalidates bootc build records; 2: the
/// image's composefs mode).
pub const BOOTC_BUILD_VERSION: u32 = 2;

fn cache_key(recipe: &Recipe, version: &Version, base_id: &str) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(crate::pipeline::hash_dir(&recipe.dir)?);
    h.update("\0");
    h.update(base_id);
    h.update("\0");
    h.update(serde_json::to_string(version)?);
    h.update(format!("\0bootc build {BOOTC_BUILD_VERSION}"));
    Ok(hex::encode(h.finalize())[..24].to_string())
}

/// The image's base: bootlab's own bootc base (built when missing), or one podman already has
/// (registry bases such as quay.io/fedora/fedora-bootc are never pulled here).
async fn ensure_base(
    paths: &Paths,
    podman: &Podman,
    recipe: &Recipe,
    timings: &mut Vec<StageTiming>,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<String> {
    if recipe.file.base == BOOTC_BASE_TAG {
        let (b, _) = guest::ensure_bootc_base(paths, ev, cancel).await?;
        let secs: f64 = b.timings.iter().map(|t| t.secs).sum();
        timings.push(StageTiming {
            stage: "base".into(),
            secs,
            cached: b.cached,
        });
        return Ok(b.image_id);
    }
    let t = StageTimer::start(ev, "base");
    let id = podman.image_id(&recipe.file.base, cancel).await?.with_context(|| {
        format!(
            "recipe {} builds FROM {}, which podman does not have (bootlab pulls from no registry: `podman pull {}` on a machine with access first)",
            recipe.name(),
            recipe.file.base,
            recipe.file.base
        )
    })?;
    timings.push(t.finish(true));
    Ok(id)
}

/// What `bootc container lint` said, the image's kernel and its `[composefs] enabled`.
struct Lint {
    lines: Vec<String>,
    kernel: String,
    composefs: String,
}

/// The image's `[composefs] enabled` value, from its prepare-root.conf (base64, as the lint
/// container printed it; empty when the image has none): read by the same parser as a guest's,
/// so only the `[composefs]` section counts.
fn composefs_enabled(image: &str, b64: &str) -> Result<String> {
    use base64::Engine;
    if b64.is_empty() {
        return Ok(String::new());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .with_context(|| format!("{image}: prepare-root.conf came back garbled"))?;
    let what = format!("prepare-root.conf in {image}");
    let mode =
        crate::deploy::composefs::parse_prepare_root(&what, &String::from_utf8_lossy(&bytes))?;
    Ok(mode.enabled_value().to_string())
}

/// `bootc container lint` in a throw-away container of `image` (no network). Fatal findings
/// fail the build with the findings in the message; warnings are kept.
async fn lint(
    podman: &Podman,
    image: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<Lint> {
    let stage = "lint";
    let out = podman
        .cmd()
        .args(["run", "--rm", "--network=none"])
        .args(podman.choice.ulimit_args())
        .args([
            image,
            "sh",
            "-c",
            "echo bootlab-kernel=$(ls /usr/lib/modules | head -n1); \
             f=/etc/ostree/prepare-root.conf; [ -e $f ] || f=/usr/lib/ostree/prepare-root.conf; \
             echo bootlab-prepare-root=$(base64 -w0 $f 2>/dev/null); exec bootc container lint",
        ])
        .capture()
        .run_unchecked(stage, ev, cancel)
        .await?;
    let mut kernel = String::new();
    let mut composefs = String::new();
    let mut lines = Vec::new();
    for l in out.tail.iter() {
        if let Some(k) = l.strip_prefix("bootlab-kernel=") {
            kernel = k.trim().to_string();
        } else if let Some(c) = l.strip_prefix("bootlab-prepare-root=") {
            composefs = composefs_enabled(image, c.trim())?;
        } else if !l.trim().is_empty() {
            lines.push(l.clone());
        }
    }
    if !out.status.success() {
        return Err(CmdFailed {
            command: format!("podman run {image} bootc container lint"),
            status: out.status.to_string(),
            tail: lines,
        })
        .context("bootc container lint found fatal problems in the image");
    }
    for l in &lines {
        ev.note(stage, format!("bootc container lint: {l}"));
    }
    Ok(Lint {
        lines,
        kernel,
        composefs,
    })
}

/// Build `version` of the bootc recipe `recipe` (see the module docs).
pub async fn build_bootc_image(
    paths: &Paths,
    recipe: &Recipe,
    version: &Version,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<BuildResult> {
    let podman = Podman::probe(paths, ev, cancel).await?;
    let mut timings = Vec::new();
    let base_id = ensure_base(paths, &podman, recipe, &mut timings, ev, cancel).await?;
    let key = cache_key(recipe, version, &base_id)?;
    let tag = recipe.image_tag(&version.id);
    let result = |rec: &BuildRecord, cached: bool, timings: Vec<StageTiming>| BuildResult {
        recipe: recipe.name().into(),
        version: version.id.clone(),
        image_tag: tag.clone(),
        image_id: rec.image_id.clone(),
        image_digest: rec.image_digest.clone(),
        branch: String::new(),
        commit: String::new(),
        kernel: rec.kernel.clone(),
        cached,
        timings,
        cold_secs: rec.cold_secs,
        lint: rec.lint.clone(),
        composefs: rec.composefs.clone(),
    };
    if let Some(rec) = last_build(paths, recipe.name(), &version.id)
        && rec.key == key
        && podman.image_id(&tag, cancel).await?.as_deref() == Some(rec.image_id.as_str())
    {
        ev.note(
            "build",
            format!("{tag} unchanged: reusing image {}", &rec.image_id[..12]),
        );
        for s in ["build", "lint"] {
            timings.push(StageTimer::start(ev, s).finish(true));
        }
        return Ok(result(&rec, true, timings));
    }
    let _lock = crate::pipeline::HostLock::acquire("build", ev, cancel).await?;
    let work = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(paths.cache.join("builds"))?;

    // Timed as this recipe's (crate::timings): images differ in what they take.
    let rev = ev.about(recipe.name());
    let t = StageTimer::start(&rev, "build");
    let iidfile = work.path().join("iid");
    let image_id = podman
        .build(
            &BuildSpec {
                context_dir: &recipe.dir,
                containerfile: &recipe.containerfile_path(),
                build_args: build_args(version),
                target: version.target.clone(),
                iidfile: &iidfile,
            },
            "build",
            ev,
            cancel,
        )
        .await
        .with_context(|| format!("building {} {}", recipe.name(), version.id))?;
    timings.push(t.finish(false));
    let image_digest = podman.image_digest(&image_id, cancel).await?;

    let t = StageTimer::start(&rev, "lint");
    let found = lint(&podman, &image_id, ev, cancel).await?;
    timings.push(t.finish(false));
    if found.kernel.is_empty() {
        bail!(
            "{} {} has no kernel in /usr/lib/modules: bootc cannot install it",
            recipe.name(),
            version.id
        );
    }

    podman.tag(&image_id, &tag, ev, cancel).await?;
    let rec = BuildRecord {
        key,
        image_id,
        image_digest,
        commit: String::new(),
        kernel: found.kernel,
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cold_secs: timings
            .iter()
            .filter(|t| t.stage != "base")
            .map(|t| t.secs)
            .sum(),
        conversion: 0,
        lint: found.lines,
        composefs: found.composefs,
        // The bootc base carries the small initramfs itself (the base's key covers it).
        initramfs_method: String::new(),
    };
    crate::paths::write_atomic(
        &record_path(paths, recipe.name(), &version.id),
        serde_json::to_string_pretty(&rec)?.as_bytes(),
    )?;
    Ok(result(&rec, false, timings))
}
