//! `bootlab lab …`: list, show and validate step files. Formatting only; see `crate::lab`.

use crate::events::{CancellationToken, CheckOutcome, Event, Stamped, is_lab_stage, lab_stage};
use crate::lab::{self, Lab, Probe, Progress, Slot};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum LabCmd {
    /// List the labs.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one lab: its steps, actions and checks (LAB is an id, a file stem or a path).
    Show {
        lab: String,
        #[arg(long)]
        json: bool,
    },
    /// Validate lab files or folders (default: every lab shipped). Errors go to stderr as
    /// `file:line:col: message`; exit status 1 when there is any.
    Validate { paths: Vec<PathBuf> },
    /// Run a lab for real (no TUI): each step's text, its action, every host and guest command
    /// before it runs, then each check with ✓/✗. Exit status 1 when a check fails.
    Run {
        lab: String,
        /// Also run each step's solution, so every step completes (what "skip" does).
        #[arg(long)]
        solve: bool,
        /// The VM to use (default `lab-<lab id>`).
        #[arg(long)]
        vm: Option<String>,
        /// Start at this step, the guest restored as the step before left it (the snapshot taken
        /// when that step passed; without one, the steps before run with their solutions
        /// first). Without it the lab resumes where it stopped, in this command or in the TUI
        /// (the progress file is shared), the stopped VM started from its snapshot.
        #[arg(long)]
        from: Option<String>,
        /// Print the hints already revealed at each step, and reveal (and print) the next one
        /// when a step fails; the TUI shows the same hints as revealed.
        #[arg(long)]
        hints: bool,
        /// Show tools' output lines and each failed check attempt.
        #[arg(short, long)]
        verbose: bool,
        /// Trust the host commands of a lab file from outside bootlab's labs folder (they are
        /// listed first; remembered for that exact file content).
        #[arg(long)]
        trust: bool,
    },
    /// Print the variables lab commands use (`$BOOTLAB_STATE`, `$BOOTLAB_RECIPES`, …) as shell
    /// `export` lines, for your own shell: `eval "$(bootlab lab env)"`.
    Env,
    /// Start a lab over: stop and remove its VM (which holds the step snapshots) and forget its
    /// progress (steps passed, hints revealed).
    Reset { lab: String },
    /// Run every step's action, solution and checks of each lab (default: every shipped lab that
    /// needs no bootc host), then stop the lab's VM. Exit status 1 when any check fails.
    Selftest {
        labs: Vec<String>,
        /// Write a JUnit XML report (one testsuite per lab, one testcase per check).
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write a JSON report.
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(short, long)]
        verbose: bool,
        /// Trust the host commands of lab files from outside bootlab's labs folder.
        #[arg(long)]
        trust: bool,
    },
}

pub fn run(c: LabCmd) -> anyhow::Result<ExitCode> {
    match c {
        LabCmd::List { json } => list(json),
        LabCmd::Show { lab, json } => show(&lab, json),
        LabCmd::Validate { paths } => validate(paths),
        LabCmd::Reset { lab } => reset(&lab),
        LabCmd::Env => {
            let paths = crate::paths::Paths::from_env();
            for (k, v) in lab::host_env(&paths) {
                println!(
                    "export {k}={}",
                    crate::tools::cmd::shell_quote(&v.to_string_lossy())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Run {
            lab,
            solve,
            vm,
            from,
            hints,
            verbose,
            trust,
        } => run_lab(&lab, solve, vm, from, hints, verbose, trust),
        LabCmd::Selftest {
            labs,
            junit,
            json,
            verbose,
            trust,
        } => selftest(labs, junit, json, verbose, trust),
    }
}

fn report(errors: &[crate::diag::FileError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

fn list(json: bool) -> anyhow::Result<ExitCode> {
    let (labs, errors) = lab::shipped();
    report(&errors);
    if json {
        let rows: Vec<serde_json::Value> = labs
            .iter()
            .map(|l| {
                serde_json::json!({
                    "id": l.id,
                    "title": l.title,
                    "minutes": l.minutes,
                    "steps": l.steps.len(),
                    "summary": l.summary,
                    "recipe": l.requires.recipe,
                    "family": l.requires.family,
                    "path": l.path,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let w = labs.iter().map(|l| l.id.len()).max().unwrap_or(2).max(2);
        println!("{:<w$}  {:>3}  {:>5}  TITLE", "ID", "MIN", "STEPS");
        for l in &labs {
            println!(
                "{:<w$}  {:>3}  {:>5}  {}",
                l.id,
                l.minutes,
                l.steps.len(),
                l.title
            );
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn show(key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let l = lab::find(key)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&l)?);
    } else {
        print!("{}", render(&l));
    }
    Ok(ExitCode::SUCCESS)
}

fn indent(text: &str, pad: &str) -> String {
    text.trim_end()
        .lines()
        .map(|l| {
            if l.is_empty() {
                format!("{}\n", pad.trim_end())
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

fn slot(name: &str, s: &Option<Slot>) -> Option<String> {
    s.as_ref().map(|s| match s {
        Slot::Version(v) => format!("{name} {v}"),
        Slot::Absent => format!("no {name}"),
    })
}

fn render(l: &Lab) -> String {
    let mut o = String::new();
    o.push_str(&format!("{} — {} ({} min)\n", l.id, l.title, l.minutes));
    o.push_str(&format!("file: {}\n", l.path.display()));
    let mut req = Vec::new();
    if let Some(r) = &l.requires.recipe {
        req.push(format!("recipe {r}"));
    }
    if let Some(f) = &l.requires.family {
        req.push(format!("family {f}"));
    }
    if !l.requires.host_tools.is_empty() {
        req.push(format!("host tools {}", l.requires.host_tools.join(", ")));
    }
    if !req.is_empty() {
        o.push_str(&format!("requires: {}\n", req.join("; ")));
    }
    o.push('\n');
    o.push_str(&indent(&l.summary, ""));
    if let Some(t) = &l.intro {
        o.push_str("\nbefore you start:\n");
        o.push_str(&indent(t, "   │ "));
    }
    for (i, s) in l.steps.iter().enumerate() {
        o.push_str(&format!("\n{}. {} — {}\n", i + 1, s.id, s.title));
        o.push_str(&indent(&s.text, "   │ "));
        o.push_str(&format!("   action: {}\n", l.action_of(s).describe()));
        if s.spans_reboot() {
            o.push_str("   (the guest reboots during this step; checks wait for it)\n");
        }
        o.push_str("   checks:\n");
        for c in &s.checks {
            let what = match &c.probe {
                Probe::Guest { run } => format!("guest: {run}"),
                Probe::Host { run } => format!("host: {run}"),
                Probe::Deployments(d) => {
                    let parts: Vec<String> = [
                        slot("booted", &d.booted),
                        slot("staged", &d.staged),
                        slot("rollback", &d.rollback),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    format!("deployments: {}", parts.join(", "))
                }
            };
            o.push_str(&format!("     [ ] {}\n         {what}\n", c.title));
            if !c.retry.window.is_zero() {
                o.push_str(&format!(
                    "         retried for up to {}s, every {}s\n",
                    c.retry.window.as_secs(),
                    c.retry.interval.as_secs()
                ));
            }
        }
        if !s.hints.is_empty() {
            o.push_str(&format!("   hints: {}\n", s.hints.len()));
        }
        if !s.solve.is_empty() {
            let solve: Vec<String> = s.solve.iter().map(|a| a.describe()).collect();
            o.push_str(&format!("   solve: {}\n", solve.join("; ")));
        }
    }
    if let Some(t) = &l.finish {
        o.push_str("\nwhen every step passed:\n");
        o.push_str(&indent(t, "   │ "));
    }
    o
}

fn validate(paths: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let paths = if paths.is_empty() {
        vec![crate::paths::labs_dir()]
    } else {
        paths
    };
    let recipes = match crate::recipe::all() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let (labs, errors) = lab::load_paths(&paths, &recipes);
    report(&errors);
    if errors.is_empty() {
        println!(
            "{} lab{} ok",
            labs.len(),
            if labs.len() == 1 { "" } else { "s" }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} error{} in lab files",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Print a lab's events on stdout, in the order they happened: step headers, actions, every
/// command before it runs, check results.
fn lab_printer(
    labs: Vec<Lab>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Stamped>,
    verbose: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(s) = rx.recv().await {
            match s.event {
                Event::LabStep { lab, step } => {
                    let l = labs.iter().find(|l| l.id == lab);
                    let step = l.and_then(|l| l.steps.iter().position(|s| s.id == step));
                    if let (Some(l), Some(i)) = (l, step) {
                        let st = &l.steps[i];
                        println!("\n{}. {} — {}", i + 1, st.id, st.title);
                        print!("{}", indent(&st.text, "   │ "));
                    }
                }
                Event::Check {
                    title,
                    outcome,
                    detail,
                    ..
                } => match outcome {
                    CheckOutcome::Passed => println!("   ✓ {title}"),
                    CheckOutcome::Failed => {
                        println!("   ✗ {title}");
                        for l in detail.lines() {
                            println!("       {l}");
                        }
                    }
                    CheckOutcome::Retrying if verbose => println!("     … {title}: {detail}"),
                    CheckOutcome::Retrying => {}
                },
                Event::Note { stage, text } if is_lab_stage(&stage) => {
                    println!("   · {text}")
                }
                Event::Command { stage, argv } => {
                    let line: Vec<String> = argv
                        .iter()
                        .map(|a| crate::tools::cmd::shell_quote(a))
                        .collect();
                    println!("     [{stage}] $ {}", line.join(" "));
                }
                Event::Log { stage, line, .. } if verbose => println!("     [{stage}] {line}"),
                Event::StageFinished {
                    stage,
                    secs,
                    cached,
                } => println!(
                    "     [{stage}] done in {secs:.1}s{}",
                    if cached { " (cache hit)" } else { "" }
                ),
                Event::Note { stage, text } => println!("     [{stage}] {text}"),
                Event::State {
                    object,
                    state,
                    detail,
                } if verbose => println!("     [{object}] {state} {detail}"),
                _ => {}
            }
        }
    })
}

/// A cancellation token that Ctrl-C fires.
fn ctrl_c_cancels() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("bootlab: cancelling (the lab's VM is stopped on the way out)…");
            c.cancel();
        }
    });
    cancel
}

fn reset(key: &str) -> anyhow::Result<ExitCode> {
    let l = lab::find(key)?;
    let paths = crate::paths::Paths::from_env();
    paths.ensure()?;
    let done = super::runtime()?.block_on(lab::rewind::reset(&paths, &l))?;
    if done.is_empty() {
        println!("{}: nothing to reset (never started here)", l.id);
    }
    for d in done {
        println!("{}: {d}", l.id);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_lab(
    key: &str,
    solve: bool,
    vm: Option<String>,
    from: Option<String>,
    hints: bool,
    verbose: bool,
    trust: bool,
) -> anyhow::Result<ExitCode> {
    let l = lab::find(key)?;
    let paths = crate::paths::Paths::from_env();
    paths.ensure()?;
    trust_gate(&paths, &l, trust, "run it again with --trust")?;
    let ids = l.step_ids();
    let (mut progress, set_aside) = Progress::load_or_set_aside(&paths, &l.id, &ids)?;
    if let Some(said) = set_aside {
        eprintln!("saved progress unreadable: {said}");
    }
    let start = match &from {
        Some(f) => l.steps.iter().position(|s| &s.id == f).ok_or_else(|| {
            anyhow::anyhow!("lab {} has no step {f:?} (steps: {})", l.id, ids.join(", "))
        })?,
        // Finished (no current step): again from the start. A finished lab someone went back
        // into and stopped at a failing step resumes there, like any other.
        None if progress.is_complete(&ids) && progress.current.is_none() => {
            println!(
                "every step of {} passed before: running it again from the start",
                l.id
            );
            0
        }
        None => {
            let i = progress.position(&ids);
            if i > 0 {
                println!(
                    "resuming at step {} ({}) where the lab stopped; --from picks another",
                    i + 1,
                    ids[i]
                );
            }
            i
        }
    };
    // The VM the lab ran in before (in this command or the TUI), unless told otherwise.
    let vm = vm.or_else(|| progress.vm.clone());
    let rt = super::runtime()?;
    let ok = rt.block_on(async {
        let (ev, rx) = super::channel();
        let printer = lab_printer(vec![l.clone()], rx, verbose);
        let cancel = ctrl_c_cancels();
        let mut runner = lab::LabRunner::new(l.clone(), vm, paths.clone(), ev.clone(), cancel);
        println!("{} — {}", l.id, l.title);
        println!("VM {} (a lab VM: root's console password is known)", runner.vm);
        if let (0, Some(t)) = (start, &l.intro) {
            print!("\n{}", indent(t, "   "));
        }
        progress.vm = Some(runner.vm.clone());
        // Resuming, going back or skipping: the guest as the step before left it, from its
        // snapshot (nothing happens when the guest is already there).
        let rewind = runner.rewind_to(start, &mut progress).await;
        match &rewind {
            Ok(r @ (lab::Rewind::Restored { .. } | lab::Rewind::Gone { .. })) => {
                println!("{}", r.describe())
            }
            Ok(r) if verbose => println!("{}", r.describe()),
            Ok(_) => {}
            Err(e) => println!(
                "could not restore the step's snapshot ({e:#}): the guest stays as it is"
            ),
        }
        // No snapshot to start from, and either a step was asked for or the guest the lab's
        // snapshots were of is gone: the earlier steps run with their solutions first. A running
        // guest a learner brought there by hand is left alone, as is a lab that never had one.
        let vm_down = crate::vm::VmRecord::load(&paths, &runner.vm)
            .map_or(true, |r| r.state == crate::vm::VmState::Stopped);
        if matches!(
            rewind,
            Ok(lab::Rewind::NoSnapshot { .. } | lab::Rewind::Gone { .. })
        ) && (from.is_some() || (vm_down && !progress.snapshots.is_empty()))
        {
            println!(
                "catching up: the steps before {} run with their solutions first",
                ids[start]
            );
            runner.catch_up(start, &mut progress).await?;
            progress.start_step(&ids[start]);
            progress.save(&paths)?;
        }
        let mut ok = true;
        for (i, step) in l.steps.iter().enumerate().skip(start) {
            progress.start_step(&step.id);
            progress.save(&paths)?;
            if hints {
                // Printed through the event printer so they follow the step's header.
                for (n, h) in step.hints.iter().take(progress.hints_shown(&step.id)).enumerate() {
                    ev.note(&lab_stage(&l.id, Some(&step.id)), format!("hint {}: {h}", n + 1));
                }
            }
            let o = runner.run_step(step, solve).await;
            if o.passed {
                progress.mark_passed(&step.id, l.steps.get(i + 1).map(|s| s.id.as_str()));
                // The state the next step starts from, kept for going back and resuming.
                if let Err(e) = runner.snapshot_step(&step.id, &mut progress).await {
                    ev.note(
                        &lab_stage(&l.id, Some(&step.id)),
                        format!("no snapshot of this step ({e:#}): going back to it will not restore the guest"),
                    );
                }
                progress.save(&paths)?;
            } else {
                let shown = progress.hints_shown(&step.id);
                if hints && shown < step.hints.len() {
                    let n = progress.reveal_hint(&step.id, step.hints.len());
                    ev.note(
                        &lab_stage(&l.id, Some(&step.id)),
                        format!("hint {n}: {}", step.hints[n - 1]),
                    );
                    progress.save(&paths)?;
                }
                ok = false;
                break;
            }
        }
        drop(runner);
        drop(ev);
        let _ = printer.await;
        if ok {
            println!("\nlab {} complete", l.id);
            if let Some(t) = &l.finish {
                print!("{}", indent(t, "   "));
            }
        } else {
            println!(
                "\nstopped at step {}: fix what the failed check says, then `bootlab lab run {}` resumes there{}",
                progress.current.as_deref().unwrap_or("?"),
                l.id,
                if hints { "" } else { " (--hints shows a hint)" }
            );
        }
        anyhow::Ok(ok)
    })?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A lab file from outside bootlab's labs folder runs host commands only once trusted: without
/// `trust` it is refused with the list of those commands; with it, the trust is remembered.
fn trust_gate(paths: &crate::paths::Paths, l: &Lab, trust: bool, how: &str) -> anyhow::Result<()> {
    use crate::lab::trust::{self, Trust};
    match trust::check(paths, l)? {
        Trust::Needed { sha256, commands } if !trust => {
            anyhow::bail!("{}", trust::refusal(l, &sha256, &commands, how))
        }
        Trust::Needed { commands, .. } => {
            eprintln!(
                "trusting {} ({} host command(s)):",
                l.path.display(),
                commands.len()
            );
            for c in &commands {
                eprintln!("  {c}");
            }
            trust::remember(paths, l)
        }
        Trust::Remembered => {
            eprintln!(
                "{}: its host commands were trusted before (same content)",
                l.path.display()
            );
            Ok(())
        }
        Trust::Shipped | Trust::NoHostCommands => Ok(()),
    }
}

/// Whether a lab can run on this host: not one written for a real bootc host.
fn runs_offline(l: &Lab) -> bool {
    let family = l.requires.family.or_else(|| {
        l.requires
            .recipe
            .as_deref()
            .and_then(|r| crate::recipe::find(r).ok())
            .map(|r| r.file.family)
    });
    family != Some(crate::recipe::Family::Bootc)
}

fn selftest(
    keys: Vec<String>,
    junit: Option<PathBuf>,
    json: Option<PathBuf>,
    verbose: bool,
    trust: bool,
) -> anyhow::Result<ExitCode> {
    let labs: Vec<Lab> = if keys.is_empty() {
        let (labs, errors) = lab::shipped();
        report(&errors);
        if !errors.is_empty() {
            return Ok(ExitCode::FAILURE);
        }
        labs.into_iter().filter(runs_offline).collect()
    } else {
        keys.iter()
            .map(|k| lab::find(k))
            .collect::<anyhow::Result<_>>()?
    };
    let paths = crate::paths::Paths::from_env();
    paths.ensure()?;
    for l in &labs {
        trust_gate(&paths, l, trust, "run the selftest again with --trust")?;
    }
    let rt = super::runtime()?;
    let reports = rt.block_on(async {
        let (ev, rx) = super::channel();
        let printer = lab_printer(labs.clone(), rx, verbose);
        let cancel = ctrl_c_cancels();
        let mut reports = Vec::new();
        for l in &labs {
            if cancel.is_cancelled() {
                break;
            }
            println!("\n=== lab {} — {}", l.id, l.title);
            let r = lab::report::selftest(l, None, &paths, &ev, &cancel).await;
            // The printer is behind by a few lines at most; the summary follows the lab.
            ev.note(
                "selftest",
                format!(
                    "lab {}: {} ({}/{} checks passed, {:.0}s){}",
                    r.lab,
                    if r.passed { "PASS" } else { "FAIL" },
                    r.checks() - r.failures(),
                    r.checks(),
                    r.secs,
                    r.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            );
            reports.push(r);
        }
        drop(ev);
        let _ = printer.await;
        reports
    });
    let pairs: Vec<(lab::report::LabReport, &Lab)> =
        reports.iter().cloned().zip(labs.iter()).collect();
    if let Some(f) = &junit {
        crate::paths::write_atomic(f, lab::report::junit(&pairs).as_bytes())?;
    }
    if let Some(f) = &json {
        let doc = serde_json::json!({
            "passed": reports.len() == labs.len() && reports.iter().all(|r| r.passed),
            "labs": reports,
        });
        crate::paths::write_atomic(f, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    let total: f64 = reports.iter().map(|r| r.secs).sum();
    let passed = reports.len() == labs.len() && reports.iter().all(|r| r.passed);
    println!(
        "\nselftest: {}/{} labs passed in {total:.0}s",
        reports.iter().filter(|r| r.passed).count(),
        labs.len()
    );
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
