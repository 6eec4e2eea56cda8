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
    assert!(
        cf.contains("# FROM:") && cf.contains("FROM localhost/bootlab/debian-ostree-base:trixie")
    );
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
         RUN printf '[Unit]\\nDescription=web\\n' > /etc/systemd/system/web.service\n\
         RUN apt-get update && apt-get install -y --no-install-recommends openssh-server \
             && apt-get clean && rm -rf /var/lib/apt/lists/*\n",
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
    assert!(
        var["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "/var/www/html/index.html"),
        "{out}"
    );
    assert!(var["why"].as_str().unwrap().contains("/usr/lib/tmpfiles.d"));
    let etc = finding("etc-defaults");
    assert!(
        etc["details"].as_array().unwrap().iter().any(|d| d
            .as_str()
            .unwrap()
            .contains("web.service → /usr/lib/systemd/system/web.service")),
        "{out}"
    );
    // The base has no sshd; the learner installed it, with Debian's default: passwords on.
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

/// The TUI's way to the same: `n` on a recipe asks for a name and makes your copy, `e` hands
/// its Containerfile to $EDITOR, and coming back reloads and builds it (or names the mistake).
#[test]
fn the_tui_makes_and_edits_your_recipe() {
    use bootlab::tui::action::Action;
    use bootlab::tui::app::{App, Effect, Init, JobKind, Modal};
    use bootlab::tui::keymap;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let t = tempfile::tempdir().unwrap();
    let mine = t.path().join("my-recipes");
    // SAFETY: only this test of this binary reads the variable in-process (the others run the
    // binary with it removed).
    unsafe { std::env::set_var("BOOTLAB_USER_RECIPES", &mine) };
    let mut a = App::new(Init {
        recipes: bootlab::recipe::all().map_err(|e| e.to_string()),
        labs: Ok(vec![]),
        now: std::time::SystemTime::now(),
    });
    let key =
        |a: &App, c: char| keymap::lookup(a, &KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    assert_eq!(key(&a, 'n'), Some(Action::NewRecipe));
    // A shipped recipe is not edited in place.
    assert_eq!(a.update(Action::EditRecipe), vec![]);
    assert!(
        a.status.as_deref().unwrap().contains("press n"),
        "{:?}",
        a.status
    );
    a.update(Action::NewRecipe);
    // In the prompt every letter is text, `n` too.
    assert_eq!(key(&a, 'n'), Some(Action::TextChar('n')));
    for c in "Mine".chars() {
        a.update(Action::TextChar(c));
    }
    assert_eq!(a.update(Action::Confirm), vec![]);
    match &a.modal {
        Some(Modal::NewRecipe { error: Some(e), .. }) => assert!(e.contains("lowercase"), "{e}"),
        m => panic!("the prompt should stay open with the reason: {m:?}"),
    }
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
    term.draw(|f| bootlab::tui::draw::draw(&a, f)).unwrap();
    let shown: String = term
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(
        shown.contains("new recipe") && shown.contains("name: Mine") && shown.contains("lowercase"),
        "{shown}"
    );
    for _ in 0..4 {
        a.update(Action::TextBackspace);
    }
    for c in "mine".chars() {
        a.update(Action::TextChar(c));
    }
    let eff = a.update(Action::Confirm);
    let file = mine.join("mine/Containerfile");
    assert_eq!(
        eff,
        vec![Effect::Edit {
            recipe: "mine".into(),
            file: file.clone()
        }]
    );
    assert!(file.is_file());
    assert_eq!(a.recipes.selected().unwrap().name(), "mine");
    assert_eq!(key(&a, 'e'), Some(Action::EditRecipe));

    // Back from the editor with a good edit: it builds the recipe.
    let eff = a.after_edit("mine", bootlab::recipe::all().map_err(|e| e.to_string()));
    assert!(
        matches!(&eff[..], [Effect::Start(JobKind::Build { recipe, .. })] if recipe == "mine"),
        "{eff:?}"
    );
    a.on_msg(bootlab::tui::app::Msg::JobCancelled {
        kind: JobKind::Build {
            recipe: "mine".into(),
            version: "v1".into(),
        },
    });
    // With a mistake: no build, and the status names the file.
    let toml = mine.join("mine/recipe.toml");
    let src = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, src.replace("family = ", "familly = ")).unwrap();
    let eff = a.after_edit("mine", bootlab::recipe::all().map_err(|e| e.to_string()));
    assert!(eff.is_empty(), "{eff:?}");
    let status = a.status.clone().unwrap();
    assert!(status.contains(&toml.display().to_string()), "{status}");
    unsafe { std::env::remove_var("BOOTLAB_USER_RECIPES") };
}
