//! The terminal UI face (ratatui). Filled in by the TUI issue.
use std::process::ExitCode;
pub fn run() -> anyhow::Result<ExitCode> {
    anyhow::bail!("tui: not implemented yet")
}
