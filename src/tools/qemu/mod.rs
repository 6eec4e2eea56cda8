//! qemu-system-x86_64: command lines, accelerator choice, the KVM probe.
pub mod kvm_probe;
