//! composefs, made visible: per deployment, what `prepare-root.conf` asks for, whether the booted
//! root really is a composefs mount, whether fs-verity was enforced when it was mounted, and the
//! composefs digest (the fs-verity digest of the deployment's `.ostree.cfs` image).
//!
//! Where the facts live (measured in a debian-bootc guest, ostree 2026.4, bootc 1.16.9):
//! - `findmnt -J /` of a composefs root: source `composefs`, fstype `overlay`, options with
//!   `datadir+=/sysroot/ostree/repo/objects` (the file contents come from the ostree repository).
//! - `/run/ostree-booted`: a GVariant `a{sv}` ostree-prepare-root writes in the initramfs, with
//!   booleans `composefs` and `composefs.verity` (what it really did at this boot).
//! - `<deployment dir>/.ostree.cfs`: the composefs image of the deployment. A commit made by
//!   `ostree-container` (bootc) carries no `ostree.composefs.digest.v0` metadata, so the digest
//!   is computed here from the image bytes, the way the kernel's fs-verity would measure it.
//! - `prepare-root.conf` in the deployment (`/etc/ostree` first, then `/usr/lib/ostree`): the
//!   copy that counts at boot is the one in the initramfs (`pipeline/initramfs/make.sh` copies
//!   `/usr/lib/ostree/prepare-root.conf` and `/etc/ostree/prepare-root.conf` into it).

use super::{Deployment, StatusParseError};
use crate::drill::ops::GuestOps;
use anyhow::{Context, Result};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `[composefs] enabled = …` in `prepare-root.conf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No composefs (no config, `enabled = false`/`no`, or an ostree without composefs).
    Off,
    /// `maybe`: composefs when the deployment has an image, a plain bind mount otherwise.
    Maybe,
    /// `true`/`yes`: composefs required, file contents not verified (no fs-verity).
    On,
    /// `verity`: composefs required and every object must carry fs-verity (reads of a changed
    /// object fail).
    Verity,
    /// `signed`: like `verity`, and the image digest must be in a commit signed by a trusted key.
    Signed,
}

impl Mode {
    /// The `enabled = VALUE` word that names this mode (what [`Mode::from_enabled`] reads back).
    pub fn enabled_value(self) -> &'static str {
        match self {
            Mode::Off => "false",
            Mode::Maybe => "maybe",
            Mode::On => "true",
            Mode::Verity => "verity",
            Mode::Signed => "signed",
        }
    }

    /// The mode an `enabled = VALUE` line names (GKeyFile booleans, `maybe`, `verity`,
    /// `signed`), or `None` for anything else.
    pub fn from_enabled(value: &str) -> Option<Mode> {
        Some(match value.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Mode::On,
            "false" | "no" | "0" => Mode::Off,
            "maybe" => Mode::Maybe,
            "verity" => Mode::Verity,
            "signed" => Mode::Signed,
            _ => return None,
        })
    }

    /// Does this mode make the kernel check file contents (fs-verity)?
    pub fn enforces_verity(self) -> bool {
        matches!(self, Mode::Verity | Mode::Signed)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Off => "off",
            Mode::Maybe => "maybe",
            Mode::On => "on",
            Mode::Verity => "verity",
            Mode::Signed => "signed",
        })
    }
}

/// composefs facts of one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Composefs {
    /// What the deployment's `prepare-root.conf` asks for.
    pub mode: Mode,
    /// Which file said so (`None`: no config file, ostree's default applies).
    pub config: Option<String>,
    /// Booted deployment only: is `/` a composefs overlay right now?
    pub root_mounted: Option<bool>,
    /// Is fs-verity enforced: for the booted deployment what the initramfs recorded in
    /// `/run/ostree-booted`, for the others what the mode promises.
    pub verity_enforced: bool,
    /// The deployment has a composefs image (`.ostree.cfs`).
    pub image: bool,
    /// The composefs digest (`sha256:` + 64 hex), when there is an image or commit metadata.
    pub digest: Option<String>,
    /// Where the digest came from: `commit metadata` or `fs-verity digest of .ostree.cfs`.
    pub digest_source: Option<String>,
}

impl Composefs {
    /// One short line for tables: `on · verity off · sha256:48d59975…` or `off`.
    pub fn summary(&self) -> String {
        let mounted = match self.root_mounted {
            Some(true) => " (mounted)",
            Some(false) if self.mode != Mode::Off => " (not mounted)",
            _ => "",
        };
        if self.mode == Mode::Off && self.digest.is_none() && self.root_mounted != Some(true) {
            return "composefs: off".into();
        }
        let mut s = format!(
            "composefs: {}{mounted} · verity {}",
            self.mode,
            if self.verity_enforced {
                "enforced"
            } else {
                "off"
            }
        );
        if let Some(d) = &self.digest {
            s.push_str(&format!(" · {}", short_digest(d)));
        }
        s
    }
}

impl Composefs {
    /// The shortest form, for a table column: `mounted · verity off · 48d59975` (the booted
    /// composefs root), `on · verity off · 48d59975` (another deployment), or `off`.
    pub fn short(&self) -> String {
        if self.mode == Mode::Off && self.digest.is_none() && self.root_mounted != Some(true) {
            return "off".into();
        }
        let what = match self.root_mounted {
            Some(true) => "mounted".to_string(),
            Some(false) => format!("{} (not mounted)", self.mode),
            None => self.mode.to_string(),
        };
        let verity = if self.verity_enforced { "on" } else { "off" };
        let mut s = format!("{what} · verity {verity}");
        if let Some(d) = &self.digest {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            s.push_str(&format!(" · {}", hex.get(..8).unwrap_or(hex)));
        }
        s
    }
}

/// `sha256:` and the first 12 hex digits.
pub fn short_digest(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    format!("sha256:{}…", hex.get(..12).unwrap_or(hex))
}

/// Parse `prepare-root.conf` (a GKeyFile): the `enabled` key of `[composefs]`.
/// Without that key composefs is off as far as this file says.
pub fn parse_prepare_root(what: &str, text: &str) -> Result<Mode, StatusParseError> {
    let mut section = String::new();
    let mut mode = Mode::Off;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[') {
            let Some(name) = s.strip_suffix(']') else {
                return Err(StatusParseError::new(
                    what,
                    n + 1,
                    format!("unclosed section header {line:?}"),
                ));
            };
            section = name.trim().to_string();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(StatusParseError::new(
                what,
                n + 1,
                format!("expected KEY = VALUE, got {line:?}"),
            ));
        };
        if section == "composefs" && k.trim() == "enabled" {
            mode = Mode::from_enabled(v).ok_or_else(|| {
                StatusParseError::new(
                    what,
                    n + 1,
                    format!(
                        "[composefs] enabled = {:?}: expected true, false, maybe, verity or signed",
                        v.trim().to_ascii_lowercase()
                    ),
                )
            })?;
        }
    }
    Ok(mode)
}

/// From `findmnt -J /`: is the root a composefs overlay (source `composefs`, fstype `overlay`)?
pub fn root_is_composefs(findmnt_json: &str) -> Result<bool, StatusParseError> {
    #[derive(Deserialize)]
    struct Doc {
        filesystems: Vec<Fs>,
    }
    #[derive(Deserialize)]
    struct Fs {
        #[serde(default)]
        source: Option<String>,
        #[serde(default)]
        fstype: Option<String>,
    }
    let doc: Doc = serde_json::from_str(findmnt_json)
        .map_err(|e| StatusParseError::new("`findmnt -J /` output", e.line(), e.to_string()))?;
    Ok(doc.filesystems.iter().any(|f| {
        f.source.as_deref() == Some("composefs") && f.fstype.as_deref() == Some("overlay")
    }))
}

/// The booleans of `/run/ostree-booted`, a serialized GVariant `a{sv}` (GVariant's normal form:
/// an array of variable-size `{sv}` entries with framing offsets at the end). Only boolean
/// values are kept; other value types are skipped.
pub fn parse_booted_record(bytes: &[u8]) -> Result<Vec<(String, bool)>, StatusParseError> {
    const WHAT: &str = "/run/ostree-booted";
    let err = |m: String| StatusParseError::new(WHAT, 0, m);
    let osize = offset_size(bytes.len());
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let read_off = |at: usize| -> Result<usize, StatusParseError> {
        let b = bytes
            .get(at..at + osize)
            .ok_or_else(|| err(format!("framing offset at {at} past the end")))?;
        Ok(b.iter()
            .rev()
            .fold(0usize, |acc, x| (acc << 8) | *x as usize))
    };
    let last = read_off(bytes.len() - osize)?;
    if last > bytes.len() || !(bytes.len() - last).is_multiple_of(osize) {
        return Err(err(format!(
            "bad framing: last offset {last} in {} bytes",
            bytes.len()
        )));
    }
    let n = (bytes.len() - last) / osize;
    let mut out = Vec::new();
    let mut start = 0usize;
    for i in 0..n {
        let end = read_off(last + i * osize)?;
        start = start.next_multiple_of(8);
        let entry = bytes
            .get(start..end)
            .ok_or_else(|| err(format!("entry {i} ({start}..{end}) out of range")))?;
        if let Some(kv) = parse_sv_entry(entry) {
            out.push(kv);
        }
        start = end;
    }
    Ok(out)
}

/// One `{sv}` entry: key string, NUL, padding to 8, variant (value, NUL, type), key end offset.
fn parse_sv_entry(e: &[u8]) -> Option<(String, bool)> {
    // An entry's own framing offset is sized by the entry's length.
    let osize = offset_size(e.len());
    let key_end = e[e.len().checked_sub(osize)?..]
        .iter()
        .rev()
        .fold(0usize, |acc, x| (acc << 8) | *x as usize);
    let key = std::str::from_utf8(e.get(..key_end)?)
        .ok()?
        .trim_end_matches('\0')
        .to_string();
    let variant = e.get(key_end.next_multiple_of(8)..e.len() - osize)?;
    // A boolean variant is exactly: value byte, NUL, `b`.
    match variant {
        [v, 0, b'b'] => Some((key, *v != 0)),
        _ => None,
    }
}

fn offset_size(len: usize) -> usize {
    if len <= 0xff {
        1
    } else if len <= 0xffff {
        2
    } else if len <= 0xffff_ffff {
        4
    } else {
        8
    }
}

/// A guest command that succeeds only when every object of the guest's repository carries
/// fs-verity: bootc's own mark for that (ostree-ext `is_verity_enabled`), fs-verity on the
/// repository's config file, set last by `bootc install` and by the image's
/// `fsverity-enable-all` once every object has it.
pub fn verity_ready_argv() -> Vec<String> {
    [
        "bootc",
        "internals",
        "fsverity",
        "measure",
        "/sysroot/ostree/repo/config",
    ]
    .map(String::from)
    .to_vec()
}

/// Why a guest whose objects lack fs-verity is not moved to an image that requires it: the
/// next boot would stop in the initramfs (ostree-prepare-root mounts nothing unverified).
pub fn verity_refusal(recipe: &str, version: &str) -> String {
    format!(
        "{recipe} {version} requires fs-verity on every object (prepare-root.conf `[composefs] \
         enabled = verity`), and this guest's repository does not have it (no fs-verity on \
         /sysroot/ostree/repo/config): its next boot would stop in the initramfs. Nothing was \
         changed in the guest. Run /usr/libexec/bootlab/fsverity-enable-all in the guest first \
         (lab 12-composefs shows it)."
    )
}

/// The fs-verity digest (SHA-256, 4096-byte blocks, no salt) of `data`, as `fsverity digest`
/// prints it and as the kernel measures a verity file: `sha256:` + 64 hex.
pub fn fsverity_sha256(data: &[u8]) -> String {
    const BLOCK: usize = 4096;
    let hash_block = |b: &[u8]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b);
        if b.len() < BLOCK {
            h.update(vec![0u8; BLOCK - b.len()]);
        }
        h.finalize().into()
    };
    let mut root = [0u8; 32];
    if !data.is_empty() {
        let mut level: Vec<[u8; 32]> = data.chunks(BLOCK).map(hash_block).collect();
        while level.len() > 1 {
            let bytes: Vec<u8> = level.concat();
            level = bytes.chunks(BLOCK).map(hash_block).collect();
        }
        root = level[0];
    }
    // struct fsverity_descriptor: version, hash algorithm (1 = SHA-256), log2 block size,
    // salt size, reserved, data size, root hash (64 bytes), salt (32), reserved (144).
    let mut desc = Vec::with_capacity(256);
    desc.extend_from_slice(&[1, 1, 12, 0]);
    desc.extend_from_slice(&[0; 4]);
    desc.extend_from_slice(&(data.len() as u64).to_le_bytes());
    desc.extend_from_slice(&root);
    desc.extend_from_slice(&[0; 32]);
    desc.extend_from_slice(&[0; 32]);
    desc.extend_from_slice(&[0; 144]);
    format!("sha256:{}", hex(&Sha256::digest(&desc)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `ostree show --print-metadata-key=ostree.composefs.digest.v0 C` prints the GVariant byte
/// array as text: `[byte 0x48, 0xd5, …]` or `b'…'`-less forms. Returns `sha256:` + hex.
pub fn parse_metadata_digest(text: &str) -> Option<String> {
    let t = text.trim();
    let inner = t.strip_prefix('[')?.strip_suffix(']')?;
    let mut out = Vec::new();
    for part in inner.split(',') {
        let p = part.trim().trim_start_matches("byte").trim();
        let v = u8::from_str_radix(p.strip_prefix("0x")?, 16).ok()?;
        out.push(v);
    }
    (out.len() == 32).then(|| format!("sha256:{}", hex(&out)))
}

/// The deployment's folder as ostree lays it out.
pub fn deployment_dir(stateroot: &str, checksum: &str, serial: u32) -> String {
    format!("/sysroot/ostree/deploy/{stateroot}/deploy/{checksum}.{serial}")
}

/// The metadata key ostree's `--generate-composefs-metadata` writes.
pub const DIGEST_KEY: &str = "ostree.composefs.digest.v0";

fn sv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Read a guest file's bytes (through base64: the agent carries text). `None` when it is absent.
async fn read_bytes<G: GuestOps>(guest: &mut G, path: &str) -> Result<Option<Vec<u8>>> {
    let out = guest.exec(&sv(&["base64", "-w0", path])).await?;
    if !out.success() {
        return Ok(None);
    }
    let b = base64::engine::general_purpose::STANDARD
        .decode(out.stdout.trim())
        .with_context(|| format!("base64 of {path} from the guest"))?;
    Ok(Some(b))
}

/// The composefs digest of a deployment: the commit's `ostree.composefs.digest.v0` when it has
/// one, else the fs-verity digest of `<dir>/.ostree.cfs`. Returns (digest, source, has image).
pub async fn digest_of<G: GuestOps>(
    guest: &mut G,
    checksum: &str,
    dir: &str,
) -> Result<(Option<String>, Option<String>, bool)> {
    let key = format!("--print-metadata-key={DIGEST_KEY}");
    let meta = guest.exec(&sv(&["ostree", "show", &key, checksum])).await?;
    let from_meta = if meta.success() {
        parse_metadata_digest(&meta.stdout)
    } else {
        None
    };
    let image = read_bytes(guest, &format!("{dir}/.ostree.cfs")).await?;
    let has_image = image.is_some();
    if let Some(d) = from_meta {
        return Ok((Some(d), Some("commit metadata".into()), has_image));
    }
    Ok(match image {
        Some(b) => (
            Some(fsverity_sha256(&b)),
            Some("fs-verity digest of .ostree.cfs".into()),
            true,
        ),
        None => (None, None, false),
    })
}

/// Fill in [`Deployment::composefs`] for every deployment that names its stateroot, asking the
/// guest: the deployment's `prepare-root.conf`, its composefs image and digest, and for the booted
/// one `findmnt -J /` and `/run/ostree-booted`.
pub async fn read_live<G: GuestOps>(guest: &mut G, deployments: &mut [Deployment]) -> Result<()> {
    for d in deployments.iter_mut() {
        let Some(stateroot) = d.stateroot.clone() else {
            continue;
        };
        let dir = deployment_dir(&stateroot, &d.checksum, d.serial);
        let mut mode = Mode::Off;
        let mut config = None;
        // prepare-root looks in /etc first, then /usr/lib; the first file found wins.
        for rel in [
            "etc/ostree/prepare-root.conf",
            "usr/lib/ostree/prepare-root.conf",
        ] {
            let path = format!("{dir}/{rel}");
            let out = guest.exec(&sv(&["cat", &path])).await?;
            if out.success() {
                mode = parse_prepare_root(&path, &out.stdout)?;
                config = Some(format!("/{rel}"));
                break;
            }
        }
        let (digest, digest_source, image) = digest_of(guest, &d.checksum, &dir).await?;
        let mut c = Composefs {
            mode,
            config,
            root_mounted: None,
            verity_enforced: mode.enforces_verity(),
            image,
            digest,
            digest_source,
        };
        if d.booted {
            let out = guest.exec(&sv(&["findmnt", "-J", "/"])).await?;
            if out.success() {
                c.root_mounted = Some(root_is_composefs(&out.stdout)?);
            }
            // What the initramfs really did at this boot beats what the config promises.
            let record = match read_bytes(guest, "/run/ostree-booted").await? {
                Some(b) => parse_booted_record(&b)?,
                None => Vec::new(),
            };
            let verity = record.iter().find(|(k, _)| k == "composefs.verity");
            c.verity_enforced = match verity {
                Some((_, v)) => *v,
                None => c.verity_enforced && c.root_mounted == Some(true),
            };
        }
        d.composefs = Some(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/composefs")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn the_bootc_guest_config_asks_for_composefs_without_verity() {
        let t = String::from_utf8(fixture("bootc-prepare-root.conf")).unwrap();
        let m = parse_prepare_root("prepare-root.conf", &t).unwrap();
        assert_eq!(m, Mode::On);
        assert!(!m.enforces_verity());
        for (v, want) in [
            ("verity", Mode::Verity),
            ("signed", Mode::Signed),
            ("maybe", Mode::Maybe),
            ("false", Mode::Off),
        ] {
            let t = format!("[sysroot]\nreadonly = true\n[composefs]\nenabled = {v}\n");
            assert_eq!(parse_prepare_root("x", &t).unwrap(), want);
            // What a build records (`enabled_value`) reads back as the same mode.
            assert_eq!(Mode::from_enabled(want.enabled_value()), Some(want));
        }
        // Only the [composefs] section counts: another section's `enabled` is not the mode.
        assert_eq!(
            parse_prepare_root(
                "x",
                "[composefs]\nenabled = true\n[etc]\nenabled = verity\n"
            )
            .unwrap(),
            Mode::On
        );
        assert_eq!(
            parse_prepare_root("x", "[sysroot]\nreadonly=true\n").unwrap(),
            Mode::Off
        );
        let e = parse_prepare_root(
            "/etc/ostree/prepare-root.conf",
            "[composefs]\nenabled = perhaps\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/etc/ostree/prepare-root.conf: line 2") && e.contains("perhaps"),
            "{e}"
        );
    }

    #[test]
    fn findmnt_of_the_booted_bootc_root_is_composefs() {
        let t = String::from_utf8(fixture("bootc-findmnt-root.json")).unwrap();
        assert!(root_is_composefs(&t).unwrap());
        let ext4 = r#"{"filesystems":[{"target":"/","source":"/dev/vda2[/ostree/deploy/debian/deploy/x.0]","fstype":"ext4","options":"rw"}]}"#;
        assert!(!root_is_composefs(ext4).unwrap());
        assert!(root_is_composefs("not json").is_err());
    }

    #[test]
    fn run_ostree_booted_says_composefs_on_verity_off() {
        let kv = parse_booted_record(&fixture("bootc-run-ostree-booted.gvariant")).unwrap();
        let get = |k: &str| kv.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!(get("composefs"), Some(true), "{kv:?}");
        assert_eq!(get("composefs.verity"), Some(false), "{kv:?}");
        assert_eq!(get("sysroot-ro"), Some(true), "{kv:?}");
        assert_eq!(get("root.transient"), Some(false), "{kv:?}");
        // backing-root-device-inode is a (tt), not a boolean: skipped, not misread.
        assert_eq!(get("backing-root-device-inode"), None);
        assert!(parse_booted_record(&[]).unwrap().is_empty());
        assert!(parse_booted_record(&[1, 2, 3, 0xff]).is_err());
    }

    #[test]
    fn fsverity_digest_matches_the_fsverity_tool() {
        // Expected values printed by fsverity-utils' `fsverity digest` for bytes i % 251.
        for (n, want) in [
            (
                0usize,
                "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95",
            ),
            (
                1,
                "b803429503d95915829b29fdbc8bbad142f3abfd11b1cadf5526582e685c0551",
            ),
            (
                4096,
                "13e9b8848ae484a36acb3f3cac0ceb2f7601e96633d15c92f9bd3dd44e492157",
            ),
            (
                4097,
                "b0d074abef4d544404facfab6ba242f6a8ccbde90f1325cd286f3c8aa8d0f8aa",
            ),
            // More than 128 blocks: a two-level Merkle tree.
            (
                600_000,
                "06d5be5c1f84f55006b5826aec720b80e5d95f30e170be7e1d6aae61755f1ae4",
            ),
        ] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            assert_eq!(
                fsverity_sha256(&data),
                format!("sha256:{want}"),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn metadata_digest_text_becomes_a_digest() {
        let bytes: Vec<String> = (0..32).map(|i| format!("0x{:02x}", i * 7)).collect();
        let t = format!("[byte {}]\n", bytes.join(", "));
        let d = parse_metadata_digest(&t).unwrap();
        assert!(d.starts_with("sha256:00070e15"), "{d}");
        assert_eq!(parse_metadata_digest("[byte 0x01]"), None);
        assert_eq!(parse_metadata_digest("error: No such metadata key"), None);
    }

    #[test]
    fn summaries_say_off_or_mode_verity_and_digest() {
        let mut c = Composefs {
            mode: Mode::On,
            config: Some("/usr/lib/ostree/prepare-root.conf".into()),
            root_mounted: Some(true),
            verity_enforced: false,
            image: true,
            digest: Some(
                "sha256:48d599755eb1835d694e8fd612a886503ad6bd0002a53befcc0219214fd17266".into(),
            ),
            digest_source: Some("fs-verity digest of .ostree.cfs".into()),
        };
        assert_eq!(
            c.summary(),
            "composefs: on (mounted) · verity off · sha256:48d599755eb1…"
        );
        assert_eq!(c.short(), "mounted · verity off · 48d59975");
        c.mode = Mode::Off;
        c.root_mounted = Some(false);
        c.digest = None;
        assert_eq!(c.summary(), "composefs: off");
        assert_eq!(c.short(), "off");
    }
}
