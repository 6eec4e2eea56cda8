//! The command-line face: parses arguments (clap) and calls the engine. No logic of its own
//! beyond formatting what the engine returns.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod ci;
mod doctor;
mod drill;
mod image;
mod lab;
mod recipe;
mod vm;

#[derive(Debug, Parser)]
#[command(
    name = "bootlab",
    version,
    about = "A terminal workbench for bootc, libostree and composefs labs"
)]
pub struct Cli {
    /// Your own recipes folder (default: <data>/recipes), listed beside the shipped ones.
    #[arg(
        long = "recipes",
        id = "user_recipes",
        global = true,
        value_name = "DIR"
    )]
    pub recipes: Option<std::path::PathBuf>,
    /// Your own labs folder (default: <data>/labs), listed beside the shipped ones.
    #[arg(long = "labs", id = "user_labs", global = true, value_name = "DIR")]
    pub labs: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the terminal UI (the default when no command is given).
    Tui,
    /// Present a lab to an audience: the TUI on that lab, step text large, its checks, the
    /// presenter's notes and the VM console beside it; Space runs the step, then checks it, then
    /// moves on.
    Present { lab: String },
    /// Check this host: podman, QEMU, KVM (really probed), OSTree, mmdebstrap, loop devices, disk.
    Doctor(doctor::DoctorArgs),
    /// Recipes: a Containerfile plus metadata.
    #[command(subcommand)]
    Recipe(recipe::RecipeCmd),
    /// Labs: step files with text, actions and checks.
    #[command(subcommand)]
    Lab(lab::LabCmd),
    /// Container images and their OSTree commits.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Bootable disks.
    #[command(subcommand)]
    Disk(image::DiskCmd),
    /// Virtual machines.
    #[command(subcommand)]
    Vm(vm::VmCmd),
    /// Live deployments of a running VM.
    Status(drill::StatusArgs),
    /// Files and packages changed between two deployments of a running VM.
    Diff(drill::DiffArgs),
    /// Verified upgrade / rollback / switch / power-cut drills.
    #[command(subcommand)]
    Drill(drill::DrillCmd),
    /// CI workflows that build a recipe, push its image and make its disk.
    #[command(subcommand)]
    Ci(ci::CiCmd),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread starts: the engine reads these wherever it lists recipes or labs.
    for (var, dir) in [
        ("BOOTLAB_USER_RECIPES", &cli.recipes),
        ("BOOTLAB_USER_LABS", &cli.labs),
    ] {
        if let Some(d) = dir {
            let d = std::path::absolute(d).unwrap_or_else(|_| d.clone());
            // SAFETY: single-threaded here (no runtime or other thread started yet).
            unsafe { std::env::set_var(var, d) };
        }
    }
    if cli.command.as_ref().is_some_and(prints_data) {
        // `bootlab recipe show X --json | head` must end quietly when head has read enough.
        // Rust ignores SIGPIPE, so println! would panic on the closed pipe; these commands
        // only read and print, so the default action (end the process) is safe for them. Not
        // for the rest: a build or a boot cut off by a closed pipe would leave work half done.
        // SAFETY: single-threaded here; SIG_DFL is a valid disposition for SIGPIPE.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match cli.command {
        None | Some(Command::Tui) => crate::tui::run(None),
        Some(Command::Present { lab }) => crate::tui::run(Some(lab)),
        Some(Command::Doctor(a)) => doctor::run(a),
        Some(Command::Recipe(c)) => recipe::run(c),
        Some(Command::Lab(c)) => lab::run(c),
        Some(Command::Image(c)) => image::run_image(c),
        Some(Command::Disk(c)) => image::run_disk(c),
        Some(Command::Vm(c)) => vm::run(c),
        Some(Command::Status(a)) => drill::run_status(a),
        Some(Command::Diff(a)) => drill::run_diff(a),
        Some(Command::Drill(c)) => drill::run(c),
        Some(Command::Ci(c)) => ci::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bootlab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Commands that only read state and print it (listings, records, exports, plans).
fn prints_data(c: &Command) -> bool {
    match c {
        Command::Recipe(r) => matches!(
            r,
            recipe::RecipeCmd::List { .. } | recipe::RecipeCmd::Show { .. }
        ),
        Command::Lab(l) => matches!(
            l,
            lab::LabCmd::List { .. }
                | lab::LabCmd::Show { .. }
                | lab::LabCmd::Validate { .. }
                | lab::LabCmd::Env
        ),
        Command::Vm(v) => matches!(v, vm::VmCmd::Ls { .. } | vm::VmCmd::Status { .. }),
        Command::Ci(c) => matches!(
            c,
            ci::CiCmd::Export { output: None, .. } | ci::CiCmd::Run { dry_run: true, .. }
        ),
        _ => false,
    }
}

/// A multi-threaded tokio runtime for commands that run engine jobs.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The event channel of a CLI command: its stages say what they took before on this machine
/// and add their own durations (`crate::timings`).
pub(crate) fn channel() -> (
    crate::events::Emitter,
    tokio::sync::mpsc::UnboundedReceiver<crate::events::Stamped>,
) {
    let (ev, rx) = crate::events::Emitter::channel();
    let paths = crate::paths::Paths::from_env();
    (ev.with_timings(crate::timings::Timings::new(&paths)), rx)
}

/// ` (~6.1 s before)` for a stage measured before, else nothing.
pub(crate) fn expected_note(expected_secs: Option<f64>) -> String {
    expected_secs
        .map(|e| format!(" (~{e:.1} s before)"))
        .unwrap_or_default()
}

/// Print engine events to stderr as they arrive (the CLI's way of showing progress).
pub(crate) fn print_events(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<crate::events::Stamped>,
    verbose: bool,
) -> tokio::task::JoinHandle<()> {
    use crate::events::Event;
    tokio::spawn(async move {
        while let Some(s) = rx.recv().await {
            match s.event {
                Event::Command { stage, argv } => {
                    let line: Vec<String> = argv
                        .iter()
                        .map(|a| crate::tools::cmd::shell_quote(a))
                        .collect();
                    eprintln!("[{stage}] $ {}", line.join(" "));
                }
                Event::Log { stage, line, .. } if verbose => eprintln!("[{stage}] {line}"),
                Event::Log { .. } => {}
                Event::Progress {
                    stage,
                    done,
                    total,
                    label,
                } => {
                    eprintln!("[{stage}] {done}/{total} {label}")
                }
                Event::StageStarted {
                    stage,
                    expected_secs,
                } => eprintln!("[{stage}] started{}", expected_note(expected_secs)),
                Event::StageFinished {
                    stage,
                    secs,
                    cached,
                } => eprintln!(
                    "[{stage}] finished in {secs:.1}s{}",
                    if cached { " (cache hit)" } else { "" }
                ),
                Event::State {
                    object,
                    state,
                    detail,
                } => eprintln!("[{object}] {state} {detail}"),
                Event::VmState { vm, state, detail } => {
                    eprintln!("[{}] {state} {detail}", crate::events::vm_stage(&vm))
                }
                Event::LabStep { lab, step } => eprintln!("[lab {lab}] step {step}"),
                Event::Check {
                    title,
                    outcome,
                    detail,
                    ..
                } => eprintln!("[check] {outcome:?} {title} {detail}"),
                Event::Note { stage, text } => eprintln!("[{stage}] {text}"),
            }
        }
    })
}

#[cfg(test)]
mod global_flag_tests {
    use super::*;
    use clap::CommandFactory;

    /// `--labs DIR` / `--recipes DIR` are global: they must not clash with a subcommand's own
    /// `labs`/`recipes` arguments (a clash panics only when that subcommand is parsed).
    #[test]
    fn global_folders_parse_beside_every_subcommand() {
        Cli::command().debug_assert();
        let c =
            Cli::try_parse_from(["bootlab", "lab", "selftest", "tour", "--labs", "/d"]).unwrap();
        assert_eq!(c.labs.as_deref(), Some(std::path::Path::new("/d")));
        let c = Cli::try_parse_from(["bootlab", "--recipes", "/r", "recipe", "list"]).unwrap();
        assert_eq!(c.recipes.as_deref(), Some(std::path::Path::new("/r")));
    }
}
