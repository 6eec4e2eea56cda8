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

/// Where the recipes and labs shipped with bootlab live. `BOOTLAB_ASSETS` overrides; otherwise the
/// source tree this binary was built from (the README runs bootlab from its clone).
pub fn assets_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("BOOTLAB_ASSETS").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    source_root().join("assets")
}

pub fn recipes_dir() -> PathBuf {
    assets_dir().join("recipes")
}

pub fn labs_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("BOOTLAB_LABS").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    source_root().join("labs")
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
