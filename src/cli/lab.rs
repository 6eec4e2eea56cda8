use std::process::ExitCode;
#[derive(Debug, clap::Subcommand)]
pub enum LabCmd {
    /// List the labs.
    List,
    /// Show one lab.
    Show { lab: String },
    /// Validate lab files (default: every lab shipped).
    Validate { paths: Vec<std::path::PathBuf> },
}
pub fn run(_c: LabCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("lab: not implemented yet")
}
