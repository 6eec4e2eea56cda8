//! `bootlab recipe new NAME [--from RECIPE]`: a learner's own recipe, in their recipes folder
//! ([`crate::paths::user_recipes_dir`]), ready to build. Without `--from` it is a small
//! offline-family image whose Containerfile teaches what each line is for; with `--from` it is a
//! copy of another recipe under the new name.

use super::{Recipe, all};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// Recipe names become folder names, image tags and VM names: keep them plain.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "recipe name {name:?}: use 1–40 lowercase letters, digits and '-', starting with a letter (it names a folder, an image tag and a VM)"
        );
    }
    Ok(())
}

/// Make the recipe `name` in `dir` (normally the user recipes folder) and load it back, so a
/// mistake in what was written shows as `file:line:col` at once.
pub fn create(dir: &Path, name: &str, from: Option<&Recipe>) -> Result<Recipe> {
    check_name(name)?;
    if let Some(r) = all()?.iter().find(|r| r.name() == name) {
        bail!(
            "a recipe named {name:?} already exists ({}); pick another name",
            r.dir.display()
        );
    }
    let dest = dir.join(name);
    if dest.exists() {
        bail!("{} already exists", dest.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written in a temp folder and renamed whole: a half-written recipe never shows up.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempdir_in(dir)?;
    match from {
        Some(r) => copy_recipe(r, tmp.path(), name)?,
        None => {
            std::fs::write(tmp.path().join("recipe.toml"), recipe_toml(name))?;
            std::fs::write(tmp.path().join("Containerfile"), containerfile(name))?;
            std::fs::write(
                tmp.path().join("motd"),
                format!("Welcome to {name}, your own image-based Debian.\n"),
            )?;
        }
    }
    std::fs::rename(tmp.keep(), &dest)
        .with_context(|| format!("moving the new recipe to {}", dest.display()))?;
    Recipe::load(&dest).map_err(anyhow::Error::from)
}

fn copy_recipe(r: &Recipe, to: &Path, name: &str) -> Result<()> {
    copy_dir(&r.dir, to)?;
    // The name must match the folder; the rest of recipe.toml stays as it was.
    let toml_path = to.join("recipe.toml");
    let src = std::fs::read_to_string(&toml_path)?;
    let old = format!("name = \"{}\"", r.name());
    if !src.contains(&old) {
        bail!(
            "{}: expected a line `{old}` to rename",
            r.dir.join("recipe.toml").display()
        );
    }
    let src = src.replacen(&old, &format!("name = \"{name}\""), 1);
    let src = src.replacen(
        "title = \"",
        &format!("title = \"{name} (from {}): ", r.name()),
        1,
    );
    std::fs::write(&toml_path, src)?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()))?;
        } else {
            std::fs::copy(&p, to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn recipe_toml(name: &str) -> String {
    format!(
        r#"# Your recipe: what bootlab needs to know besides the Containerfile.
name = "{name}"
title = "{name}: my own image"
summary = "My own image-based Debian, built offline from the Debian base."
# debian-ostree: built with podman, committed to OSTree, booted from a bootlab disk (offline).
family = "debian-ostree"
base = "localhost/bootlab/debian-ostree-base:trixie"
default_version = "v1"

[guest]
# The guest agent is how bootlab (and labs) run commands in the VM.
agent = true
ssh = false
# The Debian base's console login: fine for a lab VM, never for a real machine.
known_password = {{ user = "root", password = "bootlab" }}

# Each version is one build of the same Containerfile with BOOTLAB_VERSION set to its id.
# Add a v2 when you change something, and say what changes: upgrade drills show it.
[[versions]]
id = "v1"
changes = "the Debian base, a version file and my own login banner"
"#
    )
}

fn containerfile(name: &str) -> String {
    format!(
        r#"# {name}: your own image. Each instruction is one layer; bootlab turns the image into an
# OSTree commit and then a bootable disk, so what is written here is the whole OS.

# FROM: what you build on. This base is Debian 13 (trixie) made by `bootlab image base` with
# mmdebstrap: kernel, systemd, OSTree from testing (composefs) and the guest agent, no container
# registry needed.
FROM localhost/bootlab/debian-ostree-base:trixie

# ARG: bootlab passes the version it builds (v1, v2, …): one file describes every version.
ARG BOOTLAB_VERSION=v1

# RUN: a command at build time. Everything under /usr is the image: read-only on the running
# system and replaced whole by each upgrade. Drills read this file to see which version booted.
RUN mkdir -p /usr/share/bootlab && echo "${{BOOTLAB_VERSION}}" > /usr/share/bootlab/version

# COPY: a file from this folder. What the image puts in /etc is only the default: on the
# machine /etc is merged per file at each upgrade, and a file changed there is kept whole.
COPY motd /etc/motd

# Packages: the build can reach Debian's mirror (no registry). Clean up in the same layer.
# RUN apt-get update && apt-get install -y --no-install-recommends htop \
#  && apt-get clean && rm -rf /var/lib/apt/lists/*

# /var is the machine's own state: a deployed system gets it once and upgrades never touch it.
# Declare the folders a service needs with tmpfiles.d instead of shipping them in /var:
# RUN echo "d /var/lib/myapp 0755 root root -" > /usr/lib/tmpfiles.d/myapp.conf
"#
    )
}

/// Where `recipe new` writes by default.
pub fn default_dir() -> PathBuf {
    crate::paths::user_recipes_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", "My", "1abc", "a b", "a/b", "ä", &"x".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["mine", "my-web-2"] {
            check_name(good).unwrap();
        }
    }
}
