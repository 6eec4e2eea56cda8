//! `bootlab recipe …`: list and show recipes. Formatting only; see `crate::recipe`.

use crate::recipe::{self, Recipe};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum RecipeCmd {
    /// List the recipes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one recipe: family, base, versions and what each changes, what the guest offers.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Make your own recipe in your recipes folder (`--recipes DIR`, else <data>/recipes): a
    /// small offline image whose Containerfile explains each line, or a copy of `--from`.
    New {
        name: String,
        /// Start from this recipe (shipped or yours) instead of the teaching template.
        #[arg(long)]
        from: Option<String>,
    },
    /// Lint a built image: `bootc container lint` (bootc family) and bootlab's own checks, each
    /// finding with why it matters on an image-based OS. Exits 1 on a fatal finding.
    Lint {
        name: String,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(short, long)]
        verbose: bool,
    },
}

pub fn run(c: RecipeCmd) -> anyhow::Result<ExitCode> {
    match c {
        RecipeCmd::List { json } => {
            let all = recipe::all()?;
            if json {
                let v: Vec<serde_json::Value> = all.iter().map(to_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let w = all.iter().map(|r| r.name().len()).max().unwrap_or(4).max(4);
                println!(
                    "{:<w$}  {:<13}  {:<10}  TITLE",
                    "NAME", "FAMILY", "VERSIONS"
                );
                for r in &all {
                    println!(
                        "{:<w$}  {:<13}  {:<10}  {}{}{}",
                        r.name(),
                        r.file.family.as_str(),
                        r.version_ids().join(","),
                        r.file.title,
                        if r.origin == recipe::Origin::Yours {
                            "  [yours]"
                        } else {
                            ""
                        },
                        if r.lab_use_only() {
                            "  [lab use only: known password]"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        RecipeCmd::Show { name, json } => {
            let r = recipe::find(&name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&to_json(&r))?);
            } else {
                print!("{}", render(&r));
            }
        }
        RecipeCmd::New { name, from } => {
            let from = from.map(|f| recipe::find(&f)).transpose()?;
            let r =
                recipe::scaffold::create(&recipe::scaffold::default_dir(), &name, from.as_ref())?;
            println!("made {} in {}", r.name(), r.dir.display());
            println!("  edit   {}", r.containerfile_path().display());
            println!("  build  bootlab image build {}", r.name());
            println!("  boot   bootlab vm up {}", r.name());
        }
        RecipeCmd::Lint {
            name,
            version,
            json,
            verbose,
        } => {
            let r = recipe::find(&name)?;
            let v = r.resolve_version(version.as_deref())?.clone();
            let paths = crate::paths::Paths::from_env();
            paths.ensure()?;
            let report = super::image::with_job(verbose, async |ev, cancel| {
                let podman = crate::tools::podman::Podman::probe(&paths, ev, cancel).await?;
                recipe::lint::lint(&podman, &r, &v, ev, cancel).await
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render_lint(&report));
            }
            if !report.passed() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A lint report for a terminal: each finding, its paths, and why (wrapped at 78 columns).
pub fn render_lint(r: &recipe::lint::LintReport) -> String {
    use recipe::lint::{Level, Source};
    let mut o = format!("lint {} ({})\n", r.image, r.family);
    for s in &r.bootc_summary {
        o.push_str(&format!("  bootc container lint: {s}\n"));
    }
    if r.findings.is_empty() {
        o.push_str("  no findings\n");
    }
    for f in &r.findings {
        let level = match f.level {
            Level::Fatal => "FATAL",
            Level::Warning => "warning",
        };
        let by = match f.source {
            Source::Bootc => "bootc",
            Source::Bootlab => "bootlab",
        };
        o.push_str(&format!("\n{level} {} ({by}): {}\n", f.rule, f.message));
        for d in &f.details {
            o.push_str(&format!("    {d}\n"));
        }
        o.push_str(&format!("  why: {}\n", super::doctor::wrap(&f.why, 70, 7)));
    }
    o
}

/// The recipe as stored, plus the derived facts a UI shows.
fn to_json(r: &Recipe) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("lab_use_only".into(), r.lab_use_only().into());
        o.insert(
            "default_version".into(),
            r.default_version().id.clone().into(),
        );
    }
    v
}

fn render(r: &Recipe) -> String {
    let f = &r.file;
    let mut o = format!("{} — {}\n", f.name, f.title);
    if let Some(l) = &f.guest.known_password {
        o.push_str(&format!(
            "  !! lab use only: known password (console login {} / {})\n",
            l.user, l.password
        ));
    }
    o.push_str(&format!("{}\n\n", f.summary));
    o.push_str(&format!("family:        {}\n", f.family));
    o.push_str(&format!("base:          {}\n", f.base));
    o.push_str(&format!(
        "containerfile: {}\n",
        r.containerfile_path().display()
    ));
    let mut offers = Vec::new();
    if f.guest.agent {
        offers.push("guest agent");
    }
    if f.guest.ssh {
        offers.push("ssh (127.0.0.1 only)");
    }
    if f.guest.known_password.is_some() {
        offers.push("console login with a known password");
    }
    o.push_str(&format!(
        "guest offers:  {}\n",
        if offers.is_empty() {
            "nothing but the console".to_string()
        } else {
            offers.join(", ")
        }
    ));
    o.push_str("versions:\n");
    let default = r.default_version().id.clone();
    for v in &f.versions {
        o.push_str(&format!(
            "  {}{}  {}\n",
            v.id,
            if v.id == default { " (default)" } else { "" },
            v.changes
        ));
        o.push_str(&format!("      image {}\n", r.image_tag(&v.id)));
    }
    o
}
