//! The supervisor's control protocol: one JSON request per line, one JSON reply per line, on the
//! VM's control socket. `Subscribe` turns the connection into a stream of [`VmStamped`] lines.
//! (Only bootlab talks this protocol; QEMU is spoken to through qapi.)

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Wait until the guest agent answers (or the VM stops, or the timeout passes).
    WaitReady {
        timeout_secs: u64,
    },
    Exec {
        argv: Vec<String>,
        timeout_secs: u64,
        /// stdin for the command, base64.
        #[serde(default)]
        input_b64: Option<String>,
    },
    ReadFile {
        path: String,
        max_bytes: usize,
    },
    /// Reboot the guest from inside (`systemctl reboot`); replies once the guest reset (its
    /// QEMU then exits and the supervisor starts a new one).
    Reboot,
    /// ACPI power button; replies once QEMU exited (SHUTDOWN) or the timeout passed.
    Powerdown {
        timeout_secs: u64,
    },
    /// QMP quit: power cut, no clean shutdown.
    Powercut,
    /// Hard reset (QMP system_reset).
    Reset,
    Pause,
    Resume,
    SnapshotSave {
        tag: String,
    },
    /// Save the whole machine state into a file (a booted image's); the guest then stays
    /// stopped so that its disk stays what the state expects.
    StateSave {
        path: PathBuf,
    },
    /// Load a snapshot and reply once the guest agent answers again.
    SnapshotRestore {
        tag: String,
        timeout_secs: u64,
    },
    MountShare,
    UnmountShare,
    /// Record that the guest now runs `recipe` at `version` (after an upgrade, a switch, a
    /// rollback): the record follows the guest's booted deployment.
    SetRecipe {
        recipe: String,
        #[serde(default)]
        version: Option<String>,
    },
    Screendump {
        path: String,
    },
    Subscribe,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Reply {
    pub fn ok(data: impl Serialize) -> Reply {
        Reply {
            ok: true,
            error: None,
            data: serde_json::to_value(data).unwrap_or_default(),
        }
    }
    pub fn err(e: impl std::fmt::Display) -> Reply {
        Reply {
            ok: false,
            error: Some(e.to_string()),
            data: serde_json::Value::Null,
        }
    }
}

/// What happened to a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VmEvent {
    State {
        state: super::VmState,
        detail: String,
    },
    /// One line of the serial console.
    Console {
        line: String,
    },
    /// A QMP event (SHUTDOWN, RESET, POWERDOWN, STOP, RESUME, ...) with its data summarised.
    Qmp {
        event: String,
        detail: String,
    },
    Note {
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmStamped {
    pub at: SystemTime,
    pub event: VmEvent,
}

impl VmStamped {
    pub fn now(event: VmEvent) -> VmStamped {
        VmStamped {
            at: SystemTime::now(),
            event,
        }
    }
    /// The same thing as a generic engine event, for faces that render any [`crate::events::Event`].
    pub fn to_engine(&self, vm: &str) -> crate::events::Stamped {
        use crate::events::{Event, Stream};
        let event = match &self.event {
            VmEvent::State { state, detail } => Event::VmState {
                vm: vm.to_string(),
                state: state.to_string(),
                detail: detail.clone(),
            },
            VmEvent::Console { line } => Event::Log {
                stage: crate::events::vm_stage(vm),
                stream: Stream::Console,
                line: line.clone(),
            },
            VmEvent::Qmp { event, detail } => Event::Note {
                stage: crate::events::vm_stage(vm),
                text: format!("QMP {event} {detail}").trim_end().to_string(),
            },
            VmEvent::Note { text } => Event::Note {
                stage: crate::events::vm_stage(vm),
                text: text.clone(),
            },
        };
        crate::events::Stamped { at: self.at, event }
    }
}

/// Result of a snapshot save/restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDone {
    pub tag: String,
    /// Seconds for the save/load itself.
    pub secs: f64,
    /// For restore: seconds from the start of the load to the guest agent answering (re-synced).
    pub ready_secs: Option<f64>,
    /// The 9p share was unmounted for the snapshot (and mounted again afterwards).
    pub share_remounted: bool,
    /// How it was done (`snapshot-save job` or `hmp savevm`).
    pub method: String,
}
