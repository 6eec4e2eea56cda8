//! The member's own editor, for their recipe's Containerfile. The one interactive program
//! bootlab starts: it gets the terminal (the TUI steps aside), so it is a plain
//! `std::process::Command`, not a [`super::cmd::HostCmd`] whose output is captured.

/// `$VISUAL`, else `$EDITOR`, else `vi`, on `file` (the value may carry arguments: `code -w`).
pub fn command(file: &std::path::Path) -> std::process::Command {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "vi".into());
    let mut parts = editor.split_whitespace();
    let mut c = std::process::Command::new(parts.next().unwrap_or("vi"));
    c.args(parts).arg(file);
    c
}
