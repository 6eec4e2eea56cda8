//! The TUI's state and its updates. `App::update` turns an [`Action`] into state changes plus
//! [`Effect`]s (work for the runtime: start a job, hand over the terminal, quit); `App::on_msg`
//! folds in what background jobs report. Drawing (`draw`) only reads this.

use super::action::{Action, DrillKind, Tab, VmControl};
use super::logpane::LogPane;
use super::markdown::Snippet;
use super::views::deployments::{DeployView, DeploymentRow, DiffView};
use super::views::drills::{DrillRun, DrillsView, Verdict};
use super::views::labs::{CheckStatus, LabGuest, LabModel, LabsView};
use super::views::recipes::RecipesView;
use super::views::vm::{VmInfo, VmView};
use crate::events::{CheckOutcome, Event, Stamped, Stream, lab_stage, vm_of_stage};
use crate::recipe::Recipe;
use std::time::SystemTime;

/// Popups that take the keyboard until closed.
#[derive(Debug, Clone, PartialEq)]
pub enum Modal {
    Help,
    /// Quitting while VMs run or a job works: say what will stop.
    ConfirmQuit {
        vms: Vec<String>,
        job: Option<String>,
    },
    /// Revealing a step's solution (and running it) is a decision, not a slip of a key.
    ConfirmSolve {
        lab: String,
        step: usize,
    },
    /// The name of a new recipe of yours, copied from `from`; `error` says why the last try
    /// was refused (the prompt stays open).
    NewRecipe {
        from: String,
        name: String,
        error: Option<String>,
    },
    /// The open step's code blocks: the picked one runs in the guest (shown first) or is copied.
    Snippets {
        lab: String,
        step: usize,
        snippets: Vec<Snippet>,
        selected: usize,
    },
}

impl Modal {
    pub fn yes_label(&self) -> &'static str {
        match self {
            Modal::Help => "close",
            Modal::ConfirmQuit { vms, .. } if !vms.is_empty() => "stop VMs and quit",
            Modal::ConfirmQuit { .. } => "quit",
            Modal::ConfirmSolve { .. } => "show and run the solution",
            Modal::NewRecipe { .. } => "make it and edit",
            Modal::Snippets { .. } => "run it in the guest",
        }
    }
    /// A second way to say yes, when there is one.
    pub fn alt_label(&self) -> Option<&'static str> {
        match self {
            Modal::ConfirmQuit { vms, .. } if !vms.is_empty() => Some("quit, keep VMs running"),
            _ => None,
        }
    }
}

/// The kinds of background work; one runs at a time (2 cores, one VM at a time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    Build {
        recipe: String,
        version: String,
    },
    Boot {
        recipe: String,
        firmware: crate::tools::qemu::Firmware,
    },
    VmControl(VmControl),
    Refresh,
    Diff,
    Drill(DrillKind),
    LabAction {
        lab: String,
        step: usize,
    },
    LabChecks {
        lab: String,
        step: usize,
    },
    LabSolve {
        lab: String,
        step: usize,
    },
    /// Put the lab's guest where the step starts (its start snapshot).
    LabRewind {
        lab: String,
        step: usize,
    },
    /// One of the step's code blocks, run in the lab's guest.
    LabSnippet {
        lab: String,
        step: usize,
        code: String,
    },
}

impl JobKind {
    pub fn label(&self) -> String {
        match self {
            JobKind::Build { recipe, version } => format!("building {recipe}:{version}"),
            JobKind::Boot { recipe, firmware } => match firmware {
                crate::tools::qemu::Firmware::Bios => format!("booting {recipe}"),
                crate::tools::qemu::Firmware::Uefi => format!("booting {recipe} (UEFI)"),
            },
            JobKind::VmControl(c) => format!("VM {}", c.verb()),
            JobKind::Refresh => "reading deployments".into(),
            JobKind::Diff => "diffing deployments".into(),
            JobKind::Drill(k) => format!("{} drill", k.name()),
            JobKind::LabAction { .. } => "running the step's action".into(),
            JobKind::LabChecks { .. } => "checking".into(),
            JobKind::LabSolve { .. } => "running the solution".into(),
            JobKind::LabRewind { .. } => "restoring the guest as the step starts".into(),
            JobKind::LabSnippet { .. } => "running the command in the guest".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobInfo {
    pub kind: JobKind,
    pub started: SystemTime,
    /// The stages it is in, outermost first (a drill step runs a build): each one's name, when
    /// it started, how long it took before (if measured).
    pub stages: Vec<(String, SystemTime, Option<f64>)>,
}

/// Work the runtime does for the app. Each is a request; results come back as [`Msg`]s.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Quit,
    StopVmsThenQuit,
    CancelJob,
    Start(JobKind),
    /// Suspend the TUI and give the terminal to a shell in this VM.
    Shell {
        vm: String,
    },
    /// Suspend the TUI and give the terminal to $EDITOR on this file of recipe `recipe`; then
    /// reload the recipes and build it.
    Edit {
        recipe: String,
        file: std::path::PathBuf,
    },
    SaveLabProgress {
        lab: String,
    },
    /// Put text on the terminal's clipboard (OSC 52: works over SSH too).
    Copy(String),
}

/// What finished jobs hand back.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutput {
    /// Nothing beyond the events already shown; the string is a one-line summary.
    Done(String),
    /// A build finished: its summary and what the lint of the built image found (None when the
    /// lint could not run; the build still counts).
    Built {
        summary: String,
        lint: Option<crate::recipe::lint::LintReport>,
    },
    Vm(Option<VmInfo>),
    Deployments(Vec<DeploymentRow>),
    Diff(DiffView),
    Verdict(Verdict),
    /// A step's checks, and (when they all passed) the snapshot taken of the guest.
    Checks(Vec<CheckStatus>, Option<LabGuest>),
    /// The guest put where a lab step starts; the VM when it was started for it.
    Rewound(LabGuest, Option<VmInfo>),
}

/// Messages from the runtime and from background jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Engine(Stamped),
    JobDone {
        kind: JobKind,
        result: Result<JobOutput, String>,
    },
    /// The job was cancelled (Ctrl-C) and has stopped.
    JobCancelled {
        kind: JobKind,
    },
    /// A one-line note for the status bar (e.g. "the pipeline is not in this build").
    Status(String),
    /// The clock moved (only sent while a job runs, to update elapsed times).
    Tick(SystemTime),
}

/// Everything the app shows.
pub struct App {
    pub tab: Tab,
    pub modal: Option<Modal>,
    pub presenter: bool,
    pub status: Option<String>,
    pub job: Option<JobInfo>,
    pub now: SystemTime,
    pub quit: bool,
    pub recipes: RecipesView,
    pub vm: VmView,
    pub deploy: DeployView,
    pub drills: DrillsView,
    pub labs: LabsView,
}

/// What the app starts from: loaded recipes and labs (or the errors loading them gave).
pub struct Init {
    pub recipes: Result<Vec<Recipe>, String>,
    pub labs: Result<Vec<LabModel>, String>,
    pub now: SystemTime,
}

impl App {
    pub fn new(init: Init) -> App {
        App {
            tab: Tab::Recipes,
            modal: None,
            presenter: false,
            status: None,
            job: None,
            now: init.now,
            quit: false,
            recipes: RecipesView::new(init.recipes),
            vm: VmView::default(),
            deploy: DeployView::default(),
            drills: DrillsView::default(),
            labs: LabsView::new(init.labs),
        }
    }

    /// The log pane the keyboard scrolls in the current view, if it has one.
    pub fn focused_log(&self) -> Option<&LogPane> {
        match self.tab {
            Tab::Recipes => Some(&self.recipes.log),
            Tab::Vm => Some(&self.vm.console),
            _ => None,
        }
    }
    fn focused_log_mut(&mut self) -> Option<&mut LogPane> {
        match self.tab {
            Tab::Recipes => Some(&mut self.recipes.log),
            Tab::Vm => Some(&mut self.vm.console),
            _ => None,
        }
    }

    pub fn running_vms(&self) -> Vec<String> {
        self.vm
            .vm
            .iter()
            .filter(|v| v.is_running())
            .map(|v| v.name.clone())
            .collect()
    }

    /// Switch views. Entering Deployments reads them when none were read yet and a VM runs
    /// (nobody should have to press `r` to see what a ready guest has).
    fn enter_tab(&mut self, t: Tab) -> Vec<Effect> {
        self.tab = t;
        if t == Tab::Deployments
            && self.deploy.refreshed.is_none()
            && self.job.is_none()
            && !self.running_vms().is_empty()
        {
            return self.start(JobKind::Refresh);
        }
        vec![]
    }

    fn start(&mut self, kind: JobKind) -> Vec<Effect> {
        if let Some(j) = &self.job {
            self.status = Some(format!(
                "busy: {} — wait for it or press Ctrl-C to cancel it",
                j.kind.label()
            ));
            return vec![];
        }
        self.job = Some(JobInfo {
            kind: kind.clone(),
            started: self.now,
            stages: Vec::new(),
        });
        self.status = Some(format!("{}…", kind.label()));
        vec![Effect::Start(kind)]
    }

    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Quit => {
                let vms = self.running_vms();
                let job = self.job.as_ref().map(|j| j.kind.label());
                if vms.is_empty() && job.is_none() {
                    self.quit = true;
                    return vec![Effect::Quit];
                }
                self.modal = Some(Modal::ConfirmQuit { vms, job });
            }
            Action::CancelJob => match &self.job {
                Some(j) => {
                    self.status = Some(format!("cancelling {}…", j.kind.label()));
                    return vec![Effect::CancelJob];
                }
                None => self.status = Some("no job is running (q quits)".into()),
            },
            Action::NextTab => return self.enter_tab(self.tab.next()),
            Action::PrevTab => return self.enter_tab(self.tab.prev()),
            Action::GoTab(t) => return self.enter_tab(t),
            Action::ToggleHelp => {
                self.modal = match self.modal {
                    Some(Modal::Help) => None,
                    _ => Some(Modal::Help),
                }
            }
            Action::TogglePresenter => self.presenter = !self.presenter,
            Action::Back => {
                if self.modal.is_some() {
                    self.modal = None;
                } else if self.tab == Tab::Labs && self.labs.open.is_some() {
                    self.labs.close();
                } else if self.presenter {
                    self.presenter = false;
                }
            }
            Action::Up | Action::Down if matches!(self.modal, Some(Modal::Snippets { .. })) => {
                if let Some(Modal::Snippets {
                    snippets, selected, ..
                }) = &mut self.modal
                {
                    let d = if action == Action::Up { -1 } else { 1 };
                    *selected = step_index(*selected, d, snippets.len());
                }
            }
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::PresentNext => {
                use super::views::labs::PresentNext;
                let next = self.labs.lab().map(|l| self.labs.present_next(&l.id));
                return match next {
                    Some(PresentNext::NextStep) => self.update(Action::NextStep),
                    Some(PresentNext::Action) => self.lab_enter(),
                    Some(PresentNext::Checks) => self.update(Action::RunChecks),
                    None => vec![],
                };
            }
            Action::Snippets => {
                let snippets = self
                    .labs
                    .step()
                    .map(|s| crate::tui::markdown::code_blocks(&s.text))
                    .unwrap_or_default();
                match self.labs.current() {
                    Some((lab, step)) if !snippets.is_empty() => {
                        self.modal = Some(Modal::Snippets {
                            lab,
                            step,
                            snippets,
                            selected: 0,
                        })
                    }
                    _ => self.status = Some("this step's text has no code block".into()),
                }
            }
            Action::CopySnippet => {
                if let Some(Modal::Snippets {
                    snippets, selected, ..
                }) = self.modal.take()
                    && let Some(s) = snippets.into_iter().nth(selected)
                {
                    self.status = Some(format!("copied to the clipboard: {}", s.summary()));
                    return vec![Effect::Copy(s.code)];
                }
            }
            Action::LogPageUp => {
                if let Some(l) = self.focused_log_mut() {
                    l.page_up()
                }
            }
            Action::LogPageDown => {
                if let Some(l) = self.focused_log_mut() {
                    l.page_down()
                }
            }
            Action::LogTop => {
                if let Some(l) = self.focused_log_mut() {
                    l.top()
                }
            }
            Action::LogFollow => {
                if let Some(l) = self.focused_log_mut() {
                    l.follow()
                }
            }
            Action::FilterStart => {
                if let Some(l) = self.focused_log_mut() {
                    l.start_filter()
                }
            }
            Action::FilterChar(c) => {
                if let Some(l) = self.focused_log_mut() {
                    l.type_char(c)
                }
            }
            Action::FilterBackspace => {
                if let Some(l) = self.focused_log_mut() {
                    l.backspace()
                }
            }
            Action::FilterApply => {
                if let Some(l) = self.focused_log_mut() {
                    l.apply_filter()
                }
            }
            Action::FilterClear => {
                if let Some(l) = self.focused_log_mut() {
                    l.clear_filter()
                }
            }
            Action::NextVersion => self.recipes.next_version(),
            Action::Build => match self.recipes.selected_target() {
                Some((recipe, version)) => {
                    let kind = JobKind::Build { recipe, version };
                    if self.job.is_none() {
                        self.recipes.begin_build(&kind.label());
                    }
                    return self.start(kind);
                }
                None => self.status = Some("no recipe to build (see assets/recipes)".into()),
            },
            Action::Boot | Action::BootUefi => match self.recipes.selected_target() {
                Some((recipe, _)) => {
                    if self.job.is_none() {
                        self.vm.console.clear();
                    }
                    let firmware = match action {
                        Action::BootUefi => crate::tools::qemu::Firmware::Uefi,
                        _ => crate::tools::qemu::Firmware::Bios,
                    };
                    return self.start(JobKind::Boot { recipe, firmware });
                }
                None => self.status = Some("no recipe to boot (see assets/recipes)".into()),
            },
            Action::Vm(c) => {
                if self.vm.vm.is_none() {
                    self.status = Some("no VM running — press b to boot one".into());
                } else {
                    return self.start(JobKind::VmControl(c));
                }
            }
            Action::Shell => match &self.vm.vm {
                Some(v) if v.is_running() => return vec![Effect::Shell { vm: v.name.clone() }],
                _ => self.status = Some("no VM running — press b to boot one".into()),
            },
            Action::Refresh => return self.start(JobKind::Refresh),
            Action::MarkForDiff => self.deploy.toggle_mark(),
            Action::Diff => match self.deploy.diff_pair() {
                Some(_) => return self.start(JobKind::Diff),
                None => {
                    self.status =
                        Some("mark one deployment with Space, select another, press d".into())
                }
            },
            Action::StartDrill => {
                let kind = DrillKind::ALL[self.drills.selected];
                if self.vm.vm.is_none() {
                    self.status = Some(
                        "a drill needs a running VM — boot one in the VM view (2), press b".into(),
                    );
                } else {
                    if self.job.is_none() {
                        self.drills.running = Some(DrillRun::new(kind));
                    }
                    return self.start(JobKind::Drill(kind));
                }
            }
            Action::Enter => {
                if self.tab == Tab::Labs {
                    return self.lab_enter();
                }
            }
            Action::RunChecks => {
                if let Some((lab, step)) = self.labs.current() {
                    self.labs.set_checks_running();
                    return self.start(JobKind::LabChecks { lab, step });
                }
            }
            Action::Hint => {
                if let Some(lab) = self.labs.reveal_hint() {
                    return vec![Effect::SaveLabProgress { lab }];
                }
            }
            Action::Solve => {
                if let Some((lab, step)) = self.labs.current() {
                    if self.labs.step().is_some_and(|s| s.has_solution) {
                        self.modal = Some(Modal::ConfirmSolve { lab, step });
                    } else {
                        self.status = Some("this step has no solution to show".into());
                    }
                }
            }
            Action::NextStep | Action::PrevStep => {
                let d = if action == Action::NextStep { 1 } else { -1 };
                if let Some(lab) = self.labs.go_step(d) {
                    return self.after_step_move(lab);
                }
            }
            Action::Confirm => match self.modal.take() {
                Some(Modal::ConfirmQuit { vms, .. }) => {
                    self.quit = true;
                    if vms.is_empty() {
                        return vec![Effect::CancelJob, Effect::Quit];
                    }
                    return vec![Effect::CancelJob, Effect::StopVmsThenQuit];
                }
                Some(Modal::ConfirmSolve { lab, step }) => {
                    self.labs.solution_shown = true;
                    return self.start(JobKind::LabSolve { lab, step });
                }
                Some(Modal::NewRecipe { from, name, .. }) => {
                    return self.create_recipe(from, name);
                }
                Some(Modal::Snippets {
                    lab,
                    step,
                    snippets,
                    selected,
                }) => match snippets.into_iter().nth(selected) {
                    Some(s) if s.runnable => {
                        return self.start(JobKind::LabSnippet {
                            lab,
                            step,
                            code: s.code,
                        });
                    }
                    Some(_) => {
                        self.status =
                            Some("not a shell command (a file's text): c copies it instead".into())
                    }
                    None => {}
                },
                _ => {}
            },
            Action::ConfirmAlt => {
                if let Some(Modal::ConfirmQuit { .. }) = self.modal.take() {
                    // VMs belong to their own supervisors: they keep running without us.
                    self.quit = true;
                    return vec![Effect::CancelJob, Effect::Quit];
                }
            }
            Action::Dismiss => self.modal = None,
            Action::NewRecipe => {
                if let Some(r) = self.recipes.selected() {
                    self.modal = Some(Modal::NewRecipe {
                        from: r.name().to_string(),
                        name: String::new(),
                        error: None,
                    });
                }
            }
            Action::TextChar(c) => {
                if let Some(Modal::NewRecipe { name, error, .. }) = &mut self.modal {
                    name.push(c);
                    *error = None;
                }
            }
            Action::TextBackspace => {
                if let Some(Modal::NewRecipe { name, .. }) = &mut self.modal {
                    name.pop();
                }
            }
            Action::EditRecipe => return self.edit_selected(),
        }
        vec![]
    }

    /// `e`: only your own recipes are edited in place; a shipped one is copied first (`n`).
    fn edit_selected(&mut self) -> Vec<Effect> {
        let Some(r) = self.recipes.selected() else {
            return vec![];
        };
        if r.origin != crate::recipe::Origin::Yours {
            self.status = Some(format!(
                "{} is shipped with bootlab: press n to make your own copy, then edit that",
                r.name()
            ));
            return vec![];
        }
        vec![Effect::Edit {
            recipe: r.name().to_string(),
            file: r.containerfile_path(),
        }]
    }

    /// Make the recipe the name prompt asked for, in your recipes folder.
    fn create_recipe(&mut self, from: String, name: String) -> Vec<Effect> {
        let made = self
            .recipes
            .recipes
            .iter()
            .find(|r| r.name() == from)
            .ok_or_else(|| format!("no recipe {from}"))
            .and_then(|src| {
                crate::recipe::scaffold::create(
                    &crate::recipe::scaffold::default_dir(),
                    name.trim(),
                    Some(src),
                )
                .map_err(|e| format!("{e:#}"))
            });
        match made {
            Ok(r) => {
                self.status = Some(format!("made {} in {}", r.name(), r.dir.display()));
                self.reload_recipes(crate::recipe::all().map_err(|e| e.to_string()), r.name());
                self.edit_selected()
            }
            Err(e) => {
                self.modal = Some(Modal::NewRecipe {
                    from,
                    name,
                    error: Some(e),
                });
                vec![]
            }
        }
    }

    /// New recipe lists (after a new recipe or an edit), keeping `select` selected.
    pub fn reload_recipes(&mut self, recipes: Result<Vec<Recipe>, String>, select: &str) {
        let build = std::mem::take(&mut self.recipes.build);
        let log = std::mem::take(&mut self.recipes.log);
        self.recipes = super::views::recipes::RecipesView::new(recipes);
        self.recipes.build = build;
        self.recipes.log = log;
        self.recipes.select(select);
    }

    /// Back from the editor: read the recipes again; a mistake names file:line:col and stops
    /// there, else the edited recipe is built.
    pub fn after_edit(
        &mut self,
        recipe: &str,
        recipes: Result<Vec<Recipe>, String>,
    ) -> Vec<Effect> {
        self.reload_recipes(recipes, recipe);
        if let Some(e) = &self.recipes.load_error {
            self.status = Some(format!("your edit does not load: {e}"));
            return vec![];
        }
        self.update(Action::Build)
    }

    fn move_selection(&mut self, d: isize) {
        match self.tab {
            Tab::Recipes => self.recipes.move_selection(d),
            Tab::Deployments => self.deploy.move_selection(d),
            Tab::Drills => {
                self.drills.selected = step_index(self.drills.selected, d, DrillKind::ALL.len());
            }
            Tab::Labs if self.labs.open.is_none() => self.labs.move_selection(d),
            _ => {}
        }
    }

    /// `bootlab present LAB`: the lab (by id, or its file's name such as `02-upgrade`) open in
    /// presenter mode, its guest restored where the step starts.
    pub fn present(&mut self, key: &str) -> Result<Vec<Effect>, String> {
        let id = key.trim_end_matches(".toml");
        let bare = id
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start_matches('-');
        let i = self
            .labs
            .labs
            .iter()
            .position(|l| l.id == id || l.id == bare)
            .ok_or_else(|| {
                let ids: Vec<&str> = self.labs.labs.iter().map(|l| l.id.as_str()).collect();
                format!("no lab {key:?} (labs: {})", ids.join(", "))
            })?;
        self.tab = Tab::Labs;
        self.labs.selected = i;
        self.labs.open = None;
        self.presenter = true;
        Ok(self.lab_enter())
    }

    /// The learner went to another step: save where they are and, when that step starts from a
    /// snapshot the guest is not at, restore it (going back or skipping ahead).
    fn after_step_move(&mut self, lab: String) -> Vec<Effect> {
        let mut fx = vec![Effect::SaveLabProgress { lab: lab.clone() }];
        if self.labs.needs_rewind()
            && let Some((_, step)) = self.labs.current()
        {
            fx.extend(self.start(JobKind::LabRewind { lab, step }));
        }
        fx
    }

    fn lab_enter(&mut self) -> Vec<Effect> {
        if self.labs.open.is_none() {
            if self.labs.labs.is_empty() {
                self.status = Some("no labs found (they live in labs/)".into());
                return vec![];
            }
            self.labs.open_selected();
            // Resuming: the guest as the step before left it (a stopped VM starts from it).
            if self.labs.step_has_start_snapshot()
                && let Some((lab, step)) = self.labs.current()
            {
                return self.start(JobKind::LabRewind { lab, step });
            }
            return vec![];
        }
        match self.labs.current() {
            Some((lab, step)) if self.labs.step().is_some_and(|s| s.action.is_some()) => {
                self.start(JobKind::LabAction { lab, step })
            }
            Some(_) => {
                self.status = Some("this step has no action: do it yourself, then press c".into());
                vec![]
            }
            None => vec![],
        }
    }

    pub fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Engine(s) => self.on_event(s),
            Msg::Tick(t) => self.now = t,
            Msg::Status(s) => self.status = Some(s),
            Msg::JobCancelled { kind } => {
                self.job = None;
                self.status = Some(format!("cancelled: {}", kind.label()));
                if let JobKind::Build { .. } = kind {
                    self.recipes.build.outcome = Some(Err("cancelled".into()));
                }
                if let JobKind::LabChecks { .. } = kind {
                    self.labs.reset_running_checks();
                }
            }
            Msg::JobDone { kind, result } => {
                self.job = None;
                self.job_done(kind, result);
            }
        }
    }

    fn job_done(&mut self, kind: JobKind, result: Result<JobOutput, String>) {
        let label = kind.label();
        match &result {
            Ok(_) => self.status = Some(format!("done: {label}")),
            Err(e) => self.status = Some(format!("failed: {label}: {e}")),
        }
        match (kind, result) {
            (JobKind::Build { .. }, r) => {
                self.recipes.build.outcome = Some(r.map(|o| match o {
                    JobOutput::Done(s) => s,
                    JobOutput::Built { summary, lint } => {
                        self.recipes.build.lint = lint;
                        summary
                    }
                    _ => String::new(),
                }));
            }
            (JobKind::LabAction { .. }, Ok(JobOutput::Vm(v))) => {
                self.labs.action_done = true;
                self.vm.vm = v;
            }
            (JobKind::Boot { .. } | JobKind::VmControl(_), Ok(JobOutput::Vm(v))) => {
                self.vm.vm = v;
            }
            (JobKind::LabAction { .. }, Ok(_)) => self.labs.action_done = true,
            // The command's exit status says more than "done".
            (JobKind::LabSnippet { .. }, Ok(JobOutput::Done(s))) => self.status = Some(s),
            (JobKind::Refresh, Ok(JobOutput::Deployments(d))) => {
                self.deploy.set(d, self.now);
            }
            (JobKind::Diff, Ok(JobOutput::Diff(d))) => self.deploy.diff = Some(d),
            (JobKind::Drill(_), Ok(JobOutput::Verdict(v))) => {
                if let Some(r) = &mut self.drills.running {
                    r.verdict = Some(v);
                }
            }
            (JobKind::Drill(_), Err(e)) => {
                if let Some(r) = &mut self.drills.running {
                    r.verdict = Some(Verdict {
                        passed: false,
                        summary: format!("the drill could not finish: {e}"),
                        evidence: vec![],
                    });
                }
            }
            (
                JobKind::LabChecks { lab, .. } | JobKind::LabSolve { lab, .. },
                Ok(JobOutput::Checks(c, guest)),
            ) => {
                self.labs.set_checks(c);
                if let Some(g) = guest {
                    self.labs.apply_guest(&lab, g);
                }
            }
            (JobKind::LabRewind { lab, .. }, Ok(JobOutput::Rewound(g, vm))) => {
                self.status = Some(g.line.clone());
                self.labs.apply_guest(&lab, g);
                if vm.is_some() {
                    self.vm.vm = vm;
                }
            }
            (JobKind::LabChecks { .. } | JobKind::LabSolve { .. }, Err(_)) => {
                self.labs.reset_running_checks()
            }
            _ => {}
        }
    }

    fn on_event(&mut self, s: Stamped) {
        let kind = self.job.as_ref().map(|j| j.kind.clone());
        match s.event {
            Event::Log {
                stage,
                stream: Stream::Console,
                line,
            } => self.vm.console.push(&stage, &line, false),
            Event::Log {
                stage,
                stream,
                line,
            } => {
                let err = stream == Stream::Stderr && looks_like_error(&line);
                self.pane_for(&stage, kind.as_ref())
                    .push(&stage, &line, err);
            }
            Event::Command { stage, argv } => {
                let cmd: Vec<String> = argv
                    .iter()
                    .map(|a| crate::tools::cmd::shell_quote(a))
                    .collect();
                let text = format!("$ {}", cmd.join(" "));
                if let Some(JobKind::Drill(_)) = kind {
                    self.drills.timeline(s.at, &text);
                }
                self.pane_for(&stage, kind.as_ref())
                    .push(&stage, &text, false);
            }
            Event::Progress {
                stage,
                done,
                total,
                label,
            } => {
                if let Some(JobKind::Build { .. }) = kind {
                    self.recipes.build.gauge = Some((done, total, label));
                } else {
                    self.log_for(kind.as_ref()).push(
                        &stage,
                        &format!("{done}/{total} {label}"),
                        false,
                    );
                }
            }
            Event::StageStarted {
                stage,
                expected_secs,
            } => {
                if let Some(j) = &mut self.job {
                    j.stages.push((stage.clone(), s.at, expected_secs));
                }
                if let Some(JobKind::Build { .. }) = kind {
                    self.recipes.build.stage_started(&stage);
                }
                if let Some(JobKind::Drill(_)) = kind {
                    self.drills.timeline(s.at, &format!("{stage} started"));
                }
            }
            Event::StageFinished {
                stage,
                secs,
                cached,
            } => {
                if let Some(j) = &mut self.job
                    && let Some(i) = j.stages.iter().rposition(|(st, ..)| *st == stage)
                {
                    j.stages.remove(i);
                }
                if let Some(JobKind::Build { .. }) = kind {
                    self.recipes.build.stage_finished(&stage, secs, cached);
                }
                if let Some(JobKind::Drill(_)) = kind {
                    self.drills
                        .timeline(s.at, &format!("{stage} finished in {secs:.1}s"));
                }
            }
            Event::VmState { vm, state, detail } => {
                self.vm.on_state(&vm, &state, &detail);
                if let Some(JobKind::Drill(_)) = kind {
                    self.drills
                        .timeline(s.at, &format!("{vm}: {state} {detail}"));
                }
            }
            Event::State {
                object,
                state,
                detail,
            } => {
                if let Some(JobKind::Drill(_)) = kind {
                    self.drills
                        .timeline(s.at, &format!("{object}: {state} {detail}"));
                }
            }
            Event::LabStep { lab, step } => {
                self.labs
                    .log
                    .push(&lab_stage(&lab, None), &format!("step {step}"), false)
            }
            Event::Check {
                lab,
                step,
                title,
                outcome,
                detail,
            } => {
                let why = detail.lines().next().unwrap_or_default();
                let (line, err) = match outcome {
                    CheckOutcome::Passed => (format!("✓ {title}"), false),
                    CheckOutcome::Failed => (format!("✗ {title}: {why}"), true),
                    CheckOutcome::Retrying => (format!("… {title}: {why}"), false),
                };
                self.labs
                    .log
                    .push(&lab_stage(&lab, Some(&step)), &line, err)
            }
            Event::Note { stage, text } => {
                if let Some(JobKind::Drill(_)) = kind {
                    self.drills.timeline(s.at, &text);
                }
                self.pane_for(&stage, kind.as_ref())
                    .push(&stage, &text, false);
            }
        }
    }

    /// The pane a line belongs in: a VM's own lines go to its console pane, the rest to the pane
    /// of the job that produced them.
    fn pane_for(&mut self, stage: &str, kind: Option<&JobKind>) -> &mut LogPane {
        if vm_of_stage(stage).is_some() {
            return &mut self.vm.console;
        }
        self.log_for(kind)
    }

    /// The pane a job's output belongs in.
    fn log_for(&mut self, kind: Option<&JobKind>) -> &mut LogPane {
        match kind {
            Some(JobKind::Boot { .. } | JobKind::VmControl(_)) => &mut self.vm.console,
            Some(
                JobKind::LabAction { .. }
                | JobKind::LabChecks { .. }
                | JobKind::LabSolve { .. }
                | JobKind::LabRewind { .. }
                | JobKind::LabSnippet { .. },
            ) => &mut self.labs.log,
            Some(JobKind::Drill(_)) => &mut self.drills.log,
            _ => &mut self.recipes.log,
        }
    }
}

pub(crate) fn step_index(i: usize, d: isize, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (i as isize + d).clamp(0, len as isize - 1) as usize
}

fn looks_like_error(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains("error") || l.contains("fatal") || l.starts_with("e:")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::views::recipes::StageRow;

    pub(crate) fn app() -> App {
        App::new(Init {
            recipes: crate::recipe::shipped().map_err(|e| e.to_string()),
            labs: Ok(vec![]),
            now: SystemTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn starts_on_recipes_with_the_default_recipe_selected() {
        let a = app();
        assert_eq!(a.tab, Tab::Recipes);
        assert_eq!(
            a.recipes.selected().map(|r| r.name()),
            Some(crate::recipe::DEFAULT_RECIPE)
        );
    }

    #[test]
    fn deployments_are_read_on_entry_when_a_vm_runs() {
        let mut a = app();
        // No VM: nothing to read.
        assert_eq!(a.update(Action::GoTab(Tab::Deployments)), vec![]);
        a.update(Action::GoTab(Tab::Recipes));
        a.vm.vm = Some(VmInfo::running_for_test("debian-minimal"));
        assert_eq!(
            a.update(Action::GoTab(Tab::Deployments)),
            vec![Effect::Start(JobKind::Refresh)]
        );
        a.on_msg(Msg::JobDone {
            kind: JobKind::Refresh,
            result: Ok(JobOutput::Deployments(vec![])),
        });
        // Read once; `r` reads again.
        a.update(Action::GoTab(Tab::Recipes));
        assert_eq!(a.update(Action::GoTab(Tab::Deployments)), vec![]);
    }

    #[test]
    fn quit_without_vms_or_jobs_quits_at_once() {
        let mut a = app();
        assert_eq!(a.update(Action::Quit), vec![Effect::Quit]);
        assert!(a.quit);
    }

    #[test]
    fn quit_with_a_running_vm_asks_and_offers_to_stop_it() {
        let mut a = app();
        a.vm.vm = Some(VmInfo::running_for_test("lab1"));
        assert!(a.update(Action::Quit).is_empty());
        assert!(matches!(a.modal, Some(Modal::ConfirmQuit { ref vms, .. }) if vms == &["lab1"]));
        assert!(!a.quit);
        a.update(Action::Dismiss);
        assert!(a.modal.is_none() && !a.quit);
        a.update(Action::Quit);
        let eff = a.update(Action::Confirm);
        assert!(eff.contains(&Effect::StopVmsThenQuit), "{eff:?}");
    }

    #[test]
    fn one_job_at_a_time_and_ctrl_c_cancels_it() {
        let mut a = app();
        let eff = a.update(Action::Build);
        assert!(
            matches!(&eff[..], [Effect::Start(JobKind::Build { recipe, version })] if recipe == "debian-minimal" && version == "v1")
        );
        assert!(a.update(Action::Build).is_empty());
        assert!(a.status.as_deref().unwrap().starts_with("busy"));
        assert_eq!(a.update(Action::CancelJob), vec![Effect::CancelJob]);
        a.on_msg(Msg::JobCancelled {
            kind: a.job.clone().unwrap().kind,
        });
        assert!(a.job.is_none());
    }

    #[test]
    fn build_events_feed_gauge_timings_and_log() {
        let mut a = app();
        a.update(Action::Build);
        let ev = |e| {
            Msg::Engine(Stamped {
                at: SystemTime::UNIX_EPOCH,
                event: e,
            })
        };
        a.on_msg(ev(Event::StageStarted {
            stage: "build".into(),
            expected_secs: Some(31.0),
        }));
        // The job line's stage, with what it took before; gone when the stage ends.
        assert_eq!(
            a.job.as_ref().unwrap().stages,
            vec![("build".into(), SystemTime::UNIX_EPOCH, Some(31.0))]
        );
        a.on_msg(ev(Event::Progress {
            stage: "build".into(),
            done: 2,
            total: 5,
            label: "RUN apt-get".into(),
        }));
        a.on_msg(ev(Event::Log {
            stage: "build".into(),
            stream: Stream::Stdout,
            line: "STEP 2/5: RUN apt-get".into(),
        }));
        a.on_msg(ev(Event::StageFinished {
            stage: "build".into(),
            secs: 3.0,
            cached: false,
        }));
        assert!(a.job.as_ref().unwrap().stages.is_empty());
        assert_eq!(a.recipes.build.gauge, Some((2, 5, "RUN apt-get".into())));
        assert_eq!(
            a.recipes.build.stages,
            vec![StageRow {
                stage: "build".into(),
                secs: Some(3.0),
                cached: false
            }]
        );
        assert_eq!(a.recipes.log.len(), 1);
    }
}
