//! Everything a user can ask the TUI to do. Keys map to these (see `keymap`), tests drive the app
//! with them, and a config file could name them (hence serde).

use serde::{Deserialize, Serialize};

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tab {
    Recipes,
    Vm,
    Deployments,
    Drills,
    Labs,
}

impl Tab {
    pub const ALL: [Tab; 5] = [
        Tab::Recipes,
        Tab::Vm,
        Tab::Deployments,
        Tab::Drills,
        Tab::Labs,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Tab::Recipes => "Recipes",
            Tab::Vm => "VM",
            Tab::Deployments => "Deployments",
            Tab::Drills => "Drills",
            Tab::Labs => "Labs",
        }
    }
    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
    pub fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }
    pub fn prev(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
    }
}

/// QMP controls of a running VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmControl {
    Pause,
    Resume,
    Reset,
    PowerDown,
    /// Pull the plug: QEMU quits without the guest noticing (a crash-consistency drill).
    PowerCut,
}

impl VmControl {
    pub fn verb(self) -> &'static str {
        match self {
            VmControl::Pause => "pause",
            VmControl::Resume => "resume",
            VmControl::Reset => "reset",
            VmControl::PowerDown => "power down",
            VmControl::PowerCut => "power-cut",
        }
    }
}

/// Drills the Drills view can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillKind {
    Upgrade,
    Rollback,
    Switch,
    PowerCut,
}

impl DrillKind {
    pub const ALL: [DrillKind; 4] = [
        DrillKind::Upgrade,
        DrillKind::Rollback,
        DrillKind::Switch,
        DrillKind::PowerCut,
    ];
    pub fn name(self) -> &'static str {
        match self {
            DrillKind::Upgrade => "upgrade",
            DrillKind::Rollback => "rollback",
            DrillKind::Switch => "switch",
            DrillKind::PowerCut => "power-cut",
        }
    }
    pub fn what(self) -> &'static str {
        match self {
            DrillKind::Upgrade => "stage the next version, reboot, verify it is booted",
            DrillKind::Rollback => "make the rollback deployment the default, reboot, verify",
            DrillKind::Switch => "switch to another recipe's image, reboot, verify",
            DrillKind::PowerCut => "cut power while an upgrade is staged; verify the old one boots",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "arg")]
pub enum Action {
    // Global.
    /// Ask to quit (asks first while VMs run).
    Quit,
    /// Cancel the running background job (Ctrl-C).
    CancelJob,
    NextTab,
    PrevTab,
    GoTab(Tab),
    ToggleHelp,
    /// Presenter mode: the focused pane fullscreen, step text enlarged.
    TogglePresenter,
    /// Close a popup, leave a lab, clear a filter.
    Back,
    // Lists.
    Up,
    Down,
    // Log / console pane.
    LogPageUp,
    LogPageDown,
    LogTop,
    /// Jump to the end and follow new lines again.
    LogFollow,
    /// Start typing a `/` filter.
    FilterStart,
    FilterChar(char),
    FilterBackspace,
    FilterApply,
    FilterClear,
    // Recipes.
    NextVersion,
    Build,
    /// Make your own recipe from the selected one (asks for its name).
    NewRecipe,
    /// Open your recipe's Containerfile in $EDITOR (the TUI steps aside), then rebuild it.
    EditRecipe,
    /// Typing in a name prompt.
    TextChar(char),
    TextBackspace,
    // VM.
    Boot,
    /// Boot with UEFI firmware (OVMF) instead of BIOS: the same disk, its EFI system partition.
    BootUefi,
    Vm(VmControl),
    /// Suspend the TUI and hand the terminal to a shell in the guest.
    Shell,
    // Deployments.
    Refresh,
    /// Mark the selected deployment as one side of a diff.
    MarkForDiff,
    Diff,
    // Drills.
    StartDrill,
    // Labs.
    /// Open the selected lab, or run the open step's action.
    Enter,
    RunChecks,
    Hint,
    Solve,
    NextStep,
    PrevStep,
    /// The open step's code blocks: pick one to run in the guest or copy.
    Snippets,
    /// Presenter mode's one key: the step's action, then its checks, then the next step.
    PresentNext,
    /// Copy the picked code block to the terminal's clipboard (OSC 52).
    CopySnippet,
    // Confirmation popups.
    Confirm,
    /// The second choice of a confirmation (quit but keep the VMs running).
    ConfirmAlt,
    Dismiss,
}
