//! Labs: step files in `labs/` with text for the learner, one typed action per step, and checks
//! that verify the action worked.
//!
//! - [`model`]: the validated types a runner, the TUI and the CLI use ([`Lab`], [`Step`],
//!   [`Action`], [`Check`], [`RetryPolicy`]).
//! - [`parse`]: TOML → [`Lab`], every mistake of a file as `file:line:col: message`.
//! - [`check`]: pure evaluation of a check against what a runner captured.
//! - [`jsonpath`]: the small `a.b[0].c` paths checks use on JSON output.
//!
//! The format is documented for authors in `labs/README.md`.

pub mod check;
pub mod jsonpath;
pub mod model;
pub mod parse;

pub use check::{Captured, DeploymentsSeen, Observation, Verdict, evaluate, evaluate_check};
pub use model::{
    Action, Check, DeploymentsExpect, Expect, Lab, Probe, Requires, RetryPolicy, SCHEMA, Slot, Step,
};
pub use parse::{find, load_file, load_paths, parse_lab, shipped};
