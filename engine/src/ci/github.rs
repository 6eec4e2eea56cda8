//! A GitHub Actions workflow for a recipe: typed structs serialized with serde_yaml_ng, behind
//! a comment header that says what the workflow does and what it cannot.
//!
//! One job, a matrix over the recipe's versions; each version is built, pushed to
//! `ghcr.io/<owner>/<recipe>:<version>` and made into a disk uploaded as an artifact. See
//! [`super::Route`] for which steps a recipe gets. The run scripts are bash (`defaults.run.shell`:
//! GitHub then adds `-eo pipefail`); every value from the recipe in them is shell-quoted.

use super::Route;
use crate::pipeline::build::build_args;
use crate::recipe::{Family, Recipe, Version};
use crate::tools::cmd::shell_quote;
use serde::Serialize;
use std::collections::BTreeMap;

/// Pinned major versions of the actions used: the newest that actionlint (1.17.0, .ci/setup)
/// knows. It rejects checkout@v4 and upload-artifact@v4/v5: they run on node20, which GitHub
/// removed from its runners in September 2026.
pub const CHECKOUT: &str = "actions/checkout@v7";
pub const UPLOAD_ARTIFACT: &str = "actions/upload-artifact@v7";
/// The disk maker for registry-based bootc images. Its flags (`--type qcow2 --rootfs ext4`, the
/// `/output` and `/var/lib/containers/storage` mounts, `--privileged`, the unconfined SELinux
/// label) and its output path (`output/qcow2/disk.qcow2`) follow the documented invocation in
/// https://osbuild.org/docs/bootc and
/// https://osbuild.org/docs/developer-guide/projects/image-builder/advanced/bootc/migration/
/// (the project now lives on in image-builder; this image is still the documented one).
pub const BOOTC_IMAGE_BUILDER: &str = "quay.io/centos-bootc/bootc-image-builder:latest";
/// GitHub's runner image the jobs run on (podman, sudo, loop devices, qemu-img via .ci/setup).
pub const RUNNER: &str = "ubuntu-24.04";

#[derive(Debug, Serialize)]
pub struct Workflow {
    pub name: String,
    pub on: Triggers,
    pub permissions: Permissions,
    pub defaults: Defaults,
    pub jobs: BTreeMap<String, Job>,
}

#[derive(Debug, Serialize)]
pub struct Triggers {
    pub push: Push,
    pub workflow_dispatch: Empty,
}

#[derive(Debug, Serialize)]
pub struct Push {
    pub paths: Vec<String>,
}

/// Serializes as `{}` (an event with no settings).
#[derive(Debug, Serialize)]
pub struct Empty {}

#[derive(Debug, Serialize)]
pub struct Permissions {
    pub contents: &'static str,
    pub packages: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Defaults {
    pub run: RunDefaults,
}

#[derive(Debug, Serialize)]
pub struct RunDefaults {
    pub shell: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Job {
    pub name: String,
    #[serde(rename = "runs-on")]
    pub runs_on: &'static str,
    #[serde(rename = "timeout-minutes")]
    pub timeout_minutes: u32,
    pub strategy: Strategy,
    pub env: BTreeMap<String, String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Serialize)]
pub struct Strategy {
    #[serde(rename = "fail-fast")]
    pub fail_fast: bool,
    pub matrix: Matrix,
}

#[derive(Debug, Serialize)]
pub struct Matrix {
    /// The recipe's version ids, in the recipe's order.
    pub version: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Step {
    pub name: String,
    /// Only [`super::local::SKIP_LOCALLY`]: steps that prepare a runner or publish, which
    /// `bootlab ci run` skips on a machine that has bootlab and no registry.
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub if_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl Step {
    fn run(name: &str, script: String) -> Step {
        Step {
            name: name.into(),
            run: Some(script),
            ..Step::default()
        }
    }
    fn uses(name: &str, action: &str, with: &[(&str, &str)]) -> Step {
        Step {
            name: name.into(),
            uses: Some(action.into()),
            with: with
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Step::default()
        }
    }
    /// Runs on GitHub, skipped by `bootlab ci run`.
    fn runner_only(mut self) -> Step {
        self.if_ = Some(super::local::SKIP_LOCALLY.into());
        self
    }
    fn env(mut self, k: &str, v: &str) -> Step {
        self.env.insert(k.into(), v.into());
        self
    }
}

/// Options of an export beyond the recipe itself.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The recipe folder in the repository (`/`-separated); see [`super::repo_path`].
    pub recipe_path: String,
}

/// The workflow of `recipe` as typed data.
pub fn workflow(recipe: &Recipe, opts: &ExportOptions) -> Workflow {
    let name = recipe.name();
    let route = Route::of(recipe);
    let mut env = BTreeMap::new();
    env.insert("VERSION".into(), "${{ matrix.version }}".into());
    // ghcr.io wants lowercase names; the owner may not be (see the "Names" step).
    env.insert(
        "IMAGE_REPO".into(),
        format!("ghcr.io/${{{{ github.repository_owner }}}}/{name}"),
    );
    env.insert("RECIPE_DIR".into(), opts.recipe_path.clone());

    let mut steps = vec![Step::uses("Check out", CHECKOUT, &[])];
    let names = String::from("echo \"IMAGE=${IMAGE_REPO,,}:${VERSION}\" >> \"$GITHUB_ENV\"\n");
    steps.push(Step::run("Names", names));
    if route == Route::Bootlab {
        // runner.temp is not available in job-level env: set it here. A local run keeps the
        // bootlab home (and caches) of the machine it runs on.
        steps.push(
            Step::run(
                "bootlab's home on the runner",
                "echo \"BOOTLAB_HOME=$RUNNER_TEMP/bootlab\" >> \"$GITHUB_ENV\"\n".into(),
            )
            .runner_only(),
        );
    }
    let disk_path = match route {
        Route::Registry => {
            registry_steps(recipe, &mut steps);
            "output/qcow2/disk.qcow2"
        }
        Route::Bootlab => {
            bootlab_steps(recipe, opts, &mut steps);
            "output/disk.qcow2"
        }
    };
    steps.push(Step::uses(
        "Upload the disk",
        UPLOAD_ARTIFACT,
        &[
            ("name", &format!("{name}-${{{{ matrix.version }}}}-qcow2")),
            ("path", disk_path),
            ("if-no-files-found", "error"),
        ],
    ));

    let mut jobs = BTreeMap::new();
    jobs.insert(
        "build".to_string(),
        Job {
            name: format!("{name} ${{{{ matrix.version }}}}"),
            runs_on: RUNNER,
            // A cold bootlab base (mmdebstrap, or bootc from source) takes a while.
            timeout_minutes: match route {
                Route::Registry => 60,
                Route::Bootlab => 120,
            },
            strategy: Strategy {
                fail_fast: false,
                matrix: Matrix {
                    version: recipe.version_ids().iter().map(|s| s.to_string()).collect(),
                },
            },
            env,
            steps,
        },
    );
    Workflow {
        name: format!("{name}: image and disk"),
        on: Triggers {
            push: Push {
                paths: vec![format!("{}/**", opts.recipe_path)],
            },
            workflow_dispatch: Empty {},
        },
        permissions: Permissions {
            contents: "read",
            packages: "write",
        },
        defaults: Defaults {
            run: RunDefaults { shell: "bash" },
        },
        jobs,
    }
}

/// The build arguments and target of every version, as a bash `case` that fills `extra`, when
/// some version has any beyond `BOOTLAB_VERSION` (which the build line passes itself).
fn extra_args_case(versions: &[Version]) -> Option<String> {
    let arms: Vec<String> = versions
        .iter()
        .filter_map(|v| {
            let mut words = Vec::new();
            for (k, val) in build_args(v).into_iter().skip(1) {
                words.push("--build-arg".to_string());
                words.push(shell_quote(&format!("{k}={val}")));
            }
            if let Some(t) = &v.target {
                words.push("--target".into());
                words.push(shell_quote(t));
            }
            (!words.is_empty())
                .then(|| format!("  {}) extra=({}) ;;\n", shell_quote(&v.id), words.join(" ")))
        })
        .collect();
    (!arms.is_empty()).then(|| format!("case \"$VERSION\" in\n{}esac\n", arms.concat()))
}

/// GitHub's token, piped to podman (never on a command line). `first` runs before the login
/// (bootlab's route tags its image for ghcr.io there). A local run has no registry: skipped.
fn login_and_push(steps: &mut Vec<Step>, first: &str) {
    steps.push(
        Step::run(
            "Push to ghcr.io",
            format!(
                "{first}printf '%s' \"$REGISTRY_TOKEN\" | sudo podman login ghcr.io -u \"$ACTOR\" --password-stdin\n\
                 sudo podman push \"$IMAGE\"\n"
            ),
        )
        .env("REGISTRY_TOKEN", "${{ secrets.GITHUB_TOKEN }}")
        .env("ACTOR", "${{ github.actor }}")
        .runner_only(),
    );
}

/// podman build → bootc container lint → push → bootc-image-builder.
fn registry_steps(recipe: &Recipe, steps: &mut Vec<Step>) {
    // As `Podman::build` runs it, into root's storage (bootc-image-builder reads that).
    let mut build = String::from("extra=()\n");
    if let Some(case) = extra_args_case(&recipe.file.versions) {
        build.push_str(&case);
    }
    build.push_str(&format!(
        "sudo podman build --network=host --layers --force-rm \\\n  \
         --build-arg \"BOOTLAB_VERSION=$VERSION\" \"${{extra[@]}}\" \\\n  \
         -t \"$IMAGE\" -f \"$RECIPE_DIR\"/{} \"$RECIPE_DIR\"\n",
        shell_quote(&recipe.file.containerfile)
    ));
    steps.push(Step::run("podman build (as bootlab image build)", build));
    steps.push(Step::run(
        "bootc container lint (as bootlab image build)",
        "sudo podman run --rm --network=none \"$IMAGE\" bootc container lint\n".into(),
    ));
    login_and_push(steps, "");
    steps.push(Step::run(
        "Disk with bootc-image-builder",
        format!(
            "mkdir -p output\n\
             sudo podman run --rm --privileged --pull=newer \\\n  \
             --security-opt label=type:unconfined_t \\\n  \
             -v \"$PWD/output:/output\" \\\n  \
             -v /var/lib/containers/storage:/var/lib/containers/storage \\\n  \
             {BOOTC_IMAGE_BUILDER} \\\n  \
             --type qcow2 --rootfs ext4 \"$IMAGE\"\n\
             sudo chown -R \"$(id -u):$(id -g)\" output\n"
        ),
    ));
}

/// bootlab's own pipeline on the runner: host tools, bootlab, image build, disk make, push.
fn bootlab_steps(recipe: &Recipe, opts: &ExportOptions, steps: &mut Vec<Step>) {
    let name = shell_quote(recipe.name());
    // A recipe of the learner's own: bootlab lists the folder holding it beside the shipped ones.
    let recipes_flag = match recipe.origin {
        crate::recipe::Origin::Shipped => String::new(),
        crate::recipe::Origin::Yours => {
            let parent = opts
                .recipe_path
                .rsplit_once('/')
                .map(|(p, _)| p)
                .unwrap_or(".");
            format!(" --recipes {}", shell_quote(parent))
        }
    };
    // The "Build bootlab" step installs it in /usr/local/bin, on sudo's PATH.
    let bootlab = format!("sudo --preserve-env=BOOTLAB_HOME bootlab{recipes_flag}");
    let mut setup = String::from("sudo bash .ci/setup\n");
    if recipe.file.family == Family::DebianOstree {
        // mmdebstrap checks Debian's signatures; Ubuntu runners do not have Debian's keyring.
        setup.push_str("sudo apt-get install -y -qq debian-archive-keyring\n");
    }
    steps.push(Step::run("Host tools (bootlab's .ci/setup)", setup).runner_only());
    steps.push(
        Step::run(
            "Build bootlab",
            "cargo build --release --locked\n\
             sudo install -m 0755 target/release/bootlab /usr/local/bin/bootlab\n"
                .into(),
        )
        .runner_only(),
    );
    steps.push(Step::run(
        "bootlab image build",
        format!("{bootlab} image build {name} --version \"$VERSION\"\n"),
    ));
    // `disk make --format qcow2` writes the golden disk as qcow2 too and prints its path on the
    // line starting `qcow2` (the same conversion `bootlab disk make` does here).
    steps.push(Step::run(
        "bootlab disk make (and its qcow2 for upload)",
        format!(
            "out=$({bootlab} disk make {name} --version \"$VERSION\" --format qcow2)\n\
             echo \"$out\"\n\
             disk=$(echo \"$out\" | awk '$1 == \"qcow2\" {{print $2}}')\n\
             mkdir -p output\n\
             sudo cp \"$disk\" output/disk.qcow2\n\
             sudo chown \"$(id -u):$(id -g)\" output/disk.qcow2\n"
        ),
    ));
    let tag = format!(
        "sudo podman tag \"localhost/bootlab/{}:$VERSION\" \"$IMAGE\"\n",
        recipe.name()
    );
    login_and_push(steps, &tag);
}

/// The comment block above the YAML: provenance, what the steps are, what they cannot do.
fn header(recipe: &Recipe, opts: &ExportOptions) -> String {
    let mut lines = vec![
        format!(
            "Generated by `bootlab ci export {} --github`: edit the recipe, not this file, and export again.",
            recipe.name()
        ),
        format!(
            "For each version of {} ({}): build the image, push it to ghcr.io/<owner>/{}:<version>, make a bootable disk and upload it as an artifact.",
            recipe.name(),
            recipe.version_ids().join(", "),
            recipe.name()
        ),
    ];
    match Route::of(recipe) {
        Route::Registry => lines.extend([
            "Steps: podman build with the build args bootlab passes (BOOTLAB_VERSION=<version>), bootc container lint".to_string(),
            "inside the built image (as bootlab's build does), podman push, then bootc-image-builder (qcow2, ext4 root).".to_string(),
            format!("Needs the base {} to be pullable from the runner.", recipe.file.base),
            "bootlab makes bootc disks with `bootc install` instead; bootc-image-builder is the registry-side equivalent.".to_string(),
        ]),
        Route::Bootlab => lines.extend([
            "Steps: bootlab's own pipeline, run from a checkout of bootlab's repository: .ci/setup installs the host tools,".to_string(),
            "`bootlab image build` and `bootlab disk make` run as root (podman, ostree, loop devices), podman pushes bootlab's image.".to_string(),
            format!(
                "Limitations: the base {} is made on the runner ({}),",
                recipe.file.base,
                match recipe.file.family {
                    Family::DebianOstree => "mmdebstrap from Debian's mirrors",
                    Family::Bootc => "bootc built from its pinned source",
                }
            ),
            "so a cold job takes tens of minutes and needs network for that; nothing is cached between runs.".to_string(),
            "bootlab's CI runs these steps on Debian; on GitHub's Ubuntu runners they have only been checked by actionlint.".to_string(),
        ]),
    }
    lines.push(format!(
        "`bootlab ci run <this file> --version <v>` runs these steps on your machine; steps with `if: {}` (setting up a runner, the push) are skipped there.",
        super::local::SKIP_LOCALLY
    ));
    if recipe.lab_use_only() {
        lines.push(
            "Warning: this recipe's console login has a password everybody knows: its disk is for labs only."
                .into(),
        );
    }
    lines.push(format!(
        "Triggers: a push that changes {}/, or a manual run.",
        opts.recipe_path
    ));
    lines.iter().map(|l| format!("# {l}\n")).collect()
}

/// The workflow file's text: the header, then the YAML.
pub fn export(recipe: &Recipe, opts: &ExportOptions) -> anyhow::Result<String> {
    let yaml = serde_yaml_ng::to_string(&workflow(recipe, opts))?;
    Ok(format!("{}{yaml}", header(recipe, opts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(family: &str, base: &str, extra: &str) -> Recipe {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("r1");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("recipe.toml"),
            format!(
                "name = \"r1\"\ntitle = \"t\"\nsummary = \"s\"\nfamily = \"{family}\"\nbase = \"{base}\"\n\n[[versions]]\nid = \"v1\"\nchanges = \"a\"\n\n[[versions]]\nid = \"v2\"\nchanges = \"b\"\n{extra}"
            ),
        )
        .unwrap();
        std::fs::write(d.join("Containerfile"), format!("FROM {base}\n")).unwrap();
        Recipe::load(&d).unwrap()
    }

    fn opts() -> ExportOptions {
        ExportOptions {
            recipe_path: "assets/recipes/r1".into(),
        }
    }

    #[test]
    fn the_route_follows_the_base() {
        let r = recipe("bootc", "quay.io/fedora/fedora-bootc:42", "");
        assert_eq!(Route::of(&r), Route::Registry);
        let r = recipe("bootc", "localhost/bootlab/debian-bootc-base:trixie", "");
        assert_eq!(Route::of(&r), Route::Bootlab);
        let r = recipe(
            "debian-ostree",
            "localhost/bootlab/debian-ostree-base:trixie",
            "",
        );
        assert_eq!(Route::of(&r), Route::Bootlab);
    }

    #[test]
    fn extra_build_args_and_targets_are_passed_per_version() {
        let r = recipe(
            "bootc",
            "quay.io/fedora/fedora-bootc:42",
            "build_args = { EXTRA = \"a b\" }\ntarget = \"final\"\n",
        );
        let text = export(&r, &opts()).unwrap();
        assert!(
            text.contains("v2) extra=(--build-arg 'EXTRA=a b' --target final) ;;"),
            "{text}"
        );
        assert!(!text.contains("v1) extra"), "{text}");
        // The YAML parses back and keeps the matrix.
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let m = &v["jobs"]["build"]["strategy"]["matrix"]["version"];
        assert_eq!(
            m,
            &serde_yaml_ng::to_value(vec!["v1", "v2"]).unwrap(),
            "{text}"
        );
    }
}
