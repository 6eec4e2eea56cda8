//! The boot-phase line: where a booting guest is (firmware, bootloader, kernel, initramfs,
//! systemd, agent), read from its serial console while it boots — under TCG a boot is half a
//! minute of otherwise silent console.
//!
//! The kernel runs with `quiet`, so the console says little by itself: the bootloader's banner
//! (`SYSLINUX 6.04 …`), then marks the `/init` of bootlab's initramfs writes
//! ([`crate::pipeline::initramfs::INIT_SH`]): `bootlab-phase initramfs <uptime>` when it starts
//! and `bootlab-phase systemd <uptime>` when it switches to the real root. The uptime dates
//! the kernel's start (the mark arrives `uptime` seconds after it), which the console cannot
//! show live. The agent answering ends the boot. A guest without the
//! marks (an image bootlab did not make the initramfs of) shows the phases it can.

use std::fmt::Write;

/// The phases, in boot order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BootPhase {
    Firmware,
    Bootloader,
    Kernel,
    Initramfs,
    Systemd,
    Agent,
}

impl BootPhase {
    pub fn name(self) -> &'static str {
        match self {
            BootPhase::Firmware => "firmware",
            BootPhase::Bootloader => "bootloader",
            BootPhase::Kernel => "kernel",
            BootPhase::Initramfs => "initramfs",
            BootPhase::Systemd => "systemd",
            BootPhase::Agent => "agent",
        }
    }

    /// What a boot that never leaves this phase most often means (said when a boot times out:
    /// the console of a `quiet` kernel may show nothing).
    pub fn stuck_here(self) -> &'static str {
        match self {
            BootPhase::Firmware => "the firmware found nothing to boot on the disk",
            BootPhase::Bootloader => "the bootloader did not start a kernel (its boot entry?)",
            BootPhase::Kernel => "the kernel did not reach its initramfs",
            BootPhase::Initramfs => {
                "the initramfs never handed over to the real root: its `bootlab initramfs:` \
                 line on the console says why (the root file system of root= not found, \
                 ostree-prepare-root failed, or the deployment's /boot line would not mount)"
            }
            BootPhase::Systemd => "the guest's systemd did not start the guest agent",
            BootPhase::Agent => "the guest agent answered",
        }
    }
}

/// systemd's own word that the guest waits for a job, the last such status in `line`:
/// "A stop job is running for Session 1 of User root (32s / 1min 30s)" (older systemd), or
/// "Job slowstop.service/stop running (26s / 1min 30s)" (systemd 257, seen on a trixie guest).
/// With `systemd.show_status=auto` ([`crate::pipeline::disk::KARGS`]) systemd prints it once a
/// job has run for a while, one whole console line per second (measured: each update ends in a
/// newline); a shutdown or boot waiting for one (up to its 90 s timeout) is otherwise silent.
pub fn job_wait(line: &str) -> Option<String> {
    let described = ["A stop job is running for ", "A start job is running for "]
        .iter()
        .filter_map(|p| line.rfind(p));
    let bare = line
        .rfind("Job ")
        .filter(|&i| line[i..].contains(" running ("));
    let i = described.chain(bare).max()?;
    let rest = &line[i..];
    // The status ends with its "(elapsed / limit)"; anything after it is other output.
    let end = rest
        .find(" / ")
        .and_then(|j| rest[j..].find(')').map(|k| j + k + 1));
    Some(rest[..end.unwrap_or(rest.len())].trim_end().to_string())
}

/// What the initramfs writes on the console (see the module docs).
pub const MARK: &str = "bootlab-phase ";

/// When each phase began, in seconds since the boot began (QEMU started or the guest reset).
/// The firmware begins at 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootTimeline {
    began: [Option<f64>; 6],
}

impl BootTimeline {
    pub fn new() -> BootTimeline {
        let mut t = BootTimeline::default();
        t.began[BootPhase::Firmware as usize] = Some(0.0);
        t
    }

    pub fn began(&self, p: BootPhase) -> Option<f64> {
        self.began[p as usize]
    }

    /// Phases begin once, and never before one that came earlier in the boot.
    fn set(&mut self, p: BootPhase, at: f64) -> bool {
        if self.began(p).is_some() {
            return false;
        }
        let floor = self.began[..p as usize]
            .iter()
            .flatten()
            .fold(0.0_f64, |a, b| a.max(*b));
        self.began[p as usize] = Some(at.max(floor));
        true
    }

    /// One console line seen `at` seconds into the boot. True when a phase began with it.
    pub fn observe(&mut self, line: &str, at: f64) -> bool {
        if line.contains("SYSLINUX ") || line.contains("EXTLINUX ") {
            return self.set(BootPhase::Bootloader, at);
        }
        let Some(i) = line.find(MARK) else {
            return false;
        };
        let mut w = line[i + MARK.len()..].split_whitespace();
        let phase = match w.next() {
            Some("initramfs") => BootPhase::Initramfs,
            Some("systemd") => BootPhase::Systemd,
            _ => return false,
        };
        // The kernel's uptime when the mark was written: the kernel began that long before.
        if let Some(uptime) = w.next().and_then(|u| u.parse::<f64>().ok()) {
            self.set(BootPhase::Kernel, at - uptime);
        }
        self.set(phase, at)
    }

    /// The guest agent answered `at` seconds into the boot.
    pub fn agent(&mut self, at: f64) {
        self.set(BootPhase::Agent, at);
    }

    /// The latest phase that began.
    pub fn current(&self) -> BootPhase {
        ALL.into_iter()
            .rev()
            .find(|p| self.began(*p).is_some())
            .unwrap_or(BootPhase::Firmware)
    }

    /// How long each finished phase took: from its beginning to the next phase that began.
    pub fn durations(&self) -> Vec<(BootPhase, f64)> {
        let known: Vec<(BootPhase, f64)> = ALL
            .into_iter()
            .filter_map(|p| self.began(p).map(|t| (p, t)))
            .collect();
        known
            .windows(2)
            .map(|w| (w[0].0, w[1].1 - w[0].1))
            .collect()
    }

    /// The live line: "initramfs since 6.1 s (firmware 0.4 s, bootloader 3.0 s, kernel 2.7 s)".
    pub fn line(&self) -> String {
        let cur = self.current();
        let mut s = format!(
            "{} since {:.1} s",
            cur.name(),
            self.began(cur).unwrap_or(0.0)
        );
        let d = self.durations();
        if !d.is_empty() {
            s.push_str(" (");
            s.push_str(&Self::list(&d));
            s.push(')');
        }
        s
    }

    /// Once the agent answered: "firmware 0.4 s, bootloader 3.0 s, kernel 2.7 s, …".
    pub fn summary(&self) -> String {
        Self::list(&self.durations())
    }

    fn list(d: &[(BootPhase, f64)]) -> String {
        let mut s = String::new();
        for (i, (p, secs)) in d.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{} {secs:.1} s", p.name());
        }
        s
    }
}

const ALL: [BootPhase; 6] = [
    BootPhase::Firmware,
    BootPhase::Bootloader,
    BootPhase::Kernel,
    BootPhase::Initramfs,
    BootPhase::Systemd,
    BootPhase::Agent,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_wait_is_read_from_systemds_status_line() {
        // After the CRs and ANSI colours are removed; when a line holds two statuses, the
        // newest (last) one.
        let l = "[  *** ] A stop job is running for slowstop.service (27s / 1min 30s)\
                 [ ***  ] (2 of 2) A stop job is running for slowstop.service (28s / 1min 30s)";
        assert_eq!(
            job_wait(l).as_deref(),
            Some("A stop job is running for slowstop.service (28s / 1min 30s)")
        );
        assert_eq!(
            job_wait("[ *** ] A start job is running for /dev/disk/by-label/bootlab-root (1min 2s / no limit)").as_deref(),
            Some("A start job is running for /dev/disk/by-label/bootlab-root (1min 2s / no limit)")
        );
        assert_eq!(
            job_wait("[    **] Job slowstop.service/stop running (29s / 1min 30s)").as_deref(),
            Some("Job slowstop.service/stop running (29s / 1min 30s)")
        );
        // The bytes a trixie guest (systemd 257, `quiet systemd.show_status=auto`) wrote on its
        // console while a unit's stop took 40 s, one update, as the console log holds it.
        let raw = b"\x1bM\r\x1b[K[ \x1b[0;31m*\x1b[0;1;31m*\x1b[0m\x1b[0;31m*  \x1b[0m] \
                    Job slowstop.service/stop running (27s / 1min 30s)\r\r\n";
        assert_eq!(
            job_wait(&crate::vm::console::clean_line(raw)).as_deref(),
            Some("Job slowstop.service/stop running (27s / 1min 30s)")
        );
        assert_eq!(job_wait("[  OK  ] Stopped slowstop.service."), None);
        assert_eq!(job_wait("Job for x.service failed."), None);
    }

    /// The lines of a real debian-minimal boot's console (trixie, TCG), with the seconds since
    /// QEMU started at which they came.
    #[test]
    fn a_boot_read_from_its_console() {
        let mut t = BootTimeline::new();
        assert_eq!(t.current(), BootPhase::Firmware);
        assert!(!t.observe("", 0.3));
        assert!(t.observe(
            "SYSLINUX 6.04 20210613 Copyright (C) 1994-2015 H. Peter Anvin et al",
            0.9
        ));
        assert_eq!(t.line(), "bootloader since 0.9 s (firmware 0.9 s)");
        // A mark after ANSI leftovers on the same line; the kernel began 5.2 s before it.
        assert!(t.observe("[!p]104[?7hbootlab-phase initramfs 5.21", 9.1));
        assert_eq!(t.current(), BootPhase::Initramfs);
        let k = t.began(BootPhase::Kernel).unwrap();
        assert!((k - 3.89).abs() < 1e-9, "{k}");
        assert_eq!(
            t.line(),
            "initramfs since 9.1 s (firmware 0.9 s, bootloader 3.0 s, kernel 5.2 s)"
        );
        assert!(!t.observe("[   18.277010] Module serio_raw is blacklisted", 20.0));
        assert!(t.observe("bootlab-phase systemd 12.80", 16.7));
        // The same mark again (a second console copy) changes nothing.
        assert!(!t.observe("bootlab-phase systemd 12.90", 16.8));
        t.agent(36.8);
        assert_eq!(t.current(), BootPhase::Agent);
        assert_eq!(
            t.summary(),
            "firmware 0.9 s, bootloader 3.0 s, kernel 5.2 s, initramfs 7.6 s, systemd 20.1 s"
        );
    }

    #[test]
    fn a_guest_without_marks_shows_what_it_can() {
        let mut t = BootTimeline::new();
        t.observe("SYSLINUX 6.04", 1.0);
        t.agent(30.0);
        assert_eq!(t.summary(), "firmware 1.0 s, bootloader 29.0 s");
        assert!(!t.observe("bootlab-phase nonsense 1.0", 2.0));
        assert!(!t.observe("bootlab-phase", 2.0));
    }

    #[test]
    fn a_phase_never_begins_before_an_earlier_one() {
        let mut t = BootTimeline::new();
        t.observe("SYSLINUX 6.04", 2.0);
        // An uptime larger than the time since the bootloader (clock skew): clamped.
        t.observe("bootlab-phase initramfs 9.0", 5.0);
        assert_eq!(t.began(BootPhase::Kernel), Some(2.0));
        assert!(t.durations().iter().all(|(_, d)| *d >= 0.0));
    }
}
