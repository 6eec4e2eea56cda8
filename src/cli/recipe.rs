use std::process::ExitCode;
#[derive(Debug, clap::Subcommand)]
pub enum RecipeCmd {
    /// List the recipes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one recipe.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}
pub fn run(_c: RecipeCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("recipe: not implemented yet")
}
