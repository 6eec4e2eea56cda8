//! `bootlab lab …`: list, show and validate step files. Formatting only; see `crate::lab`.

use crate::lab::{self, Lab, Probe, Slot};
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
}

pub fn run(c: LabCmd) -> anyhow::Result<ExitCode> {
    match c {
        LabCmd::List { json } => list(json),
        LabCmd::Show { lab, json } => show(&lab, json),
        LabCmd::Validate { paths } => validate(paths),
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
    o
}

fn validate(paths: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let paths = if paths.is_empty() {
        vec![crate::paths::labs_dir()]
    } else {
        paths
    };
    let recipes = match crate::recipe::shipped() {
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
