//! The real `bootlab` binary in a real terminal (tmux): start with an isolated BOOTLAB_HOME, see
//! the recipes, navigate, open help, quit cleanly, and check the terminal was given back.
//!
//! `TuiSession` is the reusable part: later end-to-end tests (pick recipe → build → boot →
//! deployments) add steps with `send` / `wait_for` between `start` and `quit_and_check_restored`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// One tmux server (own socket, so nothing else's tmux is touched) running bootlab in a pane.
struct TuiSession {
    socket: String,
    _home: tempfile::TempDir,
}

impl TuiSession {
    /// Start `bootlab` (no arguments) in a 120x40 pane. When it exits, the pane's shell prints
    /// its exit code and the terminal modes, so tests can check how it left the terminal.
    fn start() -> TuiSession {
        Self::start_in(tempfile::tempdir().unwrap())
    }

    /// The same, with `BOOTLAB_HOME` at `home` (the end-to-end test shares the test cache).
    fn start_in(home: tempfile::TempDir) -> TuiSession {
        let socket = format!("bootlab-test-{}-{}", std::process::id(), fastrand::u32(..));
        let exe = env!("CARGO_BIN_EXE_bootlab");
        let script = format!(
            "BOOTLAB_HOME='{}' '{exe}'; echo \"EXITED rc=$?\"; stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)' | tr '\\n' ' '; echo; echo END; sleep 600",
            home.path().display()
        );
        let s = TuiSession {
            socket,
            _home: home,
        };
        let ok = s
            .tmux()
            .args(["new-session", "-d", "-s", "t", "-x", "120", "-y", "40"])
            .args(["-e", "TERM=xterm-256color", "sh", "-c", &script])
            .status()
            .expect("run tmux");
        assert!(ok.success(), "tmux new-session failed");
        s
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn home(&self) -> &Path {
        self._home.path()
    }

    /// Send tmux key names (`"q"`, `"Tab"`, `"C-c"`, `"Escape"`).
    fn send(&self, keys: &[&str]) {
        let st = self
            .tmux()
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn display(&self, fmt: &str) -> String {
        let out = self
            .tmux()
            .args(["display-message", "-p", "-t", "t", fmt])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Wait until the screen contains `text` and is stable (two equal reads), or fail showing it.
    fn wait_for(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        loop {
            let s = self.screen();
            if s.contains(text) && s == last {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {text:?}; screen:\n{s}");
            }
            last = s;
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_gone(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let s = self.screen();
            if !s.contains(text) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {text:?} to go; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// After bootlab exited: exit code 0, main screen back, cursor visible, cooked mode with echo.
    fn check_restored(&self) {
        let s = self.wait_for("END", Duration::from_secs(10));
        assert!(s.contains("EXITED rc=0"), "bootlab must exit 0:\n{s}");
        let modes = s
            .lines()
            .find(|l| l.contains("icanon"))
            .unwrap_or_else(|| panic!("no stty output:\n{s}"));
        assert!(
            modes.split_whitespace().any(|w| w == "icanon")
                && modes.split_whitespace().any(|w| w == "echo"),
            "terminal left in raw mode: {modes}"
        );
        assert_eq!(
            self.display("#{alternate_on}"),
            "0",
            "still on the alternate screen"
        );
        assert_eq!(self.display("#{cursor_flag}"), "1", "cursor left hidden");
        assert!(
            !s.contains("Recipes"),
            "the TUI's screen must be gone:\n{s}"
        );
    }

    /// The pid of bootlab (the pane's shell's child).
    fn bootlab_pid(&self) -> i32 {
        let sh: i32 = self.display("#{pane_pid}").parse().unwrap();
        let kids = std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children")).unwrap();
        kids.split_whitespace()
            .next()
            .expect("bootlab runs")
            .parse()
            .unwrap()
    }
}

impl Drop for TuiSession {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

const T: Duration = Duration::from_secs(20);

#[test]
fn starts_on_recipes_navigates_helps_and_quits_cleanly() {
    let s = TuiSession::start();
    let screen = s.wait_for("debian-minimal", T);
    assert!(
        screen.contains("▶ debian-minimal"),
        "default recipe selected:\n{screen}"
    );
    assert!(screen.contains("New here?"), "{screen}");
    assert!(screen.contains("? help"), "help bar:\n{screen}");
    assert_eq!(s.display("#{alternate_on}"), "1");

    // Help popup from the keymap, closed with Esc.
    s.send(&["?"]);
    let screen = s.wait_for("keys — Recipes", T);
    assert!(screen.contains("go to Labs"), "{screen}");
    s.send(&["Escape"]);
    s.wait_gone("keys — Recipes", T);

    // Navigate: Tab to VM, a digit to Deployments, S-Tab back.
    s.send(&["Tab"]);
    s.wait_for("no VM running", T);
    s.send(&["3"]);
    s.wait_for("no deployments read yet", T);
    s.send(&["BTab"]);
    s.wait_for("b boot", T);
    // Labs: the starter lab opens on its first step; z is presenter mode, Esc goes back.
    s.send(&["5"]);
    s.wait_for("A tour", T);
    s.send(&["Enter"]);
    s.wait_for("step 1/", T);
    s.send(&["z"]);
    let screen = s.wait_gone("1 Recipes", T);
    assert!(
        screen.contains("step 1/"),
        "presenter shows the step:\n{screen}"
    );
    s.send(&["z", "Escape"]);
    s.wait_for("Enter open lab", T);
    s.send(&["1"]);
    s.wait_for("v version", T);

    // Ctrl-C with nothing running says so and does not quit.
    s.send(&["C-c"]);
    s.wait_for("no job is running", T);

    // The `/` filter takes letters as text: q does not quit while typing.
    s.send(&["/", "q"]);
    s.wait_for("Enter applies", T);
    s.send(&["Escape"]);
    s.wait_gone("Enter applies", T);

    s.send(&["q"]);
    s.check_restored();
    assert!(s.home().join("state").is_dir(), "BOOTLAB_HOME was used");
}

#[test]
fn sigterm_restores_the_terminal() {
    let s = TuiSession::start();
    s.wait_for("debian-minimal", T);
    let pid = s.bootlab_pid();
    // SAFETY: kill on a pid we just read as our own child's child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    s.check_restored();
}

/// The whole path a member takes, through the real binary in a real terminal: pick the default
/// recipe, build it (image, OSTree commit, disk), boot it, read its deployments, quit stopping
/// the VM. The build shares the test cache (a cache hit when other tests built it first); the
/// boot is a real cold boot under TCG here.
#[test]
fn pick_build_boot_deployments_visible() {
    if !common::require_root() {
        return;
    }
    let _lock = common::heavy_lock();
    // A private home whose cache is the shared test cache (built artifacts reused), with state
    // of its own (this test's VM is the only one it sees).
    let home = tempfile::tempdir().unwrap();
    let shared_cache = common::shared_home().join("cache");
    std::fs::create_dir_all(&shared_cache).unwrap();
    std::os::unix::fs::symlink(
        common::shared_home().join("cache"),
        home.path().join("cache"),
    )
    .unwrap();
    let s = TuiSession::start_in(home);
    s.wait_for("▶ debian-minimal", T);

    // Build: image, commit and golden disk of v1.
    s.send(&["b"]);
    s.wait_for(
        "done: building debian-minimal:v1",
        Duration::from_secs(1200),
    );

    // Boot it in the VM view; `b` boots the recipe selected in Recipes.
    s.send(&["2"]);
    s.wait_for("no VM running", T);
    s.send(&["b"]);
    let screen = s.wait_for("done: booting debian-minimal", Duration::from_secs(600));
    assert!(
        screen.contains("TCG") || screen.contains("KVM"),
        "accelerator shown:\n{screen}"
    );

    // Deployments: read from the live guest through its agent.
    s.send(&["3"]);
    s.send(&["r"]);
    let screen = s.wait_for("done: reading deployments", Duration::from_secs(120));
    let booted = screen
        .lines()
        .find(|l| l.contains("booted"))
        .unwrap_or_else(|| panic!("no booted deployment row:\n{screen}"));
    assert!(booted.contains("v1"), "booted v1:\n{screen}");
    assert!(
        booted.contains("bootlab:bootlab/debian-minimal"),
        "origin (remote:branch) shown:\n{screen}"
    );

    // Quit: bootlab asks, `y` stops the VM; nothing is left running.
    s.send(&["q"]);
    s.wait_for("y stop VMs and quit", T);
    s.send(&["y"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // The pane's shell names the home too; VMs and supervisors live under state/vms.
        let left =
            bootlab::vm::procs::mentioning(&s.home().join("state/vms").display().to_string());
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left after quit: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    s.check_restored();
}
