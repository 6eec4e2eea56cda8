//! Labs from strangers (issue 12, item 4): a lab file outside bootlab's labs folder with `host`
//! commands is refused by `lab run` until trusted with `--trust`, which lists the commands and is
//! remembered for that exact file content.

mod common;

use std::process::Output;

const LAB: &str = r#"
schema = 1
id = "stranger"
title = "A lab from a stranger"
minutes = 1
summary = "Runs one host command."

[[steps]]
id = "touch"
title = "Touch a file on the host"
text = "The action writes a marker on the host."
action = { kind = "host", run = "touch \"$MARKER\"" }

[[steps.checks]]
title = "The marker exists"
host = "test -e \"$MARKER\" && echo there"
stdout_contains = "there"
fail = "No marker."
"#;

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_foreign_lab_with_host_commands_runs_only_once_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let marker = tmp.path().join("marker");
    let file = tmp.path().join("stranger.toml");
    std::fs::write(&file, LAB).unwrap();
    let run = |extra: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_bootlab"));
        c.env("BOOTLAB_HOME", &home)
            .env("MARKER", &marker)
            .args(["lab", "run"])
            .arg(&file)
            .args(extra);
        c.output().unwrap()
    };

    let o = run(&[]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("not one of bootlab's own labs"), "{out}");
    assert!(out.contains("touch \\\"$MARKER\\\""), "{out}");
    assert!(out.contains("test -e"), "{out}");
    assert!(out.contains("--trust"), "{out}");
    assert!(!marker.exists(), "a refused lab ran its host action");

    let o = run(&["--trust"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(marker.exists(), "{out}");
    assert!(out.contains("lab stranger complete"), "{out}");

    // Remembered by content: the same file runs without the flag; a changed one does not.
    std::fs::remove_file(&marker).unwrap();
    let o = run(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    std::fs::write(
        &file,
        LAB.replace("touch \\\"$MARKER\\\"", "touch \\\"$MARKER\\\" "),
    )
    .unwrap();
    let o = run(&[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!marker.exists());

    // The trust store is private.
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(home.join("state/trusted-labs")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    let m = std::fs::metadata(home.join("state")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o700);
}
