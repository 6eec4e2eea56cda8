//! Property tests (issue 12, item 5): every parser of untrusted text — labs, recipes, and each
//! status document bootlab reads from a guest — is fed mutations of the real files it meets.
//! Whatever the input: no panic, and every error is located (`file:line:col` inside the file for
//! labs and recipes; the document and a line within it for status output). Cases are bounded so
//! `cargo test` (and CI) stays fast.

use bootlab_engine::deploy::{self, StatusParseError};
use bootlab_engine::diag::FileError;
use bootlab_engine::lab::parse_lab;
use bootlab_engine::recipe::Recipe;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn read_all(dir: &Path, ext: &[&str]) -> Vec<String> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| ext.iter().any(|x| e == *x)))
        .collect();
    out.sort();
    out.iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// One edit of a document: cut it short, delete, duplicate or overwrite a span, or insert bytes
/// that parsers of TOML/JSON/YAML find interesting.
#[derive(Debug, Clone)]
enum Edit {
    Truncate(usize),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Insert(usize, String),
    Replace(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let junk = prop_oneof![
        Just("\"".to_string()),
        Just("[[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("=".to_string()),
        Just("\n".to_string()),
        Just(":".to_string()),
        Just("- ".to_string()),
        Just("\t".to_string()),
        Just("\u{feff}".to_string()),
        Just("é".to_string()),
        Just("null".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        "[ -~]{0,8}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    let at = 0usize..1_000_000;
    prop_oneof![
        at.clone().prop_map(Edit::Truncate),
        (at.clone(), 1usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (at.clone(), 1usize..80).prop_map(|(a, n)| Edit::Duplicate(a, n)),
        (at.clone(), junk.clone()).prop_map(|(a, s)| Edit::Insert(a, s)),
        (at, junk).prop_map(|(a, s)| Edit::Replace(a, s)),
    ]
}

/// Apply edits at char boundaries (positions are taken modulo the length).
fn apply(src: &str, edits: &[Edit]) -> String {
    let mut s = src.to_string();
    let pos = |s: &str, a: usize| {
        let mut p = if s.is_empty() { 0 } else { a % (s.len() + 1) };
        while !s.is_char_boundary(p) {
            p -= 1;
        }
        p
    };
    for e in edits {
        match e {
            Edit::Truncate(a) => {
                let p = pos(&s, *a);
                s.truncate(p);
            }
            Edit::Delete(a, n) => {
                let p = pos(&s, *a);
                let q = pos(&s, p + n).max(p);
                s.replace_range(p..q, "");
            }
            Edit::Duplicate(a, n) => {
                let p = pos(&s, *a);
                let q = pos(&s, p + n).max(p);
                let piece = s[p..q].to_string();
                s.insert_str(q, &piece);
            }
            Edit::Insert(a, t) => {
                let p = pos(&s, *a);
                s.insert_str(p, t);
            }
            Edit::Replace(a, t) => {
                let p = pos(&s, *a);
                let q = pos(&s, p + t.len()).max(p);
                s.replace_range(p..q, t);
            }
        }
    }
    s
}

fn located(e: &FileError, path: &Path, src: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(&e.path, path, "{}", e);
    let lines = src.split('\n').count().max(1);
    prop_assert!(
        e.line >= 1 && e.line <= lines,
        "line out of file: {} ({lines} lines)",
        e
    );
    let width = src
        .split('\n')
        .nth(e.line - 1)
        .map(|l| l.chars().count())
        .unwrap_or(0);
    prop_assert!(
        e.column >= 1 && e.column <= width + 1,
        "column out of line: {} (line has {width} chars)",
        e
    );
    prop_assert!(!e.message.trim().is_empty(), "no message: {}", e);
    Ok(())
}

fn status_located(
    r: Result<deploy::HostStatus, StatusParseError>,
    src: &str,
) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        prop_assert!(!e.what.is_empty() && !e.message.trim().is_empty(), "{e:?}");
        // 0 means "no position"; any position given must be in the document.
        prop_assert!(
            e.line <= src.split('\n').count() + 1,
            "{e:?} beyond the document"
        );
    }
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Shrinking is for a failure; keep it bounded too.
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn labs() -> Vec<String> {
    read_all(&repo().join("labs"), &["toml"])
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn lab_parser_never_panics_and_locates_every_error(
        which in 0usize..16, edits in prop::collection::vec(edit(), 1..6)
    ) {
        let all = labs();
        let src = apply(&all[which % all.len()], &edits);
        let recipes = bootlab_engine::recipe::shipped().unwrap();
        let path = Path::new("/fuzz/lab.toml");
        if let Err(errs) = parse_lab(path, &src, &recipes) {
            prop_assert!(!errs.is_empty());
            for e in &errs {
                located(e, path, &src)?;
            }
        }
    }

    #[test]
    fn recipe_parser_never_panics_and_locates_every_error(
        which in 0usize..8, edits in prop::collection::vec(edit(), 1..6), cf in any::<bool>()
    ) {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("assets/recipes"))
            .unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        let dir = &dirs[which % dirs.len()];
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join(dir.file_name().unwrap());
        std::fs::create_dir(&d).unwrap();
        let toml = std::fs::read_to_string(dir.join("recipe.toml")).unwrap();
        let containerfile = std::fs::read_to_string(dir.join("Containerfile")).unwrap();
        // Mutate the recipe file, or its Containerfile.
        let (toml, containerfile) = if cf {
            (toml, apply(&containerfile, &edits))
        } else {
            (apply(&toml, &edits), containerfile)
        };
        std::fs::write(d.join("recipe.toml"), &toml).unwrap();
        std::fs::write(d.join("Containerfile"), &containerfile).unwrap();
        if let Err(e) = Recipe::load(&d) {
            let src = if e.path.ends_with("Containerfile") { &containerfile } else { &toml };
            prop_assert!(e.path.starts_with(&d), "{}", e);
            located(&e, &e.path.clone(), src)?;
        }
    }
}

fn fixtures(kind: &str, ext: &[&str]) -> Vec<String> {
    read_all(&repo().join("tests/fixtures").join(kind), ext)
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn ostree_text_and_json_parsers_never_panic(
        which in 0usize..32, edits in prop::collection::vec(edit(), 1..6)
    ) {
        let text = fixtures("ostree-status", &["txt"]);
        let src = apply(&text[which % text.len()], &edits);
        status_located(deploy::ostree::parse_text(&src), &src)?;
        let json = fixtures("ostree-status", &["json"]);
        let src = apply(&json[which % json.len()], &edits);
        status_located(deploy::ostree::parse_json(&src), &src)?;
        status_located(deploy::parse_any(&src), &src)?;
    }

    #[test]
    fn bootc_json_and_yaml_parsers_never_panic(
        which in 0usize..32, edits in prop::collection::vec(edit(), 1..6)
    ) {
        let docs = fixtures("bootc-status", &["yaml", "json"]);
        let src = apply(&docs[which % docs.len()], &edits);
        status_located(deploy::bootc::parse(&src), &src)?;
        status_located(deploy::bootc::parse_yaml(&src), &src)?;
        status_located(deploy::bootc::parse_json(&src), &src)?;
        status_located(deploy::parse_any(&src), &src)?;
    }

    #[test]
    fn rpm_ostree_json_parser_never_panics(
        which in 0usize..4, edits in prop::collection::vec(edit(), 1..6)
    ) {
        let docs = fixtures("rpm-ostree-status", &["json"]);
        let src = apply(&docs[which % docs.len()], &edits);
        status_located(deploy::rpm_ostree::parse_json(&src), &src)?;
        status_located(deploy::parse_any(&src), &src)?;
    }
}
