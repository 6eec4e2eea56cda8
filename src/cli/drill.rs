use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    pub vm: String,
    #[arg(long)]
    pub json: bool,
}
#[derive(Debug, clap::Subcommand)]
pub enum DrillCmd {
    /// Upgrade to the next version and verify.
    Upgrade {
        vm: String,
        #[arg(long)]
        json: bool,
    },
}
pub fn run_status(_a: StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("status: not implemented yet")
}
pub fn run(_c: DrillCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("drill: not implemented yet")
}
