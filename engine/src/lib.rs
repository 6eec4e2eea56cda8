//! bootlab's engine: recipes, images, disks, VMs, guests, deployments, drills, labs, the doctor
//! and the host tools behind them. It knows nothing of terminals (no ratatui or crossterm in its
//! dependencies): long work runs as tokio tasks that report [`events::Event`]s over channels and
//! stop when their [`events::Job`] is cancelled. The TUI and the CLI (crate `bootlab`) are thin
//! faces over it.

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
pub mod tools;
pub mod vm;
pub mod workflow;
