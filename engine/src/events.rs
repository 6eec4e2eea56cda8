//! Typed events that long-running engine work reports, and the job handle that cancels it.
//!
//! Every long operation (a build, a boot, a drill) takes an [`Emitter`] and a
//! [`CancellationToken`]; faces (TUI, CLI) own the receiving end and render what arrives.

use crate::timings::{Timings, stage_key};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
pub use tokio_util::sync::CancellationToken;

/// What a piece of engine work tells its face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A host or guest command is about to run (shown before it runs: learners see every command).
    Command { stage: String, argv: Vec<String> },
    /// One line of a tool's output.
    Log {
        stage: String,
        stream: Stream,
        line: String,
    },
    /// Progress within a stage, e.g. podman's `STEP 3/7`.
    Progress {
        stage: String,
        done: u64,
        total: u64,
        label: String,
    },
    /// A stage started; `expected_secs`: how long it took before on this machine (the median
    /// of the last runs, `crate::timings`), when it was measured before.
    StageStarted {
        stage: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_secs: Option<f64>,
    },
    /// A stage finished; `cached` when it was a cache hit.
    StageFinished {
        stage: String,
        secs: f64,
        cached: bool,
    },
    /// A VM changed state (`starting`, `running`, `stopped`, …; `accelerator` with the reason
    /// in `detail`).
    VmState {
        vm: String,
        state: String,
        detail: String,
    },
    /// Something else changed state (a drill's step, its guest rebooting).
    State {
        object: String,
        state: String,
        detail: String,
    },
    /// A lab step started.
    LabStep { lab: String, step: String },
    /// A lab check finished or is being tried again. `detail`: for a failure the reason and the
    /// check's advice, for a retry the attempt and why it failed.
    Check {
        lab: String,
        step: String,
        title: String,
        outcome: CheckOutcome,
        detail: String,
    },
    /// A free-form note worth showing (why TCG was chosen, what was reused).
    Note { stage: String, text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Passed,
    Failed,
    Retrying,
}

/// The stage of a VM's own lines (its console, its supervisor's notes, its start): faces show
/// them with the VM, not in the log of whatever job was running. The one place that spells it.
pub fn vm_stage(vm: &str) -> String {
    format!("vm:{vm}")
}

/// The VM a stage belongs to, when it is one made by [`vm_stage`].
pub fn vm_of_stage(stage: &str) -> Option<&str> {
    stage.strip_prefix("vm:")
}

/// The stage of a lab's own notes (its actions, hints), per step or for the whole lab.
pub fn lab_stage(lab: &str, step: Option<&str>) -> String {
    match step {
        Some(s) => format!("lab:{lab}/{s}"),
        None => format!("lab:{lab}"),
    }
}

/// Whether a stage is one made by [`lab_stage`].
pub fn is_lab_stage(stage: &str) -> bool {
    stage.starts_with("lab:")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
    Console,
}

/// An event with the time it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub at: SystemTime,
    pub event: Event,
}

/// Sending side of an event channel. Cheap to clone; sending never blocks and never fails loudly
/// (a face that went away must not break the work it watched).
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: Option<mpsc::UnboundedSender<Stamped>>,
    timing: Option<Arc<Timing>>,
}

/// Where an emitter's stages read their expectations and add their durations.
#[derive(Debug)]
struct Timing {
    store: Timings,
    subject: Option<String>,
}

impl Emitter {
    pub fn channel() -> (Emitter, mpsc::UnboundedReceiver<Stamped>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Emitter {
                tx: Some(tx),
                timing: None,
            },
            rx,
        )
    }
    /// A new channel whose emitter keeps this one's timing record and subject: for a relay
    /// that forwards what it gets to this emitter.
    pub fn channel_like(&self) -> (Emitter, mpsc::UnboundedReceiver<Stamped>) {
        let (mut e, rx) = Emitter::channel();
        e.timing = self.timing.clone();
        (e, rx)
    }
    /// An emitter that drops everything (for callers that only want the result).
    pub fn null() -> Emitter {
        Emitter {
            tx: None,
            timing: None,
        }
    }
    /// This emitter, its stages timed in `store`: they start with the expectation of earlier
    /// runs and add their own duration when they did their work (faces set this up).
    pub fn with_timings(mut self, store: Timings) -> Emitter {
        self.timing = Some(Arc::new(Timing {
            store,
            subject: None,
        }));
        self
    }
    /// A clone whose stages are timed as work on `subject` (a recipe): a debian-web build is
    /// not expected to take what a debian-minimal one took.
    pub fn about(&self, subject: &str) -> Emitter {
        let mut e = self.clone();
        if let Some(t) = &self.timing {
            e.timing = Some(Arc::new(Timing {
                store: t.store.clone(),
                subject: Some(subject.to_string()),
            }));
        }
        e
    }
    /// How long `stage` took before (for this emitter's subject), if it was measured.
    pub fn expected(&self, stage: &str) -> Option<f64> {
        let t = self.timing.as_ref()?;
        t.store.expected(&stage_key(stage, t.subject.as_deref()))
    }
    /// Report that `stage` started, with its expectation.
    pub fn stage_started(&self, stage: &str) {
        self.emit(Event::StageStarted {
            stage: stage.into(),
            expected_secs: self.expected(stage),
        });
    }
    /// Report that `stage` ended in a failure: its time is no measure of the work, so it is
    /// not kept.
    pub fn stage_failed(&self, stage: &str, secs: f64) {
        self.emit(Event::StageFinished {
            stage: stage.into(),
            secs,
            cached: false,
        });
    }
    /// Report that `stage` finished; a stage that did its work (no cache hit) is kept as the
    /// latest duration of its kind. A record that cannot be written does not fail the work.
    pub fn stage_finished(&self, stage: &str, secs: f64, cached: bool) {
        if !cached && let Some(t) = &self.timing {
            let key = stage_key(stage, t.subject.as_deref());
            if let Err(e) = t.store.record(&key, secs) {
                self.note(stage, format!("could not keep its duration: {e:#}"));
            }
        }
        self.emit(Event::StageFinished {
            stage: stage.into(),
            secs,
            cached,
        });
    }
    pub fn emit(&self, event: Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Stamped {
                at: SystemTime::now(),
                event,
            });
        }
    }
    pub fn note(&self, stage: &str, text: impl Into<String>) {
        self.emit(Event::Note {
            stage: stage.into(),
            text: text.into(),
        });
    }
    pub fn log(&self, stage: &str, stream: Stream, line: impl Into<String>) {
        self.emit(Event::Log {
            stage: stage.into(),
            stream,
            line: line.into(),
        });
    }

    /// An emitter to hand a tool's command: every event goes on to this one, and each log line
    /// `observe` reads as (done, total, label) becomes a [`Event::Progress`] of `stage` first.
    /// Drop the relay when the command ends, then await the handle: all is forwarded by then.
    pub fn progress_relay(
        &self,
        stage: &str,
        mut observe: impl FnMut(&str) -> Option<(u64, u64, String)> + Send + 'static,
    ) -> (Emitter, tokio::task::JoinHandle<()>) {
        let (relay, mut rx) = self.channel_like();
        let ev = self.clone();
        let stage = stage.to_string();
        let forward = tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if let Event::Log { line, .. } = &s.event
                    && let Some((done, total, label)) = observe(line)
                {
                    ev.emit(Event::Progress {
                        stage: stage.clone(),
                        done,
                        total,
                        label,
                    });
                }
                ev.emit(s.event);
            }
        });
        (relay, forward)
    }
}

/// A running stage's timer; reports `StageStarted` now and `StageFinished` on [`StageTimer::finish`].
pub struct StageTimer {
    stage: String,
    start: std::time::Instant,
    emitter: Emitter,
}

impl StageTimer {
    pub fn start(emitter: &Emitter, stage: &str) -> StageTimer {
        emitter.stage_started(stage);
        StageTimer {
            stage: stage.into(),
            start: std::time::Instant::now(),
            emitter: emitter.clone(),
        }
    }
    /// The stage failed: reported as finished, its time not kept as a measure of the work.
    pub fn failed(self) {
        self.emitter
            .stage_failed(&self.stage, self.start.elapsed().as_secs_f64());
    }
    pub fn finish(self, cached: bool) -> StageTiming {
        let secs = self.start.elapsed().as_secs_f64();
        self.emitter.stage_finished(&self.stage, secs, cached);
        StageTiming {
            stage: self.stage,
            secs,
            cached,
        }
    }
}

/// One row of a timing table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    pub stage: String,
    pub secs: f64,
    pub cached: bool,
}

/// Render a timing table (stage, seconds, cache hit) as plain text.
pub fn timing_table(rows: &[StageTiming]) -> String {
    let mut out = format!("{:<16} {:>9}  {}\n", "stage", "seconds", "cache");
    let mut total = 0.0;
    for r in rows {
        total += r.secs;
        out.push_str(&format!(
            "{:<16} {:>9.2}  {}\n",
            r.stage,
            r.secs,
            if r.cached { "hit" } else { "miss" }
        ));
    }
    out.push_str(&format!("{:<16} {:>9.2}\n", "total", total));
    out
}

/// Error returned by work that was cancelled, so callers can tell it from a failure.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Wait for `fut` unless `cancel` fires first.
pub async fn cancellable<T>(
    cancel: &CancellationToken,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = fut => r,
        _ = cancel.cancelled() => Err(Cancelled.into()),
    }
}

/// Retry `probe` every `every` until it returns `Some`, or give up after `within`.
/// The way to wait for a condition (a socket, a guest agent, a reboot) without sleeping blindly.
pub async fn retry_until<T, F, Fut>(within: Duration, every: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() + every > deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_table_lists_stages_and_total() {
        let t = timing_table(&[
            StageTiming {
                stage: "base".into(),
                secs: 1.5,
                cached: true,
            },
            StageTiming {
                stage: "build".into(),
                secs: 2.0,
                cached: false,
            },
        ]);
        assert!(t.contains("base"));
        assert!(t.contains("hit"));
        assert!(t.contains("miss"));
        assert!(t.contains("3.50"), "{t}");
    }

    #[tokio::test]
    async fn a_progress_relay_adds_progress_before_the_line_and_forwards_everything() {
        let (ev, mut rx) = Emitter::channel();
        let (relay, forward) = ev.progress_relay("base", |line| {
            line.strip_prefix("Setting up ")
                .map(|p| (1, 2, format!("set up {p}")))
        });
        relay.log("base", Stream::Stdout, "Get:1 x");
        relay.log("base", Stream::Stdout, "Setting up dracut");
        relay.note("base", "done");
        drop(relay);
        forward.await.unwrap();
        let mut got = vec![];
        while let Ok(s) = rx.try_recv() {
            got.push(s.event);
        }
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(matches!(&got[0], Event::Log { line, .. } if line == "Get:1 x"));
        assert_eq!(
            got[1],
            Event::Progress {
                stage: "base".into(),
                done: 1,
                total: 2,
                label: "set up dracut".into()
            }
        );
        assert!(matches!(&got[2], Event::Log { line, .. } if line == "Setting up dracut"));
        assert!(matches!(&got[3], Event::Note { text, .. } if text == "done"));
    }

    #[tokio::test]
    async fn stages_start_with_what_they_took_before_and_keep_only_real_work() {
        let d = tempfile::tempdir().unwrap();
        let store = Timings::new(&crate::paths::Paths::under(d.path()));
        let (ev, mut rx) = Emitter::channel();
        let ev = ev.with_timings(store.clone());
        let mut started = Vec::new();
        let mut take = |rx: &mut mpsc::UnboundedReceiver<Stamped>| {
            while let Ok(s) = rx.try_recv() {
                if let Event::StageStarted { expected_secs, .. } = s.event {
                    started.push(expected_secs);
                }
            }
            started.clone()
        };
        // Never measured: no expectation. A stage that did its work is kept under its subject.
        StageTimer::start(&ev.about("debian-minimal"), "disk").finish(false);
        assert_eq!(take(&mut rx), vec![None]);
        assert!(store.expected("disk debian-minimal").is_some());
        assert_eq!(store.expected("disk"), None);
        // A cache hit and a failure are reported but not kept.
        StageTimer::start(&ev.about("debian-web"), "disk").finish(true);
        StageTimer::start(&ev.about("debian-web"), "disk").failed();
        assert_eq!(store.expected("disk debian-web"), None);
        // The next run of the measured stage starts with its expectation, through a relay too.
        let (relay, forward) = ev.about("debian-minimal").progress_relay("disk", |_| None);
        StageTimer::start(&relay, "disk").finish(true);
        drop(relay);
        forward.await.unwrap();
        let got = take(&mut rx);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[3].is_some(), "{got:?}");
    }

    #[tokio::test]
    async fn cancellable_stops_on_cancel() {
        let tok = CancellationToken::new();
        tok.cancel();
        let r: anyhow::Result<()> = cancellable(&tok, async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        })
        .await;
        assert!(r.unwrap_err().is::<Cancelled>());
    }

    #[tokio::test]
    async fn retry_until_gives_up() {
        let mut n = 0;
        let r: Option<()> =
            retry_until(Duration::from_millis(50), Duration::from_millis(10), || {
                n += 1;
                async { None }
            })
            .await;
        assert!(r.is_none());
        assert!(n >= 2);
    }
}
