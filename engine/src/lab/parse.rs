//! Step files → [`Lab`], with every mistake of a file reported as `file:line:col: message`.
//!
//! The file is parsed once into toml's spanned document tree (`DeTable`). The lab header, each
//! step, each action and each check are then deserialized one by one from that tree, so a wrong
//! type in step 3 does not hide an unknown field in step 5: all errors of a file are collected.
//! Semantic checks (unknown recipe, duplicate id, bad regex…) look up the span of the key they
//! complain about in the same tree.

use super::jsonpath::JsonPath;
use super::model::*;
use crate::diag::FileError;
use crate::recipe::{Family, Recipe};
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

type Span = Range<usize>;

// ---- what authors write (private; converted to the model) ----------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    // `schema` and `steps` are taken out before; listed so "expected one of" names them.
    #[allow(dead_code)]
    schema: Option<IgnoredAny>,
    id: String,
    title: String,
    minutes: u32,
    summary: String,
    #[serde(default)]
    intro: Option<String>,
    #[serde(default)]
    finish: Option<String>,
    #[serde(default)]
    requires: RawRequires,
    #[allow(dead_code)]
    steps: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRequires {
    recipe: Option<String>,
    family: Option<Family>,
    #[serde(default)]
    host_tools: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: String,
    title: String,
    text: String,
    #[serde(default)]
    hints: Vec<String>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    reboot: bool,
    // Parsed separately (see module docs).
    #[allow(dead_code)]
    action: Option<IgnoredAny>,
    #[allow(dead_code)]
    checks: Option<IgnoredAny>,
    #[allow(dead_code)]
    solve: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    title: String,
    guest: Option<String>,
    host: Option<String>,
    deployments: Option<RawDeployments>,
    exit: Option<i32>,
    #[serde(default, deserialize_with = "one_or_many")]
    stdout_contains: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    stdout_lacks: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    stdout_matches: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    stderr_contains: Vec<String>,
    #[serde(default)]
    json: BTreeMap<String, serde_json::Value>,
    timeout: Option<String>,
    wait: Option<String>,
    every: Option<String>,
    fail: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeployments {
    booted: Option<String>,
    staged: Option<String>,
    rollback: Option<String>,
}

/// A string or an array of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            Ok(vec![s.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = a.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

// ---- loading -----------------------------------------------------------------------------

struct Ctx<'a> {
    path: &'a Path,
    src: &'a str,
    recipes: &'a [Recipe],
    errors: Vec<FileError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Option<Span>, msg: impl Into<String>) {
        self.errors
            .push(FileError::at(self.path, self.src, span, msg));
    }
    fn toml(&mut self, e: toml::de::Error) {
        self.errors
            .push(FileError::from_toml(self.path, self.src, &e));
    }
    fn recipe(&self, name: &str) -> Option<&Recipe> {
        self.recipes.iter().find(|r| r.name() == name)
    }
    fn recipe_names(&self) -> String {
        let n: Vec<&str> = self.recipes.iter().map(|r| r.name()).collect();
        if n.is_empty() {
            "none loaded".into()
        } else {
            n.join(", ")
        }
    }
}

/// Span of the value of `key` in `t`.
fn value_span(t: &DeTable, key: &str) -> Option<Span> {
    t.get(key).map(|v| v.span())
}

/// Span of `key` itself in `t`.
fn key_span(t: &DeTable, key: &str) -> Option<Span> {
    t.get_key_value(key).map(|(k, _)| k.span())
}

/// The strings of a key that holds a string or an array of strings, each with its span.
fn string_items(t: &DeTable, key: &str) -> Vec<(String, Span)> {
    match t.get(key) {
        Some(v) => match v.get_ref() {
            DeValue::String(s) => vec![(s.to_string(), v.span())],
            DeValue::Array(a) => a
                .iter()
                .filter_map(|i| i.get_ref().as_str().map(|s| (s.to_string(), i.span())))
                .collect(),
            _ => vec![],
        },
        None => vec![],
    }
}

/// Deserialize one table or value of the tree; `what` names it in "missing field" errors
/// ("missing field `fail` in this check").
///
/// serde stops at the first error. To report every wrong key of a table, the entry an error
/// points at is reported, taken out, and the rest deserialized again, until it succeeds or an
/// error cannot be pinned on one entry.
fn deserialize<'de, T: Deserialize<'de>>(
    cx: &mut Ctx,
    what: &str,
    v: Spanned<DeValue<'de>>,
) -> Option<T> {
    let span = v.span();
    let mut value = v.into_inner();
    let mut removed: Vec<String> = Vec::new();
    loop {
        let e = match T::deserialize(ValueDeserializer::from(Spanned::new(
            span.clone(),
            value.clone(),
        ))) {
            Ok(t) if removed.is_empty() => return Some(t),
            Ok(_) => return None,
            Err(e) => e,
        };
        let mut msg = plain_types(e.message().trim());
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            if removed.iter().any(|r| r == field) {
                // Caused by an entry already reported and taken out.
                return None;
            }
            if !what.is_empty() {
                msg.push_str(&format!(" in this {what}"));
            }
        }
        // Errors raised inside serde's buffered enums carry no span: use the value's.
        let at = e.span().unwrap_or(span.clone());
        cx.err(Some(at.clone()), msg);
        let DeValue::Table(t) = &mut value else {
            return None;
        };
        // The entry the error is in: the last one that starts at or before it (a `[table]`
        // entry's own span covers only its header, not the keys below it).
        if at == span {
            return None;
        }
        let culprit = t
            .iter()
            .filter(|(k, _)| k.span().start <= at.start)
            .max_by_key(|(k, _)| k.span().start)
            .map(|(k, _)| k.get_ref().to_string());
        match culprit {
            Some(k) => {
                t.remove(k.as_str());
                removed.push(k);
            }
            None => return None,
        }
    }
}

/// serde names Rust types ("expected u32"); learners read TOML.
fn plain_types(msg: &str) -> String {
    let mut m = msg.to_string();
    for (rust, toml) in [
        ("expected u32", "expected a whole number like 10"),
        ("expected u64", "expected a whole number like 10"),
        ("expected i64", "expected an integer like 1"),
        ("expected i32", "expected an integer like 0"),
        ("expected a boolean", "expected true or false"),
        (
            "expected a sequence",
            "expected an array like [\"a\", \"b\"]",
        ),
    ] {
        if let Some(rest) = m.strip_suffix(rust) {
            m = format!("{rest}{toml}");
        }
    }
    m
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
}

/// Parse and validate one step file's text. `recipes` is the set recipe and version names are
/// checked against (normally [`crate::recipe::shipped`]). All errors of the file are returned,
/// sorted by position.
pub fn parse_lab(path: &Path, src: &str, recipes: &[Recipe]) -> Result<Lab, Vec<FileError>> {
    let mut cx = Ctx {
        path,
        src,
        recipes,
        errors: Vec::new(),
    };
    let lab = parse_into(&mut cx);
    if cx.errors.is_empty() {
        Ok(lab.expect("a lab when there are no errors"))
    } else {
        let mut errs = cx.errors;
        errs.sort_by_key(|e| (e.line, e.column));
        errs.dedup();
        Err(errs)
    }
}

fn parse_into(cx: &mut Ctx) -> Option<Lab> {
    let (root, syntax) = DeTable::parse_recoverable(cx.src);
    if !syntax.is_empty() {
        // What follows a syntax error is guesswork; report the syntax and stop.
        for e in syntax {
            cx.toml(e);
        }
        return None;
    }
    let root_span = root.span();
    let mut table = root.into_inner();

    // The schema first: a file of another schema may legitimately look different.
    match table.remove("schema") {
        None => cx.err(
            Some(0..0),
            format!("missing `schema = {SCHEMA}` (the step-file format version) at the top"),
        ),
        Some(v) => {
            let span = v.span();
            match deserialize::<i64>(cx, "", v) {
                Some(n) if n == SCHEMA as i64 => {}
                Some(n) => {
                    cx.err(
                        Some(span),
                        format!(
                            "unsupported schema {n}: this bootlab reads schema {SCHEMA} step files"
                        ),
                    );
                    return None;
                }
                None => return None,
            }
        }
    }

    let steps_val = table.remove("steps");
    let header_table = table.clone();
    let header: Option<RawHeader> = deserialize(
        cx,
        "lab",
        Spanned::new(root_span.clone(), DeValue::Table(table)),
    );

    let requires_t = header_table
        .get("requires")
        .and_then(|v| v.get_ref().as_table());
    let mut requires = Requires::default();
    if let Some(h) = &header {
        if !is_id(&h.id) {
            cx.err(
                value_span(&header_table, "id"),
                format!(
                    "lab id {:?} must be lowercase letters, digits and dashes",
                    h.id
                ),
            );
        }
        requires = Requires {
            recipe: h.requires.recipe.clone(),
            family: h.requires.family,
            host_tools: h.requires.host_tools.clone(),
        };
        if let Some(name) = &requires.recipe {
            let span = requires_t.and_then(|t| value_span(t, "recipe"));
            match cx.recipe(name).map(|r| r.file.family) {
                None => {
                    let known = cx.recipe_names();
                    cx.err(span, format!("unknown recipe {name:?} (known: {known})"));
                }
                Some(fam) => match requires.family {
                    Some(f) if f != fam => {
                        let span = requires_t.and_then(|t| value_span(t, "family"));
                        cx.err(
                            span,
                            format!("family {f} does not match recipe {name}, which is {fam}"),
                        );
                    }
                    _ => requires.family = Some(fam),
                },
            }
        }
    }
    // Read straight from the tree so a mistake elsewhere in the header does not hide step errors.
    let lab_recipe = LabRecipe {
        name: requires_t
            .and_then(|t| t.get("recipe"))
            .and_then(|v| v.get_ref().as_str())
            .map(String::from),
        header_ok: header.is_some(),
    };

    let mut steps = Vec::new();
    let mut step_ok = true;
    match steps_val {
        None => cx.err(
            Some(root_span.start..root_span.start),
            "a lab needs steps: add at least one [[steps]] table",
        ),
        Some(v) => {
            let span = v.span();
            match v.into_inner() {
                DeValue::Array(items) if !items.is_empty() => {
                    let mut seen: BTreeSet<String> = BTreeSet::new();
                    for item in items.iter() {
                        let ispan = item.span();
                        match item.get_ref() {
                            DeValue::Table(t) => {
                                let id = t.get("id").and_then(|v| v.get_ref().as_str());
                                if let Some(id) = id
                                    && !seen.insert(id.to_string())
                                {
                                    let msg = format!(
                                        "duplicate step id {id:?}: step ids must be unique in a lab"
                                    );
                                    cx.err(value_span(t, "id"), msg);
                                }
                                match parse_step(cx, &lab_recipe, ispan, t.clone()) {
                                    Some(s) => steps.push(s),
                                    None => step_ok = false,
                                }
                            }
                            _ => cx.err(
                                Some(ispan),
                                "each step must be a table: write it as [[steps]]",
                            ),
                        }
                    }
                }
                DeValue::Array(_) => cx.err(Some(span), "a lab needs at least one step"),
                other => cx.err(
                    Some(span),
                    format!(
                        "`steps` must be an array of tables ([[steps]]), not a {}",
                        other.type_str()
                    ),
                ),
            }
        }
    }

    let h = header?;
    if !step_ok {
        return None;
    }
    Some(Lab {
        schema: SCHEMA,
        id: h.id,
        title: h.title,
        minutes: h.minutes,
        summary: h.summary,
        intro: h.intro,
        finish: h.finish,
        requires,
        steps,
        path: cx.path.to_path_buf(),
    })
}

struct LabRecipe {
    name: Option<String>,
    header_ok: bool,
}

fn parse_step(cx: &mut Ctx, lr: &LabRecipe, span: Span, mut t: DeTable) -> Option<Step> {
    let action_v = t.remove("action");
    let checks_v = t.remove("checks");
    let solve_v = t.remove("solve");
    let id_span = value_span(&t, "id");
    let raw: Option<RawStep> =
        deserialize(cx, "step", Spanned::new(span.clone(), DeValue::Table(t)));
    if let Some(r) = &raw
        && !is_id(&r.id)
    {
        cx.err(
            id_span.clone(),
            format!(
                "step id {:?} must be lowercase letters, digits and dashes",
                r.id
            ),
        );
    }

    let mut ok = true;
    let action = match action_v {
        None => Some(Action::None),
        Some(v) => parse_action(cx, lr, v),
    };
    ok &= action.is_some();

    let mut solve = Vec::new();
    if let Some(v) = solve_v {
        let items: Vec<Spanned<DeValue>> = match v.get_ref() {
            DeValue::Array(a) => a.iter().cloned().collect(),
            _ => vec![v],
        };
        for item in items {
            match parse_action(cx, lr, item) {
                Some(a) => solve.push(a),
                None => ok = false,
            }
        }
    }

    let reboot = raw.as_ref().map(|r| r.reboot).unwrap_or(false);
    // Checks after a boot or a reboot wait for the guest by default.
    let spans_reboot = reboot
        || action
            .as_ref()
            .is_some_and(|a| a.reboots() || matches!(a, Action::Boot { .. }))
        || solve.iter().any(Action::reboots);
    let mut checks = Vec::new();
    let check_items: Vec<Spanned<DeValue>> = match checks_v {
        None => vec![],
        Some(v) => match v.get_ref() {
            DeValue::Array(a) => a.iter().cloned().collect(),
            other => {
                cx.err(
                    Some(v.span()),
                    format!(
                        "`checks` must be an array of tables ([[steps.checks]]), not a {}",
                        other.type_str()
                    ),
                );
                ok = false;
                vec![]
            }
        },
    };
    if check_items.is_empty() && ok {
        let what = raw
            .as_ref()
            .map(|r| format!("step {:?}", r.id))
            .unwrap_or_else(|| "this step".into());
        cx.err(
            id_span.or(Some(span)),
            format!(
                "{what} has no checks: add at least one [[steps.checks]] so the learner knows it worked"
            ),
        );
        ok = false;
    }
    // A deployments check may name versions of any recipe this step switches to.
    let moves: Vec<Action> = action.iter().chain(solve.iter()).cloned().collect();
    for item in check_items {
        match parse_check(cx, lr, &moves, spans_reboot, item) {
            Some(c) => checks.push(c),
            None => ok = false,
        }
    }

    let raw = raw?;
    if !ok {
        return None;
    }
    Some(Step {
        id: raw.id,
        title: raw.title,
        text: raw.text,
        action: action?,
        checks,
        hints: raw.hints,
        notes: raw.notes,
        solve,
        reboot,
    })
}

fn parse_action(cx: &mut Ctx, lr: &LabRecipe, v: Spanned<DeValue>) -> Option<Action> {
    let span = v.span();
    let t = match v.get_ref() {
        DeValue::Table(t) => t.clone(),
        other => {
            cx.err(
                Some(span),
                format!(
                    "an action is a table like {{ kind = \"build\", version = \"v2\" }}, not a {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    // Readable messages for the commonest mistakes, at the key itself (serde's enum buffering
    // loses positions).
    if let Some(k) = t.get("kind").and_then(|k| k.get_ref().as_str()) {
        if !Action::KINDS.contains(&k) {
            cx.err(
                value_span(&t, "kind"),
                format!(
                    "unknown action kind {k:?}: expected one of {}",
                    Action::KINDS.join(", ")
                ),
            );
            return None;
        }
        let allowed = action_fields(k);
        let mut bad = false;
        for (key, _) in t.iter() {
            if key.get_ref() != "kind" && !allowed.contains(&key.get_ref().as_ref()) {
                let expected = if allowed.is_empty() {
                    "it takes no other fields".to_string()
                } else {
                    format!("expected {}", allowed.join(", "))
                };
                cx.err(
                    Some(key.span()),
                    format!(
                        "unknown field `{}` for a {k} action: {expected}",
                        key.get_ref()
                    ),
                );
                bad = true;
            }
        }
        if bad {
            return None;
        }
    }
    let action: Action = deserialize(cx, "action", v)?;
    let before = cx.errors.len();
    match &action {
        Action::Build { recipe, version }
        | Action::Disk { recipe, version }
        | Action::Boot {
            recipe, version, ..
        } => check_recipe_version(
            cx,
            lr,
            &t,
            span,
            recipe.as_deref(),
            version.as_deref(),
            "version",
        ),
        Action::Upgrade { to, .. } => {
            check_recipe_version(cx, lr, &t, span, None, to.as_deref(), "to")
        }
        Action::Publish { recipe, to } => {
            check_recipe_version(cx, lr, &t, span, recipe.as_deref(), to.as_deref(), "to")
        }
        Action::Switch {
            recipe, version, ..
        } => check_recipe_version(
            cx,
            lr,
            &t,
            span,
            Some(recipe),
            version.as_deref(),
            "version",
        ),
        Action::Guest { run } | Action::Host { run } if run.trim().is_empty() => cx.err(
            value_span(&t, "run"),
            "`run` is empty: give the command to run",
        ),
        _ => {}
    }
    (cx.errors.len() == before).then_some(action)
}

/// The fields each action kind takes besides `kind` (kept in step with [`Action`]).
fn action_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "build" | "disk" => &["recipe", "version"],
        "boot" => &["recipe", "version", "fresh"],
        "guest" | "host" => &["run"],
        "publish" => &["recipe", "to"],
        "upgrade" => &["to", "apply"],
        "switch" => &["recipe", "version", "apply"],
        "rollback" => &["apply"],
        _ => &[],
    }
}

fn check_recipe_version(
    cx: &mut Ctx,
    lr: &LabRecipe,
    t: &DeTable,
    span: Span,
    recipe: Option<&str>,
    version: Option<&str>,
    version_key: &str,
) {
    let name = match recipe.or(lr.name.as_deref()) {
        Some(n) => n.to_string(),
        None => {
            if lr.header_ok {
                cx.err(
                    Some(span),
                    "this action needs a recipe: add recipe = \"…\" here or [requires] recipe = \"…\" to the lab",
                );
            }
            return;
        }
    };
    let Some(r) = cx.recipe(&name) else {
        // The lab-level recipe is reported once, at [requires].
        if recipe.is_some() {
            let known = cx.recipe_names();
            cx.err(
                value_span(t, "recipe"),
                format!("unknown recipe {name:?} (known: {known})"),
            );
        }
        return;
    };
    if let Some(v) = version
        && r.version(v).is_none()
    {
        let has = r.version_ids().join(", ");
        cx.err(
            value_span(t, version_key),
            format!("recipe {name} has no version {v:?} (it has: {has})"),
        );
    }
}

/// Version ids a deployments check may name: those of the lab's recipe and of recipes the step
/// switches to.
fn known_versions(cx: &Ctx, lr: &LabRecipe, moves: &[Action]) -> Option<BTreeSet<String>> {
    let mut names: Vec<&str> = lr.name.iter().map(String::as_str).collect();
    for a in moves {
        if let Action::Switch { recipe, .. } = a {
            names.push(recipe);
        }
    }
    let mut out = BTreeSet::new();
    for n in names {
        out.extend(cx.recipe(n)?.version_ids().into_iter().map(String::from));
    }
    (!out.is_empty()).then_some(out)
}

fn parse_check(
    cx: &mut Ctx,
    lr: &LabRecipe,
    moves: &[Action],
    spans_reboot: bool,
    v: Spanned<DeValue>,
) -> Option<Check> {
    let span = v.span();
    let t = match v.get_ref() {
        DeValue::Table(t) => t.clone(),
        other => {
            cx.err(
                Some(span),
                format!(
                    "a check must be a table ([[steps.checks]]), not a {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    let raw: RawCheck = deserialize(cx, "check", v)?;
    let before = cx.errors.len();

    // In file order, so a clash is reported at the second one written.
    let mut given: Vec<&str> = ["guest", "host", "deployments"]
        .into_iter()
        .filter(|k| t.contains_key(*k))
        .collect();
    given.sort_by_key(|k| key_span(&t, k).map(|s| s.start));
    if given.is_empty() {
        cx.err(
            Some(span.clone()),
            "a check needs something to look at: guest = \"cmd\", host = \"cmd\" or deployments = { booted = \"v2\" }",
        );
    } else if given.len() > 1 {
        cx.err(
            key_span(&t, given[1]),
            format!(
                "a check looks at one thing: `{}` and `{}` cannot both be set",
                given[0], given[1]
            ),
        );
    }
    if raw.deployments.is_some() {
        for k in [
            "exit",
            "stdout_contains",
            "stdout_lacks",
            "stdout_matches",
            "stderr_contains",
            "json",
        ] {
            if t.contains_key(k) {
                cx.err(
                    key_span(&t, k),
                    format!("`{k}` applies to guest and host commands, not to a deployments check"),
                );
            }
        }
    }
    for (re, s) in string_items(&t, "stdout_matches") {
        if let Err(e) = regex::Regex::new(&re) {
            cx.err(Some(s), format!("bad regex {re:?}: {}", regex_error(&e)));
        }
    }
    if let Some(jt) = t.get("json").and_then(|j| j.get_ref().as_table()) {
        for (k, _) in jt.iter() {
            if let Err(e) = k.get_ref().parse::<JsonPath>() {
                cx.err(
                    Some(k.span()),
                    format!("bad JSON path {:?}: {e}", k.get_ref()),
                );
            }
        }
    }
    let mut dur = |key: &str, val: &Option<String>, default: Duration| match val {
        None => default,
        Some(s) => {
            match parse_duration(s) {
                Some(d) => d,
                None => {
                    cx.err(
                    value_span(&t, key),
                    format!("`{key}` = {s:?} is not a duration: write e.g. \"30s\", \"2m\" or \"1m30s\""),
                );
                    default
                }
            }
        }
    };
    let default_window = if spans_reboot {
        RetryPolicy::REBOOT_WINDOW
    } else {
        Duration::ZERO
    };
    let retry = RetryPolicy {
        timeout: dur("timeout", &raw.timeout, RetryPolicy::DEFAULT_TIMEOUT),
        window: dur("wait", &raw.wait, default_window),
        interval: dur("every", &raw.every, RetryPolicy::DEFAULT_INTERVAL),
    };
    if raw.fail.trim().is_empty() {
        cx.err(
            value_span(&t, "fail"),
            "`fail` is empty: tell the learner what to look at next",
        );
    }

    let probe = if let Some(d) = raw.deployments {
        let dt = t.get("deployments").and_then(|d| d.get_ref().as_table());
        let known = known_versions(cx, lr, moves);
        let mut slot = |key: &str, v: Option<String>| -> Option<Slot> {
            let v = v?;
            if v == "none" {
                return Some(Slot::Absent);
            }
            if let Some(known) = &known
                && !known.contains(&v)
            {
                let has: Vec<&str> = known.iter().map(String::as_str).collect();
                cx.err(
                    dt.and_then(|dt| value_span(dt, key)),
                    format!(
                        "unknown version {v:?} for {key} (known: {}, or \"none\")",
                        has.join(", ")
                    ),
                );
            }
            Some(Slot::Version(v))
        };
        let de = DeploymentsExpect {
            booted: slot("booted", d.booted),
            staged: slot("staged", d.staged),
            rollback: slot("rollback", d.rollback),
        };
        if de == DeploymentsExpect::default() {
            cx.err(
                value_span(&t, "deployments"),
                "deployments = { … } needs at least one of booted, staged, rollback",
            );
        }
        Probe::Deployments(de)
    } else if let Some(run) = raw.guest {
        Probe::Guest { run }
    } else if let Some(run) = raw.host {
        Probe::Host { run }
    } else {
        return None;
    };
    if cx.errors.len() != before {
        return None;
    }
    Some(Check {
        title: raw.title,
        probe,
        expect: Expect {
            exit: raw.exit,
            stdout_contains: raw.stdout_contains,
            stdout_lacks: raw.stdout_lacks,
            stdout_matches: raw.stdout_matches,
            stderr_contains: raw.stderr_contains,
            json: raw.json.into_iter().collect(),
        },
        retry,
        fail: raw.fail,
    })
}

/// The regex crate's message without its multi-line caret drawing.
fn regex_error(e: &regex::Error) -> String {
    let s = e.to_string();
    s.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: ").map(String::from))
        .unwrap_or_else(|| s.lines().last().unwrap_or("").trim().to_string())
}

/// `"30s"`, `"2m"`, `"1m30s"`, `"500ms"`, `"1h"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let d = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return None,
        };
        total += d;
        rest = &rest[unit_len..];
    }
    Some(total)
}

// ---- files and folders --------------------------------------------------------------------

/// Load and validate one step file.
pub fn load_file(path: &Path, recipes: &[Recipe]) -> Result<Lab, Vec<FileError>> {
    let src = std::fs::read_to_string(path)
        .map_err(|e| vec![FileError::at(path, "", None, format!("cannot read: {e}"))])?;
    parse_lab(path, &src, recipes)
}

/// The step files in `dir`: every `*.toml`, sorted by name (labs are numbered `01-…`).
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    out.sort();
    Ok(out)
}

/// Load every lab named by `paths` (files, or folders of `*.toml`). Returns the good labs and
/// every error of every file; labs sharing an id across the set are an error too.
pub fn load_paths(paths: &[PathBuf], recipes: &[Recipe]) -> (Vec<Lab>, Vec<FileError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            match files_in(p) {
                Ok(f) => files.extend(f),
                Err(e) => errors.push(FileError::at(
                    p,
                    "",
                    None,
                    format!("cannot read folder: {e}"),
                )),
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut labs: Vec<Lab> = Vec::new();
    for f in files {
        match load_file(&f, recipes) {
            Ok(lab) => {
                if let Some(first) = labs.iter().find(|l| l.id == lab.id) {
                    let src = std::fs::read_to_string(&f).unwrap_or_default();
                    let span = DeTable::parse(&src)
                        .ok()
                        .and_then(|t| value_span(t.get_ref(), "id"));
                    errors.push(FileError::at(
                        &f,
                        &src,
                        span,
                        format!(
                            "duplicate lab id {:?}: {} uses it already",
                            lab.id,
                            first.path.display()
                        ),
                    ));
                } else {
                    labs.push(lab);
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    (labs, errors)
}

/// The labs shipped in `labs/`, then the learner's own ([`crate::paths::user_labs_dir`]), checked
/// against every recipe (shipped and theirs). Labs of theirs are not bootlab's own: their host
/// commands need trust ([`super::trust`]).
pub fn shipped() -> (Vec<Lab>, Vec<FileError>) {
    match crate::recipe::all() {
        Ok(recipes) => {
            let mut dirs = vec![crate::paths::labs_dir()];
            let user = crate::paths::user_labs_dir();
            if user.is_dir() {
                dirs.push(user);
            }
            load_paths(&dirs, &recipes)
        }
        Err(e) => (Vec::new(), vec![e]),
    }
}

/// A lab by file path, id (`first-boot`) or file stem (`01-first-boot`).
pub fn find(key: &str) -> anyhow::Result<Lab> {
    let as_path = Path::new(key);
    if as_path.is_file() {
        let recipes = crate::recipe::all()?;
        return load_file(as_path, &recipes).map_err(errors_to_anyhow);
    }
    let (labs, errors) = shipped();
    let ids: Vec<String> = labs.iter().map(|l| l.id.clone()).collect();
    if let Some(l) = labs
        .into_iter()
        .find(|l| l.id == key || l.path.file_stem().is_some_and(|s| s == key))
    {
        return Ok(l);
    }
    if !errors.is_empty() {
        return Err(errors_to_anyhow(errors));
    }
    anyhow::bail!("no lab {key:?} (known: {})", ids.join(", "))
}

fn errors_to_anyhow(errs: Vec<FileError>) -> anyhow::Error {
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    anyhow::anyhow!("{}", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipes() -> Vec<Recipe> {
        crate::recipe::shipped().unwrap()
    }

    const HEAD: &str = "schema = 1\nid = \"t\"\ntitle = \"T\"\nminutes = 5\nsummary = \"s\"\n\
                        [requires]\nrecipe = \"debian-minimal\"\n";

    fn parse(steps: &str) -> Result<Lab, Vec<FileError>> {
        parse_lab(Path::new("t.toml"), &format!("{HEAD}{steps}"), &recipes())
    }

    #[test]
    fn a_step_with_reboot_gets_a_retry_window_and_lists_accept_one_or_many() {
        let lab = parse(
            r#"
[[steps]]
id = "up"
title = "Up"
text = "x"
action = { kind = "upgrade", apply = true }
[[steps.checks]]
title = "c"
guest = "cat /etc/a /etc/b"
stdout_contains = ["a", "b"]
stdout_matches = 'a\s+b'
fail = "look"
[[steps.checks]]
title = "d"
host = "true"
wait = "10s"
fail = "look"

[[steps]]
id = "look"
title = "Look"
text = "x"
solve = { kind = "guest", run = "touch /var/x" }
[[steps.checks]]
title = "e"
guest = "bootc status --format=json"
json = { "status.booted.image.version" = "v2", "items[0].n" = 3 }
fail = "look"
"#,
        )
        .unwrap();
        let up = &lab.steps[0];
        assert!(up.spans_reboot());
        assert_eq!(up.checks[0].retry.window, RetryPolicy::REBOOT_WINDOW);
        assert_eq!(up.checks[0].expect.stdout_contains, ["a", "b"]);
        assert_eq!(up.checks[0].expect.stdout_matches, [r"a\s+b"]);
        assert_eq!(up.checks[1].retry.window, Duration::from_secs(10));
        assert_eq!(up.checks[1].probe, Probe::Host { run: "true".into() });
        let look = &lab.steps[1];
        assert_eq!(look.action, Action::None);
        assert!(!look.spans_reboot());
        assert_eq!(look.checks[0].retry.window, Duration::ZERO);
        assert_eq!(
            look.solve,
            [Action::Guest {
                run: "touch /var/x".into()
            }]
        );
        assert_eq!(
            look.checks[0].expect.json,
            [
                ("items[0].n".to_string(), serde_json::json!(3)),
                (
                    "status.booted.image.version".to_string(),
                    serde_json::json!("v2")
                )
            ]
        );
    }

    #[test]
    fn switch_names_its_recipe_and_versions_of_it_are_known() {
        let lab = parse(
            r#"
[[steps]]
id = "sw"
title = "Switch"
text = "x"
action = { kind = "switch", recipe = "debian-web", version = "v2", apply = true }
[[steps.checks]]
title = "c"
deployments = { booted = "v2", rollback = "v1" }
fail = "look"
"#,
        )
        .unwrap();
        assert_eq!(
            lab.action_of(&lab.steps[0]),
            Action::Switch {
                recipe: "debian-web".into(),
                version: Some("v2".into()),
                apply: true
            }
        );
        let e = parse(
            r#"
[[steps]]
id = "sw"
title = "Switch"
text = "x"
action = { kind = "switch", recipe = "debian-web", version = "v3" }
[[steps.checks]]
title = "c"
guest = "true"
fail = "look"
"#,
        )
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column), (13, 62), "{}", e[0]);
        assert_eq!(
            e[0].message,
            "recipe debian-web has no version \"v3\" (it has: v1, v2)"
        );
    }

    #[test]
    fn publish_takes_the_lab_recipe_and_checks_its_version() {
        let lab = parse(
            r#"
[[steps]]
id = "p"
title = "Publish"
text = "x"
action = { kind = "publish", to = "v2" }
[[steps.checks]]
title = "c"
guest = "true"
fail = "look"
"#,
        )
        .unwrap();
        assert_eq!(
            lab.action_of(&lab.steps[0]),
            Action::Publish {
                recipe: Some("debian-minimal".into()),
                to: Some("v2".into())
            }
        );
        let e = parse(
            r#"
[[steps]]
id = "p"
title = "Publish"
text = "x"
action = { kind = "publish", recipe = "debian-web", to = "v3", apply = true }
[[steps.checks]]
title = "c"
guest = "true"
fail = "look"
"#,
        )
        .unwrap_err();
        let msgs: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
        assert!(
            msgs.iter().any(|m| m.contains("apply")),
            "publish takes no `apply`: {msgs:?}"
        );
    }

    #[test]
    fn an_action_needs_a_recipe_when_the_lab_names_none() {
        let src = "schema = 1\nid = \"t\"\ntitle = \"T\"\nminutes = 5\nsummary = \"s\"\n\
                   [[steps]]\nid = \"b\"\ntitle = \"B\"\ntext = \"x\"\n\
                   action = { kind = \"build\" }\n\
                   [[steps.checks]]\ntitle = \"c\"\nhost = \"true\"\nfail = \"look\"\n";
        let e = parse_lab(Path::new("t.toml"), src, &recipes()).unwrap_err();
        assert_eq!((e[0].line, e[0].column), (10, 10), "{}", e[0]);
        assert!(
            e[0].message.starts_with("this action needs a recipe"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn action_fields_match_the_action_enum() {
        // `action_fields` gives precise "unknown field" errors; it must accept exactly what
        // serde accepts, for every kind.
        for kind in Action::KINDS {
            let fields: Vec<String> = action_fields(kind)
                .iter()
                .map(|f| match *f {
                    "recipe" => "recipe = \"debian-minimal\"".to_string(),
                    "version" => "version = \"v1\"".to_string(),
                    "to" => "to = \"v2\"".to_string(),
                    "run" => "run = \"true\"".to_string(),
                    other => format!("{other} = true"),
                })
                .collect();
            let mut inline = format!("kind = \"{kind}\"");
            for f in &fields {
                inline.push_str(", ");
                inline.push_str(f);
            }
            let steps = format!(
                "[[steps]]\nid = \"s\"\ntitle = \"S\"\ntext = \"x\"\naction = {{ {inline} }}\n\
                 [[steps.checks]]\ntitle = \"c\"\nhost = \"true\"\nfail = \"look\"\n"
            );
            let lab = parse(&steps).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
            assert_eq!(lab.steps[0].action.kind(), *kind);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("3 days"), None);
        assert_eq!(parse_duration(""), None);
    }
}
