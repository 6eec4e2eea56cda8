//! A learner's workspace: bootlab works as an installed binary (its recipes and labs are compiled
//! in), a learner's own recipes live in their folder beside the shipped ones, and
//! `bootlab recipe new` makes one that builds.

mod common;

use std::path::Path;
use std::process::Command;

fn bootlab(exe: &Path, home: &Path) -> Command {
    let mut c = Command::new(exe);
    c.env("BOOTLAB_HOME", home)
        .env_remove("BOOTLAB_ASSETS")
        .env_remove("BOOTLAB_LABS")
        .env_remove("BOOTLAB_USER_RECIPES")
        .env_remove("BOOTLAB_USER_LABS");
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(!o.status.success(), "{c:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What `cargo install` gives: the binary alone, far from the source tree.
#[test]
fn an_installed_binary_brings_its_recipes_and_labs() {
    let t = tempfile::tempdir().unwrap();
    let exe = t.path().join("bin/bootlab");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_bootlab"), &exe).unwrap();
    let home = t.path().join("home");

    let list = ok(bootlab(&exe, &home).args(["recipe", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let recipes = v.as_array().unwrap();
    let shipped = bootlab::recipe::shipped().unwrap();
    assert_eq!(recipes.len(), shipped.len());
    let unpacked = home.join("cache/shipped");
    for r in recipes {
        let dir = r["dir"].as_str().unwrap();
        assert!(
            Path::new(dir).starts_with(&unpacked),
            "{dir} is not the unpacked copy under {}",
            unpacked.display()
        );
        assert_eq!(r["origin"], "shipped");
    }
    // The unpacked copy is byte for byte the source tree's.
    let root = bootlab::paths::assets_dir().parent().unwrap().to_path_buf();
    let copy = std::fs::read_dir(&unpacked)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for (rel, bytes) in bootlab::paths::embedded() {
        assert_eq!(
            std::fs::read(root.join(&rel)).unwrap(),
            bytes,
            "{} differs from the source tree",
            rel.display()
        );
        assert_eq!(std::fs::read(copy.join(&rel)).unwrap(), bytes);
    }
    let labs = ok(bootlab(&exe, &home).args(["lab", "list"]));
    assert!(labs.contains("first-boot"), "{labs}");
}

#[test]
fn own_recipes_sit_beside_the_shipped_ones() {
    let t = tempfile::tempdir().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_bootlab"));
    let home = t.path().join("home");

    let made = ok(bootlab(exe, &home).args(["recipe", "new", "mine"]));
    assert!(made.contains("made mine"), "{made}");
    let dir = home.join("data/recipes/mine");
    let cf = std::fs::read_to_string(dir.join("Containerfile")).unwrap();
    assert!(cf.contains("# FROM:") && cf.contains("FROM localhost/bootlab/debian-base"));
    ok(bootlab(exe, &home).args(["recipe", "new", "webby", "--from", "debian-web"]));

    let list = ok(bootlab(exe, &home).args(["recipe", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let origin = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["file"]["name"] == n || r["name"] == n)
            .map(|r| r["origin"].as_str().unwrap().to_string())
    };
    assert_eq!(origin("mine").as_deref(), Some("yours"));
    assert_eq!(origin("webby").as_deref(), Some("yours"));
    assert_eq!(origin("debian-web").as_deref(), Some("shipped"));
    // The copy keeps the recipe's versions and files.
    let shown = ok(bootlab(exe, &home).args(["recipe", "show", "webby"]));
    assert!(shown.contains("v2"), "{shown}");
    assert!(home.join("data/recipes/webby/site.conf").is_file());

    // Names are checked; a shipped name cannot be taken.
    assert!(fails(bootlab(exe, &home).args(["recipe", "new", "Mine"])).contains("lowercase"));
    assert!(
        fails(bootlab(exe, &home).args(["recipe", "new", "debian-web"])).contains("already exists")
    );

    // A mistake in their recipe names its file, line and column.
    let toml = dir.join("recipe.toml");
    let src = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        src.replace("family = \"debian-ostree\"", "family = \"debian-ostre\""),
    )
    .unwrap();
    let err = fails(bootlab(exe, &home).args(["recipe", "list"]));
    assert!(
        err.contains(&format!("{}:", toml.display())) && err.contains("debian-ostre"),
        "{err}"
    );

    // `--recipes DIR`: a presenter's own set instead of the data folder.
    let own = t.path().join("presenter");
    ok(bootlab(exe, &home).args(["--recipes", own.to_str().unwrap(), "recipe", "new", "demo"]));
    assert!(own.join("demo/recipe.toml").is_file());
    let list = ok(bootlab(exe, &home).args(["--recipes", own.to_str().unwrap(), "recipe", "list"]));
    assert!(list.contains("demo") && !list.contains("webby"), "{list}");
}

/// `bootlab recipe lint` on a learner's recipe that makes the classic mistakes: content under
/// /var (the nginx pitfall) and a unit in /etc/systemd/system. Real podman, real build.
#[test]
fn lint_explains_a_learners_mistakes() {
    if !common::require_root() {
        return;
    }
    let _heavy = common::heavy_lock();
    let t = tempfile::tempdir().unwrap();
    let recipes = t.path().join("recipes");
    let exe = Path::new(env!("CARGO_BIN_EXE_bootlab"));
    let home = common::shared_home();
    let run = |args: &[&str]| {
        let mut c = bootlab(exe, &home);
        c.arg("--recipes").arg(&recipes).args(args);
        c
    };
    // A name of its own per run: the image tag is global to podman.
    let name = format!("linty{}", std::process::id());
    ok(&mut run(&["recipe", "new", &name]));
    let err = fails(&mut run(&["recipe", "lint", &name]));
    assert!(err.contains("not built yet"), "{err}");
    let cf = recipes.join(&name).join("Containerfile");
    let mut src = std::fs::read_to_string(&cf).unwrap();
    src.push_str(
        "RUN mkdir -p /var/www/html && echo hi > /var/www/html/index.html\n\
         RUN printf '[Unit]\\nDescription=web\\n' > /etc/systemd/system/web.service\n",
    );
    std::fs::write(&cf, src).unwrap();
    ok(&mut run(&["image", "build", &name]));
    let out = ok(&mut run(&["recipe", "lint", &name, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let finding = |rule: &str| {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == rule)
            .cloned()
            .unwrap_or_else(|| panic!("no {rule} finding in {out}"))
    };
    let var = finding("var-content");
    assert_eq!(var["details"][0], "/var/www/html/index.html", "{out}");
    assert!(var["why"].as_str().unwrap().contains("/usr/lib/tmpfiles.d"));
    let etc = finding("etc-defaults");
    assert!(
        etc["details"][0]
            .as_str()
            .unwrap()
            .contains("→ /usr/lib/systemd/system/web.service"),
        "{out}"
    );
    finding("ssh-passwords");
    // The text report shows the same, with the why under each finding.
    let text = ok(&mut run(&["recipe", "lint", &name]));
    assert!(
        text.contains("warning var-content (bootlab)") && text.contains("  why: "),
        "{text}"
    );
    // Its image, build record and branch are of no use to the next run.
    let _ = std::process::Command::new("podman")
        .args(["rmi", "-f", &format!("localhost/bootlab/{name}:v1")])
        .output();
    let _ = std::fs::remove_dir_all(home.join("cache/builds").join(&name));
    let _ = std::process::Command::new("ostree")
        .arg(format!(
            "--repo={}",
            home.join("cache/ostree/repo").display()
        ))
        .args(["refs", "--delete", &format!("bootlab/{name}")])
        .output();
}
