//! `bootlab ci export RECIPE --github`: a recipe's CI workflow ([`crate::ci`]), printed or
//! written to a file; `bootlab ci run FILE --version V`: its steps run here
//! ([`crate::ci::local`]).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum CiCmd {
    /// Write a CI workflow that builds the recipe, pushes its image and makes its disk.
    Export {
        recipe: String,
        /// A GitHub Actions workflow (the only kind so far).
        #[arg(long, required = true)]
        github: bool,
        /// Write here (atomically) instead of printing, e.g. .github/workflows/RECIPE.yml.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Run an exported workflow's steps on this machine for one version, as a runner would:
    /// steps that set up a runner or push (`if: ${{ !env.BOOTLAB_LOCAL }}`) are skipped, the
    /// uploaded disk lands in WORKSPACE/artifacts/. As root.
    Run {
        /// The workflow file `bootlab ci export` wrote.
        file: PathBuf,
        /// The matrix version to run.
        #[arg(long)]
        version: String,
        /// The checkout the steps run in (default: the current folder).
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// Print the steps and what a local run does with each; run nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(c: CiCmd) -> anyhow::Result<ExitCode> {
    match c {
        CiCmd::Export {
            recipe,
            github: _,
            output,
        } => {
            let recipe = crate::recipe::find(&recipe)?;
            let (recipe_path, note) = crate::ci::repo_path(&recipe);
            if let Some(n) = note {
                eprintln!("bootlab: note: {n}");
            }
            let text = crate::ci::github::export(
                &recipe,
                &crate::ci::github::ExportOptions { recipe_path },
            )?;
            match output {
                None => print!("{text}"),
                Some(path) => {
                    crate::paths::write_atomic_shared(&path, text.as_bytes())
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
            }
        }
        CiCmd::Run {
            file,
            version,
            workspace,
            dry_run,
        } => return run_local(&file, version, workspace, dry_run),
    }
    Ok(ExitCode::SUCCESS)
}

fn plan_line(s: &crate::ci::local::StepDone) -> String {
    use crate::ci::local::Plan;
    match &s.plan {
        Plan::Run => format!("run   {}", s.name),
        Plan::Skip(why) => format!("skip  {}  ({why})", s.name),
        Plan::Local(what) => format!("local {}  ({what})", s.name),
    }
}

fn run_local(
    file: &std::path::Path,
    version: String,
    workspace: Option<PathBuf>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    use crate::ci::local::{LocalOptions, LocalWorkflow};
    let wf = LocalWorkflow::load(file)?;
    println!("job: {}", wf.job_title(&version));
    println!("matrix: version = {}", wf.versions.join(", "));
    if dry_run {
        for s in wf.plan(&version) {
            println!("{}", plan_line(&s));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = LocalOptions {
        version,
        workspace: workspace.unwrap_or_else(|| PathBuf::from(".")),
    };
    let rt = super::runtime()?;
    rt.block_on(async {
        let (ev, rx) = super::channel();
        // A runner's log: every step's output is shown.
        let printer = super::print_events(rx, true);
        let cancel = crate::events::CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            c2.cancel();
        });
        let res = crate::ci::local::run(&wf, &opts, &ev, &cancel).await;
        drop(ev);
        let _ = printer.await;
        let done = res?;
        for s in &done.steps {
            println!("{}  {:.1}s", plan_line(s), s.secs);
        }
        for (name, path) in &done.artifacts {
            println!("artifact {name} {}", path.display());
        }
        println!("job passed in {:.1}s", done.secs);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
