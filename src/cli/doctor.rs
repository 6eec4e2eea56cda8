use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
pub fn run(_a: DoctorArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("doctor: not implemented yet")
}
