//! The drill state machines run against replayed guests: recorded `bootc status` documents (the
//! real bootc fixtures, and the derived ones that chain them) and `ostree admin status` texts.
//! Each test asserts the exact commands bootlab sends, in order, and the verdict — including FAIL
//! verdicts when the replayed after-state is wrong.

use bootlab::drill::replay::{Call, ReplayGuest, ReplayHost};
use bootlab::drill::{
    CutPoint, DrillKind, DrillSpec, ExecOutput, Published, Verdict, Via, marker_argv, run_drill,
    verify_argvs,
};
use bootlab::events::{CancellationToken, Emitter, Event};
use bootlab::recipe::{Family, Guest, Recipe, RecipeFile, Version};
use std::path::PathBuf;

const TOKEN: &str = "bootlab-replaytoken";
const D16DC: &str = "sha256:16dc2b6256b4ff0d2ec18d2dbfb06d117904010c8cf9732cdb022818cf7a7566";
const D736B: &str = "sha256:736b359467c9437c1ac915acaae952aad854e07eb4a16a94999a48af08c83c34";

fn fixture(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `bootc status --format=json` prints JSON: the YAML fixtures, converted.
fn bootc_json(rel: &str) -> ExecOutput {
    let v: serde_json::Value =
        serde_yaml_ng::from_str(&fixture(&format!("bootc-status/{rel}"))).unwrap();
    ExecOutput::ok(serde_json::to_string_pretty(&v).unwrap())
}

fn recipe(family: Family) -> Recipe {
    let v = |id: &str| Version {
        id: id.into(),
        changes: format!("{id} changes"),
        build_args: Default::default(),
        target: None,
    };
    Recipe {
        origin: bootlab::recipe::Origin::Shipped,
        file: RecipeFile {
            name: if family == Family::Bootc {
                "fedora-bootc-demo"
            } else {
                "debian-minimal"
            }
            .into(),
            title: "t".into(),
            summary: "s".into(),
            family,
            base: "b".into(),
            containerfile: "Containerfile".into(),
            default_version: Some("v1".into()),
            guest: Guest::default(),
            versions: vec![v("v1"), v("v2"), v("v3")],
        },
        dir: PathBuf::from("/nonexistent"),
    }
}

fn spec(kind: DrillKind, family: Family) -> DrillSpec {
    let mut s = DrillSpec::new(kind, "replay-vm", recipe(family));
    s.token = TOKEN.into();
    s
}

fn bootc_published(version: &str) -> Published {
    Published {
        recipe: "fedora-bootc-demo".into(),
        version: version.into(),
        branch: String::new(),
        commit: None,
        image: Some("quay.io/example/someimage:latest".into()),
        digest: None,
        summary: format!("replayed: built and pushed {version}"),
        requires_verity: false,
    }
}

fn with_verification(g: ReplayGuest) -> ReplayGuest {
    with_verification_etc(g, ExecOutput::ok(format!("{TOKEN}\n")))
}

/// The same, with what the guest's /etc marker read answers (after a bootc rollback the old
/// deployment boots with its own /etc, which never saw the marker: checked on a real guest).
fn with_verification_etc(g: ReplayGuest, etc_out: ExecOutput) -> ReplayGuest {
    let [etc, var, touch]: [Vec<String>; 3] = verify_argvs().try_into().unwrap();
    g.exec_owned(etc, etc_out)
        .exec_owned(var, ExecOutput::ok(format!("{TOKEN}\n")))
        .exec_owned(
            touch,
            ExecOutput::failed(
                1,
                "touch: cannot touch '/usr/.bootlab-drill-probe': Read-only file system\n",
            ),
        )
}

fn exec(a: &[&str]) -> Call {
    Call::Exec(a.iter().map(|s| s.to_string()).collect())
}

const STATUS: &[&str] = &["bootc", "status", "--format=json"];

async fn drive(
    spec: &DrillSpec,
    g: &mut ReplayGuest,
    h: &mut ReplayHost,
) -> bootlab::drill::Report {
    let (ev, mut rx) = Emitter::channel();
    let r = run_drill(spec, g, h, &ev, &CancellationToken::new()).await;
    drop(ev);
    // The drill reports its progress as events: every guest command is shown before it runs.
    let mut commands = 0;
    while let Ok(s) = rx.try_recv() {
        if matches!(s.event, Event::Command { .. }) {
            commands += 1;
        }
    }
    let execs = g.log.iter().filter(|c| matches!(c, Call::Exec(_))).count();
    assert_eq!(commands, execs, "one Command event per guest command");
    r
}

#[tokio::test]
async fn bootc_upgrade_passes_and_sends_the_expected_commands() {
    let mut g = with_verification(
        ReplayGuest::new()
            .exec(STATUS, bootc_json("spec-booted-usroverlay.yaml"))
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .exec(
                &["bootc", "upgrade"],
                ExecOutput::ok("Queued for next boot: quay.io/example/someimage:latest\n  Version: nightly\n  Digest: sha256:16dc2b6256b4ff0d2ec18d2dbfb06d117904010c8cf9732cdb022818cf7a7566\n"),
            )
            .exec(STATUS, bootc_json("spec-staged-booted.yaml"))
            .reboot()
            .exec(STATUS, bootc_json("derived/upgraded-after-reboot.yaml")),
    );
    let mut h = ReplayHost::new(vec![bootc_published("v2")]);
    let r = drive(&spec(DrillKind::Upgrade, Family::Bootc), &mut g, &mut h).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.render());
    assert!(g.remaining().is_empty(), "unsent: {:?}", g.remaining());
    let [etc, var, touch]: [Vec<String>; 3] = verify_argvs().try_into().unwrap();
    assert_eq!(
        g.log,
        vec![
            exec(STATUS),
            Call::Exec(marker_argv(TOKEN)),
            exec(&["bootc", "upgrade"]),
            exec(STATUS),
            Call::Reboot,
            exec(STATUS),
            Call::Exec(etc),
            Call::Exec(var),
            Call::Exec(touch),
        ]
    );
    assert_eq!(
        h.asked,
        vec![("fedora-bootc-demo".to_string(), "v2".to_string())]
    );
    assert_eq!(r.facts["old.ident"], D736B);
    assert_eq!(r.facts["new.ident"], D16DC);
    // The timeline carries the evidence: the exact command and its output.
    let up = r.steps.iter().find(|s| s.name == "upgrade").unwrap();
    assert_eq!(up.evidence[0].command, vec!["bootc", "upgrade"]);
    assert!(up.evidence[0].excerpt.contains("Queued for next boot"));
    let text = r.render();
    eprintln!("{text}");
    assert!(text.contains("PASS"), "{text}");
    assert!(text.contains("guest$ bootc upgrade"), "{text}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["verdict"], "pass");
}

/// An image that requires fs-verity (prepare-root.conf `enabled = verity`, debian-bootc v4) on a
/// guest whose repository lacks it: the drill asks bootc's own mark, gets "no verity" and stops
/// with an error before anything in the guest changes (no markers, no `bootc upgrade`).
#[tokio::test]
async fn bootc_upgrade_to_a_verity_image_is_refused_where_objects_lack_it() {
    let ready = bootlab::deploy::composefs::verity_ready_argv();
    let mut g = ReplayGuest::new()
        .exec(STATUS, bootc_json("spec-booted-usroverlay.yaml"))
        .exec_owned(
            ready.clone(),
            ExecOutput::failed(1, "error: No verity data found\n"),
        );
    let mut p = bootc_published("v4");
    p.requires_verity = true;
    let mut h = ReplayHost::new(vec![p]);
    let r = drive(&spec(DrillKind::Upgrade, Family::Bootc), &mut g, &mut h).await;
    assert_eq!(r.verdict, Verdict::Error, "{}", r.render());
    assert!(r.reason.contains("requires fs-verity"), "{}", r.reason);
    assert!(r.reason.contains("fsverity-enable-all"), "{}", r.reason);
    assert_eq!(g.log, vec![exec(STATUS), Call::Exec(ready)]);

    // With the mark present the same drill goes on to write its markers and upgrade.
    let ready = bootlab::deploy::composefs::verity_ready_argv();
    let mut g = ReplayGuest::new()
        .exec(STATUS, bootc_json("spec-booted-usroverlay.yaml"))
        .exec_owned(ready.clone(), ExecOutput::ok("sha256:4c1a…\n"))
        .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
        .exec(
            &["bootc", "upgrade"],
            ExecOutput::ok("No changes in: quay.io/example/someimage:latest\n"),
        )
        .exec(STATUS, bootc_json("spec-booted-usroverlay.yaml"));
    let mut p = bootc_published("v4");
    p.requires_verity = true;
    let mut h = ReplayHost::new(vec![p]);
    let r = drive(&spec(DrillKind::Upgrade, Family::Bootc), &mut g, &mut h).await;
    assert!(g.remaining().is_empty(), "unsent: {:?}", g.remaining());
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.render());
}

#[tokio::test]
async fn bootc_upgrade_fails_when_the_wrong_digest_boots() {
    // After the reboot the old image is still booted: the staged deployment did not take.
    let mut g = with_verification(
        ReplayGuest::new()
            .exec(STATUS, bootc_json("spec-booted-usroverlay.yaml"))
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .exec(
                &["bootc", "upgrade"],
                ExecOutput::ok("Queued for next boot: quay.io/example/someimage:latest\n"),
            )
            .exec(STATUS, bootc_json("spec-staged-booted.yaml"))
            .reboot()
            .exec(STATUS, bootc_json("spec-staged-booted.yaml")),
    );
    let mut h = ReplayHost::new(vec![bootc_published("v2")]);
    let r = drive(&spec(DrillKind::Upgrade, Family::Bootc), &mut g, &mut h).await;
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.render());
    let failed = r.failed_checks();
    assert!(
        failed
            .iter()
            .any(|c| c.name == "booted is the new deployment"
                && c.expected == D16DC
                && c.actual == D736B),
        "{failed:?}"
    );
    assert!(r.reason.contains(D736B), "{}", r.reason);
    assert!(r.render().contains("FAIL"));
}

#[tokio::test]
async fn bootc_upgrade_with_nothing_staged_fails_before_rebooting() {
    let mut g = ReplayGuest::new()
        .exec(STATUS, bootc_json("spec-booted-usroverlay.yaml"))
        .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
        .exec(
            &["bootc", "upgrade"],
            ExecOutput::ok("No changes in: quay.io/example/someimage:latest\n"),
        )
        .exec(STATUS, bootc_json("spec-booted-usroverlay.yaml"));
    let mut h = ReplayHost::new(vec![bootc_published("v2")]);
    let r = drive(&spec(DrillKind::Upgrade, Family::Bootc), &mut g, &mut h).await;
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.render());
    assert!(
        r.reason
            .contains("a new deployment waits for the next boot"),
        "{}",
        r.reason
    );
    assert!(
        !g.log.contains(&Call::Reboot),
        "no reboot after a failed upgrade"
    );
}

#[tokio::test]
async fn bootc_rollback_passes() {
    let mut g = with_verification_etc(
        ReplayGuest::new()
            .exec(STATUS, bootc_json("derived/upgraded-after-reboot.yaml"))
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .exec(
                &["bootc", "rollback"],
                ExecOutput::ok("Next boot: rollback deployment\n"),
            )
            .exec(STATUS, bootc_json("derived/rollback-queued.yaml"))
            .reboot()
            .exec(STATUS, bootc_json("derived/rolled-back-after-reboot.yaml")),
        ExecOutput::failed(
            1,
            "cat: /etc/bootlab-drill/marker: No such file or directory\n",
        ),
    );
    let mut h = ReplayHost::new(vec![]);
    let r = drive(&spec(DrillKind::Rollback, Family::Bootc), &mut g, &mut h).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.render());
    assert!(g.remaining().is_empty());
    let cmds: Vec<&Call> = g.log.iter().take(6).collect();
    assert_eq!(
        cmds,
        vec![
            &exec(STATUS),
            &Call::Exec(marker_argv(TOKEN)),
            &exec(&["bootc", "rollback"]),
            &exec(STATUS),
            &Call::Reboot,
            &exec(STATUS)
        ]
    );
    assert!(h.asked.is_empty(), "a rollback builds nothing");
    let s = r
        .steps
        .iter()
        .find(|s| s.name == "read deployments after")
        .unwrap();
    assert!(s.checks.iter().any(|c| c.name == "rollbackQueued" && c.ok));
}

#[tokio::test]
async fn bootc_rollback_fails_when_the_queue_was_ignored() {
    let mut g = with_verification(
        ReplayGuest::new()
            .exec(STATUS, bootc_json("derived/upgraded-after-reboot.yaml"))
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .exec(
                &["bootc", "rollback"],
                ExecOutput::ok("Next boot: rollback deployment\n"),
            )
            .exec(STATUS, bootc_json("derived/rollback-queued.yaml"))
            .reboot()
            .exec(STATUS, bootc_json("derived/upgraded-after-reboot.yaml")),
    );
    let r = drive(
        &spec(DrillKind::Rollback, Family::Bootc),
        &mut g,
        &mut ReplayHost::new(vec![]),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.render());
    assert!(
        r.failed_checks()
            .iter()
            .any(|c| c.name == "booted is the former rollback" && c.actual == D16DC)
    );
}

#[tokio::test]
async fn bootc_rollback_without_a_rollback_deployment_fails_early() {
    let mut g = ReplayGuest::new().exec(STATUS, bootc_json("spec-only-booted.yaml"));
    let r = drive(
        &spec(DrillKind::Rollback, Family::Bootc),
        &mut g,
        &mut ReplayHost::new(vec![]),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.reason.contains("a rollback deployment"), "{}", r.reason);
    assert_eq!(g.log, vec![exec(STATUS)]);
}

#[tokio::test]
async fn replay_catches_an_unexpected_command() {
    // A recording that expects `bootc upgrade --apply`: bootlab sends `bootc upgrade`, and the
    // drill ends in an error naming both.
    let mut g = ReplayGuest::new()
        .exec(STATUS, bootc_json("spec-booted-usroverlay.yaml"))
        .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
        .exec(&["bootc", "upgrade", "--apply"], ExecOutput::ok(""));
    let r = drive(
        &spec(DrillKind::Upgrade, Family::Bootc),
        &mut g,
        &mut ReplayHost::new(vec![bootc_published("v2")]),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Error);
    assert!(r.reason.contains("--apply"), "{}", r.reason);
}

// ---- offline family, on the hand-written ostree texts ----

const A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const OSTATUS: &[&str] = &["ostree", "admin", "status"];
const CAT_VERSION: &[&str] = &["cat", "/usr/share/bootlab/version"];
const REV_PARSE: &[&str] = &[
    "cat",
    "/run/bootlab/updates/repo/refs/heads/bootlab/debian-minimal",
];

fn ostree_out(rel: &str) -> ExecOutput {
    ExecOutput::ok(fixture(&format!("ostree-status/{rel}")))
}

fn debian_published(v: &str, commit: &str) -> Published {
    Published {
        recipe: "debian-minimal".into(),
        version: v.into(),
        branch: "bootlab/debian-minimal".into(),
        commit: Some(commit.into()),
        image: None,
        digest: None,
        summary: format!("replayed: {v} = {commit}"),
        requires_verity: false,
    }
}

#[tokio::test]
async fn ostree_upgrade_then_rollback_then_powercut_replayed() {
    // Upgrade v1 → v2.
    let mut g = with_verification(
        ReplayGuest::new()
            .exec(OSTATUS, ostree_out("handwritten-before-upgrade.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v1\n"))
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .mount_updates()
            .exec(REV_PARSE, ExecOutput::ok(format!("{B}\n")))
            .exec(&["ostree", "admin", "upgrade"], ExecOutput::ok("Copying /etc changes: 2 modified, 0 removed, 1 added\nTransaction complete; bootconfig swap: yes; bootversion: boot.1.1, deployment count change: 1\n"))
            .exec(OSTATUS, ostree_out("handwritten-upgrade-pending.txt"))
            .reboot()
            .exec(OSTATUS, ostree_out("handwritten-after-reboot.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v2\n")),
    );
    let mut h = ReplayHost::new(vec![debian_published("v2", B)]);
    let r = drive(
        &spec(DrillKind::Upgrade, Family::DebianOstree),
        &mut g,
        &mut h,
    )
    .await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.render());
    assert!(g.remaining().is_empty(), "{:?}", g.remaining());
    assert_eq!(
        h.asked,
        vec![("debian-minimal".to_string(), "v2".to_string())]
    );
    assert!(
        !g.log
            .iter()
            .any(|c| matches!(c, Call::Exec(a) if a.contains(&"set-origin".to_string()))),
        "origin already follows the branch"
    );

    // Rollback: ostree 2022.7 has no set-default, so the old commit is deployed again.
    let mut g = with_verification(
        ReplayGuest::new()
            .exec(OSTATUS, ostree_out("handwritten-after-reboot.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v2\n"))
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .exec(
                &["ostree", "--version"],
                ExecOutput::ok("libostree:\n Version: '2022.7'\n Git: 2022.7\n"),
            )
            .exec(
                &["ostree", "admin", "deploy", "--os=debian", A],
                ExecOutput::ok("Copying /etc changes: 2 modified, 0 removed, 1 added\n"),
            )
            .exec(OSTATUS, ostree_out("handwritten-rollback-pending.txt"))
            .reboot()
            .exec(OSTATUS, ostree_out("handwritten-after-rollback.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v1\n")),
    );
    let r = drive(
        &spec(DrillKind::Rollback, Family::DebianOstree),
        &mut g,
        &mut ReplayHost::new(vec![]),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.render());
    assert!(g.remaining().is_empty(), "{:?}", g.remaining());

    // Power cut during the /etc merge of the next upgrade; the origin is a bare checksum now, so
    // it is set back to the branch first. The old deployment boots.
    let mut g = with_verification(
        ReplayGuest::new()
            .exec(OSTATUS, ostree_out("handwritten-after-rollback.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v1\n"))
            .mount_updates()
            .exec(REV_PARSE, ExecOutput::ok(format!("{B}\n")))
            .exec(
                &[
                    "ostree",
                    "admin",
                    "set-origin",
                    "--set=gpg-verify=false",
                    "bootlab",
                    "file:///run/bootlab/updates/repo",
                    "bootlab/debian-minimal",
                ],
                ExecOutput::ok(""),
            )
            // The markers only once every precondition held (published, visible, origin set).
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .exec_owned(
                bootlab::drill::background_upgrade_argv(&[
                    "ostree".into(),
                    "admin".into(),
                    "upgrade".into(),
                ]),
                ExecOutput::ok(""),
            )
            .exec_owned(bootlab::drill::poll_argv(), ExecOutput::ok(""))
            .exec_owned(
                bootlab::drill::poll_argv(),
                ExecOutput::ok("Copying /etc changes: 2 modified, 0 removed, 1 added\n"),
            )
            .powercut()
            .power_on()
            .exec(OSTATUS, ostree_out("handwritten-after-rollback.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v1\n")),
    );
    let mut h = ReplayHost::new(vec![debian_published("v2", B)]);
    let r = drive(
        &spec(
            DrillKind::Powercut {
                at: CutPoint::EtcMerge,
            },
            Family::DebianOstree,
        ),
        &mut g,
        &mut h,
    )
    .await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.render());
    assert!(g.remaining().is_empty(), "{:?}", g.remaining());
    assert!(
        r.facts["booted.after_cut"].starts_with("old (v1)"),
        "{:?}",
        r.facts
    );
    assert_eq!(
        r.facts["cut.phase"],
        "writing the new deployment (/etc merge seen)"
    );
}

#[tokio::test]
async fn ostree_upgrade_fails_when_the_version_file_disagrees() {
    let mut g = with_verification(
        ReplayGuest::new()
            .exec(OSTATUS, ostree_out("handwritten-before-upgrade.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v1\n"))
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .mount_updates()
            .exec(REV_PARSE, ExecOutput::ok(format!("{B}\n")))
            .exec(&["ostree", "admin", "upgrade"], ExecOutput::ok(""))
            .exec(OSTATUS, ostree_out("handwritten-upgrade-pending.txt"))
            .reboot()
            .exec(OSTATUS, ostree_out("handwritten-after-reboot.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v1\n")),
    );
    let mut h = ReplayHost::new(vec![debian_published("v2", B)]);
    let r = drive(
        &spec(DrillKind::Upgrade, Family::DebianOstree),
        &mut g,
        &mut h,
    )
    .await;
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.render());
    assert!(
        r.reason.contains("/usr/share/bootlab/version"),
        "{}",
        r.reason
    );
}

/// A power-cut drill checks every precondition before it changes anything in the guest: a VM
/// that could not come back fails before any guest command; a guest already on the recipe's last
/// version, or a share without the published commit, fails after read-only commands only — no
/// markers, no origin change, no upgrade.
#[tokio::test]
async fn powercut_preconditions_fail_before_the_guest_changes() {
    let cut = || {
        spec(
            DrillKind::Powercut {
                at: CutPoint::Finished,
            },
            Family::DebianOstree,
        )
    };
    let changes = |log: &[Call]| -> Vec<Call> {
        log.iter()
            .filter(|c| {
                ![
                    exec(OSTATUS),
                    exec(CAT_VERSION),
                    exec(REV_PARSE),
                    Call::MountUpdates,
                ]
                .contains(c)
            })
            .cloned()
            .collect()
    };

    // 1. The VM could not be started again: nothing is sent to the guest, nothing published.
    let mut g = ReplayGuest::new()
        .cannot_power_cycle("VM replay-vm: its disk /x/disk.qcow2 is missing")
        .exec(OSTATUS, ostree_out("handwritten-before-upgrade.txt"));
    let mut h = ReplayHost::new(vec![debian_published("v2", B)]);
    let r = drive(&cut(), &mut g, &mut h).await;
    assert_eq!(r.verdict, Verdict::Error, "{}", r.render());
    assert!(
        r.reason.contains("disk /x/disk.qcow2 is missing"),
        "{}",
        r.reason
    );
    assert_eq!(g.log, vec![], "no guest command before the precondition");
    assert!(h.asked.is_empty());

    // 2. The guest runs the recipe's last version: only the two reads ran.
    let mut g = ReplayGuest::new()
        .exec(OSTATUS, ostree_out("handwritten-before-upgrade.txt"))
        .exec(CAT_VERSION, ExecOutput::ok("v3\n"));
    let mut h = ReplayHost::new(vec![]);
    let r = drive(&cut(), &mut g, &mut h).await;
    assert_eq!(r.verdict, Verdict::Error, "{}", r.render());
    assert!(r.reason.contains("v3 is the last version"), "{}", r.reason);
    assert_eq!(g.log, vec![exec(OSTATUS), exec(CAT_VERSION)]);
    assert!(h.asked.is_empty());

    // 3. The share does not show the published commit: reads and the mount, nothing else.
    let mut g = ReplayGuest::new()
        .exec(OSTATUS, ostree_out("handwritten-before-upgrade.txt"))
        .exec(CAT_VERSION, ExecOutput::ok("v1\n"))
        .mount_updates()
        .exec(REV_PARSE, ExecOutput::ok(format!("{A}\n")));
    let mut h = ReplayHost::new(vec![debian_published("v2", B)]);
    let r = drive(&cut(), &mut g, &mut h).await;
    assert_ne!(r.verdict, Verdict::Pass, "{}", r.render());
    assert!(g.remaining().is_empty(), "{:?}", g.remaining());
    assert_eq!(changes(&g.log), vec![], "{:?}", g.log);
    assert!(
        !g.log.contains(&Call::Exec(marker_argv(TOKEN))),
        "markers written: {:?}",
        g.log
    );
}

#[test]
fn cut_points_parse() {
    assert_eq!("12".parse::<CutPoint>().unwrap(), CutPoint::Secs(12.0));
    assert_eq!("2.5s".parse::<CutPoint>().unwrap(), CutPoint::Secs(2.5));
    assert_eq!("etc-merge".parse::<CutPoint>().unwrap(), CutPoint::EtcMerge);
    assert!("soon".parse::<CutPoint>().is_err());
}

#[tokio::test]
async fn ostree_switch_to_another_recipe_replayed() {
    const C: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
    let mut web = recipe(Family::DebianOstree);
    web.file.name = "debian-web".into();
    let mut g = with_verification(
        ReplayGuest::new()
            .exec(OSTATUS, ostree_out("handwritten-before-upgrade.txt"))
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .mount_updates()
            .exec(
                &["ostree", "admin", "switch", "bootlab:bootlab/debian-web"],
                ExecOutput::ok("Copying /etc changes: 2 modified, 0 removed, 1 added\n"),
            )
            .exec(OSTATUS, ostree_out("handwritten-switch-pending.txt"))
            .reboot()
            .exec(OSTATUS, ostree_out("handwritten-switch-after-reboot.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v1\n")),
    );
    let mut h = ReplayHost::new(vec![Published {
        recipe: "debian-web".into(),
        version: "v1".into(),
        branch: "bootlab/debian-web".into(),
        commit: Some(C.into()),
        image: None,
        digest: None,
        summary: "replayed".into(),
        requires_verity: false,
    }]);
    let kind = DrillKind::Switch {
        to: Box::new(web),
        version: None,
        via: Via::Stable,
    };
    let r = drive(&spec(kind, Family::DebianOstree), &mut g, &mut h).await;
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.render());
    assert!(g.remaining().is_empty(), "{:?}", g.remaining());
    assert_eq!(h.asked, vec![("debian-web".to_string(), "v1".to_string())]);
    assert_eq!(r.facts["to.target"], "bootlab:bootlab/debian-web");

    // The same recording, but the old recipe boots again after the reboot: FAIL.
    let mut web = recipe(Family::DebianOstree);
    web.file.name = "debian-web".into();
    let mut g = with_verification(
        ReplayGuest::new()
            .exec(OSTATUS, ostree_out("handwritten-before-upgrade.txt"))
            .exec_owned(marker_argv(TOKEN), ExecOutput::ok(""))
            .mount_updates()
            .exec(
                &["ostree", "admin", "switch", "bootlab:bootlab/debian-web"],
                ExecOutput::ok(""),
            )
            .exec(OSTATUS, ostree_out("handwritten-switch-pending.txt"))
            .reboot()
            .exec(OSTATUS, ostree_out("handwritten-upgrade-pending.txt"))
            .exec(CAT_VERSION, ExecOutput::ok("v1\n")),
    );
    let mut h = ReplayHost::new(vec![Published {
        recipe: "debian-web".into(),
        version: "v1".into(),
        branch: "bootlab/debian-web".into(),
        commit: Some(C.into()),
        image: None,
        digest: None,
        summary: "replayed".into(),
        requires_verity: false,
    }]);
    let r = drive(
        &spec(
            DrillKind::Switch {
                to: Box::new(web),
                version: None,
                via: Via::Stable,
            },
            Family::DebianOstree,
        ),
        &mut g,
        &mut h,
    )
    .await;
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.render());
    assert!(r.failed_checks().iter().any(|c| c.name == "booted origin"));
}
