//! Lab step files: every shipped lab validates, every kind of mistake is reported at the exact
//! `file:line:col`, and the `bootlab lab` commands work on the real binary.

mod common;

use bootlab::lab::{self, Action, Probe, Slot};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn broken(name: &str) -> PathBuf {
    root().join("tests/fixtures/labs/broken").join(name)
}

/// The errors of one broken fixture as `name:line:col: message` lines.
fn errors_of(name: &str) -> Vec<String> {
    let recipes = bootlab::recipe::shipped().unwrap();
    let path = broken(name);
    let errs = lab::load_file(&path, &recipes).expect_err("the fixture must not validate");
    errs.iter()
        .map(|e| {
            assert_eq!(e.path, path, "errors name the file they are about");
            format!("{name}:{}:{}: {}", e.line, e.column, e.message)
        })
        .collect()
}

#[test]
fn shipped_labs_validate() {
    let (labs, errors) = lab::shipped();
    assert!(errors.is_empty(), "{errors:#?}");
    let ids: Vec<&str> = labs.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "tour",
            "first-boot",
            "upgrade",
            "rollback",
            "var-pitfall",
            "auto-update",
            "disks-consoles",
            "switch",
            "power-cut",
            "own-image",
            "bootc-upgrade",
            "bootc-switch-rollback",
            "composefs",
            "ssh-keys",
            "ci-disk",
        ]
    );
    for l in &labs {
        // The starter labs run on the offline guest, the bootc labs on real bootc, the /var
        // pitfall and the automatic updates on their own recipes.
        let want = if l.id.starts_with("bootc-") || l.id == "composefs" || l.id == "own-image" {
            "debian-bootc"
        } else if l.id == "var-pitfall" {
            "debian-web-var"
        } else if l.id == "auto-update" {
            "debian-auto-update"
        } else if l.id == "ssh-keys" {
            "debian-bootc-ssh"
        } else {
            "debian-minimal"
        };
        assert_eq!(l.requires.recipe.as_deref(), Some(want), "{}", l.id);
        for s in &l.steps {
            assert!(!s.checks.is_empty(), "{}/{}", l.id, s.id);
            for c in &s.checks {
                assert!(
                    c.fail.len() > 20,
                    "{}/{}: fail message too thin",
                    l.id,
                    s.id
                );
            }
        }
    }
}

#[test]
fn starter_labs_drive_the_drills_they_teach() {
    let (labs, _) = lab::shipped();
    let upgrade = labs.iter().find(|l| l.id == "upgrade").unwrap();
    let up = upgrade.step("upgrade").unwrap();
    assert_eq!(
        up.action,
        Action::Upgrade {
            to: Some("v2".into()),
            apply: false
        }
    );
    let reboot = upgrade.step("reboot").unwrap();
    assert!(reboot.spans_reboot());
    // Checks after a reboot wait for the guest by retrying, with no sleep in the file.
    assert!(reboot.checks.iter().all(|c| !c.retry.window.is_zero()));
    match &reboot.checks[0].probe {
        Probe::Deployments(d) => {
            assert_eq!(d.booted, Some(Slot::Version("v2".into())));
            assert_eq!(d.rollback, Some(Slot::Version("v1".into())));
            assert_eq!(d.staged, Some(Slot::Absent));
        }
        p => panic!("{p:?}"),
    }
    let first = labs.iter().find(|l| l.id == "first-boot").unwrap();
    let ro = first.step("read-only-usr").unwrap();
    assert_eq!(ro.action, Action::None);
    let touch = ro
        .checks
        .iter()
        .find(|c| c.title.starts_with("touch /usr/x fails"))
        .unwrap();
    assert_eq!(touch.expect.exit, Some(1));
    // A look-around step answers at once: no retry window.
    assert!(ro.checks.iter().all(|c| c.retry.window.is_zero()));
}

#[test]
fn readme_example_is_a_valid_lab() {
    let readme = std::fs::read_to_string(root().join("labs/README.md")).unwrap();
    let start = readme.find("```toml\n").expect("a toml example") + "```toml\n".len();
    let len = readme[start..].find("```").unwrap();
    let src = &readme[start..start + len];
    let recipes = bootlab::recipe::shipped().unwrap();
    let l = lab::parse_lab(Path::new("labs/README.md"), src, &recipes).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert_eq!(l.id, "hello-upgrade");
    assert_eq!(l.steps.len(), 3);
    let c = &l.steps[1].checks[1];
    assert_eq!(c.retry.timeout.as_secs(), 20);
    assert_eq!(c.retry.window.as_secs(), 300);
    assert_eq!(c.retry.interval.as_secs(), 5);
    assert_eq!(l.steps[2].solve.len(), 1);
}

macro_rules! broken_case {
    ($test:ident, $file:literal, [$($line:literal),+ $(,)?]) => {
        #[test]
        fn $test() {
            assert_eq!(errors_of($file), vec![$($line.to_string()),+]);
        }
    };
}

broken_case!(
    syntax_error,
    "syntax.toml",
    ["syntax.toml:13:17: invalid basic string, expected `\"`"]
);
broken_case!(
    wrong_type,
    "wrong-type.toml",
    ["wrong-type.toml:4:11: invalid type: string \"ten\", expected a whole number like 10"]
);
broken_case!(
    unknown_field,
    "unknown-field.toml",
    [
        "unknown-field.toml:10:1: missing field `title` in this step",
        "unknown-field.toml:12:1: unknown field `titel`, expected one of `id`, `title`, `text`, `hints`, `notes`, `reboot`, `action`, `checks`, `solve`"
    ]
);
broken_case!(
    unknown_action_kind,
    "unknown-action.toml",
    [
        "unknown-action.toml:14:19: unknown action kind \"reboooot\": expected one of none, build, disk, boot, reboot, power-cut, guest, host, publish, upgrade, switch, rollback"
    ]
);
broken_case!(
    unknown_action_field,
    "unknown-action-field.toml",
    [
        "unknown-action-field.toml:14:43: unknown field `memory` for a boot action: expected recipe, version, fresh"
    ]
);
broken_case!(
    unknown_recipe,
    "unknown-recipe.toml",
    [
        "unknown-recipe.toml:14:36: unknown recipe \"debian-maximal\" (known: centos-bootc, debian-auto-update, debian-bootc, debian-bootc-ssh, debian-minimal, debian-web, debian-web-var, fedora-bootc-core)"
    ]
);
broken_case!(
    unknown_lab_recipe,
    "unknown-lab-recipe.toml",
    [
        "unknown-lab-recipe.toml:8:10: unknown recipe \"debian-maximal\" (known: centos-bootc, debian-auto-update, debian-bootc, debian-bootc-ssh, debian-minimal, debian-web, debian-web-var, fedora-bootc-core)"
    ]
);
broken_case!(
    unknown_version,
    "unknown-version.toml",
    [
        "unknown-version.toml:14:37: recipe debian-minimal has no version \"v9\" (it has: v1, v2, v3)"
    ]
);
broken_case!(
    unknown_deployment_version,
    "unknown-deployment-version.toml",
    [
        "unknown-deployment-version.toml:18:26: unknown version \"v7\" for booted (known: v1, v2, v3, or \"none\")"
    ]
);
broken_case!(
    duplicate_step_id,
    "duplicate-step.toml",
    ["duplicate-step.toml:22:6: duplicate step id \"boot\": step ids must be unique in a lab"]
);
broken_case!(
    step_without_checks,
    "no-checks.toml",
    [
        "no-checks.toml:22:6: step \"look\" has no checks: add at least one [[steps.checks]] so the learner knows it worked"
    ]
);
broken_case!(
    bad_regex,
    "bad-regex.toml",
    ["bad-regex.toml:19:18: bad regex \"v(1\": unclosed group"]
);
broken_case!(
    wrong_schema,
    "wrong-schema.toml",
    ["wrong-schema.toml:1:10: unsupported schema 2: this bootlab reads schema 1 step files"]
);
broken_case!(
    missing_schema,
    "missing-schema.toml",
    ["missing-schema.toml:1:1: missing `schema = 1` (the step-file format version) at the top"]
);
broken_case!(
    missing_fail,
    "missing-fail.toml",
    ["missing-fail.toml:16:1: missing field `fail` in this check"]
);
broken_case!(
    two_probes,
    "two-probes.toml",
    [
        "two-probes.toml:19:1: a check looks at one thing: `deployments` and `guest` cannot both be set"
    ]
);
broken_case!(
    no_probe,
    "no-probe.toml",
    [
        "no-probe.toml:16:1: a check needs something to look at: guest = \"cmd\", host = \"cmd\" or deployments = { booted = \"v2\" }"
    ]
);
broken_case!(
    bad_duration,
    "bad-duration.toml",
    [
        "bad-duration.toml:20:8: `wait` = \"5 minutes\" is not a duration: write e.g. \"30s\", \"2m\" or \"1m30s\""
    ]
);
broken_case!(
    bad_json_path,
    "bad-json-path.toml",
    ["bad-json-path.toml:19:10: bad JSON path \"status..booted\": empty key at character 8"]
);
broken_case!(
    misspelled_steps,
    "no-steps.toml",
    [
        "no-steps.toml:10:3: unknown field `stepz`, expected one of `schema`, `id`, `title`, `minutes`, `summary`, `intro`, `finish`, `requires`, `steps`",
        "no-steps.toml:16:3: `steps` must be an array of tables ([[steps]]), not a table",
    ]
);
// Every mistake of a file is reported, not just the first.
broken_case!(
    all_errors_of_a_file,
    "many-errors.toml",
    [
        "many-errors.toml:4:11: invalid type: string \"one\", expected a whole number like 10",
        "many-errors.toml:14:37: recipe debian-minimal has no version \"v9\" (it has: v1, v2, v3)",
        "many-errors.toml:19:18: bad regex \"((\": unclosed group",
        "many-errors.toml:23:6: duplicate step id \"boot\": step ids must be unique in a lab",
        "many-errors.toml:23:6: step \"boot\" has no checks: add at least one [[steps.checks]] so the learner knows it worked",
    ]
);

// Every wrong key of every table, not only the first serde meets.
broken_case!(
    every_wrong_key_of_a_table,
    "every-wrong-key.toml",
    [
        "every-wrong-key.toml:4:11: invalid type: string \"ten\", expected a whole number like 10",
        "every-wrong-key.toml:5:11: invalid type: integer `5`, expected a string",
        "every-wrong-key.toml:6:1: unknown field `colour`, expected one of `schema`, `id`, `title`, `minutes`, `summary`, `intro`, `finish`, `requires`, `steps`",
        "every-wrong-key.toml:10:1: unknown field `hosttools`, expected one of `recipe`, `family`, `host_tools`",
        "every-wrong-key.toml:14:9: invalid type: integer `3`, expected a string",
        "every-wrong-key.toml:16:1: unknown field `hint`, expected one of `id`, `title`, `text`, `hints`, `notes`, `reboot`, `action`, `checks`, `solve`",
        "every-wrong-key.toml:18:1: missing field `fail` in this check",
        "every-wrong-key.toml:21:8: invalid type: string \"zero\", expected an integer like 0",
        "every-wrong-key.toml:22:19: invalid type: integer `4`, expected a string or an array of strings",
        "every-wrong-key.toml:23:1: unknown field `fial`, expected one of `title`, `guest`, `host`, `deployments`, `exit`, `stdout_contains`, `stdout_lacks`, `stdout_matches`, `stderr_contains`, `json`, `timeout`, `wait`, `every`, `fail`",
    ]
);

#[test]
fn every_broken_fixture_has_a_test() {
    let tested = include_str!("labs.rs");
    for f in std::fs::read_dir(root().join("tests/fixtures/labs/broken")).unwrap() {
        let name = f.unwrap().file_name().into_string().unwrap();
        assert!(
            tested.contains(&format!("\"{name}\",")),
            "{name} has no test"
        );
    }
}

#[test]
fn a_mistake_on_line_n_is_reported_at_line_n() {
    // Take a real lab, break one line in a copy, and check the CLI names that line.
    let src = std::fs::read_to_string(root().join("labs/02-upgrade.toml")).unwrap();
    let (n, line) = src
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("action = { kind = \"upgrade\""))
        .unwrap();
    let (n, col) = (n + 1, line.find("\"v2\"").unwrap() + 1);
    let broken = src.replacen(
        "action = { kind = \"upgrade\", to = \"v2\" }",
        "action = { kind = \"upgrade\", to = \"v5\" }",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("02-upgrade.toml");
    std::fs::write(&path, broken).unwrap();
    let out = common::bootlab()
        .args(["lab", "validate"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{}:{n}:{col}: recipe debian-minimal has no version \"v5\" (it has: v1, v2, v3)",
        path.display()
    );
    assert!(
        stderr.lines().any(|l| l == want),
        "want {want}\ngot {stderr}"
    );
}

#[test]
fn cli_validate_shipped_labs() {
    for args in [vec!["lab", "validate"], vec!["lab", "validate", "labs/"]] {
        let out = common::bootlab().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "15 labs ok\n");
    }
}

#[test]
fn cli_validate_broken_files_exits_1_with_positions() {
    let out = common::bootlab()
        .args(["lab", "validate"])
        .arg(broken("bad-regex.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:19:18: bad regex",
            broken("bad-regex.toml").display()
        )),
        "{stderr}"
    );

    // A folder: every file is reported, each with its own positions.
    let out = common::bootlab()
        .args(["lab", "validate"])
        .arg(root().join("tests/fixtures/labs/broken"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for f in std::fs::read_dir(root().join("tests/fixtures/labs/broken")).unwrap() {
        let p = f.unwrap().path();
        assert!(
            stderr.contains(&format!("{}:", p.display())),
            "{} not reported:\n{stderr}",
            p.display()
        );
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn cli_list_text_and_json() {
    let out = common::bootlab().args(["lab", "list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID"), "{text}");
    assert!(lines[2].starts_with("first-boot"), "{text}");
    assert!(lines[2].contains(" 7 "), "first-boot has 7 steps: {text}");

    let out = common::bootlab()
        .args(["lab", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 15);
    assert_eq!(rows[1]["id"], "first-boot");
    assert_eq!(rows[1]["steps"], 7);
    assert_eq!(rows[1]["minutes"], 25);
    assert_eq!(rows[1]["recipe"], "debian-minimal");
}

#[test]
fn cli_show_by_id_stem_and_path() {
    for key in ["upgrade", "02-upgrade", "labs/02-upgrade.toml"] {
        let out = common::bootlab()
            .args(["lab", "show", key])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with("upgrade — Upgrade:"), "{text}");
        assert!(
            text.contains("3. upgrade — Upgrade to v2 (pending, not yet booted)"),
            "{text}"
        );
        assert!(text.contains("action: upgrade v2\n"), "{text}");
        assert!(text.contains("action: boot debian-minimal v1\n"), "{text}");
        assert!(text.contains("     [ ] v2 is booted and v1 is the rollback\n         deployments: booted v2, no staged, rollback v1"), "{text}");
        assert!(text.contains("action: rollback (and reboot)"), "{text}");
        // The intro before step 1, the finish after the last step.
        let intro = text
            .find("before you start:\n   │ You will change /etc and /var on v1")
            .expect(&text);
        let finish = text
            .find("when every step passed:\n   │ You saw what an upgrade keeps")
            .expect(&text);
        assert!(
            intro < text.find("1. boot-v1").expect(&text)
                && finish > text.find("7. ").expect(&text),
            "{text}"
        );
    }
    let out = common::bootlab()
        .args(["lab", "show", "first-boot", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["steps"][0]["action"]["kind"], "build");
    assert_eq!(v["steps"][0]["action"]["version"], "v1");
    // read-only-usr: the learner's own check first, then the touch check bootlab runs itself.
    assert_eq!(
        v["steps"][3]["checks"][2]["title"],
        "touch /usr/x fails with \"Read-only file system\""
    );
    assert_eq!(v["steps"][3]["checks"][2]["expect"]["exit"], 1);
    let booted = &v["steps"][2]["checks"][0];
    assert_eq!(booted["probe"]["kind"], "deployments");
    assert_eq!(booted["probe"]["booted"], "v1");
    assert_eq!(booted["probe"]["staged"], "none");
    assert_eq!(booted["retry"]["window_secs"], 240);

    let out = common::bootlab()
        .args(["lab", "show", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "no lab \"nope\" (known: tour, first-boot, upgrade, rollback, var-pitfall, auto-update, disks-consoles, switch, power-cut, own-image, bootc-upgrade, bootc-switch-rollback, composefs, ssh-keys, ci-disk)"
        ),
        "{stderr}"
    );

    // A broken file by path: its errors, with positions.
    let out = common::bootlab()
        .args(["lab", "show"])
        .arg(broken("wrong-type.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong-type.toml:4:11: invalid type"));
}

/// A lab of host steps only (no VM): step `three` passes once `$BOOTLAB_STATE/gate` exists.
const ROUND_TRIP_LAB: &str = r#"schema = 1
id = "round-trip"
title = "Round trip"
minutes = 1
summary = "Host steps only."

[[steps]]
id = "one"
title = "One"
text = "First."
action = { kind = "host", run = "echo one >> \"$BOOTLAB_STATE/ran\"" }

[[steps.checks]]
title = "one ran"
host = "grep -q one \"$BOOTLAB_STATE/ran\""
fail = "Step one did not run."

[[steps]]
id = "two"
title = "Two"
text = "Second."
action = { kind = "host", run = "echo two >> \"$BOOTLAB_STATE/ran\"" }

[[steps.checks]]
title = "two ran"
host = "grep -q two \"$BOOTLAB_STATE/ran\""
fail = "Step two did not run."

[[steps]]
id = "three"
title = "Three"
text = "Third."
hints = ["Make the gate: touch $BOOTLAB_STATE/gate", "Really."]

[[steps.checks]]
title = "the gate is there"
host = "test -e \"$BOOTLAB_STATE/gate\""
fail = "No gate yet."
"#;

/// Progress written by the TUI resumes in `bootlab lab run`, and the other way round; the
/// previous release's TUI file (positions) resumes too.
#[test]
fn lab_progress_round_trips_between_the_tui_and_lab_run() {
    use bootlab::tui::action::{Action as Key, Tab};
    use bootlab::tui::app::{App, Init};
    use bootlab::tui::views::labs::{CheckStatus, LabModel, load_progress};
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    let file = d.path().join("round-trip.toml");
    std::fs::write(&file, ROUND_TRIP_LAB).unwrap();
    let recipes = bootlab::recipe::shipped().unwrap();
    let l = lab::load_file(&file, &recipes).unwrap();
    let paths = bootlab::paths::Paths::under(&home);
    paths.ensure().unwrap();
    let state = paths.state.clone();
    let tui = |progress: Option<bootlab::lab::Progress>| {
        let mut a = App::new(Init {
            recipes: Ok(recipes.clone()),
            labs: Ok(vec![LabModel::from(&l)]),
            now: std::time::SystemTime::UNIX_EPOCH,
        });
        if let Some(p) = progress {
            a.labs.progress.insert(l.id.clone(), p);
        }
        a.update(Key::GoTab(Tab::Labs));
        a.update(Key::Enter);
        a
    };
    let run = |extra: &[&str]| {
        // The file is outside bootlab's labs folder and runs host commands: trusted explicitly.
        let mut args = vec!["lab", "run", "--trust", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = common::bootlab_in(&home, &args);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.success(), out)
    };

    // The TUI: step one's checks pass, `n` moves to step two; the loop saves.
    let mut a = tui(None);
    a.labs.set_checks(vec![CheckStatus::Passed]);
    a.update(Key::NextStep);
    a.labs.save(&paths, &l.id).unwrap();

    // `lab run` resumes at step two: step one's action does not run again; three fails.
    let (ok, out) = run(&["--hints"]);
    assert!(!ok, "{out}");
    assert!(out.contains("resuming at step 2 (two)"), "{out}");
    let ran = std::fs::read_to_string(state.join("ran")).unwrap();
    assert_eq!(ran, "two\n", "{out}");
    assert!(out.contains("✗ the gate is there"), "{out}");
    assert!(out.contains("hint 1: Make the gate"), "{out}");
    assert!(
        out.contains("`bootlab lab run round-trip` resumes there"),
        "{out}"
    );

    // The TUI opens the lab where `lab run` stopped, with the hint it revealed.
    let p = load_progress(&paths, &LabModel::from(&l))
        .unwrap()
        .0
        .unwrap();
    let b = tui(Some(p));
    assert_eq!(b.labs.current(), Some(("round-trip".into(), 2)));
    let at = b.labs.progress_of("round-trip");
    assert_eq!(at.hints, 1);
    assert_eq!(at.done, [0, 1].into());

    // Fixed: `lab run` resumes at three and completes; nothing before it runs again.
    std::fs::write(state.join("gate"), "").unwrap();
    let (ok, out) = run(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("resuming at step 3 (three)"), "{out}");
    assert_eq!(std::fs::read_to_string(state.join("ran")).unwrap(), "two\n");
    assert!(out.contains("lab round-trip complete"), "{out}");

    // The previous release's TUI file: on step two (index 1) after passing step one.
    std::fs::write(
        bootlab::lab::Progress::file(&paths, "round-trip"),
        r#"{ "step": 1, "done": [0], "hints": 0 }"#,
    )
    .unwrap();
    let (ok, out) = run(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("resuming at step 2 (two)"), "{out}");
    assert_eq!(
        std::fs::read_to_string(state.join("ran")).unwrap(),
        "two\ntwo\n"
    );
}

/// A lab step's build, disk and boot mean the same through the TUI path (the job the TUI starts)
/// and the `lab run` path: same recipe and version (so the same image and disk), same VM name,
/// same way of booting.
#[test]
fn a_lab_step_means_the_same_in_the_tui_and_lab_run() {
    use bootlab::lab::runner::LabRunner;
    use bootlab::tui::action::{Action as Key, Tab};
    use bootlab::tui::app::{App, Init, JobKind};
    use bootlab::tui::engine::{JobInput, lab_runner};
    use bootlab::tui::views::labs::LabModel;
    let l = lab::find("first-boot").unwrap();
    let paths = bootlab::paths::Paths::under(tempfile::tempdir().unwrap().path());
    let (ev, cancel) = (
        bootlab::events::Emitter::null(),
        bootlab::events::CancellationToken::new(),
    );
    let mut app = App::new(Init {
        recipes: bootlab::recipe::shipped().map_err(|e| e.to_string()),
        labs: Ok(vec![LabModel::from(&l)]),
        now: std::time::SystemTime::UNIX_EPOCH,
    });
    app.labs.sources = vec![l.clone()];
    app.update(Key::GoTab(Tab::Labs));
    app.update(Key::Enter);
    let cli = LabRunner::new(l.clone(), None, paths.clone(), ev.clone(), cancel.clone());
    let mut seen = 0;
    for (i, step) in l.steps.iter().enumerate() {
        let input = JobInput::from_app(
            &app,
            JobKind::LabAction {
                lab: l.id.clone(),
                step: i,
            },
        );
        let tui = lab_runner(&paths, &input, &ev, &cancel).unwrap();
        assert_eq!(tui.vm, cli.vm, "step {}", step.id);
        assert_eq!(tui.vm, "lab-first-boot");
        assert_eq!(tui.lab.action_of(step), cli.lab.action_of(step));
        match cli.lab.action_of(step) {
            Action::Build { recipe, version } | Action::Disk { recipe, version } => {
                let (a, b) = (
                    tui.target_of(&recipe, &version).unwrap(),
                    cli.target_of(&recipe, &version).unwrap(),
                );
                assert_eq!(a, b);
                assert_eq!(a.name(), "debian-minimal");
                seen += 1;
            }
            Action::Boot {
                recipe,
                version,
                fresh,
            } => {
                let plan = |r: &LabRunner| {
                    let p = r.boot_plan(r.target_of(&recipe, &version).unwrap(), fresh);
                    let name = p.name().to_string();
                    (p.target, name, p.start, p.existing, p.up.keep)
                };
                assert_eq!(plan(&tui), plan(&cli));
                assert_eq!(plan(&cli).1, "lab-first-boot");
                seen += 1;
            }
            _ => {}
        }
        app.update(Key::NextStep);
    }
    assert_eq!(seen, 3, "first-boot builds, makes a disk and boots");
}

/// `lab reset` forgets a lab's progress (and says when there was nothing to forget); the lab's
/// VM and its snapshots go too (tests/lab_rewind.rs shows that on a real guest).
#[test]
fn lab_reset_forgets_the_progress() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    let o = common::bootlab_in(home, &["lab", "reset", "tour"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("tour: nothing to reset"),
        "{o:?}"
    );
    let paths = bootlab::paths::Paths::under(home);
    let mut p = bootlab::lab::Progress::new("tour");
    p.mark_passed("recipe", Some("deployment"));
    std::fs::create_dir_all(paths.lab_progress()).unwrap();
    p.save(&paths).unwrap();
    let o = common::bootlab_in(home, &["lab", "reset", "tour"]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("tour: progress forgotten (1 of 3 steps had passed)"),
        "{out}"
    );
    assert!(!bootlab::lab::Progress::file(&paths, "tour").exists());
}

/// The TUI offers a step's runnable code blocks to run in the guest, so a host command (bootlab,
/// podman, qemu-img, or anything on bootlab's `$BOOTLAB_…` folders) or a file's contents must
/// be fenced as copy-only (` ```host `, ` ```dockerfile `, ` ```text `), never runnable.
#[test]
fn no_host_command_is_offered_to_the_guest() {
    let (labs, errors) = lab::shipped();
    assert!(errors.is_empty(), "{errors:?}");
    let mut bad = vec![];
    for l in &labs {
        let texts = l
            .intro
            .iter()
            .chain(l.finish.iter())
            .chain(l.steps.iter().map(|s| &s.text));
        for t in texts {
            for b in bootlab::tui::markdown::code_blocks(t) {
                let first = b.code.split_whitespace().next().unwrap_or("");
                let host = ["bootlab", "podman", "qemu-img", "RUN", "FROM", "COPY"]
                    .contains(&first)
                    || b.code.contains("$BOOTLAB_");
                if b.runnable && host {
                    bad.push(format!("{}: {}", l.id, b.summary()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "runnable in the guest but not a guest command:\n{}",
        bad.join("\n")
    );
}
