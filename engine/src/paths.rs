//! Where bootlab keeps its cache, state and data.
//!
//! XDG directories by default; `BOOTLAB_HOME` overrides all three at once (tests set it to
//! isolate themselves, and a presenter can keep a demo's artifacts apart).

use std::path::{Path, PathBuf};

/// The one environment variable that relocates everything bootlab writes.
pub const HOME_ENV: &str = "BOOTLAB_HOME";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Rebuildable artifacts: base rootfs, podman exports, OSTree repo, golden disks.
    pub cache: PathBuf,
    /// Live state: VM records and sockets, lab progress, probe results.
    pub state: PathBuf,
    /// Things a member made and wants to keep: keys, saved reports.
    pub data: PathBuf,
}

impl Paths {
    /// Resolve from the environment: `BOOTLAB_HOME`, else XDG variables, else `~/.cache` etc.
    pub fn from_env() -> Paths {
        if let Some(home) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Paths::under(Path::new(&home));
        }
        let user_home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| user_home.join(fallback))
                .join("bootlab")
        };
        Paths {
            cache: xdg("XDG_CACHE_HOME", ".cache"),
            state: xdg("XDG_STATE_HOME", ".local/state"),
            data: xdg("XDG_DATA_HOME", ".local/share"),
        }
    }

    /// All three under one folder.
    pub fn under(root: &Path) -> Paths {
        Paths {
            cache: root.join("cache"),
            state: root.join("state"),
            data: root.join("data"),
        }
    }

    /// Host OSTree repo holding one branch per recipe.
    pub fn ostree_repo(&self) -> PathBuf {
        self.cache.join("ostree/repo")
    }
    /// Folder shared read-only into guests; holds an archive repo the guests pull from.
    pub fn update_share(&self) -> PathBuf {
        self.cache.join("updates")
    }
    pub fn disks(&self) -> PathBuf {
        self.cache.join("disks")
    }
    pub fn base(&self) -> PathBuf {
        self.cache.join("base")
    }
    pub fn vms(&self) -> PathBuf {
        self.state.join("vms")
    }
    pub fn lab_progress(&self) -> PathBuf {
        self.state.join("labs")
    }
    pub fn probes(&self) -> PathBuf {
        self.state.join("probes")
    }

    /// Create the three folders. State (sockets, records, trust) and data (keys) are private
    /// to their owner (0700): other users of the host must not read or reach them.
    pub fn ensure(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.cache)?;
        create_private_dir(&self.state)?;
        create_private_dir(&self.data)?;
        Ok(())
    }
}

/// Where the recipes and labs shipped with bootlab live. `BOOTLAB_ASSETS` overrides; otherwise
/// see [`shipped_root`].
pub fn assets_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("BOOTLAB_ASSETS").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    shipped_root().join("assets")
}

pub fn recipes_dir() -> PathBuf {
    assets_dir().join("recipes")
}

pub fn labs_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("BOOTLAB_LABS").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    shipped_root().join("labs")
}

/// The learner's own recipes: `BOOTLAB_USER_RECIPES` (`--recipes DIR`), else `<data>/recipes`.
pub fn user_recipes_dir() -> PathBuf {
    std::env::var_os("BOOTLAB_USER_RECIPES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Paths::from_env().data.join("recipes"))
}

/// The learner's own labs: `BOOTLAB_USER_LABS` (`--labs DIR`), else `<data>/labs`.
pub fn user_labs_dir() -> PathBuf {
    std::env::var_os("BOOTLAB_USER_LABS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Paths::from_env().data.join("labs"))
}

/// The shipped recipes (`assets/`) and labs (`labs/`), compiled into the binary.
static EMBEDDED_ASSETS: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../assets");
static EMBEDDED_LABS: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../labs");

/// The folder holding `assets/` and `labs/`. A binary that runs from inside the source tree it
/// was built from (`cargo run`, `target/debug/bootlab`, the tests) reads that tree, so edits show
/// at once; any other (`cargo install`, a copied binary) uses the copy compiled into it,
/// unpacked once per content into `<cache>/shipped/<hash>/`.
pub fn shipped_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let src = source_root();
        let from_tree = std::env::current_exe()
            .ok()
            .and_then(|e| e.canonicalize().ok())
            .zip(src.canonicalize().ok())
            .is_some_and(|(exe, src)| exe.starts_with(src))
            && src.join("assets").is_dir();
        if from_tree {
            return src;
        }
        let dest = Paths::from_env()
            .cache
            .join("shipped")
            .join(embedded_hash());
        if let Err(e) = unpack_embedded(&dest) {
            // Every later read names the missing folder; say why once.
            eprintln!(
                "bootlab: cannot unpack the shipped recipes and labs to {}: {e:#}",
                dest.display()
            );
        }
        dest
    })
    .clone()
}

/// Short content hash of everything embedded: a new bootlab unpacks beside an old one.
pub fn embedded_hash() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (top, dir) in [("assets", &EMBEDDED_ASSETS), ("labs", &EMBEDDED_LABS)] {
        for f in embedded_files(dir) {
            h.update(top);
            h.update(f.path().to_string_lossy().as_bytes());
            h.update([0]);
            h.update(f.contents());
            h.update([0]);
        }
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// Every embedded file under `dir`, in path order.
pub fn embedded_files(
    dir: &'static include_dir::Dir<'static>,
) -> Vec<&'static include_dir::File<'static>> {
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        out.extend(d.files());
        stack.extend(d.dirs());
    }
    out.sort_by_key(|f| f.path());
    out
}

/// The embedded trees as (relative path under the shipped root, bytes), for tests and tools.
pub fn embedded() -> Vec<(PathBuf, &'static [u8])> {
    let mut v = Vec::new();
    for (top, dir) in [("assets", &EMBEDDED_ASSETS), ("labs", &EMBEDDED_LABS)] {
        for f in embedded_files(dir) {
            v.push((Path::new(top).join(f.path()), f.contents()));
        }
    }
    v
}

/// Write the embedded trees to `dest` unless already there: into a temp folder beside it, then
/// one rename, so a crash never leaves a half-unpacked copy in use.
pub fn unpack_embedded(dest: &Path) -> std::io::Result<()> {
    if dest.join("assets").is_dir() && dest.join("labs").is_dir() {
        return Ok(());
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(parent)?;
    for (rel, bytes) in embedded() {
        let p = tmp.path().join(&rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        // Plain 0644 files, as git checks them out: an image built from the unpacked copy is
        // the same as one built from a clone.
        std::fs::write(&p, bytes)?;
    }
    let tmp = tmp.keep();
    match std::fs::rename(&tmp, dest) {
        Ok(()) => Ok(()),
        // Another bootlab unpacked the same content first: theirs is as good as ours.
        Err(_) if dest.join("assets").is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// The repository this engine was built from (the engine crate lives in its `engine/` folder).
fn source_root() -> PathBuf {
    let engine = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    engine.parent().map(PathBuf::from).unwrap_or(engine)
}

/// Create `dir` (and its parents) and make it 0700, also when it already existed.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Write `bytes` to `dest` atomically: a temp file beside it, fsync, rename. A crash never leaves
/// a half-written file where a good one was.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// [`write_atomic`] for a file others read too (a workflow to commit): mode 0644, set on the
/// temp file before the rename, instead of the temp file's private 0600.
pub fn write_atomic_shared(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_puts_everything_below_one_root() {
        let p = Paths::under(Path::new("/x"));
        assert_eq!(p.cache, PathBuf::from("/x/cache"));
        assert_eq!(p.ostree_repo(), PathBuf::from("/x/cache/ostree/repo"));
        assert_eq!(p.vms(), PathBuf::from("/x/state/vms"));
    }

    #[test]
    fn write_atomic_replaces_whole_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a/b.txt");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path().join("a")).unwrap().count(), 1);
    }
}
