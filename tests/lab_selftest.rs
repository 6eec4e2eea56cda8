//! `bootlab lab selftest` for real: the shipped labs run every step's action, solution and
//! checks on real guests (TCG here): the starter labs on debian-minimal, the bootc labs on
//! debian-bootc, and a failing check reaches the JUnit report
//! with the learner's message.

mod common;

use std::path::Path;
use std::time::Instant;

/// QEMU processes whose command line names `home` (every VM of a home keeps its disk there).
fn qemus_of(home: &Path) -> Vec<String> {
    let home = home.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .filter(|c| c.starts_with("qemu-system") || c.contains("/qemu-system"))
        .filter(|c| c.contains(&home))
        .collect()
}

/// `(name, failure text)` of every testcase of a testsuite, from our JUnit output.
fn testcases(xml: &str, suite: &str) -> Vec<(String, Option<String>)> {
    let start = xml
        .find(&format!("<testsuite name=\"{suite}\""))
        .unwrap_or_else(|| panic!("no testsuite {suite} in\n{xml}"));
    let body = &xml[start..start + xml[start..].find("</testsuite>").unwrap()];
    body.split("<testcase ")
        .skip(1)
        .map(|tc| {
            let name = tc
                .split(" name=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let failure = tc
                .find("<failure")
                .map(|i| tc[i..].split('>').nth(1).unwrap().to_string());
            (name.to_string(), failure)
        })
        .collect()
}

/// The labs on the offline guest: the four starters, the /var pitfall (nginx), the guest that
/// updates itself from its own timer, disks, consoles and rewinding a snapshot, a switch to
/// debian-web and back, a power cut mid-upgrade, and the disk an exported CI workflow makes.
#[test]
fn offline_labs_pass_selftest_on_a_real_guest() {
    selftest_passes(
        &[
            "00-tour",
            "01-first-boot",
            "02-upgrade",
            "03-rollback",
            "04-var-pitfall",
            "05-auto-update",
            "06-disks-consoles",
            "07-switch",
            "08-power-cut",
            "14-ci-disk",
        ],
        &[
            "tour",
            "first-boot",
            "upgrade",
            "rollback",
            "var-pitfall",
            "auto-update",
            "disks-consoles",
            "switch",
            "power-cut",
            "ci-disk",
        ],
    );
}

/// The labs on real bootc (debian-bootc, a learner's copy of it, debian-bootc-ssh): your own
/// image built, linted and booted, `bootc upgrade`, `bootc switch`, `bootc rollback`, a
/// tampered composefs object in the guest and sshd hardened to keys only, every check of every
/// step on what the guest really did.
#[test]
fn bootc_labs_pass_selftest_on_real_bootc() {
    selftest_passes(
        &[
            "09-own-image",
            "10-bootc-upgrade",
            "11-bootc-switch-rollback",
            "12-composefs",
            "13-ssh-keys",
        ],
        &[
            "own-image",
            "bootc-upgrade",
            "bootc-switch-rollback",
            "composefs",
            "ssh-keys",
        ],
    );
}

/// `bootlab lab selftest FILES…` in the shared home passes, with a JUnit testcase per check
/// (none failed) and, for every step that asks the learner to act, checks that failed before
/// its solve; nothing is left running.
fn selftest_passes(files: &[&str], ids: &[&str]) {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    let home = common::shared_home();
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("junit.xml");
    let json = tmp.path().join("r.json");
    let t0 = Instant::now();
    let mut args = vec!["lab", "selftest"];
    args.extend(files);
    args.extend([
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let out = common::bootlab_in(&home, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("lab selftest took {:.0}s", t0.elapsed().as_secs_f64());
    assert!(out.status.success(), "selftest failed: {:?}", out.status);

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(!xml.contains("<failure"), "{xml}");
    assert!(!xml.contains("<skipped"), "{xml}");
    let (labs, errors) = bootlab::lab::shipped();
    assert!(errors.is_empty(), "{errors:?}");
    for &id in ids {
        let lab = labs.iter().find(|l| l.id == id).unwrap();
        // One testcase per check of every step, named step-id/check title, none failed; after
        // the checks of a step that asks the learner to act, one more: its checks, run before
        // its solve, failed (so the step cannot pass with nobody acting).
        let want: Vec<String> =
            lab.steps
                .iter()
                .flat_map(|s| {
                    s.checks
                        .iter()
                        .map(move |c| format!("{}/{}", s.id, c.title))
                        .chain(s.asks_learner().then(|| {
                            format!("{}/{}", s.id, bootlab::lab::report::BEFORE_SOLVE_CASE)
                        }))
                })
                .map(|n| {
                    n.replace('&', "&amp;")
                        .replace('"', "&quot;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                        .replace('\'', "&apos;")
                })
                .collect();
        let got: Vec<String> = testcases(&xml, id).into_iter().map(|(n, _)| n).collect();
        assert_eq!(got, want, "lab {id}");
        assert!(xml.contains(&format!(
            "<testsuite name=\"{id}\" tests=\"{}\" failures=\"0\"",
            want.len()
        )));
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["labs"].as_array().unwrap().len(), ids.len());
    // Every learner step of every lab: before the solve at least one check failed, and it
    // failed on what it saw (not on an unreachable guest); then every check passed.
    let mut learner_steps = 0;
    for (l, lab) in report["labs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(ids.iter().copied())
    {
        let shipped = labs.iter().find(|x| x.id == lab).unwrap();
        for s in l["steps"].as_array().unwrap() {
            let step = shipped.step(s["step"].as_str().unwrap()).unwrap();
            if !step.asks_learner() {
                assert!(s.get("before_solve").is_none(), "{s}");
                continue;
            }
            learner_steps += 1;
            let b = &s["before_solve"];
            assert!(
                !b["failed"].as_array().unwrap().is_empty(),
                "{lab}/{}: {b}",
                step.id
            );
            assert!(
                b["unobserved"].as_array().unwrap().is_empty(),
                "{lab}/{}: {b}",
                step.id
            );
            eprintln!(
                "{lab}/{}: before the solve failed {}, passed {}",
                step.id, b["failed"], b["passed"]
            );
        }
    }
    let shipped_learner_steps = labs
        .iter()
        .filter(|l| ids.contains(&l.id.as_str()))
        .flat_map(|l| &l.steps)
        .filter(|s| s.asks_learner())
        .count();
    assert_eq!(learner_steps, shipped_learner_steps);
    assert!(learner_steps >= 2);

    // Nothing left running: every lab's VM was stopped and removed.
    assert_eq!(qemus_of(&home), Vec::<String>::new());
    for id in ids {
        assert!(
            !home.join(format!("state/vms/lab-{id}")).exists(),
            "VM lab-{id} was left behind"
        );
    }
}

/// No VM: a lab of host steps whose second check fails. Selftest exits 1; the JUnit report has the
/// check's failure with the learner-facing reason (what was seen) and the lab's `fail` text,
/// after the check was retried within its window; the later step is reported skipped.
#[test]
fn a_failing_check_reaches_junit_with_the_learner_message() {
    let home = tempfile::tempdir().unwrap();
    let labs = tempfile::tempdir().unwrap();
    let lab = labs.path().join("90-failing.toml");
    std::fs::write(
        &lab,
        r#"schema = 1
id = "failing-host"
title = "A host check that fails"
minutes = 1
summary = "Selftest must report the learner's message when a check fails."

[[steps]]
id = "write"
title = "Write a note"
text = "bootlab writes a note on the host."
action = { kind = "host", run = 'echo hello > "$BOOTLAB_STATE/lab-note"' }

[[steps.checks]]
title = "The note exists"
host = 'test -f "$BOOTLAB_STATE/lab-note"'
fail = "No note: the action did not run."

[[steps.checks]]
title = "The note says bye"
host = 'cat "$BOOTLAB_STATE/lab-note"'
stdout_contains = "bye"
timeout = "5s"
wait = "1s"
every = "300ms"
fail = "The note does not say bye: write bye into it."

[[steps]]
id = "later"
title = "Never reached"
text = "An earlier step failed."

[[steps.checks]]
title = "Always true"
host = "true"
fail = "unreachable"
"#,
    )
    .unwrap();
    let junit = home.path().join("j.xml");
    let json = home.path().join("r.json");
    let t0 = Instant::now();
    let out = common::bootlab_in(
        home.path(),
        &[
            "lab",
            "selftest",
            // A lab file from outside bootlab's labs folder with host commands: trusted explicitly.
            "--trust",
            lab.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // The check was retried within its 1 s window, not longer.
    assert!(t0.elapsed().as_secs_f64() < 20.0);
    // The action ran on the host (with the lab environment), shown before it ran.
    assert_eq!(
        std::fs::read_to_string(home.path().join("state/lab-note")).unwrap(),
        "hello\n"
    );
    assert!(
        stdout.contains("$ sh -c 'echo hello > \"$BOOTLAB_STATE/lab-note\"'"),
        "{stdout}"
    );
    assert!(stdout.contains("✗ The note says bye"), "{stdout}");
    assert!(stdout.contains("The note does not say bye: write bye into it."));

    let xml = std::fs::read_to_string(&junit).unwrap();
    let cases = testcases(&xml, "failing-host");
    assert_eq!(cases.len(), 3, "{xml}");
    assert_eq!(cases[0], ("write/The note exists".into(), None));
    assert_eq!(cases[1].0, "write/The note says bye");
    let failure = cases[1].1.as_deref().expect("a <failure>");
    assert!(
        failure.contains("expected stdout to contain &quot;bye&quot;; it was &quot;hello&quot;"),
        "{failure}"
    );
    assert!(failure.contains("The note does not say bye: write bye into it."));
    let attempts: u32 = failure
        .split("(after ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!((2..=5).contains(&attempts), "{failure}");
    assert!(xml.contains("name=\"later/Always true\"><skipped"), "{xml}");
    assert!(xml.contains("tests=\"3\" failures=\"1\""), "{xml}");

    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["passed"], false);
    assert_eq!(r["labs"][0]["skipped"][0], "later");
}
