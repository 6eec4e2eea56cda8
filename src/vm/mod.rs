//! Virtual machines: each VM is one QEMU owned by one small supervisor process.
pub mod procs;
