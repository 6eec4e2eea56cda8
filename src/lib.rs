//! bootlab: the engine of a terminal workbench for bootable-container operating systems.
//!
//! The engine (everything here but `tui` and `cli`) knows nothing of terminals: long work runs as
//! tokio tasks that report [`events::Event`]s over channels and stop when their
//! [`events::Job`] is cancelled. The TUI (`tui`) and the CLI (`cli`) are thin faces over it.

pub mod cli;
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
pub mod tui;
pub mod vm;
