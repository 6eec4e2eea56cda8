//! A small path into JSON documents: `status.booted.image.version`, `deployments[0].version`,
//! `[1].name`. Keys are separated by dots, array indexes are in brackets; a key with dots or
//! brackets in it can be quoted: `labels."org.opencontainers.image.version"`.

use serde_json::Value;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

impl JsonPath {
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The value at this path, or a sentence saying where the path left the document.
    pub fn get<'a>(&self, root: &'a Value) -> Result<&'a Value, String> {
        let mut cur = root;
        let mut walked = String::new();
        for seg in &self.segments {
            let here = if walked.is_empty() {
                "the document".to_string()
            } else {
                walked.clone()
            };
            cur = match (seg, cur) {
                (Segment::Key(k), Value::Object(m)) => match m.get(k) {
                    Some(v) => v,
                    None => {
                        let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
                        keys.truncate(12);
                        return Err(format!(
                            "{here} has no key {k:?} (it has: {})",
                            if keys.is_empty() {
                                "nothing".into()
                            } else {
                                keys.join(", ")
                            }
                        ));
                    }
                },
                (Segment::Index(i), Value::Array(a)) => match a.get(*i) {
                    Some(v) => v,
                    None => {
                        return Err(format!("{here} has {} item(s), no index {i}", a.len()));
                    }
                },
                (Segment::Key(k), other) => {
                    return Err(format!(
                        "{here} is {}, not an object with key {k:?}",
                        kind(other)
                    ));
                }
                (Segment::Index(i), other) => {
                    return Err(format!(
                        "{here} is {}, not an array to index [{i}]",
                        kind(other)
                    ));
                }
            };
            match seg {
                Segment::Key(k) => {
                    if !walked.is_empty() {
                        walked.push('.');
                    }
                    walked.push_str(k);
                }
                Segment::Index(i) => walked.push_str(&format!("[{i}]")),
            }
        }
        Ok(cur)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl FromStr for JsonPath {
    type Err = String;

    fn from_str(s: &str) -> Result<JsonPath, String> {
        let mut segments = Vec::new();
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        // After a segment we need '.', '[' or the end.
        let mut need_sep = false;
        if chars.is_empty() {
            return Err("empty path".into());
        }
        while i < chars.len() {
            match chars[i] {
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|&c| c == ']')
                        .ok_or_else(|| format!("unclosed '[' at character {}", i + 1))?;
                    let inner: String = chars[i + 1..i + close].iter().collect();
                    let n = inner
                        .parse::<usize>()
                        .map_err(|_| format!("index [{inner}] is not a number"))?;
                    segments.push(Segment::Index(n));
                    i += close + 1;
                    need_sep = true;
                }
                '.' if need_sep => {
                    need_sep = false;
                    i += 1;
                    if i == chars.len() {
                        return Err("path ends with '.'".into());
                    }
                }
                '.' => return Err(format!("empty key at character {}", i + 1)),
                _ if need_sep => {
                    return Err(format!("expected '.' or '[' at character {}", i + 1));
                }
                '"' => {
                    let close = chars[i + 1..]
                        .iter()
                        .position(|&c| c == '"')
                        .ok_or_else(|| format!("unclosed '\"' at character {}", i + 1))?;
                    let key: String = chars[i + 1..i + 1 + close].iter().collect();
                    segments.push(Segment::Key(key));
                    i += close + 2;
                    need_sep = true;
                }
                _ => {
                    let start = i;
                    while i < chars.len() && !matches!(chars[i], '.' | '[' | ']' | '"') {
                        i += 1;
                    }
                    if i < chars.len() && matches!(chars[i], ']' | '"') {
                        return Err(format!("unexpected '{}' at character {}", chars[i], i + 1));
                    }
                    segments.push(Segment::Key(chars[start..i].iter().collect()));
                    need_sep = true;
                }
            }
        }
        Ok(JsonPath { segments })
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, s) in self.segments.iter().enumerate() {
            match s {
                Segment::Key(k) if k.contains(['.', '[', ']']) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "\"{k}\"")?
                }
                Segment::Key(k) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> JsonPath {
        s.parse().unwrap()
    }

    #[test]
    fn parses_keys_indexes_and_quotes() {
        use Segment::*;
        assert_eq!(
            p("status.booted.image.version").segments(),
            &[
                Key("status".into()),
                Key("booted".into()),
                Key("image".into()),
                Key("version".into())
            ]
        );
        assert_eq!(
            p("deployments[0].version").segments(),
            &[Key("deployments".into()), Index(0), Key("version".into())]
        );
        assert_eq!(p("[2]").segments(), &[Index(2)]);
        assert_eq!(
            p("a[1][2]").segments(),
            &[Key("a".into()), Index(1), Index(2)]
        );
        assert_eq!(
            p("labels.\"org.opencontainers.image.version\"").segments(),
            &[
                Key("labels".into()),
                Key("org.opencontainers.image.version".into())
            ]
        );
        assert_eq!(p("a.\"b.c\"[0]").to_string(), "a.\"b.c\"[0]");
        assert_eq!(
            p("deployments[0].version").to_string(),
            "deployments[0].version"
        );
    }

    #[test]
    fn rejects_malformed_paths() {
        for bad in ["", "a..b", ".a", "a.", "a[x]", "a[1", "a]b", "a[0]b", "\"a"] {
            assert!(
                bad.parse::<JsonPath>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn gets_values_and_explains_misses() {
        let doc = json!({
            "status": {"booted": {"image": {"version": "v2"}}, "staged": null},
            "deployments": [{"version": "v2"}, {"version": "v1"}]
        });
        assert_eq!(p("status.booted.image.version").get(&doc).unwrap(), "v2");
        assert_eq!(p("deployments[1].version").get(&doc).unwrap(), "v1");
        let e = p("deployments[5].version").get(&doc).unwrap_err();
        assert_eq!(e, "deployments has 2 item(s), no index 5");
        let e = p("status.staged.image").get(&doc).unwrap_err();
        assert_eq!(e, "status.staged is null, not an object with key \"image\"");
        let e = p("status.rollback").get(&doc).unwrap_err();
        assert_eq!(e, "status has no key \"rollback\" (it has: booted, staged)");
        let e = p("nope").get(&doc).unwrap_err();
        assert!(e.starts_with("the document has no key \"nope\""), "{e}");
        let e = p("status[0]").get(&doc).unwrap_err();
        assert_eq!(e, "status is an object, not an array to index [0]");
    }
}
