use std::process::ExitCode;
#[derive(Debug, clap::Subcommand)]
pub enum ImageCmd {
    /// Build (once) or reuse the Debian base image.
    Base {
        #[arg(long)]
        rebuild: bool,
    },
    /// Build a recipe version and commit it to bootlab's OSTree repo.
    Build {
        recipe: String,
        #[arg(long)]
        version: Option<String>,
    },
}
#[derive(Debug, clap::Subcommand)]
pub enum DiskCmd {
    /// Make (or reuse) the golden bootable disk of a recipe version.
    Make {
        recipe: String,
        #[arg(long)]
        version: Option<String>,
    },
}
pub fn run_image(_c: ImageCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("image: not implemented yet")
}
pub fn run_disk(_c: DiskCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("disk: not implemented yet")
}
