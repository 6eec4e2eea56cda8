//! Keys → actions, per view and per mode. The help bar and the `?` popup are generated from the
//! same bindings that `lookup` uses, so what they show is what works.

use super::action::{Action, Tab, VmControl};
use super::app::{App, Modal};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// A key with its modifiers (Shift is folded into the character for letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

impl Key {
    pub const fn ch(c: char) -> Key {
        Key {
            code: KeyCode::Char(c),
            ctrl: false,
        }
    }
    pub const fn ctrl(c: char) -> Key {
        Key {
            code: KeyCode::Char(c),
            ctrl: true,
        }
    }
    pub const fn code(code: KeyCode) -> Key {
        Key { code, ctrl: false }
    }

    pub fn from_event(ev: &KeyEvent) -> Key {
        let code = match ev.code {
            // Terminals report Shift+Tab as BackTab; some as Tab with SHIFT.
            KeyCode::Tab if ev.modifiers.contains(KeyModifiers::SHIFT) => KeyCode::BackTab,
            c => c,
        };
        Key {
            code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
        }
    }

    /// The key event a terminal sends for this key (used by tests and by `parse`).
    pub fn to_event(self) -> KeyEvent {
        let mut mods = KeyModifiers::NONE;
        if self.ctrl {
            mods |= KeyModifiers::CONTROL;
        }
        if let KeyCode::Char(c) = self.code
            && c.is_ascii_uppercase()
        {
            mods |= KeyModifiers::SHIFT;
        }
        if self.code == KeyCode::BackTab {
            mods |= KeyModifiers::SHIFT;
        }
        KeyEvent::new(self.code, mods)
    }

    /// How the key is written in the help bar and popup.
    pub fn label(self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Backspace => "Bksp".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        if self.ctrl {
            format!("Ctrl-{base}")
        } else {
            base
        }
    }

    /// Inverse of `label` (tests read the help bar back into keys with it).
    pub fn parse(label: &str) -> Option<Key> {
        if let Some(rest) = label.strip_prefix("Ctrl-") {
            let k = Key::parse(rest)?;
            return Some(Key { ctrl: true, ..k });
        }
        let code = match label {
            "Space" => KeyCode::Char(' '),
            "Enter" => KeyCode::Enter,
            "Esc" => KeyCode::Esc,
            "Tab" => KeyCode::Tab,
            "S-Tab" => KeyCode::BackTab,
            "Bksp" => KeyCode::Backspace,
            "↑" => KeyCode::Up,
            "↓" => KeyCode::Down,
            "←" => KeyCode::Left,
            "→" => KeyCode::Right,
            "PgUp" => KeyCode::PageUp,
            "PgDn" => KeyCode::PageDown,
            "Home" => KeyCode::Home,
            "End" => KeyCode::End,
            s if s.chars().count() == 1 => KeyCode::Char(s.chars().next()?),
            s if s.starts_with('F') => KeyCode::F(s[1..].parse().ok()?),
            _ => return None,
        };
        Some(Key { code, ctrl: false })
    }
}

/// One key binding: the key, what it does, and the words the help shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub key: Key,
    pub action: Action,
    pub help: &'static str,
    /// Shown in the one-line help bar (everything is shown in the `?` popup).
    pub bar: bool,
}

const fn b(key: Key, action: Action, help: &'static str) -> Binding {
    Binding {
        key,
        action,
        help,
        bar: true,
    }
}

/// Same as `b`, but only listed in the `?` popup (alternatives like j/k, digits).
const fn extra(key: Key, action: Action, help: &'static str) -> Binding {
    Binding {
        key,
        action,
        help,
        bar: false,
    }
}

/// What the keyboard currently talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Help,
    Confirm,
    /// Typing a name into a prompt (every printable key is text).
    NameInput,
    FilterInput,
    View(Tab),
    LabStep,
    /// Picking one of a step's code blocks.
    Snippets,
}

pub fn context(app: &App) -> Context {
    match &app.modal {
        Some(Modal::Help) => Context::Help,
        Some(Modal::NewRecipe { .. }) => Context::NameInput,
        Some(Modal::Snippets { .. }) => Context::Snippets,
        Some(_) => Context::Confirm,
        None => context_under_modal(app),
    }
}

/// The context of the view itself, ignoring any popup (the `?` popup lists its keys).
pub fn context_under_modal(app: &App) -> Context {
    if app.focused_log().is_some_and(|l| l.is_typing_filter()) {
        return Context::FilterInput;
    }
    if app.tab == Tab::Labs && app.labs.open.is_some() {
        return Context::LabStep;
    }
    Context::View(app.tab)
}

/// Log pane keys. PgDn and End only do something while scrolled up, so they only show then.
fn log_bindings(log: Option<&super::logpane::LogPane>) -> Vec<Binding> {
    let paused = log.is_some_and(|l| !l.following());
    let mut v = vec![b(Key::code(KeyCode::PageUp), Action::LogPageUp, "older")];
    if paused {
        v.push(b(
            Key::code(KeyCode::PageDown),
            Action::LogPageDown,
            "newer",
        ));
        v.push(b(Key::code(KeyCode::End), Action::LogFollow, "follow"));
    } else {
        v.push(extra(
            Key::code(KeyCode::PageDown),
            Action::LogPageDown,
            "log: newer lines",
        ));
        v.push(extra(
            Key::code(KeyCode::End),
            Action::LogFollow,
            "log: follow the end",
        ));
    }
    v.push(extra(
        Key::code(KeyCode::Home),
        Action::LogTop,
        "log: oldest line",
    ));
    v.push(b(Key::ch('/'), Action::FilterStart, "filter"));
    v
}

/// Up/down move in lists; obvious enough to live only in the `?` popup.
fn list_bindings() -> Vec<Binding> {
    vec![
        extra(Key::code(KeyCode::Up), Action::Up, "select previous"),
        extra(Key::code(KeyCode::Down), Action::Down, "select next"),
        extra(Key::ch('k'), Action::Up, "select previous"),
        extra(Key::ch('j'), Action::Down, "select next"),
    ]
}

/// Keys that must always be visible: cancel (while a job runs), help, quit.
fn essential_bindings(app: &App) -> Vec<Binding> {
    let mut v = vec![];
    if app.job.is_some() {
        v.push(b(Key::ctrl('c'), Action::CancelJob, "cancel job"));
    }
    v.push(b(Key::ch('?'), Action::ToggleHelp, "help"));
    v.push(b(Key::ch('q'), Action::Quit, "quit"));
    v
}

/// Navigation between views and presenter mode.
fn navigation_bindings(app: &App) -> Vec<Binding> {
    let mut v = vec![
        b(Key::code(KeyCode::Tab), Action::NextTab, "views"),
        extra(
            Key::code(KeyCode::BackTab),
            Action::PrevTab,
            "previous view",
        ),
    ];
    for (i, t) in Tab::ALL.iter().enumerate() {
        let digit = char::from(b'1' + i as u8);
        v.push(extra(Key::ch(digit), Action::GoTab(*t), tab_help(*t)));
    }
    v.push(b(Key::ch('z'), Action::TogglePresenter, "present"));
    if app.job.is_none() {
        v.push(extra(
            Key::ctrl('c'),
            Action::CancelJob,
            "cancel the running job",
        ));
    }
    v
}

fn tab_help(t: Tab) -> &'static str {
    match t {
        Tab::Recipes => "go to Recipes",
        Tab::Vm => "go to VM",
        Tab::Deployments => "go to Deployments",
        Tab::Drills => "go to Drills",
        Tab::Labs => "go to Labs",
    }
}

/// The bindings active in the app's current state, most important first.
pub fn bindings(app: &App) -> Vec<Binding> {
    bindings_in(app, context(app))
}

/// The bindings of the view under any popup.
pub fn bindings_under_modal(app: &App) -> Vec<Binding> {
    bindings_in(app, context_under_modal(app))
}

fn bindings_in(app: &App, ctx: Context) -> Vec<Binding> {
    match ctx {
        Context::Help => vec![
            b(Key::code(KeyCode::Esc), Action::Back, "close"),
            b(Key::ch('?'), Action::ToggleHelp, "close"),
        ],
        Context::Confirm => {
            let yes = app.modal.as_ref().map(|m| m.yes_label()).unwrap_or("yes");
            let mut v = vec![b(Key::ch('y'), Action::Confirm, yes)];
            if let Some(alt) = app.modal.as_ref().and_then(|m| m.alt_label()) {
                v.push(b(Key::ch('k'), Action::ConfirmAlt, alt));
            }
            v.push(b(Key::ch('n'), Action::Dismiss, "cancel"));
            v.push(extra(Key::code(KeyCode::Esc), Action::Dismiss, "cancel"));
            v
        }
        Context::Snippets => {
            let mut v = vec![
                b(
                    Key::code(KeyCode::Enter),
                    Action::Confirm,
                    "run in the guest",
                ),
                b(Key::ch('c'), Action::CopySnippet, "copy"),
                b(Key::code(KeyCode::Esc), Action::Dismiss, "cancel"),
            ];
            v.extend(list_bindings());
            v
        }
        Context::NameInput => vec![
            b(
                Key::code(KeyCode::Enter),
                Action::Confirm,
                app.modal.as_ref().map(|m| m.yes_label()).unwrap_or("ok"),
            ),
            b(Key::code(KeyCode::Esc), Action::Dismiss, "cancel"),
            extra(
                Key::code(KeyCode::Backspace),
                Action::TextBackspace,
                "delete a character",
            ),
        ],
        Context::FilterInput => vec![
            b(
                Key::code(KeyCode::Enter),
                Action::FilterApply,
                "apply filter",
            ),
            b(Key::code(KeyCode::Esc), Action::FilterClear, "clear filter"),
            extra(
                Key::code(KeyCode::Backspace),
                Action::FilterBackspace,
                "delete a character",
            ),
        ],
        Context::View(tab) => {
            let (primary, secondary) = view_bindings(app, tab);
            let mut v = primary;
            v.extend(essential_bindings(app));
            v.extend(secondary);
            v.extend(navigation_bindings(app));
            v
        }
        Context::LabStep => {
            let mut v = vec![];
            if app.presenter {
                v.push(b(Key::ch(' '), Action::PresentNext, "next"));
            }
            v.extend([
                b(Key::code(KeyCode::Enter), Action::Enter, "run action"),
                b(Key::ch('c'), Action::RunChecks, "check"),
                b(Key::ch('h'), Action::Hint, "hint"),
                b(Key::ch('n'), Action::NextStep, "next step"),
                extra(Key::ch('p'), Action::PrevStep, "previous step"),
                b(Key::ch('S'), Action::Solve, "solve"),
                b(Key::code(KeyCode::Esc), Action::Back, "labs"),
            ]);
            if app
                .labs
                .step()
                .is_some_and(|s| !crate::tui::markdown::code_blocks(&s.text).is_empty())
            {
                // In the `?` popup; the step panel says it too (the bar is full here).
                v.push(extra(Key::ch('x'), Action::Snippets, "run/copy a command"));
            }
            v.extend(essential_bindings(app));
            v.extend(navigation_bindings(app));
            v
        }
    }
}

/// A view's own keys: (shown first, shown after help/quit).
fn view_bindings(app: &App, tab: Tab) -> (Vec<Binding>, Vec<Binding>) {
    let mut v = Vec::new();
    let mut later = Vec::new();
    match tab {
        Tab::Recipes => {
            v.push(b(Key::ch('v'), Action::NextVersion, "version"));
            v.push(b(Key::ch('b'), Action::Build, "build"));
            v.push(b(Key::ch('n'), Action::NewRecipe, "new (yours)"));
            if app
                .recipes
                .selected()
                .is_some_and(|r| r.origin == crate::recipe::Origin::Yours)
            {
                v.push(b(Key::ch('e'), Action::EditRecipe, "edit"));
            }
            v.extend(list_bindings());
            later.extend(log_bindings(Some(&app.recipes.log)));
        }
        Tab::Vm => {
            match &app.vm.vm {
                Some(vm) if vm.is_running() => {
                    v.push(b(Key::ch('s'), Action::Shell, "shell"));
                    v.push(b(Key::ch('p'), Action::Vm(VmControl::Pause), "pause"));
                    v.push(b(Key::ch('r'), Action::Vm(VmControl::Resume), "resume"));
                    v.push(b(Key::ch('R'), Action::Vm(VmControl::Reset), "reset"));
                    v.push(b(
                        Key::ch('o'),
                        Action::Vm(VmControl::PowerDown),
                        "power down",
                    ));
                    v.push(b(
                        Key::ch('X'),
                        Action::Vm(VmControl::PowerCut),
                        "power-cut",
                    ));
                }
                _ => {
                    v.push(b(Key::ch('b'), Action::Boot, "boot"));
                    v.push(b(Key::ch('u'), Action::BootUefi, "boot UEFI"));
                }
            }
            later.extend(log_bindings(Some(&app.vm.console)));
        }
        Tab::Deployments => {
            v.push(b(Key::ch('r'), Action::Refresh, "refresh"));
            if !app.deploy.deployments.is_empty() {
                v.push(b(Key::ch(' '), Action::MarkForDiff, "mark"));
                v.push(b(Key::ch('d'), Action::Diff, "diff"));
                v.extend(list_bindings());
            }
        }
        Tab::Drills => {
            v.push(b(
                Key::code(KeyCode::Enter),
                Action::StartDrill,
                "start drill",
            ));
            v.extend(list_bindings());
        }
        Tab::Labs => {
            v.push(b(Key::code(KeyCode::Enter), Action::Enter, "open lab"));
            v.extend(list_bindings());
        }
    }
    (v, later)
}

/// The action a key press means right now, if any.
pub fn lookup(app: &App, ev: &KeyEvent) -> Option<Action> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    let key = Key::from_event(ev);
    let ctx = context(app);
    if let Some(bd) = bindings(app).into_iter().find(|bd| bd.key == key) {
        return Some(bd.action);
    }
    // Typing a filter or a name: every other printable character is text.
    if let (KeyCode::Char(c), false) = (key.code, key.ctrl) {
        match ctx {
            Context::FilterInput => return Some(Action::FilterChar(c)),
            Context::NameInput => return Some(Action::TextChar(c)),
            _ => {}
        }
    }
    // Ctrl-C cancels a job even inside popups and the filter prompt.
    if key == Key::ctrl('c') {
        return Some(Action::CancelJob);
    }
    None
}

/// The entries of the one-line help bar: (key label, what it does).
pub fn help_bar(app: &App) -> Vec<(String, &'static str)> {
    bindings(app)
        .into_iter()
        .filter(|bd| bd.bar)
        .map(|bd| (bd.key.label(), bd.help))
        .collect()
}
