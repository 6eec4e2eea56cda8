//! ssh and ssh-keygen: a VM's own key pair and the client command lines that use it.
//!
//! A VM whose recipe says `ssh = true` gets a port on 127.0.0.1 forwarded to the guest's port 22
//! and an ed25519 key pair of its own in `<vm dir>/ssh/` (folder 0700, private key 0600). Once
//! the guest agent answers, the public key is written to root's `authorized_keys` in the guest
//! (the way cloud-init or `bootc install --root-ssh-authorized-keys` would on a real machine; the
//! agent also reaches guests started from a booted snapshot, which never read a boot-time
//! credential). The client never asks anything: host keys are accepted on first use into the
//! VM's own `known_hosts`, so a lab's check cannot hang on a prompt.

use crate::events::{CancellationToken, Emitter};
use crate::tools::cmd::HostCmd;
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const SSH: &str = "ssh";
const KEY_FILE: &str = "id_ed25519";

/// Everything the client needs to reach one VM's sshd.
#[derive(Debug, Clone)]
pub struct Login {
    pub port: u16,
    pub user: String,
    /// The VM's `ssh` folder: key pair, known_hosts, askpass.
    pub dir: PathBuf,
}

/// The folder of a VM's key pair.
pub fn key_dir(vm_dir: &Path) -> PathBuf {
    vm_dir.join("ssh")
}

/// The public key line of a VM's key pair, made with `ssh-keygen` the first time. The pair is
/// made in a temp folder and renamed into place when complete, so a cancelled run never leaves
/// half a pair behind.
pub async fn ensure_key(
    vm_dir: &Path,
    comment: &str,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<String> {
    let dir = key_dir(vm_dir);
    let public = dir.join(format!("{KEY_FILE}.pub"));
    if !public.exists() {
        let tmp = vm_dir.join(".ssh.partial");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
        HostCmd::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(tmp.join(KEY_FILE))
            .run(stage, ev, cancel)
            .await
            .context("ssh-keygen could not make the VM's key pair")?;
        // ssh-keygen writes the private key 0600 already; say so rather than trust it.
        std::fs::set_permissions(tmp.join(KEY_FILE), std::fs::Permissions::from_mode(0o600))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir)?;
    }
    let line = std::fs::read_to_string(&public)
        .with_context(|| format!("reading {}", public.display()))?;
    let line = line.trim();
    if !line.starts_with("ssh-ed25519 ") {
        bail!("{} is not an ed25519 public key", public.display());
    }
    Ok(line.to_string())
}

/// A guest shell script that makes `key` root's only authorized key (read from stdin: the key
/// never appears on a command line). Root's home is looked up, not assumed (`/root`, which on
/// an OSTree system is a link to `/var/roothome`: the key survives upgrades and rollbacks).
pub const INSTALL_KEY_SCRIPT: &str = "set -e; umask 077; h=$(getent passwd root | cut -d: -f6); \
     mkdir -p \"$h/.ssh\"; cat > \"$h/.ssh/authorized_keys.bootlab\"; \
     mv -f \"$h/.ssh/authorized_keys.bootlab\" \"$h/.ssh/authorized_keys\"";

impl Login {
    fn key(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// Options every login shares: this VM's port and known_hosts, no prompts, a short wait.
    fn common(&self) -> Vec<String> {
        vec![
            "-p".into(),
            self.port.to_string(),
            "-o".into(),
            format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ),
            // The VM is new and local: accept its host key the first time, refuse a changed one.
            "-o".into(),
            "StrictHostKeyChecking=accept-new".into(),
            "-o".into(),
            "ConnectTimeout=15".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    fn target(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// `ssh`, the options every login shares, `opts` (each one `-o OPT`), the target, then
    /// `remote` if given.
    fn argv(&self, pre: &[String], opts: &[&str], remote: &[String]) -> Vec<String> {
        let mut a = vec![SSH.to_string()];
        a.extend(self.common());
        a.extend(pre.iter().cloned());
        for o in opts {
            a.extend(["-o".to_string(), o.to_string()]);
        }
        a.push(self.target());
        if !remote.is_empty() {
            a.push("--".into());
            a.extend(remote.iter().cloned());
        }
        a
    }

    /// `ssh` with the VM's key only (no agent, no password), then `remote` if given.
    pub fn key_argv(&self, remote: &[String]) -> Vec<String> {
        self.argv(
            &["-i".into(), self.key().display().to_string()],
            &[
                "IdentitiesOnly=yes",
                "IdentityAgent=none",
                "PasswordAuthentication=no",
                "KbdInteractiveAuthentication=no",
                "BatchMode=yes",
            ],
            remote,
        )
    }

    /// `ssh` with a password only (the recipe's known lab password, typed by `askpass`): what
    /// anyone who knows the password could do.
    pub fn password_argv(&self, remote: &[String]) -> Vec<String> {
        self.argv(
            &[],
            &[
                "PubkeyAuthentication=no",
                "IdentityAgent=none",
                "PreferredAuthentications=password,keyboard-interactive",
                "NumberOfPasswordPrompts=1",
            ],
            remote,
        )
    }

    /// `ssh -v` that offers nothing: the server answers with the methods it would accept. The
    /// debug log goes to `log` (`-E`), where [`offered_methods`] reads it.
    pub fn methods_argv(&self, log: &Path) -> Vec<String> {
        self.argv(
            &["-v".into(), "-E".into(), log.display().to_string()],
            // `-v` outranks the shared `LogLevel=ERROR`: the debug lines go to the log.
            &[
                "PreferredAuthentications=none",
                "BatchMode=yes",
                "IdentityAgent=none",
            ],
            &["true".into()],
        )
    }

    /// Where the askpass helper for `password_argv` is (made by [`Login::write_askpass`]).
    pub fn askpass(&self) -> PathBuf {
        self.dir.join("askpass")
    }

    /// A helper ssh runs to read the password (`SSH_ASKPASS`, with `SSH_ASKPASS_REQUIRE=force`),
    /// so no terminal is needed. Only for the recipe's known lab password, which is no secret.
    pub fn write_askpass(&self, password: &str) -> Result<PathBuf> {
        let p = self.askpass();
        let tmp = self.dir.join(".askpass.partial");
        std::fs::write(
            &tmp,
            format!(
                "#!/bin/sh\n# Written by bootlab: the lab VM's known password, for `bootlab vm ssh --password`.\nprintf '%s\\n' {}\n",
                crate::tools::cmd::shell_quote(password)
            ),
        )?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))?;
        std::fs::rename(&tmp, &p)?;
        Ok(p)
    }
}

/// Ask the VM's sshd which login methods it accepts (`publickey`, `password`, …) without
/// offering any: what an attacker who knows only the address learns.
pub async fn methods(
    login: &Login,
    stage: &str,
    ev: &Emitter,
    cancel: &CancellationToken,
) -> Result<Vec<String>> {
    let log = login.dir.join("methods.log");
    let _ = std::fs::remove_file(&log);
    let argv = login.methods_argv(&log);
    // ssh exits 255 here by design (nothing was offered): the log tells what the server said.
    let out = HostCmd::new(&argv[0])
        .args(&argv[1..])
        .run_unchecked(stage, ev, cancel)
        .await?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    offered_methods(&text).with_context(|| {
        let last: Vec<&str> = text.lines().rev().take(3).collect();
        format!(
            "the ssh server on 127.0.0.1:{} named no login methods (ssh exit {:?}): {}",
            login.port,
            out.status.code(),
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )
    })
}

/// The methods a server offered, from `ssh -v`'s "Authentications that can continue:" line
/// (the first one: what the server accepts before anything was tried).
pub fn offered_methods(verbose: &str) -> Option<Vec<String>> {
    verbose.lines().find_map(|l| {
        let (_, rest) = l.split_once("Authentications that can continue: ")?;
        Some(
            rest.trim()
                .split(',')
                .filter(|m| !m.is_empty())
                .map(String::from)
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> Login {
        Login {
            port: 2222,
            user: "root".into(),
            dir: "/s/vms/a/ssh".into(),
        }
    }

    #[test]
    fn key_login_offers_only_the_key_and_never_prompts() {
        let a = login().key_argv(&["cat".into(), "/etc/os-release".into()]);
        let s = a.join(" ");
        assert!(s.contains("-p 2222"), "{s}");
        assert!(s.contains("-i /s/vms/a/ssh/id_ed25519"), "{s}");
        assert!(s.contains("IdentitiesOnly=yes"), "{s}");
        assert!(s.contains("BatchMode=yes"), "{s}");
        assert!(s.contains("PasswordAuthentication=no"), "{s}");
        assert!(
            s.contains("UserKnownHostsFile=/s/vms/a/ssh/known_hosts"),
            "{s}"
        );
        assert!(s.ends_with("root@127.0.0.1 -- cat /etc/os-release"), "{s}");
    }

    #[test]
    fn password_login_offers_no_key() {
        let s = login().password_argv(&[]).join(" ");
        assert!(s.contains("PubkeyAuthentication=no"), "{s}");
        assert!(!s.contains(" -i "), "{s}");
        assert!(s.ends_with("root@127.0.0.1"), "{s}");
    }

    #[test]
    fn methods_from_a_real_debug_log() {
        // Lines as OpenSSH 9.2's client prints them at -v.
        let log = "debug1: Authenticating to 127.0.0.1:40123 as 'root'\n\
                   debug1: SSH2_MSG_SERVICE_ACCEPT received\n\
                   debug1: Authentications that can continue: publickey,password\n\
                   debug1: No more authentication methods to try.\n\
                   root@127.0.0.1: Permission denied (publickey,password).\n";
        assert_eq!(
            offered_methods(log),
            Some(vec!["publickey".to_string(), "password".to_string()])
        );
        assert_eq!(
            offered_methods("ssh: connect to host 127.0.0.1 port 1: refused"),
            None
        );
    }

    #[test]
    fn askpass_prints_the_password_quoted() {
        let d = tempfile::tempdir().unwrap();
        let l = Login {
            dir: d.path().into(),
            ..login()
        };
        let p = l.write_askpass("it's").unwrap();
        let out = std::process::Command::new(&p).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's\n");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
