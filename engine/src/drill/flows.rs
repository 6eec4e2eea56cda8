//! The four drills as sequences of steps. Each step records its commands and checks; a failed
//! check that makes the rest meaningless ends the drill with a FAIL verdict.

use super::ops::{GUEST_SHARE_DIR, GuestOps, HostOps, Published, Via};
use super::run::{Run, StepRec, argv};
use super::{CutPoint, DrillSpec, Tooling};
use crate::deploy::{Deployment, HostStatus, admin, composefs};
use crate::pipeline::bootc::install::BOOTC_SHARE_DIR;
use crate::recipe::Recipe;
use anyhow::{Context, Result, anyhow, bail};

const ETC_MARKER: &str = "/etc/bootlab-drill/marker";
const VAR_MARKER: &str = "/var/lib/bootlab-drill/marker";
const VERSION_FILE: &str = "/usr/share/bootlab/version";
const USR_PROBE: &str = "/usr/.bootlab-drill-probe";
const BG_LOG: &str = "/var/lib/bootlab-drill/upgrade.log";
const BG_RC: &str = "/var/lib/bootlab-drill/upgrade.rc";

fn short(c: &str) -> &str {
    c.get(..12).unwrap_or(c)
}

/// "none", or the deployment found (for checks that require one).
fn found(d: Option<&Deployment>) -> String {
    d.map(describe).unwrap_or_else(|| "none".into())
}

fn describe(d: &Deployment) -> String {
    format!(
        "{}.{} {}",
        short(&d.checksum),
        d.serial,
        d.version.as_deref().unwrap_or("(no version)")
    )
}

/// Does a commit's `version` metadata name recipe version `id`? Equal, or `id` as a word of it
/// ("debian-minimal v2").
pub fn version_matches(meta: &str, id: &str) -> bool {
    meta == id
        || meta
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .any(|w| w == id)
}

async fn read_status<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    s: StepRec,
    t: Tooling,
) -> Result<(StepRec, HostStatus)> {
    // ostree's text is short: keep it whole; bootc's JSON is long: keep the identifying lines.
    let keep: &[&str] = match t {
        Tooling::Ostree => &[],
        Tooling::Bootc => &["imageDigest", "\"version\"", "rollbackQueued", "bootOrder"],
    };
    let (s, out) = run.exec_ok(s, t.status_argv(), keep).await?;
    let st = t
        .parse_status(&out.stdout)
        .with_context(|| format!("reading `{}`", t.status_argv().join(" ")))?;
    Ok((s, st))
}

/// `cat /usr/share/bootlab/version`, trimmed (None when absent: bootc images may not have it).
async fn version_file<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    s: &mut StepRec,
) -> Result<Option<String>> {
    let out = run.exec(s, argv(&["cat", VERSION_FILE]), &[]).await?;
    Ok(out.success().then(|| out.stdout.trim().to_string()))
}

/// The guest command that writes the drill's markers into /etc and /var (and syncs).
pub fn marker_argv(token: &str) -> Vec<String> {
    let script = format!(
        "mkdir -p /etc/bootlab-drill /var/lib/bootlab-drill && echo {token} > {ETC_MARKER} && echo {token} > {VAR_MARKER} && sync"
    );
    argv(&["sh", "-c", &script])
}

/// The guest commands that check the markers and /usr after a reboot, in the order sent.
pub fn verify_argvs() -> Vec<Vec<String>> {
    vec![
        argv(&["cat", ETC_MARKER]),
        argv(&["cat", VAR_MARKER]),
        argv(&["touch", USR_PROBE]),
    ]
}

/// The guest command that starts an upgrade detached from the agent, logging into /var
/// (line-buffered: ostree's stdout to a file is block-buffered, and we watch the log).
pub fn background_upgrade_argv(upgrade: &[String]) -> Vec<String> {
    let script = format!(
        "mkdir -p /var/lib/bootlab-drill && rm -f {BG_LOG} {BG_RC} && setsid -f sh -c 'stdbuf -oL -eL {} >{BG_LOG} 2>&1; echo $? >{BG_RC}' </dev/null >/dev/null 2>&1",
        upgrade.join(" ")
    );
    argv(&["sh", "-c", &script])
}

/// The guest command a power-cut drill polls to see how far the upgrade got.
pub fn poll_argv() -> Vec<String> {
    argv(&[
        "sh",
        "-c",
        &format!(
            "cat {BG_LOG} 2>/dev/null; [ -e {BG_RC} ] && echo bootlab-drill-rc=$(cat {BG_RC}); true"
        ),
    ])
}

async fn write_markers<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    spec: &DrillSpec,
) -> Result<()> {
    let s = run.begin("write /etc and /var markers");
    let (s, _) = run.exec_ok(s, marker_argv(&spec.token), &[]).await?;
    run.end(
        s,
        format!("token {} in {ETC_MARKER} and {VAR_MARKER}", spec.token),
    );
    Ok(())
}

/// After a reboot: /etc edits merged (or, after a real rollback, not: `etc_merged` false), /var
/// kept, /usr read-only.
async fn verify_state<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    s: &mut StepRec,
    spec: &DrillSpec,
    etc_merged: bool,
) -> Result<()> {
    for (what, path, merged) in [
        ("/etc edit made before is merged", ETC_MARKER, etc_merged),
        ("/var data kept", VAR_MARKER, true),
    ] {
        let out = run.exec(s, argv(&["cat", path]), &[]).await?;
        let got = if out.success() {
            out.stdout.trim().to_string()
        } else {
            format!("missing (exit {}: {})", out.exit, out.stderr.trim())
        };
        if merged {
            run.check(s, what, got == spec.token, spec.token.clone(), got);
        } else {
            // `bootc rollback` and `ostree admin set-default` boot the old deployment with its
            // own /etc: an edit made on the newer one stays there (only /var is shared).
            run.check(
                s,
                "/etc is the rollback deployment's own (the edit stays with the newer one)",
                got != spec.token,
                format!("not {}", spec.token),
                got,
            );
        }
    }
    let out = run.exec(s, argv(&["touch", USR_PROBE]), &[]).await?;
    let ro = !out.success();
    let actual = if ro {
        format!("refused: {}", out.stderr.trim())
    } else {
        "touch succeeded".to_string()
    };
    run.check(s, "/usr is read-only", ro, "`touch` refused", actual);
    if !ro {
        // Leave nothing behind on a writable /usr (e.g. `bootc usr-overlay`).
        let _ = run.exec_quiet(&argv(&["rm", "-f", USR_PROBE])).await;
    }
    Ok(())
}

/// An image that requires fs-verity boots only where every object of the guest's repository
/// has it: refuse before anything in the guest changes (see [`composefs::verity_refusal`]).
async fn require_verity_ready<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    mut s: StepRec,
    p: &Published,
) -> Result<StepRec> {
    if !p.requires_verity {
        return Ok(s);
    }
    let out = run
        .exec(&mut s, composefs::verity_ready_argv(), &[])
        .await?;
    if !out.success() {
        let why = composefs::verity_refusal(&p.recipe, &p.version);
        run.end(s, why.clone());
        bail!(why);
    }
    Ok(s)
}

/// The recipe version the guest runs now, and the one after it.
fn next_version(recipe: &Recipe, current: Option<&str>) -> Result<(String, String)> {
    let known = current.filter(|c| recipe.version(c).is_some());
    let cur = known
        .map(str::to_string)
        .unwrap_or_else(|| recipe.default_version().id.clone());
    let next = recipe.next_version(&cur).ok_or_else(|| {
        anyhow!(
            "{cur} is the last version of recipe {} (it has {}): roll back first, or add a version",
            recipe.name(),
            recipe.version_ids().join(", ")
        )
    })?;
    Ok((cur, next.id.clone()))
}

/// Offline family: the share mounted, the published commit visible, the booted origin following
/// `bootlab:<branch>` (after a rollback it is a bare checksum: set it back).
async fn prepare_ostree_pull<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    booted: &Deployment,
    p: &Published,
) -> Result<()> {
    let mut s = run.begin("guest sees the published commit");
    run.mount_updates(&mut s).await?;
    // The ref file itself: no ostree repo locking on a read-only 9p mount.
    let ref_file = format!("{GUEST_SHARE_DIR}/repo/refs/heads/{}", p.branch);
    let (mut s, out) = run.exec_ok(s, argv(&["cat", &ref_file]), &[]).await?;
    let seen = out.stdout.trim().to_string();
    if let Some(c) = &p.commit {
        s = run.require(
            s,
            "update share has the published commit",
            &seen == c,
            c.clone(),
            seen.clone(),
        )?;
    }
    let want = admin::refspec(&p.branch);
    let have = booted.origin_refspec.clone().unwrap_or_default();
    if let Some(cmd) = admin::retarget_origin(Some(booted), &p.branch) {
        let (s2, _) = run.exec_ok(s, cmd, &[]).await?;
        s = s2;
        run.end(
            s,
            format!(
                "{} at {}; origin was {have:?}, set to {want}",
                p.branch,
                short(&seen)
            ),
        );
    } else {
        run.end(
            s,
            format!("{} at {}; origin {want}", p.branch, short(&seen)),
        );
    }
    Ok(())
}

/// bootc family, the image in the update share: the share mounted and the published image
/// visible as the guest sees it (the tag's digest in the layout's index.json, or the archive).
/// bootc reads the share itself, so a share the guest lost would only show as bootc's
/// "no such file". An image elsewhere (a registry) needs neither.
async fn prepare_bootc_pull<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    p: &Published,
) -> Result<()> {
    let Some(img) = p.image.as_deref() else {
        return Ok(());
    };
    let (transport, image) = crate::deploy::bootc::split_target(img);
    if !image.starts_with(&format!("{BOOTC_SHARE_DIR}/")) {
        return Ok(());
    }
    let mut s = run.begin("guest sees the published image");
    run.mount_updates(&mut s).await?;
    match (transport.as_str(), p.digest.as_deref()) {
        ("oci", Some(want)) => {
            let (layout, tag) = image
                .rsplit_once(':')
                .with_context(|| format!("{image} names no tag"))?;
            let index = format!("{layout}/index.json");
            let (s2, out) = run.exec_ok(s, argv(&["cat", &index]), &[]).await?;
            let seen = crate::pipeline::bootc::install::index_digest(&out.stdout, tag)
                .ok()
                .flatten();
            let s2 = run.require(
                s2,
                "update share has the published image",
                seen.as_deref() == Some(want),
                format!("{tag} → {want}"),
                match &seen {
                    Some(d) => format!("{tag} → {d}"),
                    None => format!("no tag {tag} in {index}"),
                },
            )?;
            let d = want.strip_prefix("sha256:").unwrap_or(want);
            run.end(s2, format!("{image} is {}", short(d)));
        }
        _ => {
            let (s2, _) = run.exec_ok(s, argv(&["test", "-s", &image]), &[]).await?;
            run.end(s2, format!("{image} is there"));
        }
    }
    Ok(())
}

/// What the guest needs before it pulls what the host published.
async fn prepare_pull<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    t: Tooling,
    booted: &Deployment,
    p: &Published,
) -> Result<()> {
    match t {
        Tooling::Ostree => prepare_ostree_pull(run, booted, p).await,
        Tooling::Bootc => prepare_bootc_pull(run, p).await,
    }
}

/// Where an upgrade (the drill, or the one a power cut interrupts) starts and goes.
struct UpgradeFrom {
    booted: Deployment,
    /// The recipe version counted from, and the next one (published).
    cur: String,
    target: String,
    p: Published,
}

/// The steps both upgrade drills begin with, all before the guest changes: read the booted
/// deployment and its version, then build, commit and publish the next version on the host.
async fn booted_and_next_published<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    spec: &DrillSpec,
    t: Tooling,
) -> Result<UpgradeFrom> {
    let s = run.begin("read deployments before");
    let (s, before) = read_status(run, s, t).await?;
    let booted = before.booted().cloned();
    let mut s = run.require(
        s,
        "a booted deployment",
        booted.is_some(),
        "one",
        found(booted.as_ref()),
    )?;
    let booted = booted.expect("checked");
    let cur_file = current_version(run, &mut s, t, &before).await?;
    run.fact("old.deployment", describe(&booted));
    run.fact("old.ident", t.ident(&booted));
    run.end(s, format!("booted {}", describe(&booted)));
    let (cur, target) = next_version(&spec.recipe, cur_file.as_deref())?;
    if let Some(v) = cur_file.as_deref().filter(|v| *v != cur) {
        // e.g. a bootc image labelled "nightly": say which recipe version we count from.
        run.fact(
            "old.image_version",
            format!("{v} (not a version of the recipe; counting from {cur})"),
        );
    }
    run.fact("old.version", cur.clone());
    run.fact("new.version", target.clone());

    let mut s = run.begin(&format!("host: publish {target}"));
    let p = run
        .publish(&mut s, spec.recipe.name(), &target, Via::Stable)
        .await?;
    let s = require_verity_ready(run, s, &p).await?;
    run.end(s, p.summary.clone());
    Ok(UpgradeFrom {
        booted,
        cur,
        target,
        p,
    })
}

pub async fn upgrade<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    spec: &DrillSpec,
    t: Tooling,
) -> Result<String> {
    // 1. What runs now; 2. host: the next version, built, committed, published.
    let UpgradeFrom {
        booted,
        cur,
        target,
        p,
    } = booted_and_next_published(run, spec, t).await?;
    if let Some(c) = &p.commit {
        run.fact("new.commit", c.clone());
    }
    write_markers(run, spec).await?;
    prepare_pull(run, t, &booted, &p).await?;

    // 3. Guest: pull and deploy.
    let s = run.begin("upgrade");
    let (s, _) = run
        .exec_ok(
            s,
            t.upgrade_argv(),
            &[
                "Copying /etc",
                "Transaction complete",
                "Queued for next boot",
                "No update",
                "error",
            ],
        )
        .await?;
    run.end(s, t.upgrade_argv().join(" "));

    let s = run.begin("read deployments after upgrade");
    let (s, after) = read_status(run, s, t).await?;
    let new = match t {
        Tooling::Ostree => after.pending().or(after.staged()).cloned(),
        Tooling::Bootc => after.staged().cloned(),
    };
    let mut s = run.require(
        s,
        "a new deployment waits for the next boot",
        new.is_some(),
        "pending/staged deployment",
        found(new.as_ref()),
    )?;
    let new = new.expect("checked");
    let still = after.booted().map(|d| t.ident(d)).unwrap_or_default();
    run.check(
        &mut s,
        "booted unchanged before reboot",
        still == t.ident(&booted),
        t.ident(&booted),
        still,
    );
    s = run.require(
        s,
        "new deployment differs from the booted one",
        t.ident(&new) != t.ident(&booted),
        format!("not {}", t.ident(&booted)),
        t.ident(&new),
    )?;
    if let Some(c) = &p.commit {
        s = run.require(
            s,
            "new deployment is the published commit",
            &new.checksum == c,
            c.clone(),
            new.checksum.clone(),
        )?;
    }
    if let Some(dg) = &p.digest {
        let got = new.digest.clone().unwrap_or_default();
        s = run.require(
            s,
            "staged image is the published digest",
            &got == dg,
            dg.clone(),
            got,
        )?;
    }
    run.fact("new.deployment", describe(&new));
    run.fact("new.ident", t.ident(&new));
    run.end(s, format!("next boot: {}", describe(&new)));

    // 4. Reboot into it.
    let mut s = run.begin("reboot");
    run.reboot(&mut s).await?;
    run.end(s, "guest is back");

    // 5. Verify.
    let s = run.begin("verify after reboot");
    let (mut s, now) = read_status(run, s, t).await?;
    let b = now
        .booted()
        .map(|d| t.ident(d))
        .unwrap_or_else(|| "none".into());
    run.check(
        &mut s,
        "booted is the new deployment",
        b == t.ident(&new),
        t.ident(&new),
        b,
    );
    let r = now
        .rollback()
        .map(|d| t.ident(d))
        .unwrap_or_else(|| "none".into());
    run.check(
        &mut s,
        "rollback is the old deployment",
        r == t.ident(&booted),
        t.ident(&booted),
        r,
    );
    match t {
        Tooling::Ostree => {
            let f = version_file(run, &mut s)
                .await?
                .unwrap_or_else(|| "missing".into());
            run.check(
                &mut s,
                &format!("{VERSION_FILE} says the new version"),
                f == target,
                target.clone(),
                f,
            );
            let meta = now
                .booted()
                .and_then(|d| d.version.clone())
                .unwrap_or_default();
            run.check(
                &mut s,
                "booted deployment's Version",
                version_matches(&meta, &target),
                target.clone(),
                meta,
            );
        }
        Tooling::Bootc => {
            let want = new.version.clone().unwrap_or_default();
            let got = now
                .booted()
                .and_then(|d| d.version.clone())
                .unwrap_or_default();
            run.check(&mut s, "booted image version", got == want, want, got);
        }
    }
    verify_state(run, &mut s, spec, true).await?;
    run.end(s, "deployments, version, /etc, /var and /usr checked");
    Ok(format!("{cur} → {target}: booted {}", describe(&new)))
}

/// The booted deployment's version as the guest tells it (the version file for the offline
/// family, the image version for bootc).
async fn current_version<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    s: &mut StepRec,
    t: Tooling,
    st: &HostStatus,
) -> Result<Option<String>> {
    match t {
        Tooling::Ostree => version_file(run, s).await,
        Tooling::Bootc => Ok(st.booted().and_then(|d| d.version.clone())),
    }
}

pub async fn rollback<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    spec: &DrillSpec,
    t: Tooling,
) -> Result<String> {
    let s = run.begin("read deployments before");
    let (s, before) = read_status(run, s, t).await?;
    let booted = before.booted().cloned();
    let rb = before.rollback().cloned();
    let s = run.require(
        s,
        "a booted deployment",
        booted.is_some(),
        "one",
        found(booted.as_ref()),
    )?;
    let mut s = run.require(
        s,
        "a rollback deployment",
        rb.is_some(),
        "one",
        found(rb.as_ref()),
    )?;
    let (booted, rb) = (booted.expect("checked"), rb.expect("checked"));
    let cur = current_version(run, &mut s, t, &before).await?;
    run.fact("old.deployment", describe(&booted));
    run.fact("old.ident", t.ident(&booted));
    run.fact("target.deployment", describe(&rb));
    run.fact("target.ident", t.ident(&rb));
    if let Some(v) = &cur {
        run.fact("old.version", v.clone());
    }
    run.end(
        s,
        format!("booted {}, rollback {}", describe(&booted), describe(&rb)),
    );

    write_markers(run, spec).await?;

    let s = run.begin("make the rollback the default");
    // Set when the guest's ostree reorders (set-default) instead of deploying again.
    let mut reorders = false;
    let s = match t {
        Tooling::Bootc => {
            run.exec_ok(
                s,
                crate::deploy::bootc::rollback_argv(),
                &["Next boot", "rollback"],
            )
            .await?
            .0
        }
        Tooling::Ostree => {
            let mut s = s;
            let v = run
                .exec(&mut s, admin::version_argv(), &["Version"])
                .await?;
            let (_, cmds) = admin::rollback(&before, &v.stdout)?;
            reorders = admin::ostree_at_least(&v.stdout, 2023, 6);
            for cmd in cmds {
                s = run
                    .exec_ok(s, cmd, &["Copying /etc", "Transaction complete"])
                    .await?
                    .0;
            }
            s
        }
    };
    run.end(s, "rollback queued");

    let s = run.begin("read deployments after");
    let (mut s, after) = read_status(run, s, t).await?;
    if reorders {
        // set-default: the same deployments (checksum.serial), reordered; none new, every
        // origin still following the update branch.
        let (mut was, mut now) = (
            admin::deployment_ids(&before),
            admin::deployment_ids(&after),
        );
        let reordered = now != was;
        was.sort();
        now.sort();
        run.check(
            &mut s,
            "the same deployments, reordered (none new)",
            reordered && was == now,
            was.join(" "),
            admin::deployment_ids(&after).join(" "),
        );
        let origins: Vec<String> = after
            .deployments
            .iter()
            .map(|d| d.origin_refspec.clone().unwrap_or_default())
            .collect();
        run.check(
            &mut s,
            "every origin follows bootlab:",
            origins.iter().all(|o| o.starts_with("bootlab:")),
            "bootlab:<branch>",
            origins.join(" "),
        );
    }
    if t == Tooling::Bootc {
        run.check(
            &mut s,
            "rollbackQueued",
            after.rollback_queued,
            "true",
            after.rollback_queued.to_string(),
        );
    }
    let next = after
        .next_boot()
        .map(|d| t.ident(d))
        .unwrap_or_else(|| "none".into());
    let s = run.require(
        s,
        "next boot is the old deployment",
        next == t.ident(&rb),
        t.ident(&rb),
        next,
    )?;
    run.end(s, format!("next boot: {}", short(&t.ident(&rb))));

    let mut s = run.begin("reboot");
    run.reboot(&mut s).await?;
    run.end(s, "guest is back");

    let s = run.begin("verify after reboot");
    let (mut s, now) = read_status(run, s, t).await?;
    let b = now
        .booted()
        .map(|d| t.ident(d))
        .unwrap_or_else(|| "none".into());
    run.check(
        &mut s,
        "booted is the former rollback",
        b == t.ident(&rb),
        t.ident(&rb),
        b,
    );
    let r = now
        .rollback()
        .map(|d| t.ident(d))
        .unwrap_or_else(|| "none".into());
    run.check(
        &mut s,
        "rollback is the formerly booted",
        r == t.ident(&booted),
        t.ident(&booted),
        r,
    );
    let v_now = current_version(run, &mut s, t, &now)
        .await?
        .unwrap_or_else(|| "missing".into());
    if let Some(meta) = &rb.version {
        run.check(
            &mut s,
            "booted version is the old one",
            version_matches(meta, &v_now),
            meta.clone(),
            v_now.clone(),
        );
    }
    run.fact("new.version", v_now.clone());
    if reorders {
        // The must-show of a real rollback: after the reboot still the same deployments.
        let (mut was, mut now_ids) = (admin::deployment_ids(&before), admin::deployment_ids(&now));
        was.sort();
        now_ids.sort();
        run.check(
            &mut s,
            "after the reboot still the same deployments (none new)",
            was == now_ids,
            was.join(" "),
            admin::deployment_ids(&now).join(" "),
        );
    }
    // A redeploy (ostree before 2023.6) merges /etc into the new deployment; a real rollback
    // (bootc, set-default) boots the old deployment with its own /etc.
    verify_state(run, &mut s, spec, t == Tooling::Ostree && !reorders).await?;
    run.end(s, "deployments, version, /etc, /var and /usr checked");
    Ok(format!(
        "{} → {v_now}: booted {}",
        cur.unwrap_or_else(|| "?".into()),
        short(&t.ident(&rb))
    ))
}

pub async fn switch<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    spec: &DrillSpec,
    t: Tooling,
    to: &Recipe,
    to_version: Option<&str>,
    via: Via,
) -> Result<String> {
    let version = to.resolve_version(to_version)?.id.clone();
    let s = run.begin("read deployments before");
    let (s, before) = read_status(run, s, t).await?;
    let booted = before.booted().cloned();
    let s = run.require(
        s,
        "a booted deployment",
        booted.is_some(),
        "one",
        found(booted.as_ref()),
    )?;
    let booted = booted.expect("checked");
    run.fact("old.deployment", describe(&booted));
    run.fact("old.ident", t.ident(&booted));
    run.fact("from.recipe", spec.recipe.name().to_string());
    run.fact("to.recipe", to.name().to_string());
    run.end(s, format!("booted {}", describe(&booted)));

    let mut s = run.begin(&format!("host: publish {} {version}", to.name()));
    let p = run.publish(&mut s, to.name(), &version, via).await?;
    let s = require_verity_ready(run, s, &p).await?;
    run.end(s, p.summary.clone());
    write_markers(run, spec).await?;

    if t == Tooling::Bootc {
        prepare_bootc_pull(run, &p).await?;
    }
    let s = run.begin("switch");
    let (s, target_desc) = match t {
        Tooling::Ostree => {
            let mut s = s;
            run.mount_updates(&mut s).await?;
            for cmd in admin::switch(&p.branch) {
                s = run
                    .exec_ok(s, cmd, &["Copying /etc", "Transaction complete", "error"])
                    .await?
                    .0;
            }
            (s, admin::refspec(&p.branch))
        }
        Tooling::Bootc => {
            let img = p.image.clone().ok_or_else(|| {
                anyhow!("the host published no image reference for {}", to.name())
            })?;
            let (transport, image) = crate::deploy::bootc::split_target(&img);
            let (s, _) = run
                .exec_ok(
                    s,
                    crate::deploy::bootc::switch_argv(&img),
                    &["Queued for next boot", "error"],
                )
                .await?;
            (s, format!("{transport}:{image}"))
        }
    };
    run.fact("to.target", target_desc.clone());
    run.end(s, format!("switched to {target_desc}"));

    let s = run.begin("read deployments after switch");
    let (mut s, after) = read_status(run, s, t).await?;
    let new = match t {
        Tooling::Ostree => after.pending().or(after.staged()).cloned(),
        Tooling::Bootc => after.staged().cloned(),
    };
    if t == Tooling::Bootc {
        let spec_img = after
            .spec_image
            .as_ref()
            .map(|i| i.to_string())
            .unwrap_or_default();
        run.check(
            &mut s,
            "spec.image follows the target",
            spec_img == target_desc,
            target_desc.clone(),
            spec_img,
        );
    }
    let mut s = run.require(
        s,
        "a new deployment waits for the next boot",
        new.is_some(),
        "pending/staged",
        found(new.as_ref()),
    )?;
    let new = new.expect("checked");
    if let (Tooling::Bootc, Some(d)) = (t, &p.digest) {
        // An oci-archive is written anew, so only layout tags have a digest known beforehand.
        s = run.require(
            s,
            "staged digest is the published one",
            new.digest.as_deref() == Some(d.as_str()),
            d.clone(),
            new.digest.clone().unwrap_or_else(|| "none".into()),
        )?;
    }
    if t == Tooling::Ostree {
        let o = new.origin_refspec.clone().unwrap_or_default();
        run.check(
            &mut s,
            "new deployment's origin",
            o == target_desc,
            target_desc.clone(),
            o,
        );
        if let Some(c) = &p.commit {
            s = run.require(
                s,
                "new deployment is the published commit",
                &new.checksum == c,
                c.clone(),
                new.checksum.clone(),
            )?;
        }
    }
    run.fact("new.deployment", describe(&new));
    run.end(s, format!("next boot: {}", describe(&new)));

    let mut s = run.begin("reboot");
    run.reboot(&mut s).await?;
    run.end(s, "guest is back");

    let s = run.begin("verify after reboot");
    let (mut s, now) = read_status(run, s, t).await?;
    let nb = now.booted().cloned();
    let b = nb
        .as_ref()
        .map(|d| t.ident(d))
        .unwrap_or_else(|| "none".into());
    run.check(
        &mut s,
        "booted is the switched-to deployment",
        b == t.ident(&new),
        t.ident(&new),
        b,
    );
    match t {
        Tooling::Ostree => {
            let o = nb
                .as_ref()
                .and_then(|d| d.origin_refspec.clone())
                .unwrap_or_default();
            run.check(
                &mut s,
                "booted origin",
                o == target_desc,
                target_desc.clone(),
                o,
            );
            let f = version_file(run, &mut s)
                .await?
                .unwrap_or_else(|| "missing".into());
            run.check(&mut s, VERSION_FILE, f == version, version.clone(), f);
        }
        Tooling::Bootc => {
            let img = nb
                .as_ref()
                .and_then(|d| d.image.as_ref())
                .map(|i| i.to_string())
                .unwrap_or_default();
            run.check(
                &mut s,
                "booted image",
                img == target_desc,
                target_desc.clone(),
                img,
            );
            let v = nb.as_ref().and_then(|d| d.version.clone());
            run.check(
                &mut s,
                "booted image version",
                v.as_deref().is_some_and(|v| version_matches(v, &version)),
                version.clone(),
                v.unwrap_or_else(|| "none".into()),
            );
        }
    }
    let r = now
        .rollback()
        .map(|d| t.ident(d))
        .unwrap_or_else(|| "none".into());
    run.check(
        &mut s,
        "rollback is the old deployment",
        r == t.ident(&booted),
        t.ident(&booted),
        r,
    );
    verify_state(run, &mut s, spec, true).await?;
    run.end(
        s,
        "deployments, origin, version, /etc, /var and /usr checked",
    );
    Ok(format!(
        "{} → {} {version}: booted {}",
        spec.recipe.name(),
        to.name(),
        describe(&new)
    ))
}

/// What the background upgrade log says about how far it got.
fn phase_of(log: &str, rc: Option<i32>) -> &'static str {
    if rc.is_some() {
        "finished"
    } else if log.contains("Transaction complete") || log.contains("Queued for next boot") {
        "bootloader swapped, cleaning up"
    } else if log.contains("Copying /etc changes") {
        "writing the new deployment (/etc merge seen)"
    } else {
        "pulling / checking out"
    }
}

pub async fn powercut<G: GuestOps, H: HostOps>(
    run: &mut Run<'_, G, H>,
    spec: &DrillSpec,
    t: Tooling,
    at: CutPoint,
) -> Result<String> {
    // Every precondition is checked before anything in the guest changes: first what needs no
    // guest command (can the VM come back after the cut?), then what only reads the guest
    // (booted deployment, next version), then the host's publish and the share. Only then the
    // origin, the markers and the upgrade.
    let mut s = run.begin("the VM can be powered on again after a cut");
    run.power_cycle_ready(&mut s).await?;
    run.end(s, "its record and disk stay on the host when QEMU stops");

    let UpgradeFrom {
        booted,
        cur,
        target,
        p,
    } = booted_and_next_published(run, spec, t).await?;
    prepare_pull(run, t, &booted, &p).await?;

    write_markers(run, spec).await?;

    // Start the upgrade detached from the agent, its output in /var so we can watch it.
    let s = run.begin("start the upgrade in the background");
    let (s, _) = run
        .exec_ok(s, background_upgrade_argv(&t.upgrade_argv()), &[])
        .await?;
    let start = run.elapsed();
    run.end(s, t.upgrade_argv().join(" "));

    let at = match at {
        CutPoint::Random => CutPoint::Secs(1.0 + fastrand::f64() * 39.0),
        other => other,
    };
    run.fact("cut.asked", at.to_string());
    let mut s = run.begin(&format!("wait for the cut point ({at})"));
    let poll = poll_argv();
    let deadline = std::time::Duration::from_secs(900);
    let (last, phase) = loop {
        let out = run.exec_quiet(&poll).await?;
        let rc = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("bootlab-drill-rc="))
            .and_then(|v| v.trim().parse::<i32>().ok());
        let since = run.elapsed() - start;
        let reached = match at {
            CutPoint::Secs(x) => since >= x,
            CutPoint::EtcMerge => out.stdout.contains("Copying /etc changes"),
            CutPoint::Finished | CutPoint::Random => rc.is_some(),
        };
        if reached || rc.is_some() {
            break (out.clone(), phase_of(&out.stdout, rc));
        }
        if since > deadline.as_secs_f64() {
            return Err(anyhow!(
                "the upgrade neither finished nor reached {at} in {deadline:?}"
            ));
        }
        let wait = match at {
            CutPoint::Secs(x) => (x - since).clamp(0.05, 1.0),
            _ => 0.5,
        };
        tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
    };
    run.evidence(
        &mut s,
        poll.clone(),
        &last,
        &[
            "Copying /etc",
            "Transaction complete",
            "Queued",
            "rc=",
            "error",
        ],
    );
    let cut_secs = run.elapsed() - start;
    run.fact("cut.after_secs", format!("{cut_secs:.1}"));
    run.fact("cut.phase", phase.to_string());
    run.end(s, format!("{cut_secs:.1} s into the upgrade: {phase}"));

    let mut s = run.begin("cut the power");
    run.powercut(&mut s).await?;
    run.end(
        s,
        format!("power cut {cut_secs:.1} s into the upgrade ({phase})"),
    );

    let mut s = run.begin("power on");
    run.power_on(&mut s).await?;
    run.end(s, "guest is back");

    let s = run.begin("verify a complete deployment booted");
    let (mut s, now) = read_status(run, s, t).await?;
    let nb = now.booted().cloned();
    s = run.require(
        s,
        "a booted deployment",
        nb.is_some(),
        "one",
        found(nb.as_ref()),
    )?;
    let nb = nb.expect("checked");
    let id = t.ident(&nb);
    let is_new = match &p.commit {
        Some(c) if t == Tooling::Ostree => &nb.checksum == c,
        _ => id != t.ident(&booted),
    };
    let which = if id == t.ident(&booted) {
        "old"
    } else if is_new {
        "new"
    } else {
        "unknown"
    };
    run.check(
        &mut s,
        "booted is the old or the new deployment",
        which != "unknown",
        format!("{} or the published {}", short(&t.ident(&booted)), target),
        describe(&nb),
    );
    let want = if which == "new" {
        target.clone()
    } else {
        cur.clone()
    };
    if t == Tooling::Ostree {
        let f = version_file(run, &mut s)
            .await?
            .unwrap_or_else(|| "missing".into());
        run.check(
            &mut s,
            &format!("{VERSION_FILE} matches the booted deployment"),
            f == want,
            want.clone(),
            f,
        );
        let meta = nb.version.clone().unwrap_or_default();
        run.check(
            &mut s,
            "booted deployment's Version",
            version_matches(&meta, &want),
            want.clone(),
            meta,
        );
    }
    run.fact(
        "booted.after_cut",
        format!("{which} ({want}) {}", describe(&nb)),
    );
    verify_state(run, &mut s, spec, true).await?;
    run.end(
        s,
        format!("booted the {which} deployment ({want}) after a cut {cut_secs:.1} s in ({phase})"),
    );
    Ok(format!(
        "power cut {cut_secs:.1} s into the upgrade ({phase}); booted the {which} deployment ({want})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::admin::ostree_at_least;

    #[test]
    fn versions_match_by_word() {
        assert!(version_matches("v2", "v2"));
        assert!(version_matches("debian-minimal v2", "v2"));
        assert!(!version_matches("v21", "v2"));
        assert!(!version_matches("", "v2"));
    }

    #[test]
    fn ostree_version_gate() {
        let old = "libostree:\n Version: '2022.7'\n Git: 2022.7\n Features:\n  - libcurl\n";
        let new = "libostree:\n Version: '2024.5'\n";
        assert!(!ostree_at_least(old, 2023, 6));
        assert!(ostree_at_least(new, 2023, 6));
        assert!(!ostree_at_least("garbage", 2023, 6));
    }

    #[test]
    fn phases_from_the_log() {
        assert_eq!(phase_of("", None), "pulling / checking out");
        assert_eq!(
            phase_of(
                "Copying /etc changes: 1 modified, 0 removed, 2 added\n",
                None
            ),
            "writing the new deployment (/etc merge seen)"
        );
        assert_eq!(phase_of("x", Some(0)), "finished");
    }
}
