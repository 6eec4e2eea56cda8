//! `bootlab ci export RECIPE --github`: a recipe's CI workflow ([`crate::ci`]), printed or
//! written to a file.

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
    }
    Ok(ExitCode::SUCCESS)
}
