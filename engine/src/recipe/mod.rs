//! Recipes: a Containerfile plus a little metadata (`recipe.toml`) in `assets/recipes/<name>/`.
//!
//! A recipe names its family (the offline `debian-ostree` pipeline, or real `bootc`), its base
//! image, the versions an upgrade drill moves between, and what the guest offers.

pub mod lint;
pub mod scaffold;

use crate::diag::FileError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a recipe becomes a bootable system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Offline: Debian packages only, committed to OSTree by bootlab, booted with extlinux.
    DebianOstree,
    /// Real bootc images (Fedora/CentOS), disks via bootc-image-builder or `bootc install`.
    Bootc,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::DebianOstree => "debian-ostree",
            Family::Bootc => "bootc",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One version a drill can move to: build args or a Containerfile target select it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub id: String,
    /// One line: what this version changes compared with the one before.
    pub changes: String,
    /// Extra `--build-arg`s (bootlab always passes `BOOTLAB_VERSION=<id>` too).
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// A Containerfile stage to build (`--target`).
    #[serde(default)]
    pub target: Option<String>,
}

/// What a booted guest of this recipe offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Guest {
    /// qemu-guest-agent runs in the guest (bootlab drives it through QMP/QGA).
    #[serde(default)]
    pub agent: bool,
    /// sshd runs in the guest (port forwarded on 127.0.0.1 only).
    #[serde(default)]
    pub ssh: bool,
    /// A console login with a known password. Shown everywhere as a warning label: such a
    /// VM is for labs only.
    #[serde(default)]
    pub known_password: Option<Login>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// `recipe.toml` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    pub name: String,
    pub title: String,
    pub summary: String,
    pub family: Family,
    /// The image the Containerfile starts `FROM`.
    pub base: String,
    #[serde(default = "default_containerfile")]
    pub containerfile: String,
    /// Version built when none is asked for; the first one when absent.
    #[serde(default)]
    pub default_version: Option<String>,
    #[serde(default)]
    pub guest: Guest,
    pub versions: Vec<Version>,
}

fn default_containerfile() -> String {
    "Containerfile".into()
}

/// A loaded, validated recipe and where it lives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recipe {
    #[serde(flatten)]
    pub file: RecipeFile,
    pub dir: PathBuf,
    /// Shipped with bootlab, or the learner's own (set by [`all`]).
    pub origin: Origin,
}

impl Recipe {
    pub fn name(&self) -> &str {
        &self.file.name
    }
    pub fn containerfile_path(&self) -> PathBuf {
        self.dir.join(&self.file.containerfile)
    }
    pub fn default_version(&self) -> &Version {
        self.file
            .default_version
            .as_deref()
            .and_then(|v| self.version(v))
            .unwrap_or(&self.file.versions[0])
    }
    pub fn version(&self, id: &str) -> Option<&Version> {
        self.file.versions.iter().find(|v| v.id == id)
    }
    /// The version asked for, or the default; an unknown id is an error listing the known ones.
    pub fn resolve_version(&self, id: Option<&str>) -> anyhow::Result<&Version> {
        match id {
            None => Ok(self.default_version()),
            Some(id) => self.version(id).ok_or_else(|| {
                anyhow::anyhow!(
                    "recipe {} has no version {id:?} (it has: {})",
                    self.name(),
                    self.version_ids().join(", ")
                )
            }),
        }
    }
    /// A VM of this recipe has a login everybody knows: label it "lab use only" everywhere.
    pub fn lab_use_only(&self) -> bool {
        self.file.guest.known_password.is_some()
    }
    pub fn version_ids(&self) -> Vec<&str> {
        self.file.versions.iter().map(|v| v.id.as_str()).collect()
    }
    /// The version id a deployment's `version` metadata names (`v2`, `debian-minimal v2`), if any.
    pub fn version_named_by(&self, meta: &str) -> Option<&str> {
        self.version_ids()
            .into_iter()
            .find(|id| crate::drill::version_matches(meta, id))
    }
    /// The version after `id`, for an upgrade drill.
    pub fn next_version(&self, id: &str) -> Option<&Version> {
        let i = self.file.versions.iter().position(|v| v.id == id)?;
        self.file.versions.get(i + 1)
    }
    /// Tag of the built image: `localhost/bootlab/<recipe>:<version>`.
    pub fn image_tag(&self, version: &str) -> String {
        image_tag_of(self.name(), version)
    }

    /// Load and validate `dir/recipe.toml`.
    pub fn load(dir: &Path) -> Result<Recipe, FileError> {
        let path = dir.join("recipe.toml");
        let src = std::fs::read_to_string(&path)
            .map_err(|e| FileError::at(&path, "", None, format!("cannot read: {e}")))?;
        let file: RecipeFile =
            toml::from_str(&src).map_err(|e| FileError::from_toml(&path, &src, &e))?;
        // Semantic errors point at the line that sets the key.
        let span_of = |key: &str| find_key_span(&src, key);
        let err = |key: &str, msg: String| FileError::at(&path, &src, span_of(key), msg);

        let dirname = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file.name != dirname {
            return Err(err(
                "name",
                format!(
                    "name {:?} must match the folder name {dirname:?}",
                    file.name
                ),
            ));
        }
        if file.versions.is_empty() {
            return Err(err(
                "versions",
                "a recipe needs at least one [[versions]] entry".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &file.versions {
            if !seen.insert(v.id.as_str()) {
                return Err(FileError::at(
                    &path,
                    &src,
                    find_value_span(&src, "id", &v.id),
                    format!("duplicate version id {:?}", v.id),
                ));
            }
        }
        if let Some(d) = &file.default_version
            && !seen.contains(d.as_str())
        {
            return Err(err(
                "default_version",
                format!("default_version {d:?} is not one of the versions"),
            ));
        }
        if !dir.join(&file.containerfile).is_file() {
            return Err(err(
                "containerfile",
                format!("{} does not exist in {}", file.containerfile, dir.display()),
            ));
        }
        let cf = dir.join(&file.containerfile);
        let cf_src = std::fs::read_to_string(&cf)
            .map_err(|e| FileError::at(&cf, "", None, format!("cannot read: {e}")))?;
        match containerfile_from(&cf_src) {
            Some((image, span)) if image != file.base => {
                return Err(FileError::at(
                    &cf,
                    &cf_src,
                    Some(span),
                    format!(
                        "FROM {image} differs from base = {:?} in recipe.toml",
                        file.base
                    ),
                ));
            }
            Some(_) => {}
            None => {
                return Err(FileError::at(&cf, &cf_src, None, "no FROM line"));
            }
        }
        Ok(Recipe {
            file,
            dir: dir.to_path_buf(),
            origin: Origin::Shipped,
        })
    }
}

/// The image of the first `FROM` instruction and its byte span (`FROM --platform=… IMG AS x`).
pub fn containerfile_from(src: &str) -> Option<(String, std::ops::Range<usize>)> {
    let mut off = 0;
    for line in src.split_inclusive('\n') {
        let t = line.trim_start();
        // Compare bytes: a line may start with a multi-byte character, where `t[..5]` would
        // split it. Once they match, byte 5 follows five ASCII bytes and is a char boundary.
        if t.len() > 5 && t.as_bytes()[..5].eq_ignore_ascii_case(b"FROM ") {
            let lead = off + (line.len() - t.len());
            let mut pos = 5;
            for word in t[5..].split_whitespace() {
                let at = t[pos..].find(word).map(|i| pos + i).unwrap_or(pos);
                pos = at + word.len();
                if !word.starts_with("--") {
                    return Some((word.to_string(), lead + at..lead + pos));
                }
            }
        }
        off += line.len();
    }
    None
}

/// Byte span of the first line that sets `key = …` (top level or in a table).
fn find_key_span(src: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut off = 0;
    for line in src.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=')
            || t.starts_with(&format!("[[{key}]]"))
        {
            let start = off + (line.len() - t.len());
            return Some(start..start + key.len());
        }
        off += line.len();
    }
    None
}

/// Byte span of the last `key = "value"` line (used for duplicates: the second one is the culprit).
fn find_value_span(src: &str, key: &str, value: &str) -> Option<std::ops::Range<usize>> {
    let mut off = 0;
    let mut found = None;
    for line in src.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with(key) && t.contains(&format!("\"{value}\"")) {
            let start = off + (line.len() - t.len());
            found = Some(start..start + key.len());
        }
        off += line.len();
    }
    found
}

/// Every recipe in `dir` (one folder each), sorted by name. The first broken one is an error.
pub fn load_all(dir: &Path) -> Result<Vec<Recipe>, FileError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| FileError::at(dir, "", None, format!("cannot read recipes folder: {e}")))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("recipe.toml").is_file())
        .collect();
    dirs.sort();
    for d in dirs {
        out.push(Recipe::load(&d)?);
    }
    Ok(out)
}

/// The shipped recipes.
pub fn shipped() -> Result<Vec<Recipe>, FileError> {
    load_all(&crate::paths::recipes_dir())
}

/// Where a recipe comes from: shipped with bootlab, or the learner's own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Shipped,
    Yours,
}

/// The shipped recipes, then the learner's own ([`crate::paths::user_recipes_dir`]). A recipe of
/// theirs may not take a shipped recipe's name: labs and drills find recipes by name.
pub fn all() -> Result<Vec<Recipe>, FileError> {
    let mut out = shipped()?;
    let user = crate::paths::user_recipes_dir();
    if user.is_dir() {
        for mut r in load_all(&user)? {
            r.origin = Origin::Yours;
            if out.iter().any(|s| s.name() == r.name()) {
                let path = r.dir.join("recipe.toml");
                let src = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(FileError::at(
                    &path,
                    &src,
                    find_key_span(&src, "name"),
                    format!(
                        "a shipped recipe is already named {:?}: rename this one (folder and name)",
                        r.name()
                    ),
                ));
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// Find a recipe (shipped or yours) by name, with a helpful error listing the others.
pub fn find(name: &str) -> anyhow::Result<Recipe> {
    let all = all()?;
    let names: Vec<String> = all.iter().map(|r| r.name().to_string()).collect();
    all.into_iter()
        .find(|r| r.name() == name)
        .ok_or_else(|| anyhow::anyhow!("no recipe named {name:?} (known: {})", names.join(", ")))
}

/// The recipe the README's first command and the starter labs use.
pub const DEFAULT_RECIPE: &str = "debian-minimal";

/// The podman tag of `version` of the recipe named `recipe`.
pub fn image_tag_of(recipe: &str, version: &str) -> String {
    format!("localhost/bootlab/{recipe}:{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_recipe(root: &Path, name: &str, toml_src: &str) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("recipe.toml"), toml_src).unwrap();
        std::fs::write(
            d.join("Containerfile"),
            "FROM localhost/bootlab/debian-ostree-base:trixie\n",
        )
        .unwrap();
        d
    }

    const GOOD: &str = r#"name = "r1"
title = "R one"
summary = "s"
family = "debian-ostree"
base = "localhost/bootlab/debian-ostree-base:trixie"

[[versions]]
id = "v1"
changes = "first"

[[versions]]
id = "v2"
changes = "second"
build_args = { EXTRA = "tree" }
"#;

    #[test]
    fn loads_and_resolves_versions() {
        let t = tempfile::tempdir().unwrap();
        let r = Recipe::load(&write_recipe(t.path(), "r1", GOOD)).unwrap();
        assert_eq!(r.default_version().id, "v1");
        assert_eq!(r.next_version("v1").unwrap().id, "v2");
        assert!(r.next_version("v2").is_none());
        assert_eq!(r.image_tag("v2"), "localhost/bootlab/r1:v2");
        let e = r.resolve_version(Some("v9")).unwrap_err().to_string();
        assert!(e.contains("v1, v2"), "{e}");
    }

    #[test]
    fn duplicate_version_names_its_line() {
        let t = tempfile::tempdir().unwrap();
        let src = GOOD.replace("id = \"v2\"", "id = \"v1\"");
        let e = Recipe::load(&write_recipe(t.path(), "r1", &src)).unwrap_err();
        assert_eq!(e.line, 12, "{e}");
        assert!(e.message.contains("duplicate version id"), "{e}");
    }

    #[test]
    fn unknown_field_names_its_line() {
        let t = tempfile::tempdir().unwrap();
        let src = GOOD.replace("summary = \"s\"", "summary = \"s\"\ncolour = \"red\"");
        let e = Recipe::load(&write_recipe(t.path(), "r1", &src)).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn containerfile_from_finds_the_image() {
        let src = "# c\nARG X=1\nFROM --platform=linux/amd64 quay.io/a/b:1 AS build\nRUN true\n";
        let (img, span) = containerfile_from(src).unwrap();
        assert_eq!(img, "quay.io/a/b:1");
        assert_eq!(&src[span.clone()], "quay.io/a/b:1");
        assert_eq!(crate::diag::line_col(src, span.start), (3, 29));
        assert!(containerfile_from("RUN x\n").is_none());
        // A line whose fifth byte is inside a multi-byte character (found by the property test).
        assert!(containerfile_from("FRO\u{e9}x img\nabcd\u{20ac}\n").is_none());
    }

    #[test]
    fn from_must_match_base() {
        let t = tempfile::tempdir().unwrap();
        let d = write_recipe(t.path(), "r1", GOOD);
        std::fs::write(d.join("Containerfile"), "# x\nFROM localhost/other:1\n").unwrap();
        let e = Recipe::load(&d).unwrap_err();
        assert_eq!((e.line, e.column), (2, 6), "{e}");
        assert!(e.path.ends_with("Containerfile"), "{e}");
        assert!(e.message.contains("differs from base"), "{e}");
    }

    #[test]
    fn name_must_match_folder() {
        let t = tempfile::tempdir().unwrap();
        let e = Recipe::load(&write_recipe(t.path(), "other", GOOD)).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("folder name"), "{e}");
    }
}
