//! A bare repository's objects checked against their names, in bootlab's own code.
//!
//! Why not `ostree pull-local --untrusted`: the host's ostree (2022.7) checks a copy with a
//! software SHA-256; for a golden disk's 443 MB that was 0.8 s of a 2.9 s disk (1.65 s checked
//! against 0.85 s trusted, measured 2026-12-06). Here the copy is trusted (`pull-local`, the
//! kernel copies the bytes) and [`Check`] hashes the copy with the CPU's SHA instructions on
//! every core while the deploy runs; the disk is only kept if every object matches.
//!
//! An object's name is the SHA-256 of (ostree's `ostree_checksum_file_from_input`):
//! - metadata (`.commit`, `.dirtree`, `.dirmeta`): the file's bytes;
//! - content (`.file`, a bare repo keeps the file itself): a header, then the bytes of a regular
//!   file. The header is the GVariant `(uuuusa(ayay))` — uid, gid and mode (big-endian), rdev 0,
//!   the symlink target (`""` for a regular file), the xattrs sorted by name (each name with its
//!   NUL) — after its length (u32, big-endian) and four NUL bytes (`_ostree_file_header_new`).

use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How an object is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `.commit`, `.dirtree`, `.dirmeta`: the SHA-256 of the bytes.
    Meta,
    /// `.file`: header + content.
    Content,
}

impl Kind {
    /// The kind of an object file named `<checksum>.<ext>`; `None` for what is not named after
    /// its bytes (`.commitmeta` is named after its commit) or not an object.
    fn of(ext: &str) -> Option<Kind> {
        match ext {
            "commit" | "dirtree" | "dirmeta" => Some(Kind::Meta),
            "file" => Some(Kind::Content),
            _ => None,
        }
    }
}

/// One object file, its expected checksum and its kind.
#[derive(Debug, Clone)]
struct Object {
    path: PathBuf,
    checksum: String,
    kind: Kind,
}

/// What a finished check saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checked {
    pub objects: usize,
    pub bytes: u64,
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// In ostree's own words (`pull-local --untrusted`), so one message reads the same either way.
    #[error("Corrupted {kind} object; checksum expected='{expected}' actual='{actual}'")]
    Mismatch {
        kind: String,
        expected: String,
        actual: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the check was stopped")]
    Stopped,
    #[error("a thread of the check failed (a bug in bootlab)")]
    Panicked,
}

/// Every object of the bare repository `repo`, biggest first (so the cores finish together).
fn list(repo: &Path) -> Result<Vec<Object>, CheckError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckError::Io { path, source }
    };
    let objects = repo.join("objects");
    let mut sized = Vec::new();
    for d in std::fs::read_dir(&objects).map_err(io(&objects))? {
        let d = d.map_err(io(&objects))?;
        let prefix = d.file_name();
        let Some(prefix) = prefix.to_str().filter(|p| p.len() == 2) else {
            continue;
        };
        for f in std::fs::read_dir(d.path()).map_err(io(&d.path()))? {
            let f = f.map_err(io(&d.path()))?;
            let name = f.file_name();
            let Some((rest, ext)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            let Some(kind) = Kind::of(ext) else {
                continue;
            };
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            sized.push((
                size,
                Object {
                    path: f.path(),
                    checksum: format!("{prefix}{rest}"),
                    kind,
                },
            ));
        }
    }
    sized.sort_by_key(|s| std::cmp::Reverse(s.0));
    Ok(sized.into_iter().map(|(_, o)| o).collect())
}

/// The GVariant framing offsets `offsets` appended to `body`, each in the smallest size that
/// can address the whole container (GLib's `gvs_calculate_total_size`).
fn framed(mut body: Vec<u8>, offsets: &[usize]) -> Vec<u8> {
    let n = offsets.len();
    let width = if body.len() + n <= 0xff {
        1
    } else if body.len() + 2 * n <= 0xffff {
        2
    } else if body.len() + 4 * n <= 0xffff_ffff {
        4
    } else {
        8
    };
    for &o in offsets {
        body.extend_from_slice(&(o as u64).to_le_bytes()[..width]);
    }
    body
}

/// The checksum header of a content object (see the module docs).
pub(crate) fn file_header(
    uid: u32,
    gid: u32,
    mode: u32,
    symlink_target: &[u8],
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> Vec<u8> {
    let mut xattrs: Vec<&(Vec<u8>, Vec<u8>)> = xattrs.iter().collect();
    xattrs.sort_by(|a, b| a.0.cmp(&b.0));
    // a(ayay): the elements, then where each ends.
    let mut array = Vec::new();
    let mut ends = Vec::new();
    for (name, value) in xattrs {
        let mut element = name.clone();
        element.push(0);
        let name_end = element.len();
        element.extend_from_slice(value);
        array.extend(framed(element, &[name_end]));
        ends.push(array.len());
    }
    let array = framed(array, &ends);
    // (uuuusa(ayay)): four u32 (stored big-endian by ostree), the string, the array; one offset,
    // where the string ends (the last member needs none).
    let mut body = Vec::new();
    for v in [uid, gid, mode, 0] {
        body.extend_from_slice(&v.to_be_bytes());
    }
    body.extend_from_slice(symlink_target);
    body.push(0);
    let string_end = body.len();
    body.extend(array);
    let variant = framed(body, &[string_end]);
    let mut header = (variant.len() as u32).to_be_bytes().to_vec();
    header.extend_from_slice(&[0; 4]);
    header.extend(variant);
    header
}

/// The extended attributes of `path` itself (a symlink's own, not its target's).
fn xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let path = CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
    // SAFETY: each call gets a buffer of the length it is told, or a null buffer with length 0
    // (the size query); `path` and the names are NUL-terminated and outlive the calls.
    let list =
        |buf: *mut libc::c_char, len: usize| unsafe { libc::llistxattr(path.as_ptr(), buf, len) };
    let get = |name: &CString, buf: *mut libc::c_void, len: usize| unsafe {
        libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf, len)
    };
    let n = list(std::ptr::null_mut(), 0);
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(vec![]),
            _ => Err(e),
        };
    }
    let mut names = vec![0u8; n as usize];
    let n = list(names.as_mut_ptr().cast(), names.len());
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).expect("xattr names hold no NUL");
        let len = get(&cname, std::ptr::null_mut(), 0);
        if len < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut value = vec![0u8; len as usize];
        let len = get(&cname, value.as_mut_ptr().cast(), value.len());
        if len < 0 {
            return Err(std::io::Error::last_os_error());
        }
        value.truncate(len as usize);
        out.push((name.to_vec(), value));
    }
    Ok(out)
}

/// The SHA-256 of one object, and how many bytes were read. `stop` is looked at between reads.
fn checksum(o: &Object, stop: &AtomicBool) -> Result<(String, u64), CheckError> {
    let io = |source| CheckError::Io {
        path: o.path.clone(),
        source,
    };
    let mut h = Sha256::new();
    let mut read = 0u64;
    let mut hash_all = |h: &mut Sha256, f: &mut std::fs::File| -> Result<(), CheckError> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(CheckError::Stopped);
            }
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                return Ok(());
            }
            h.update(&buf[..n]);
            read += n as u64;
        }
    };
    match o.kind {
        Kind::Meta => {
            let mut f = std::fs::File::open(&o.path).map_err(io)?;
            hash_all(&mut h, &mut f)?;
        }
        Kind::Content => {
            let meta = std::fs::symlink_metadata(&o.path).map_err(io)?;
            let target = if meta.file_type().is_symlink() {
                std::fs::read_link(&o.path).map_err(io)?
            } else {
                PathBuf::new()
            };
            let xa = xattrs(&o.path).map_err(io)?;
            let header = file_header(
                meta.uid(),
                meta.gid(),
                meta.mode(),
                target.as_os_str().as_bytes(),
                &xa,
            );
            h.update(header);
            if !meta.file_type().is_symlink() {
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&o.path)
                    .map_err(io)?;
                hash_all(&mut h, &mut f)?;
            }
        }
    }
    Ok((hex::encode(h.finalize()), read))
}

/// Check every object of the bare repository `repo` on `threads` threads; the first mismatch
/// (or `stop`) ends it.
pub fn check_repo(repo: &Path, threads: usize, stop: &AtomicBool) -> Result<Checked, CheckError> {
    check_objects(list(repo)?, threads, stop, None)
}

/// Whether the object `checksum` of kind `ext` (`file`, `dirtree`, …) in `repo` matches its
/// name (a copy that did not match is told from a damaged source this way).
pub fn object_matches(repo: &Path, checksum: &str, ext: &str) -> Result<bool, CheckError> {
    let Some(kind) = Kind::of(ext) else {
        return Ok(false);
    };
    let o = Object {
        path: repo
            .join("objects")
            .join(checksum.get(..2).unwrap_or_default())
            .join(format!("{}.{ext}", checksum.get(2..).unwrap_or_default())),
        checksum: checksum.to_string(),
        kind,
    };
    Ok(self::checksum(&o, &AtomicBool::new(false))?.0 == checksum)
}

/// Check the metadata objects (`.commit`, `.dirtree`, `.dirmeta`) of `repo`: small files, a
/// few thousand per commit, read in well under a second.
pub fn check_metadata(repo: &Path) -> Result<Checked, CheckError> {
    let mut objects = list(repo)?;
    objects.retain(|o| o.kind == Kind::Meta);
    check_objects(objects, 2, &AtomicBool::new(false), None)
}

fn check_objects(
    objects: Vec<Object>,
    threads: usize,
    stop: &AtomicBool,
    idle: Option<&IdleUntilAwaited>,
) -> Result<Checked, CheckError> {
    let next = AtomicUsize::new(0);
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Result<(), CheckError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<(), CheckError> {
                    if let Some(idle) = idle {
                        idle.enter();
                    }
                    loop {
                        if failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(o) = objects.get(i) else {
                            return Ok(());
                        };
                        let r = checksum(o, stop).and_then(|(actual, n)| {
                            bytes.fetch_add(n, Ordering::Relaxed);
                            if actual == o.checksum {
                                Ok(())
                            } else {
                                let ext = o.path.extension().unwrap_or_default();
                                Err(CheckError::Mismatch {
                                    kind: ext.to_string_lossy().into_owned(),
                                    expected: o.checksum.clone(),
                                    actual,
                                })
                            }
                        });
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                            return r;
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(Err(CheckError::Panicked)))
            .collect()
    });
    // A mismatch says more than the stop it caused in another thread.
    let mut errs: Vec<CheckError> = results.into_iter().filter_map(Result::err).collect();
    errs.sort_by_key(|e| !matches!(e, CheckError::Mismatch { .. }));
    match errs.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(Checked {
            objects: objects.len(),
            bytes: bytes.into_inner(),
        }),
    }
}

/// Threads that run only on a core nothing else wants (`SCHED_IDLE`) until someone waits for
/// them ([`Self::awaited`]), then as any other thread. A disk's object check runs beside its
/// deploy: at the same priority its two threads took the deploy's core half the time.
#[derive(Default)]
struct IdleUntilAwaited {
    /// Whether [`Self::awaited`] ran, and the threads that entered before it.
    state: std::sync::Mutex<(bool, Vec<libc::pid_t>)>,
}

impl IdleUntilAwaited {
    /// The calling thread joins (idle, unless it is awaited already).
    fn enter(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.0 {
            // SAFETY: gettid has no arguments and cannot fail.
            let tid = unsafe { libc::gettid() };
            // A failure leaves the thread at normal priority: slower beside the deploy, still
            // correct.
            set_policy(tid, libc::SCHED_IDLE);
            state.1.push(tid);
        }
    }

    /// Someone waits: every thread that entered runs at normal priority from now on.
    fn awaited(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = true;
        for tid in std::mem::take(&mut state.1) {
            // A thread that has ended already makes this fail (ESRCH): nothing to raise.
            set_policy(tid, libc::SCHED_OTHER);
        }
    }
}

/// `sched_setscheduler(tid, policy)` with priority 0 (the only one both policies take); its
/// callers say why a failure is harmless.
fn set_policy(tid: libc::pid_t, policy: libc::c_int) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the duration of the call.
    unsafe { libc::sched_setscheduler(tid, policy, &param) };
}

/// A [`check_repo`] running on its own threads while the caller goes on (a disk's deploy), on
/// cores the caller leaves idle until [`Check::finish`] waits for it. Dropping it unfinished
/// stops it and waits for its threads, so it never reads a file system that is being
/// unmounted.
pub struct Check {
    idle: Arc<IdleUntilAwaited>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    result: Option<tokio::sync::oneshot::Receiver<Result<Checked, CheckError>>>,
}

impl Check {
    /// Start checking `repo` on every core.
    pub fn start(repo: &Path) -> Check {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let idle = Arc::new(IdleUntilAwaited::default());
        let (repo, flag, idle_) = (repo.to_path_buf(), stop.clone(), idle.clone());
        let thread = std::thread::spawn(move || {
            let r = list(&repo).and_then(|o| check_objects(o, threads, &flag, Some(&idle_)));
            let _ = tx.send(r);
        });
        Check {
            idle,
            stop,
            thread: Some(thread),
            result: Some(rx),
        }
    }

    /// Wait for the result (the check's threads at normal priority from now on).
    pub async fn finish(mut self) -> Result<Checked, CheckError> {
        self.idle.awaited();
        let rx = self.result.take().expect("finish runs once");
        let r = rx.await.unwrap_or(Err(CheckError::Stopped));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        r
    }
}

impl Drop for Check {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Idle threads on a busy machine would see the stop late.
        self.idle.awaited();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that enters runs at `SCHED_IDLE` until `awaited`, then at `SCHED_OTHER`; one
    /// that enters after `awaited` is never made idle.
    #[test]
    fn threads_are_idle_until_awaited() {
        // SAFETY: sched_getscheduler(0) asks about the calling thread.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let idle = IdleUntilAwaited::default();
        std::thread::scope(|s| {
            // Inside the scope: a failed assert drops `go_tx`, so the thread ends, not hangs.
            let (entered_tx, entered_rx) = std::sync::mpsc::channel();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let idle = &idle;
            let t = s.spawn(move || {
                idle.enter();
                entered_tx.send(policy()).unwrap();
                go_rx.recv().unwrap();
                policy()
            });
            assert_eq!(entered_rx.recv().unwrap(), libc::SCHED_IDLE);
            idle.awaited();
            go_tx.send(()).unwrap();
            assert_eq!(t.join().unwrap(), libc::SCHED_OTHER);
            let late = s.spawn(move || {
                idle.enter();
                policy()
            });
            assert_eq!(late.join().unwrap(), libc::SCHED_OTHER);
        });
    }

    /// The header of a plain root-owned 0644 file with no xattrs: length 18, four NULs, uid 0,
    /// gid 0, mode 0o100644 and rdev 0 (each big-endian), an empty string (its NUL), an empty
    /// array (no bytes), then where the string ends (17).
    #[test]
    fn header_of_a_plain_file() {
        let h = file_header(0, 0, 0o100644, b"", &[]);
        let mut want = vec![0, 0, 0, 18, 0, 0, 0, 0];
        want.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0xa4, 0, 0, 0, 0]);
        want.extend([0, 17]);
        assert_eq!(h, want);
    }

    #[test]
    fn xattrs_are_sorted_and_framed() {
        let a = file_header(
            0,
            0,
            0o100755,
            b"",
            &[
                (b"user.b".to_vec(), b"2".to_vec()),
                (b"security.capability".to_vec(), vec![1, 0, 0, 2]),
            ],
        );
        let b = file_header(
            0,
            0,
            0o100755,
            b"",
            &[
                (b"security.capability".to_vec(), vec![1, 0, 0, 2]),
                (b"user.b".to_vec(), b"2".to_vec()),
            ],
        );
        assert_eq!(a, b, "the order of listxattr does not matter");
        // The first element: name + NUL + value, then the end of the name (20).
        let body = &a[8..];
        let first = b"security.capability\0\x01\0\0\x02\x14";
        assert_eq!(&body[17..17 + first.len()], first);
    }
}
