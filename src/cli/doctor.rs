//! `bootlab doctor [--json]`: formats the engine's [`crate::doctor::Report`].

use crate::doctor::{Options, Report, Status};
use crate::events::{CancellationToken, Emitter};
use crate::paths::Paths;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Probe KVM again even when a cached verdict for this QEMU and kernel exists.
    #[arg(long)]
    pub refresh: bool,
    /// Also boot this guest kernel (a vmlinuz) under KVM and TCG, to cross-check the KVM probe.
    #[arg(long, value_name = "VMLINUZ")]
    pub kernel: Option<std::path::PathBuf>,
    /// Show every host command doctor runs.
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn run(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env();
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        let (ev, rx) = if a.verbose {
            let (ev, rx) = Emitter::channel();
            (ev, Some(rx))
        } else {
            (Emitter::null(), None)
        };
        let printer = rx.map(|rx| super::print_events(rx, false));
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        // Ctrl-C stops the probes (and their QEMU) instead of leaving them behind.
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                c2.cancel();
            }
        });
        let opts = Options {
            refresh: a.refresh,
            kernel: a.kernel.clone(),
        };
        let report = crate::doctor::run(&paths, &opts, &ev, &cancel).await;
        drop(ev);
        if let Some(p) = printer {
            let _ = p.await;
        }
        report
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Wrap `text` to `width` columns, every line after the first indented by `indent` spaces.
pub(super) fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for word in text.split_whitespace() {
        if col > 0 && col + 1 + word.chars().count() > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = 0;
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.chars().count();
    }
    out
}

/// The report as a table: status, check, detail, and the fixes under each problem.
pub fn render(r: &Report) -> String {
    const NAME: usize = 20;
    const DETAIL: usize = 76;
    let indent = 6 + NAME;
    let mut out = String::new();
    for c in &r.checks {
        out.push_str(&format!(
            "{:<5} {:<NAME$}{}\n",
            c.status.label(),
            c.name,
            wrap(&c.detail, DETAIL, indent)
        ));
        if c.status != Status::Ok {
            // One line when both families share the fix (e.g. "run as root").
            let fixes = if c.fix_debian == c.fix_fedora {
                vec![("fix", &c.fix_debian)]
            } else {
                vec![
                    ("fix (Debian/Ubuntu)", &c.fix_debian),
                    ("fix (Fedora)", &c.fix_fedora),
                ]
            };
            for (who, fix) in fixes {
                if let Some(f) = fix {
                    out.push_str(&format!(
                        "{:indent$}{who}: {}\n",
                        "",
                        wrap(f, DETAIL - who.len() - 2, indent + who.len() + 2)
                    ));
                }
            }
        }
    }
    let failed: Vec<&str> = r.failed().map(|c| c.name.as_str()).collect();
    let warned = r.checks.iter().filter(|c| c.status == Status::Warn).count();
    out.push('\n');
    out.push_str(&format!(
        "accelerator for VMs: {}{}\n",
        r.accel,
        if r.accel == "tcg" {
            " (TCG, the software fallback: guests boot in about a minute)"
        } else {
            ""
        }
    ));
    if failed.is_empty() {
        out.push_str(&format!(
            "ready for the offline lab ({} checks, {warned} warning(s), {:.1} s)\n",
            r.checks.len(),
            r.secs
        ));
    } else {
        out.push_str(&format!(
            "NOT ready: {} failed (required for the default offline lab); fixes above, or run `bash .ci/setup`\n",
            failed.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words_and_indents() {
        let w = wrap("aaa bbb ccc ddd", 7, 2);
        assert_eq!(w, "aaa bbb\n  ccc ddd");
    }
}
