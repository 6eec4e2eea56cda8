//! Shipped recipes: they load, their Containerfiles agree with their metadata, the bootc ones
//! follow bootc's rules, and `bootlab recipe` shows them.

mod common;

use bootlab::recipe::{self, Family, Recipe};

fn shipped() -> Vec<Recipe> {
    recipe::shipped().unwrap_or_else(|e| panic!("{e}"))
}

fn containerfile(r: &Recipe) -> String {
    std::fs::read_to_string(r.containerfile_path()).unwrap()
}

/// Instructions of a Containerfile with continuation lines joined and comments dropped.
fn instructions(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in src.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            cur.push_str(part);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

#[test]
fn shipped_recipes_load() {
    let all = shipped();
    let names: Vec<&str> = all.iter().map(|r| r.name()).collect();
    assert_eq!(
        names,
        [
            "centos-bootc",
            "debian-auto-update",
            "debian-bootc",
            "debian-bootc-ssh",
            "debian-minimal",
            "debian-web",
            "debian-web-var",
            "fedora-bootc-core"
        ]
    );
    for r in &all {
        assert!(
            r.file.versions.len() >= 2,
            "{}: an upgrade needs two versions",
            r.name()
        );
        for v in &r.file.versions {
            assert!(!v.changes.trim().is_empty(), "{} {}", r.name(), v.id);
            assert!(
                !v.changes.contains('\n'),
                "{} {}: changes is one line",
                r.name(),
                v.id
            );
        }
        assert!(
            r.file.guest.agent,
            "{}: checks run through the guest agent",
            r.name()
        );
    }
}

#[test]
fn every_copied_file_is_in_the_recipe_folder() {
    for r in shipped() {
        for ins in instructions(&containerfile(&r)) {
            if let Some(args) = ins.strip_prefix("COPY ") {
                let words: Vec<&str> = args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                for src in &words[..words.len() - 1] {
                    assert!(
                        r.dir.join(src).is_file(),
                        "{}: COPY {src} is missing",
                        r.name()
                    );
                }
            }
        }
    }
}

#[test]
fn every_recipe_writes_the_version_file_drills_read() {
    for r in shipped() {
        let cf = containerfile(&r);
        assert!(cf.contains("ARG BOOTLAB_VERSION"), "{}", r.name());
        assert!(
            cf.contains("echo \"${BOOTLAB_VERSION}\" > /usr/share/bootlab/version"),
            "{}",
            r.name()
        );
    }
}

#[test]
fn bootc_recipes_follow_bootc_rules() {
    let all_bootc: Vec<Recipe> = shipped()
        .into_iter()
        .filter(|r| r.file.family == Family::Bootc)
        .collect();
    assert_eq!(all_bootc.len(), 4);
    for r in &all_bootc {
        let ins = instructions(&containerfile(r));
        assert_eq!(
            ins.last().unwrap(),
            "RUN bootc container lint",
            "{}: lint runs last",
            r.name()
        );
        for label in [
            "LABEL containers.bootc=1",
            "LABEL org.opencontainers.image.version=${BOOTLAB_VERSION}",
        ] {
            assert!(ins.iter().any(|i| i == label), "{}: {label}", r.name());
        }
    }
    // The offline one: FROM the bootc base bootlab builds itself, four versions (v4: composefs with fs-verity required).
    let deb = all_bootc
        .iter()
        .find(|r| r.name() == "debian-bootc")
        .unwrap();
    assert_eq!(
        deb.file.base,
        bootlab::pipeline::bootc::guest::BOOTC_BASE_TAG
    );
    assert_eq!(deb.version_ids(), ["v1", "v2", "v3", "v4"]);
    assert!(deb.lab_use_only());
    // Its sshd sibling: same base, ssh on, and no host keys baked into the image.
    let ssh = all_bootc
        .iter()
        .find(|r| r.name() == "debian-bootc-ssh")
        .unwrap();
    assert_eq!(ssh.file.base, deb.file.base);
    assert!(ssh.file.guest.ssh);
    assert_eq!(ssh.version_ids(), ["v1", "v2"]);
    assert!(containerfile(ssh).contains("rm -f /etc/ssh/ssh_host_*"));
    // The registry ones (members' laptops).
    let bootc: Vec<&Recipe> = all_bootc
        .iter()
        .filter(|r| r.file.base.starts_with("quay.io/"))
        .collect();
    assert_eq!(bootc.len(), 2);
    for r in &bootc {
        let ins = instructions(&containerfile(r));
        assert_eq!(
            ins.last().unwrap(),
            "RUN bootc container lint",
            "{}: lint runs last",
            r.name()
        );
        assert!(
            ins.iter().any(|i| i == "LABEL containers.bootc=1"),
            "{}",
            r.name()
        );
        assert!(
            ins.iter()
                .any(|i| i == "LABEL org.opencontainers.image.version=${BOOTLAB_VERSION}"),
            "{}",
            r.name()
        );
        assert!(
            ins.iter()
                .any(|i| i.contains("systemctl enable qemu-guest-agent")),
            "{}",
            r.name()
        );
        assert!(
            ins.iter().any(|i| i.contains("vim-enhanced tmux")),
            "{}",
            r.name()
        );
        // Key-only ssh through a drop-in.
        let dropin = ins
            .iter()
            .find(|i| i.starts_with("COPY ") && i.contains(" /etc/ssh/sshd_config.d/"))
            .unwrap_or_else(|| panic!("{}: no sshd drop-in", r.name()));
        let src = dropin.split_whitespace().nth(1).unwrap();
        // sshd keeps the first value it reads: the drop-in must sort before the distribution's
        // own 50-*.conf files.
        let dest = dropin.split_whitespace().last().unwrap();
        let prio: u32 = dest.rsplit('/').next().unwrap()[..2].parse().unwrap();
        assert!(prio < 50, "{}: {dest} sorts after 50-*.conf", r.name());
        let text = std::fs::read_to_string(r.dir.join(src)).unwrap();
        assert!(
            text.lines()
                .any(|l| l.trim() == "PasswordAuthentication no"),
            "{}",
            r.name()
        );
        assert!(r.file.guest.ssh && r.file.guest.agent, "{}", r.name());
        assert!(
            !r.lab_use_only(),
            "{}: no known passwords on bootc images",
            r.name()
        );
        assert!(r.file.base.starts_with("quay.io/"), "{}", r.name());
    }
}

#[test]
fn debian_web_takes_var_from_tmpfiles_not_the_image() {
    let r = recipe::find("debian-web").unwrap();
    assert_eq!(r.file.family, Family::DebianOstree);
    assert_eq!(r.version_ids(), ["v1", "v2"]);
    let ins = instructions(&containerfile(&r));
    assert!(
        ins.iter()
            .any(|i| i.contains("apt-get install -y --no-install-recommends nginx"))
    );
    assert!(
        ins.iter()
            .any(|i| i.starts_with("RUN rm -rf /var/lib/nginx /var/log/nginx"))
    );
    let tmpfiles = ins
        .iter()
        .find(|i| i.starts_with("COPY ") && i.ends_with(" /usr/lib/tmpfiles.d/bootlab-web.conf"))
        .expect("a tmpfiles.d file");
    let src = tmpfiles.split_whitespace().nth(1).unwrap();
    let lines: Vec<Vec<String>> = std::fs::read_to_string(r.dir.join(src))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let dirs: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l[0].as_str(), l[1].as_str()))
        .collect();
    assert_eq!(dirs, [("d", "/var/lib/nginx"), ("d", "/var/log/nginx")]);
    let site = std::fs::read_to_string(r.dir.join("site.conf")).unwrap();
    assert!(site.contains("root /usr/share/bootlab-web;"));
}

#[test]
fn cli_recipe_list() {
    let out = common::bootlab().args(["recipe", "list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let web = text
        .lines()
        .find(|l| l.starts_with("debian-web "))
        .expect(&text);
    assert!(
        web.contains("debian-ostree") && web.contains("v1,v2"),
        "{web}"
    );
    assert!(web.ends_with("[lab use only: known password]"), "{web}");
    let fedora = text
        .lines()
        .find(|l| l.starts_with("fedora-bootc-core "))
        .unwrap();
    assert!(!fedora.contains("known password"), "{fedora}");

    let out = common::bootlab()
        .args(["recipe", "list", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 8);
    let web = rows.iter().find(|r| r["name"] == "debian-web").unwrap();
    assert_eq!(web["family"], "debian-ostree");
    assert_eq!(web["lab_use_only"], true);
    assert_eq!(web["versions"][1]["id"], "v2");
}

#[test]
fn cli_recipe_show() {
    let out = common::bootlab()
        .args(["recipe", "show", "debian-minimal"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lab use only: known password"), "{text}");
    assert!(text.contains("family:        debian-ostree"), "{text}");
    assert!(
        text.contains("base:          localhost/bootlab/debian-ostree-base:trixie"),
        "{text}"
    );
    assert!(
        text.contains("  v2  ships /usr/bin/bootlab-hello"),
        "{text}"
    );
    assert!(
        text.contains("image localhost/bootlab/debian-minimal:v3"),
        "{text}"
    );

    let out = common::bootlab()
        .args(["recipe", "show", "centos-bootc", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["family"], "bootc");
    assert_eq!(v["base"], "quay.io/centos-bootc/centos-bootc:stream10");
    assert_eq!(v["guest"]["ssh"], true);
    assert_eq!(v["lab_use_only"], false);
    assert_eq!(v["default_version"], "v1");

    let out = common::bootlab()
        .args(["recipe", "show", "debian-maximal"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no recipe named \"debian-maximal\" (known: centos-bootc, debian-auto-update, debian-bootc, debian-bootc-ssh, debian-minimal, debian-web, debian-web-var, fedora-bootc-core)"), "{stderr}");
}

/// `bootlab recipe show X --json | head -c0`: a reader that leaves early ends a listing
/// quietly (SIGPIPE, as any Unix tool), never with a panic about a broken pipe.
#[test]
fn a_listing_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [
        &["recipe", "show", "debian-minimal", "--json"][..],
        &["recipe", "list"][..],
        &["lab", "list"][..],
    ] {
        let mut child = common::bootlab()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before bootlab has started writing.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}
