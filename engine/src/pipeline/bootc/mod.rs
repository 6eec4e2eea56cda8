//! Real bootc, offline: bootc built from its pinned source ([`binary`]), on trixie roots with
//! libostree from Debian testing ([`trixie`]), and the bootc family's guest bases ([`guest`]).

pub mod binary;
pub mod guest;
pub mod image;
pub mod install;
pub mod source;
pub mod trixie;

pub use binary::{BootcBuild, ensure_bootc};
