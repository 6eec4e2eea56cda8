//! Looking at host processes through /proc: is a recorded pid still the process we started
//! (a reused pid must never be killed), and which processes name a given path.

use std::path::Path;

/// The command line of `pid`, split at NULs; `None` when the process is gone.
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None; // a zombie or kernel thread
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// True when `pid` is alive and one of its arguments contains `needle` (e.g. the VM's own
/// socket path, which only that VM's QEMU or supervisor carries).
pub fn alive_with(pid: i32, needle: &str) -> bool {
    pid > 0 && cmdline(pid).is_some_and(|c| c.iter().any(|a| a.contains(needle))) && !is_zombie(pid)
}

pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Every live process (not zombie) whose command line mentions `needle`.
pub fn mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id() as i32;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid != me && alive_with(pid, needle) {
            out.push(pid);
        }
    }
    out.sort();
    out
}

/// QEMU processes whose command line mentions `dir` (a VM folder or a test's temp folder).
pub fn qemus_under(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy();
    mentioning(&needle)
        .into_iter()
        .filter(|p| {
            cmdline(*p).is_some_and(|c| c.first().is_some_and(|a| a.contains("qemu-system")))
        })
        .collect()
}

/// SIGKILL `pid` if it is still the process that mentions `needle`, and wait (briefly) until gone.
pub fn kill_verified(pid: i32, needle: &str) -> bool {
    if !alive_with(pid, needle) {
        return false;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    for _ in 0..100 {
        if !alive_with(pid, needle) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// Parent pid of `pid` (from /proc/<pid>/stat).
pub fn ppid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// When `pid` started, in clock ticks since boot (`/proc/<pid>/stat` field 22): with the pid it
/// names one process for good (a reused pid has another start time).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses: state is field 3.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// "<pid>.<start ticks>" of this process: what bootlab stamps on what it leaves running (a
/// container's `bootlab.owner` label) so a later bootlab can tell whether its owner is gone.
pub fn owner_stamp() -> String {
    let pid = std::process::id();
    format!("{pid}.{}", start_ticks(pid).unwrap_or(0))
}

/// Is the process an [`owner_stamp`] names still running (same pid, same start, not a zombie)?
pub fn owner_alive(stamp: &str) -> bool {
    let Some((pid, ticks)) = stamp.split_once('.') else {
        return false;
    };
    let (Ok(pid), Ok(ticks)) = (pid.parse::<u32>(), ticks.parse::<u64>()) else {
        return false;
    };
    start_ticks(pid) == Some(ticks) && !is_zombie(pid as i32)
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn an_owner_stamp_names_this_process_only() {
        let me = owner_stamp();
        assert!(owner_alive(&me), "{me}");
        let pid = std::process::id();
        // Same pid, another start: a reused pid is not the owner.
        assert!(!owner_alive(&format!("{pid}.1")));
        assert!(!owner_alive("4194304.5"));
        assert!(!owner_alive("garbage"));
    }
}
