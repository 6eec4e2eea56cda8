//! bootlab: a terminal workbench for bootable-container operating systems.
//!
//! The engine lives in its own crate, `bootlab-engine` (folder `engine/`), which has no terminal
//! UI in its dependencies, so the compiler keeps the boundary. This crate holds the two faces over
//! it: the TUI (`tui`) and the CLI (`cli`). The engine's modules are re-exported here so faces,
//! tests and the benchmark name them as `bootlab::vm`, `bootlab::drill`, ….

pub use bootlab_engine::{
    ci, deploy, diag, doctor, drill, events, lab, paths, pipeline, recipe, timings, tools, vm,
    workflow,
};

pub mod cli;
pub mod tui;
