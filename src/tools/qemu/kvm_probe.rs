//! The KVM usability probe (doctor). Filled in by the foundation issue.
