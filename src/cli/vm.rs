use std::process::ExitCode;
#[derive(Debug, clap::Subcommand)]
pub enum VmCmd {
    /// List VMs.
    Ls {
        #[arg(long)]
        json: bool,
    },
}
pub fn run(_c: VmCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("vm: not implemented yet")
}
