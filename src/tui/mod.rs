//! The terminal UI face (ratatui + crossterm + tokio), a face over the engine.
//!
//! - `action`: the one `Action` enum; `keymap`: keys → actions per view, and the help built
//!   from the same bindings.
//! - `app`: state and `update` (actions, engine events); `draw`/`views`: pure rendering.
//! - `engine`: the only place engine jobs are started; this module runs them as cancellable tokio
//!   tasks and owns the terminal (raw mode, alternate screen, restore on exit, panic and signals).

pub mod action;
pub mod app;
pub mod draw;
pub mod engine;
pub mod keymap;
pub mod logpane;
pub mod markdown;
pub mod views;

use app::{App, Effect, Init, JobKind, Msg};
use crossterm::event::{Event as TermEvent, EventStream};
use crossterm::{execute, terminal};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::Stdout;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;

type Term = Terminal<CrosstermBackend<Stdout>>;

/// The TUI; with `present`, that lab opened in presenter mode (`bootlab present LAB`).
pub fn run(present: Option<String>) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    // A lab that does not exist is said first (by id, file name or path, as `lab run` finds it).
    let present = present
        .map(|k| crate::lab::find(&k).map(|l| l.id))
        .transpose()?;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("the TUI needs a terminal; try `bootlab --help` for the commands");
    }
    let paths = Paths::from_env();
    paths.ensure()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_app(paths, present))?;
    Ok(ExitCode::SUCCESS)
}

/// Load what the first screen needs. Errors become messages in the views, not a crash.
pub fn initial_app(paths: &Paths, now: SystemTime) -> App {
    let (labs, errors) = crate::lab::shipped();
    let models: Vec<views::labs::LabModel> = labs.iter().map(Into::into).collect();
    let lab_result = if errors.is_empty() || !models.is_empty() {
        Ok(models)
    } else {
        Err(String::new())
    };
    let mut app = App::new(Init {
        recipes: crate::recipe::all().map_err(|e| e.to_string()),
        labs: lab_result,
        now,
    });
    app.labs.sources = labs;
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        app.labs.load_error = Some(lines.join("\n"));
    }
    let mut unreadable = vec![];
    for l in app.labs.labs.clone() {
        match views::labs::load_progress(paths, &l) {
            Ok((Some(p), _)) => {
                app.labs.progress.insert(l.id.clone(), p);
            }
            Ok((None, said)) => unreadable.extend(said),
            Err(e) => unreadable.push(format!("{e:#}")),
        }
    }
    if !unreadable.is_empty() {
        app.status = Some(format!(
            "lab progress not loaded (starting those labs afresh): {}",
            unreadable.join("; ")
        ));
    }
    app
}

fn setup_terminal() -> anyhow::Result<Term> {
    enter_tui_mode()?;
    Ok(Terminal::new(CrosstermBackend::new(std::io::stdout()))?)
}

/// Raw mode and the alternate screen (also after a suspend: the `Terminal` is kept, because
/// making a new one asks the terminal for the cursor position).
fn enter_tui_mode() -> anyhow::Result<()> {
    terminal::enable_raw_mode()?;
    if let Err(e) = execute!(std::io::stdout(), terminal::EnterAlternateScreen) {
        restore_terminal();
        return Err(e.into());
    }
    Ok(())
}

/// Give the terminal back as we found it. Safe to call twice.
pub fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        prev(info);
    }));
}

/// Restores the terminal when the loop ends by any path (error or `?`).
struct TerminalGuard;
impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The one running background job.
struct Runner {
    tx: mpsc::UnboundedSender<Msg>,
    paths: Paths,
    cancel: Option<CancellationToken>,
}

impl Runner {
    fn start(&mut self, app: &App, kind: JobKind) {
        let input = engine::JobInput::from_app(app, kind.clone());
        let cancel = CancellationToken::new();
        self.cancel = Some(cancel.clone());
        let (emitter, mut rx) = Emitter::channel();
        // Its stages say what they took before and add their own durations.
        let emitter = emitter.with_timings(crate::timings::Timings::new(&self.paths));
        let tx = self.tx.clone();
        let fwd_tx = tx.clone();
        let forward = tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if fwd_tx.send(Msg::Engine(s)).is_err() {
                    break;
                }
            }
        });
        let paths = self.paths.clone();
        tokio::spawn(async move {
            let work = engine::run(input, emitter, cancel.clone(), paths);
            let result = tokio::select! {
                r = work => Some(r),
                _ = cancel.cancelled() => None,
            };
            // The work (and its emitter) is gone: let the last events through before the
            // verdict, so the log is complete when the job shows as finished.
            let _ = tokio::time::timeout(Duration::from_millis(500), forward).await;
            let _ = match result {
                Some(result) => tx.send(Msg::JobDone { kind, result }),
                None => tx.send(Msg::JobCancelled { kind }),
            };
        });
    }

    fn cancel(&mut self) {
        if let Some(c) = self.cancel.take() {
            c.cancel();
        }
    }
}

/// Follows the running VM's events (console, state) while there is one.
struct Watcher {
    tx: mpsc::UnboundedSender<Msg>,
    paths: Paths,
    vm: Option<String>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Watcher {
    /// Follow `vm` (or nothing); restarts only when the VM changes.
    fn follow(&mut self, vm: Option<String>) {
        // A VM that stopped and came back (a power-cut drill) needs a new subscription.
        let alive = self.task.as_ref().is_some_and(|t| !t.is_finished());
        if vm == self.vm && (alive || vm.is_none()) {
            return;
        }
        self.cancel.cancel();
        self.cancel = CancellationToken::new();
        self.vm = vm.clone();
        let Some(name) = vm else { return };
        let (emitter, mut rx) = Emitter::channel();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if tx.send(Msg::Engine(s)).is_err() {
                    break;
                }
            }
        });
        self.task = Some(tokio::spawn(engine::watch_vm(
            self.paths.clone(),
            name,
            emitter,
            self.cancel.clone(),
        )));
    }
}

/// What the engine already knows when the TUI starts: a VM left running, the KVM verdict.
async fn attach_engine_state(app: &mut App, paths: &Paths) {
    app.vm.host_accel = engine::host_accel(paths).await;
    if let Some(rec) = engine::running_vm(paths) {
        for l in crate::vm::console::tail(&rec.console_log, 300) {
            app.vm
                .console
                .push(&crate::events::vm_stage(&rec.name), &l, false);
        }
        app.vm.vm = Some(engine::vm_info(&rec));
    }
}

async fn run_app(paths: Paths, present: Option<String>) -> anyhow::Result<()> {
    let mut app = initial_app(&paths, SystemTime::now());
    attach_engine_state(&mut app, &paths).await;
    // Refused before the terminal changes, so the message stays readable.
    let initial = match &present {
        Some(key) => app.present(key).map_err(anyhow::Error::msg)?,
        None => vec![],
    };
    install_panic_hook();
    let mut term = setup_terminal()?;
    let _guard = TerminalGuard;
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let mut runner = Runner {
        tx: tx.clone(),
        paths: paths.clone(),
        cancel: None,
    };
    let mut watcher = Watcher {
        tx: tx.clone(),
        paths: paths.clone(),
        vm: None,
        cancel: CancellationToken::new(),
        task: None,
    };
    let mut keys = EventStream::new();
    // Ticks only matter while a job runs (elapsed time); idle, nothing redraws.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;

    for e in initial {
        if let Effect::Start(kind) = e {
            runner.start(&app, kind);
        }
    }
    watcher.follow(app.vm.vm.as_ref().map(|v| v.name.clone()));
    term.draw(|f| draw::draw(&app, f))?;
    loop {
        let mut effects = vec![];
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(TermEvent::Key(k))) => {
                    if let Some(a) = keymap::lookup(&app, &k) {
                        effects = app.update(a);
                    }
                }
                Some(Ok(TermEvent::Resize(..))) => {}
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            Some(msg) = rx.recv() => {
                app.on_msg(msg);
                // Batch whatever else arrived (a burst of log lines) into one redraw.
                while let Ok(m) = rx.try_recv() {
                    app.on_msg(m);
                }
                if let Some(lab) = app.labs.unsaved.take() {
                    effects.push(Effect::SaveLabProgress { lab });
                }
            }
            _ = tick.tick(), if app.job.is_some() => app.on_msg(Msg::Tick(SystemTime::now())),
            _ = sigint.recv() => effects = app.update(action::Action::CancelJob),
            _ = sigterm.recv() => { runner.cancel(); break; }
            _ = sighup.recv() => { runner.cancel(); break; }
        }
        for e in effects {
            match e {
                Effect::Quit => {}
                Effect::CancelJob => runner.cancel(),
                Effect::StopVmsThenQuit => {
                    let vms = app.running_vms();
                    // Draw once more so the wait (an ACPI power down) is explained.
                    app.status = Some(format!("stopping {}…", vms.join(", ")));
                    term.draw(|f| draw::draw(&app, f))?;
                    if let Err(e) = engine::stop_vms(&paths, &vms).await {
                        eprintln!("bootlab: stopping VMs: {e}");
                    }
                }
                Effect::Start(kind) => runner.start(&app, kind),
                Effect::Shell { vm } => {
                    // Hand the terminal over: no key reader may compete for stdin meanwhile.
                    drop(keys);
                    restore_terminal();
                    let mut cmd = engine::shell_command(&vm);
                    println!("bootlab: handing the terminal to: {cmd:?} (exit it to come back)");
                    let status = tokio::task::spawn_blocking(move || cmd.status()).await?;
                    enter_tui_mode()?;
                    // A full repaint. `Terminal::clear` would ask the terminal for the cursor
                    // position, which times out right after a hand-over; resize clears without.
                    let size = term.size()?;
                    term.resize(ratatui::layout::Rect::new(0, 0, size.width, size.height))?;
                    keys = EventStream::new();
                    app.on_msg(Msg::Status(match status {
                        Ok(s) if s.success() => "back from the guest shell".into(),
                        Ok(s) => format!("the guest shell ended: {s}"),
                        Err(e) => format!("could not start the guest shell: {e}"),
                    }));
                }
                Effect::Edit { recipe, file } => {
                    drop(keys);
                    restore_terminal();
                    let mut cmd = crate::tools::editor::command(&file);
                    println!(
                        "bootlab: editing {} with {cmd:?} (quit it to build)",
                        file.display()
                    );
                    let status = tokio::task::spawn_blocking(move || cmd.status()).await?;
                    enter_tui_mode()?;
                    let size = term.size()?;
                    term.resize(ratatui::layout::Rect::new(0, 0, size.width, size.height))?;
                    keys = EventStream::new();
                    match status {
                        Ok(_) => {
                            let more = app.after_edit(
                                &recipe,
                                crate::recipe::all().map_err(|e| e.to_string()),
                            );
                            for e in more {
                                if let Effect::Start(kind) = e {
                                    runner.start(&app, kind);
                                }
                            }
                        }
                        Err(e) => app.on_msg(Msg::Status(format!(
                            "could not start the editor ({e}): set $EDITOR"
                        ))),
                    }
                }
                Effect::SaveLabProgress { lab } => {
                    if let Err(e) = app.labs.save(&paths, &lab) {
                        app.on_msg(Msg::Status(format!("failed: saving lab progress: {e}")));
                    }
                }
                Effect::Copy(text) => {
                    use std::io::Write;
                    let mut out = std::io::stdout();
                    if out
                        .write_all(osc52(&text).as_bytes())
                        .and_then(|_| out.flush())
                        .is_err()
                    {
                        app.on_msg(Msg::Status("could not copy (the terminal is gone)".into()));
                    }
                }
            }
        }
        if app.quit {
            break;
        }
        watcher.follow(
            app.vm
                .vm
                .as_ref()
                .filter(|v| v.is_running())
                .map(|v| v.name.clone()),
        );
        app.now = SystemTime::now();
        term.draw(|f| draw::draw(&app, f))?;
    }
    runner.cancel();
    watcher.follow(None);
    Ok(())
}

/// The escape sequence that asks the terminal to put `text` on the system clipboard (OSC 52;
/// most terminals and tmux with `set-clipboard on` honour it, over SSH too).
fn osc52(text: &str) -> String {
    use base64::Engine;
    format!(
        "\x1b]52;c;{}\x07",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

#[cfg(test)]
mod clipboard_tests {
    #[test]
    fn osc52_carries_the_text_in_base64() {
        assert_eq!(super::osc52("ls /"), "\x1b]52;c;bHMgLw==\x07");
    }
}
