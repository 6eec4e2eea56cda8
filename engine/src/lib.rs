//! bootlab's engine: recipes, images, disks, VMs, guests, deployments, drills, labs, the doctor
//! and the host tools behind them. It knows nothing of terminals (no ratatui or crossterm in its
//! dependencies): long work runs as tokio tasks that report [`events::Event`]s over channels and
//! stop when their [`events::Job`] is cancelled. The TUI and the CLI (crate `bootlab`) are thin
//! faces over it.

/// A line for a log that is the process's stderr, possibly a file (a VM supervisor's log in the
/// VM folder). `eprintln!` panics when the write fails — and that folder's file system may be
/// full: a VM on a full disk is exactly when the supervisor must keep serving.
macro_rules! log_line {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

pub mod ci;
pub mod deploy;
pub mod diag;
pub mod doctor;
pub mod drill;
pub mod events;
pub mod lab;
pub mod paths;
pub mod pipeline;
pub mod recipe;
pub mod timings;
pub mod tools;
pub mod vm;
pub mod workflow;
