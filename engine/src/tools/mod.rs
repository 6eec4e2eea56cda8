//! Every external tool bootlab drives lives behind one module here. Nothing outside `tools`
//! spawns a process directly: it goes through [`cmd::HostCmd`], which shows the command before it
//! runs, streams its output as events, and kills its whole process group on cancel or drop.

pub mod bootc;
pub mod cmd;
pub mod disk;
pub mod editor;
pub mod fetch;
pub mod ostree;
pub mod podman;
pub mod qemu;
pub mod qmp;
pub mod rust;
pub mod skopeo;
pub mod ssh;
pub mod uefi;
