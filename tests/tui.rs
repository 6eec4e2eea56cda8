//! The TUI without a terminal: whole-screen insta snapshots on a TestBackend, key handling
//! (every key the help bar shows does what it says), driven through `Action`s and engine events
//! like the running app.

use bootlab::events::{Event, Stamped, Stream};
use bootlab::tui::action::{Action, DrillKind, Tab};
use bootlab::tui::app::{App, Effect, Init, JobKind, JobOutput, Modal, Msg};
use bootlab::tui::keymap::{self, Key};
use bootlab::tui::views::deployments::{DeploymentRow, DiffView};
use bootlab::tui::views::drills::Verdict;
use bootlab::tui::views::labs::{CheckModel, CheckStatus, LabModel, StepModel};
use bootlab::tui::views::vm::VmInfo;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::{Duration, SystemTime};

const W: u16 = 100;
const H: u16 = 30;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn app_with_labs(labs: Vec<LabModel>) -> App {
    App::new(Init {
        recipes: bootlab::recipe::shipped().map_err(|e| e.to_string()),
        labs: Ok(labs),
        now: t0(),
    })
}

fn app() -> App {
    app_with_labs(vec![])
}

/// The screen as text, one line per row (trailing spaces trimmed).
fn screen(app: &App) -> String {
    let mut term = Terminal::new(TestBackend::new(W, H)).unwrap();
    term.draw(|f| bootlab::tui::draw::draw(app, f)).unwrap();
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Snapshot with paths, digests and times filtered out.
macro_rules! snap {
    ($name:expr, $app:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("snapshots");
        settings.set_prepend_module_to_snapshot(false);
        settings.add_filter(env!("CARGO_MANIFEST_DIR"), "[SRC]");
        settings.add_filter(r"\b[0-9a-f]{64}\b", "[DIGEST]");
        settings.add_filter(r"\b\d+(\.\d+)?s\b", "[T]");
        settings.add_filter(r"\b\d+m\d\ds\b", "[T]");
        settings.bind(|| insta::assert_snapshot!($name, screen(&$app)));
    }};
}

fn ev(e: Event) -> Msg {
    Msg::Engine(Stamped { at: t0(), event: e })
}
fn ev_at(secs: u64, e: Event) -> Msg {
    Msg::Engine(Stamped {
        at: t0() + Duration::from_secs(secs),
        event: e,
    })
}

fn vm() -> VmInfo {
    VmInfo {
        name: "debian-minimal-1".into(),
        recipe: "debian-minimal".into(),
        state: "running".into(),
        accel: "TCG".into(),
        accel_reason: "KVM probe: the guest never left early boot (nested PVM)".into(),
        known_password: Some("root/bootlab".into()),
        access: vec!["shell: s (bootlab vm console debian-minimal-1)".into()],
    }
}

fn sample_lab() -> LabModel {
    LabModel {
        id: "first-boot".into(),
        title: "First boot".into(),
        summary: "Build, boot and look at your first deployment".into(),
        intro: Some("You will boot **v1** and read its deployment.".into()),
        finish: Some("You booted a deployment. Next: *Upgrade*.".into()),
        steps: vec![
            StepModel {
                id: "boot".into(),
                title: "Boot the image".into(),
                text: "# Boot it\n\nBoot **debian-minimal** and log in.\n\n```sh\nostree admin status\n```\n\n- one deployment\n- marked `*`\n".into(),
                action: Some("bootlab vm boot debian-minimal".into()),
                checks: vec![
                    CheckModel { description: "the VM is running".into() },
                    CheckModel { description: "one deployment is booted".into() },
                ],
                hints: vec!["Press `b` in the **VM** view.".into(), "Wait for the login prompt.".into()],
                has_solution: true,
                notes: Some("Ask who has seen a **deployment** before.".into()),
            },
            StepModel {
                id: "upgrade".into(),
                title: "Upgrade".into(),
                text: "Stage **v2**.".into(),
                action: None,
                checks: vec![],
                hints: vec![],
                has_solution: false,
                notes: None,
            },
        ],
    }
}

// ---------------------------------------------------------------- snapshots

#[test]
fn snapshot_recipes_first_screen() {
    let a = app();
    let s = screen(&a);
    assert!(
        s.contains("▶ debian-minimal"),
        "default recipe selected:\n{s}"
    );
    assert!(s.contains("New here?"), "{s}");
    snap!("recipes_first_screen", a);
}

#[test]
fn snapshot_recipes_with_lab_banner() {
    let a = app_with_labs(vec![sample_lab()]);
    assert!(screen(&a).contains("lab \"First boot\""));
    snap!("recipes_banner_names_starter_lab", a);
}

#[test]
fn snapshot_recipes_building() {
    let mut a = app();
    a.update(Action::NextVersion);
    a.update(Action::Build);
    a.on_msg(ev(Event::StageStarted {
        stage: "base".into(),
        expected_secs: None,
    }));
    a.on_msg(ev(Event::StageFinished {
        stage: "base".into(),
        secs: 0.4,
        cached: true,
    }));
    // Built before on this machine: the job line says what to expect.
    a.on_msg(ev(Event::StageStarted {
        stage: "build".into(),
        expected_secs: Some(31.0),
    }));
    a.on_msg(ev(Event::Command {
        stage: "build".into(),
        argv: vec![
            "podman".into(),
            "build".into(),
            "-t".into(),
            "localhost/bootlab/debian-minimal:v2".into(),
            ".".into(),
        ],
    }));
    for l in [
        "STEP 1/4: FROM localhost/bootlab/debian-ostree-base:trixie",
        "STEP 2/4: RUN apt-get install -y ostree",
        "Reading package lists...",
        "STEP 3/4: COPY motd /etc/bootlab/motd",
    ] {
        a.on_msg(ev(Event::Log {
            stage: "build".into(),
            stream: Stream::Stdout,
            line: l.to_string(),
        }));
        if let Some(rest) = l.strip_prefix("STEP ") {
            let (n, label) = rest.split_once(": ").unwrap();
            let done: u64 = n.split('/').next().unwrap().parse().unwrap();
            a.on_msg(ev(Event::Progress {
                stage: "build".into(),
                done,
                total: 4,
                label: label.to_string(),
            }));
        }
    }
    a.on_msg(ev(Event::Log {
        stage: "build".into(),
        stream: Stream::Stderr,
        line: "error: example failure line".into(),
    }));
    a.on_msg(Msg::Tick(t0() + Duration::from_secs(12)));
    snap!("recipes_building", a);
}

#[test]
fn snapshot_recipes_log_filtered_and_paused() {
    let mut a = app();
    a.update(Action::Build);
    for i in 0..40 {
        a.on_msg(ev(Event::Log {
            stage: "build".into(),
            stream: Stream::Stdout,
            line: format!("line {i} {}", if i % 2 == 0 { "STEP" } else { "noise" }),
        }));
    }
    a.on_msg(Msg::JobDone {
        kind: JobKind::Build {
            recipe: "debian-minimal".into(),
            version: "v1".into(),
        },
        result: Ok(JobOutput::Done(
            "localhost/bootlab/debian-minimal:v1".into(),
        )),
    });
    a.update(Action::FilterStart);
    for c in "step".chars() {
        a.update(Action::FilterChar(c));
    }
    a.update(Action::FilterApply);
    screen(&a); // the pane learns its height from a draw, as in the running app
    a.update(Action::LogPageUp);
    let s = screen(&a);
    assert!(s.contains("paused (End follows)"), "{s}");
    assert!(!s.contains("noise"), "{s}");
    snap!("recipes_log_filtered_paused", a);
}

#[test]
fn snapshot_recipes_typing_filter() {
    let mut a = app();
    a.update(Action::FilterStart);
    a.update(Action::FilterChar('o'));
    a.update(Action::FilterChar('s'));
    snap!("recipes_typing_filter", a);
}

#[test]
fn snapshot_help_popup() {
    let mut a = app();
    a.update(Action::ToggleHelp);
    snap!("help_popup_recipes", a);
}

#[test]
fn snapshot_vm_empty_and_running() {
    let mut a = app();
    a.update(Action::GoTab(Tab::Vm));
    let s = screen(&a);
    assert!(s.contains("no VM running"), "{s}");
    snap!("vm_empty", a);
    a.vm.vm = Some(vm());
    for l in ["Debian GNU/Linux 12 bootlab ttyS0", "", "bootlab login: "] {
        a.on_msg(ev(Event::Log {
            stage: "console".into(),
            stream: Stream::Console,
            line: l.into(),
        }));
    }
    snap!("vm_running", a);
}

/// In the VM view with no VM, `b` boots with BIOS and `u` with UEFI: the key map says both,
/// and the job started carries the firmware.
#[test]
fn u_boots_with_uefi() {
    use bootlab::tools::qemu::Firmware;
    let mut a = app();
    a.update(Action::GoTab(Tab::Vm));
    let s = screen(&a);
    assert!(s.contains("boot UEFI"), "{s}");
    let fx = a.update(Action::BootUefi);
    assert!(
        fx.iter().any(|e| matches!(
            e,
            Effect::Start(JobKind::Boot {
                firmware: Firmware::Uefi,
                ..
            })
        )),
        "{fx:?}"
    );
    a.job = None;
    let fx = a.update(Action::Boot);
    assert!(
        fx.iter().any(|e| matches!(
            e,
            Effect::Start(JobKind::Boot {
                firmware: Firmware::Bios,
                ..
            })
        )),
        "{fx:?}"
    );
}

/// A reboot's boot-phase line (the state's detail, from the supervisor reading the console)
/// stands beside the state, and the agent's answer leaves the phases of the boot there.
#[test]
fn the_vm_view_shows_the_boot_phase_line() {
    let mut a = app();
    a.update(Action::GoTab(Tab::Vm));
    a.vm.vm = Some(vm());
    let name = a.vm.vm.as_ref().unwrap().name.clone();
    let state = |s: &str, d: &str| {
        ev(Event::VmState {
            vm: name.clone(),
            state: s.into(),
            detail: d.into(),
        })
    };
    a.on_msg(state(
        "rebooting",
        "initramfs since 9.1 s (firmware 0.9 s, bootloader 3.0 s, kernel 5.2 s)",
    ));
    let s = screen(&a);
    assert!(
        s.contains("rebooting  initramfs since 9.1 s (firmware 0.9 s"),
        "{s}"
    );
    a.on_msg(state(
        "ready",
        "guest agent answered after 36.8s (firmware 0.9 s, bootloader 3.0 s, kernel 5.2 s, initramfs 7.6 s, systemd 20.1 s)",
    ));
    let s = screen(&a);
    assert!(s.contains("ready  guest agent answered after 36.8s"), "{s}");
    // Another VM's states are not this one's boot.
    a.on_msg(ev(Event::VmState {
        vm: "other".into(),
        state: "booting".into(),
        detail: "bootloader since 1.0 s".into(),
    }));
    assert!(!screen(&a).contains("bootloader since"));
}

#[test]
fn snapshot_quit_confirmation_with_vm() {
    let mut a = app();
    a.vm.vm = Some(vm());
    a.update(Action::Quit);
    assert!(matches!(a.modal, Some(Modal::ConfirmQuit { .. })));
    snap!("quit_confirm_vm_running", a);
}

#[test]
fn snapshot_deployments_empty_list_and_diff() {
    let mut a = app();
    a.update(Action::GoTab(Tab::Deployments));
    snap!("deployments_empty", a);
    a.vm.vm = Some(vm());
    a.on_msg(Msg::JobDone {
        kind: JobKind::Refresh,
        result: Ok(JobOutput::Deployments(vec![
            DeploymentRow {
                booted: false,
                staged: true,
                pending: false,
                rollback: false,
                pinned: false,
                version: "v2".into(),
                id: "a".repeat(64),
                checksum: "a".repeat(64),
                origin: "bootlab:debian-minimal".into(),
                composefs: "off".into(),
            },
            DeploymentRow {
                booted: true,
                staged: false,
                pending: false,
                rollback: false,
                pinned: false,
                version: "v1".into(),
                id: "b".repeat(64),
                checksum: "b".repeat(64),
                origin: "bootlab:debian-minimal".into(),
                composefs: "off".into(),
            },
            DeploymentRow {
                booted: false,
                staged: false,
                pending: false,
                rollback: true,
                pinned: true,
                version: "v0".into(),
                id: "sha256:".to_string() + &"c".repeat(64),
                checksum: "d".repeat(64),
                origin: "quay.io/fedora/fedora-bootc:42".into(),
                composefs: "mounted · verity off · 48d59975".into(),
            },
        ])),
    });
    snap!("deployments_list", a);
    a.update(Action::MarkForDiff);
    a.update(Action::Down);
    a.on_msg(Msg::JobDone {
        kind: JobKind::Diff,
        result: Ok(JobOutput::Diff(DiffView {
            a: "a".repeat(64),
            b: "b".repeat(64),
            files: vec![
                "A    /usr/bin/bootlab-hello".into(),
                "M    /usr/etc/bootlab/motd".into(),
            ],
            packages: vec![],
            composefs: "composefs digests: none → none (not comparable)".into(),
        })),
    });
    snap!("deployments_diff", a);
}

#[test]
fn snapshot_drills_empty_and_verdict() {
    let mut a = app();
    a.update(Action::GoTab(Tab::Drills));
    snap!("drills_no_vm", a);
    a.vm.vm = Some(vm());
    let eff = a.update(Action::StartDrill);
    assert_eq!(eff.len(), 1);
    a.on_msg(ev_at(
        0,
        Event::StageStarted {
            stage: "stage".into(),
            expected_secs: None,
        },
    ));
    a.on_msg(ev_at(
        3,
        Event::Command {
            stage: "stage".into(),
            argv: vec!["ostree".into(), "admin".into(), "upgrade".into()],
        },
    ));
    a.on_msg(ev_at(
        9,
        Event::State {
            object: "debian-minimal-1".into(),
            state: "rebooting".into(),
            detail: String::new(),
        },
    ));
    a.on_msg(ev_at(
        58,
        Event::Note {
            stage: "verify".into(),
            text: "booted checksum is the staged one".into(),
        },
    ));
    a.on_msg(Msg::JobDone {
        kind: JobKind::Drill(DrillKind::Upgrade),
        result: Ok(JobOutput::Verdict(Verdict {
            passed: true,
            summary: "v2 is booted; v1 is the rollback".into(),
            evidence: vec![
                "before: booted v1".into(),
                "after: booted v2, rollback v1".into(),
            ],
        })),
    });
    snap!("drills_verdict", a);
}

#[test]
fn snapshot_labs_list_step_and_presenter() {
    let mut a = app_with_labs(vec![sample_lab()]);
    a.update(Action::GoTab(Tab::Labs));
    snap!("labs_list", a);
    a.update(Action::Enter);
    a.update(Action::Hint);
    a.labs.set_checks(vec![
        CheckStatus::Passed,
        CheckStatus::Failed(
            "expected stdout to match `^\\* debian`; it was \"\"\nNo deployment is marked booted yet. Run `ostree admin status` in the guest: is there a **`*`**?".into(),
        ),
    ]);
    // Hints and the lab's advice are markdown: no raw backticks or asterisks on screen; what
    // was seen (program output) is shown as is.
    let s = screen(&a);
    assert!(s.contains("hint 1: Press b in the VM view."), "{s}");
    assert!(
        s.contains("ostree admin status in the guest: is there"),
        "{s}"
    );
    assert!(!s.contains("`ostree") && !s.contains("**"), "{s}");
    assert!(s.contains("expected stdout to match `^\\* debian`"), "{s}");
    snap!("labs_step", a);
    a.update(Action::TogglePresenter);
    snap!("labs_presenter", a);
}

/// The app as `bootlab` starts it: shipped recipes and labs, progress from an empty home.
fn shipped_app() -> App {
    let home = tempfile::tempdir().unwrap();
    bootlab::tui::initial_app(&bootlab::paths::Paths::under(home.path()), t0())
}

#[test]
fn snapshot_shipped_first_screen_and_labs() {
    let mut a = shipped_app();
    assert!(a.labs.load_error.is_none(), "{:?}", a.labs.load_error);
    assert!(screen(&a).contains("New here?"));
    snap!("shipped_first_screen", a);
    a.update(Action::GoTab(Tab::Labs));
    snap!("shipped_labs_list", a);
    a.update(Action::Down);
    a.update(Action::Enter);
    snap!("shipped_first_boot_step1", a);
    a.update(Action::TogglePresenter);
    snap!("shipped_first_boot_step1_presenter", a);
}

#[test]
fn snapshot_labs_empty() {
    let mut a = app();
    a.update(Action::GoTab(Tab::Labs));
    assert!(screen(&a).contains("no labs found"));
    snap!("labs_empty", a);
}

// ---------------------------------------------------------------- keys

/// Every state whose help bar we check.
fn states() -> Vec<(&'static str, App)> {
    let mut v = vec![];
    for t in Tab::ALL {
        let mut a = app_with_labs(vec![sample_lab()]);
        a.update(Action::GoTab(t));
        v.push((t.title(), a));
    }
    let mut a = app();
    a.update(Action::GoTab(Tab::Vm));
    a.vm.vm = Some(vm());
    v.push(("vm running", a));
    let mut a = app();
    a.update(Action::GoTab(Tab::Deployments));
    a.deploy.deployments = vec![DeploymentRow {
        booted: true,
        staged: false,
        pending: false,
        rollback: false,
        pinned: false,
        version: "v1".into(),
        id: "x".into(),
        checksum: "x".into(),
        origin: "o".into(),
        composefs: String::new(),
    }];
    v.push(("deployments listed", a));
    let mut a = app_with_labs(vec![sample_lab()]);
    a.update(Action::GoTab(Tab::Labs));
    a.update(Action::Enter);
    v.push(("lab open", a));
    let mut a = app();
    a.update(Action::FilterStart);
    v.push(("typing filter", a));
    let mut a = app();
    a.update(Action::ToggleHelp);
    v.push(("help", a));
    let mut a = app();
    a.vm.vm = Some(vm());
    a.update(Action::Quit);
    v.push(("confirm quit", a));
    let mut a = app();
    a.update(Action::Build);
    v.push(("job running", a));
    v
}

/// Read the help bar off the rendered screen (last row) back into (key, words) pairs.
fn bar_entries(app: &App) -> Vec<(String, String)> {
    let s = screen(app);
    let last = s.lines().last().unwrap().to_string();
    let mut out = vec![];
    for chunk in last.split("  ").map(str::trim).filter(|c| !c.is_empty()) {
        let (k, w) = chunk.split_once(' ').unwrap_or((chunk, ""));
        out.push((k.to_string(), w.to_string()));
    }
    out
}

#[test]
fn every_key_in_the_help_bar_produces_its_action() {
    for (name, a) in states() {
        let entries = bar_entries(&a);
        assert!(entries.len() >= 2, "{name}: bar too short: {entries:?}");
        let bindings = keymap::bindings(&a);
        for (label, words) in entries {
            let key = Key::parse(&label)
                .unwrap_or_else(|| panic!("{name}: bar shows unparsable key {label:?}"));
            let bd = bindings
                .iter()
                .find(|b| b.key == key && b.bar)
                .unwrap_or_else(|| panic!("{name}: bar shows {label} but no binding has it"));
            assert_eq!(bd.help, words, "{name}: bar words for {label}");
            assert_eq!(
                keymap::lookup(&a, &key.to_event()),
                Some(bd.action.clone()),
                "{name}: pressing {label} must {words}"
            );
        }
    }
}

#[test]
fn help_bar_and_popup_are_generated_from_the_keymap() {
    for (name, a) in states() {
        let bar: Vec<(String, &str)> = keymap::help_bar(&a);
        let expected: Vec<(String, &str)> = keymap::bindings(&a)
            .into_iter()
            .filter(|b| b.bar)
            .map(|b| (b.key.label(), b.help))
            .collect();
        assert_eq!(bar, expected, "{name}");
    }
    // The popup lists every binding of the view under it, including the ones not in the bar.
    let mut a = app();
    a.update(Action::ToggleHelp);
    let s = screen(&a);
    for b in keymap::bindings_under_modal(&a) {
        assert!(s.contains(b.help), "popup misses {:?}:\n{s}", b.help);
    }
    assert!(s.contains("go to Labs"), "{s}");
}

#[test]
fn no_key_is_bound_twice_in_one_state() {
    for (name, a) in states() {
        let bs = keymap::bindings(&a);
        for (i, b) in bs.iter().enumerate() {
            assert!(
                !bs[i + 1..].iter().any(|o| o.key == b.key),
                "{name}: {} bound twice",
                b.key.label()
            );
        }
    }
}

#[test]
fn keys_change_the_app_as_the_help_says() {
    let mut a = app_with_labs(vec![sample_lab()]);
    let press = |a: &mut App, k: Key| {
        let act = keymap::lookup(a, &k.to_event()).expect("bound");
        a.update(act)
    };
    press(&mut a, Key::code(crossterm::event::KeyCode::Tab));
    assert_eq!(a.tab, Tab::Vm);
    press(&mut a, Key::ch('5'));
    assert_eq!(a.tab, Tab::Labs);
    press(&mut a, Key::code(crossterm::event::KeyCode::Enter));
    assert!(a.labs.open.is_some());
    let eff = press(&mut a, Key::ch('h'));
    assert_eq!(a.labs.progress_of("first-boot").hints, 1);
    assert!(!eff.is_empty(), "revealing a hint saves progress");
    press(&mut a, Key::ch('S'));
    assert!(matches!(a.modal, Some(Modal::ConfirmSolve { .. })));
    press(&mut a, Key::ch('n'));
    assert!(a.modal.is_none());
    press(&mut a, Key::ch('n'));
    assert_eq!(a.labs.progress_of("first-boot").step, 1);
    press(&mut a, Key::code(crossterm::event::KeyCode::Esc));
    assert!(a.labs.open.is_none());
    press(&mut a, Key::ch('?'));
    assert_eq!(a.modal, Some(Modal::Help));
    press(&mut a, Key::code(crossterm::event::KeyCode::Esc));
    assert!(a.modal.is_none());
    press(&mut a, Key::ch('z'));
    assert!(a.presenter);
    // Typing a filter: letters are text, not commands.
    press(&mut a, Key::ch('1'));
    press(&mut a, Key::ch('/'));
    press(&mut a, Key::ch('q'));
    assert!(!a.quit, "q while typing a filter is a letter");
    assert_eq!(a.recipes.log.typing(), Some("q"));
    press(&mut a, Key::code(crossterm::event::KeyCode::Enter));
    assert_eq!(a.recipes.log.filter(), Some("q"));
    press(&mut a, Key::ch('q'));
    assert!(a.quit);
}

#[test]
fn ctrl_c_cancels_the_job_from_anywhere() {
    let mut a = app();
    a.update(Action::Build);
    a.update(Action::ToggleHelp);
    assert_eq!(
        keymap::lookup(&a, &Key::ctrl('c').to_event()),
        Some(Action::CancelJob)
    );
    a.update(Action::Back);
    a.update(Action::FilterStart);
    assert_eq!(
        keymap::lookup(&a, &Key::ctrl('c').to_event()),
        Some(Action::CancelJob)
    );
}

/// The intro sits above the first step until it is done; the finish page shows once every
/// step has passed.
#[test]
fn a_lab_opens_with_its_intro_and_ends_with_its_finish() {
    let mut a = app_with_labs(vec![sample_lab()]);
    a.update(Action::GoTab(Tab::Labs));
    a.update(Action::Enter);
    let s = screen(&a);
    assert!(s.contains("before you start"), "{s}");
    assert!(
        s.contains("You will boot v1 and read its deployment."),
        "{s}"
    );
    assert!(!s.contains("lab complete"), "{s}");
    let p = a.labs.progress.entry("first-boot".into()).or_default();
    p.mark_passed("boot", Some("upgrade"));
    let s = screen(&a);
    assert!(
        !s.contains("before you start"),
        "only before the first step is done:\n{s}"
    );
    let p = a.labs.progress.get_mut("first-boot").unwrap();
    p.mark_passed("upgrade", None);
    let s = screen(&a);
    assert!(s.contains("lab complete"), "{s}");
    assert!(s.contains("You booted a deployment. Next: Upgrade."), "{s}");
}

#[test]
fn lab_progress_survives_a_restart() {
    let d = tempfile::tempdir().unwrap();
    let mut a = app_with_labs(vec![sample_lab()]);
    a.update(Action::GoTab(Tab::Labs));
    a.update(Action::Enter);
    a.update(Action::NextStep);
    let paths = bootlab::paths::Paths::under(d.path());
    a.labs.saved("first-boot").save(&paths).unwrap();
    let back = bootlab::tui::views::labs::load_progress(&paths, &sample_lab())
        .unwrap()
        .0
        .unwrap();
    assert_eq!(back.position(&sample_lab().step_ids()), 1);
    let mut b = app_with_labs(vec![sample_lab()]);
    b.labs.progress.insert("first-boot".into(), back);
    b.update(Action::GoTab(Tab::Labs));
    b.update(Action::Enter);
    assert_eq!(b.labs.current(), Some(("first-boot".into(), 1)));
}

fn snapshot_of(step: &str) -> bootlab::lab::StepSnapshot {
    bootlab::lab::StepSnapshot {
        vm: "lab-first-boot".into(),
        tag: format!("lab-step-{step}"),
        vm_created_unix: 1,
        saved_unix: 2,
    }
}

fn starts_rewind(fx: &[Effect]) -> bool {
    fx.iter()
        .any(|e| matches!(e, Effect::Start(JobKind::LabRewind { .. })))
}

/// A step that passes leaves a snapshot (kept in the progress, shown under the checks). Moving
/// to a step whose start snapshot the guest is not at asks the engine to restore it; moving
/// where the guest already is restores nothing; reopening the lab (a restart) asks too.
#[test]
fn steps_are_snapshotted_and_moving_restores_the_start() {
    use bootlab::tui::views::labs::LabGuest;
    let mut a = app_with_labs(vec![sample_lab()]);
    a.update(Action::GoTab(Tab::Labs));
    assert!(
        !starts_rewind(&a.update(Action::Enter)),
        "nothing saved yet"
    );
    let passed = |a: &mut App, step: usize, guest: LabGuest| {
        a.on_msg(Msg::JobDone {
            kind: JobKind::LabChecks {
                lab: "first-boot".into(),
                step,
            },
            result: Ok(JobOutput::Checks(
                vec![CheckStatus::Passed; if step == 0 { 2 } else { 0 }],
                Some(guest),
            )),
        })
    };
    let boot_snapshot = [("boot".to_string(), snapshot_of("boot"))].into();
    passed(
        &mut a,
        0,
        LabGuest {
            snapshots: boot_snapshot,
            guest_at: Some("boot".into()),
            line: "snapshot lab-step-boot saved".into(),
        },
    );
    assert!(screen(&a).contains("guest: snapshot lab-step-boot saved"));
    let p = a.labs.saved("first-boot");
    assert_eq!(p.snapshots["boot"].tag, "lab-step-boot");
    assert_eq!(a.labs.unsaved.as_deref(), Some("first-boot"));
    // The guest is where step 2 starts: nothing to restore.
    assert!(!starts_rewind(&a.update(Action::NextStep)));
    // Step 2 passed with no VM running: the guest's place is unknown from then on.
    let snaps = a.labs.saved("first-boot").snapshots;
    passed(
        &mut a,
        1,
        LabGuest {
            snapshots: snaps,
            guest_at: None,
            line: "no VM running: no snapshot of this step".into(),
        },
    );
    // Back to step 1: the first step starts from nothing saved.
    assert!(!starts_rewind(&a.update(Action::PrevStep)));
    // Ahead to step 2 again: its start (step 1's end) is restored.
    let fx = a.update(Action::NextStep);
    assert!(
        fx.contains(&Effect::Start(JobKind::LabRewind {
            lab: "first-boot".into(),
            step: 1
        })),
        "{fx:?}"
    );
    a.on_msg(Msg::JobDone {
        kind: JobKind::LabRewind {
            lab: "first-boot".into(),
            step: 1,
        },
        result: Ok(JobOutput::Rewound(
            LabGuest {
                snapshots: a.labs.saved("first-boot").snapshots,
                guest_at: Some("boot".into()),
                line: "the guest is back as step boot left it (snapshot restored in 2.1s)".into(),
            },
            None,
        )),
    });
    assert_eq!(a.labs.saved("first-boot").guest_at.as_deref(), Some("boot"));
    assert!(screen(&a).contains("the guest is back as step boot left it"));
    // A restart: the lab reopens on step 2 and asks the engine to put the guest there (a
    // stopped VM is started from the snapshot).
    let mut b = app_with_labs(vec![sample_lab()]);
    b.labs
        .progress
        .insert("first-boot".into(), a.labs.saved("first-boot"));
    b.update(Action::GoTab(Tab::Labs));
    assert!(starts_rewind(&b.update(Action::Enter)));
}

/// `x` lists the step's code blocks; Enter runs the picked one in the guest (a job that shows
/// it first), `c` copies it to the clipboard.
#[test]
fn a_steps_code_block_runs_in_the_guest_or_is_copied() {
    let mut a = app_with_labs(vec![sample_lab()]);
    a.update(Action::GoTab(Tab::Labs));
    a.update(Action::Enter);
    assert!(screen(&a).contains("x runs or copies the command of the text"));
    assert!(
        keymap::bindings(&a)
            .iter()
            .any(|b| b.key == Key::ch('x') && b.help == "run/copy a command")
    );
    a.update(Action::Snippets);
    let s = screen(&a);
    assert!(s.contains("the step's commands"), "{s}");
    assert!(
        s.contains("Enter run in the guest"),
        "the popup's keys show:\n{s}"
    );
    assert!(s.contains("▶ ostree admin status"), "{s}");
    let fx = a.update(Action::Confirm);
    assert_eq!(
        fx,
        vec![Effect::Start(JobKind::LabSnippet {
            lab: "first-boot".into(),
            step: 0,
            code: "ostree admin status".into()
        })]
    );
    a.on_msg(Msg::JobDone {
        kind: JobKind::LabSnippet {
            lab: "first-boot".into(),
            step: 0,
            code: "ostree admin status".into(),
        },
        result: Ok(JobOutput::Done("the command exited 0 in the guest".into())),
    });
    assert_eq!(
        a.status.as_deref(),
        Some("the command exited 0 in the guest")
    );
    a.update(Action::Snippets);
    assert_eq!(
        a.update(Action::CopySnippet),
        vec![Effect::Copy("ostree admin status".into())]
    );
    assert!(a.modal.is_none());
    // A step without code blocks offers no `x`.
    a.update(Action::NextStep);
    assert!(!keymap::bindings(&a).iter().any(|b| b.key == Key::ch('x')));
    assert!(!screen(&a).contains("x runs or copies"));
}

/// `bootlab present LAB`: the lab open in presenter mode with the checks, the presenter's notes
/// (only there) and the console beside the step; Space runs the action, then the checks, then
/// moves on.
#[test]
fn presenting_a_lab_walks_it_with_one_key() {
    let mut a = app_with_labs(vec![sample_lab()]);
    assert!(
        a.present("02-nope")
            .unwrap_err()
            .contains("no lab \"02-nope\"")
    );
    assert_eq!(a.present("01-first-boot"), Ok(vec![]));
    assert!(a.presenter && a.labs.open == Some(0));
    let s = screen(&a);
    assert!(s.contains("Space run the step's action"), "{s}");
    assert!(s.contains("Ask who has seen a deployment before."), "{s}");
    assert!(s.contains("the step's output shows here"), "{s}");
    assert_eq!(keymap::help_bar(&a)[0], ("Space".to_string(), "next"));
    let step0 = |kind: fn(String, usize) -> JobKind| kind("first-boot".into(), 0);
    let fx = a.update(Action::PresentNext);
    assert_eq!(
        fx,
        vec![Effect::Start(step0(|lab, step| JobKind::LabAction {
            lab,
            step
        }))]
    );
    a.on_msg(Msg::JobDone {
        kind: step0(|lab, step| JobKind::LabAction { lab, step }),
        result: Ok(JobOutput::Vm(None)),
    });
    assert!(screen(&a).contains("Space check"));
    let fx = a.update(Action::PresentNext);
    assert_eq!(
        fx,
        vec![Effect::Start(step0(|lab, step| JobKind::LabChecks {
            lab,
            step
        }))]
    );
    a.on_msg(Msg::JobDone {
        kind: step0(|lab, step| JobKind::LabChecks { lab, step }),
        result: Ok(JobOutput::Checks(vec![CheckStatus::Passed; 2], None)),
    });
    assert!(screen(&a).contains("Space next step"));
    a.update(Action::PresentNext);
    assert_eq!(a.labs.current(), Some(("first-boot".into(), 1)));
    // Notes are the presenter's: a learner never sees them.
    a.update(Action::PrevStep);
    a.update(Action::TogglePresenter);
    assert!(!screen(&a).contains("Ask who has seen"));
}

/// After a build the build panel lists the lint's findings (their why goes to the build log).
#[test]
fn build_panel_shows_the_lint() {
    use bootlab::recipe::lint::{Probe, guest_findings};
    let mut a = app();
    a.update(Action::Build);
    // What the lint probe printed in the real debian-minimal v1 image.
    let probe = Probe::parse(
        "agent=/usr/sbin/qemu-ga\nsshd=1\npasswordauthentication=yes\n\
         hostkey=/etc/ssh/ssh_host_ed25519_key\nroot=password\n",
    );
    let report = bootlab::recipe::lint::LintReport {
        recipe: "debian-minimal".into(),
        version: "v1".into(),
        image: "localhost/bootlab/debian-minimal:v1".into(),
        family: bootlab::recipe::Family::DebianOstree,
        bootc_summary: vec![],
        findings: guest_findings(&probe, ""),
    };
    a.on_msg(Msg::JobDone {
        kind: JobKind::Build {
            recipe: "debian-minimal".into(),
            version: "v1".into(),
        },
        result: Ok(JobOutput::Built {
            summary: "localhost/bootlab/debian-minimal:v1".into(),
            lint: Some(report),
        }),
    });
    let s = screen(&a);
    for want in [
        "lint (why: log)",
        "⚠ssh-passwords",
        "⚠ssh-host-keys",
        "⚠version-label",
    ] {
        assert!(s.contains(want), "{want} missing:\n{s}");
    }
}
