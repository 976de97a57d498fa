//! User-keyed values that the real-time layer writes into stanzas or the store keeps as JSON:
//! a message's custom parameters, a system message's parameters, attachments, dialog `data`.
//! One walk checks them all, iteratively (never recursing on the caller's nesting):
//! keys that become element or attribute names are XML names (`xml::names::is_param_name`),
//! no string holds a character XML forbids (which PostgreSQL refuses too, for NUL), and the
//! sizes stay within the configured bounds. A refusal names the field as the caller wrote it
//! in bracket form (`attachments[0][x]`, `data[a][b]`, or the bare key of a top-level custom
//! parameter), shortened to 64 characters. Nothing is rewritten.

use serde_json::{Map, Value};

use super::ChatError;
use crate::xml::names as xml;

/// Bounds of one tree of values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// What the bounds are of, for messages ("the custom parameters").
    pub what: &'static str,
    /// Keys in total, nested ones included.
    pub keys: usize,
    /// Bytes of keys and scalar values (as text), each value counting at least one.
    pub bytes: usize,
    /// Levels of nesting: a top-level key is level 1, a key of its object value level 2, …
    /// (an array is a level too).
    pub depth: usize,
}

/// How the keys of a tree are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keys {
    /// Every object key, at any depth, becomes an element name (custom parameters: nested
    /// objects are nested elements).
    AllNames,
    /// Top-level keys become names (attribute names of an attachment, dialog `data` fields);
    /// deeper values are written as JSON text, so their keys need only be XML text.
    TopNames,
}

const SHOWN_CHARS: usize = 64;

/// `key` as shown in a field name: at most 64 characters, then "…".
fn shown(key: &str) -> String {
    match key.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", key.get(..cut).unwrap_or_default()),
        None => key.to_owned(),
    }
}

fn field(parent: Option<&str>, key: &str) -> String {
    match parent {
        None => shown(key),
        Some(p) => format!("{p}[{}]", shown(key)),
    }
}

/// Refuses a string holding a character XML 1.0 forbids (NUL, other C0 controls, U+FFFE,
/// U+FFFF): such text cannot reach a stream, and PostgreSQL does not store NUL.
pub(crate) fn check_text(field: &str, s: &str) -> Result<(), ChatError> {
    match xml::forbidden_char(s) {
        Some(c) => Err(ChatError::invalid(
            field,
            format!(
                "contains a character XML does not allow (U+{:04X})",
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

/// The message for a key that cannot be an element or attribute name.
pub(crate) const BAD_NAME: &str =
    "is not a valid parameter name (an XML name without ':', not starting with \"xml\")";

/// Checks `top` (named `prefix[...]`, or by bare keys without a prefix): names, characters,
/// bounds, and top-level keys in `reserved` (written by the server itself).
pub(crate) fn check(
    prefix: Option<&str>,
    top: &Map<String, Value>,
    keys: Keys,
    bounds: Bounds,
    reserved: &[&str],
) -> Result<(), ChatError> {
    let mut walk = Walk {
        bounds,
        keys: 0,
        bytes: 0,
        work: Vec::new(),
    };
    for k in reserved {
        if top.contains_key(*k) {
            return Err(ChatError::invalid(
                field(prefix, k),
                "is reserved (the server writes it)",
            ));
        }
    }
    walk.entries(prefix, top, 1, true)?;
    while let Some((path, v, depth, names)) = walk.work.pop() {
        match v {
            Value::Object(m) => {
                let names = names && keys == Keys::AllNames;
                walk.entries(Some(&path), m, depth + 1, names)?;
            }
            Value::Array(items) => {
                walk.deeper(&path, depth + 1)?;
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    walk.count(&p, 1)?;
                    walk.work.push((p, item, depth + 1, false));
                }
            }
            Value::String(s) => {
                check_text(&path, s)?;
                walk.count(&path, s.len())?;
            }
            Value::Number(n) => walk.count(&path, n.to_string().len())?,
            Value::Bool(_) | Value::Null => walk.count(&path, 1)?,
        }
    }
    Ok(())
}

/// Depth-first work list: (field name, value, level, are its object keys names).
struct Walk<'a> {
    bounds: Bounds,
    keys: usize,
    bytes: usize,
    work: Vec<(String, &'a Value, usize, bool)>,
}

impl<'a> Walk<'a> {
    fn deeper(&self, path: &str, depth: usize) -> Result<(), ChatError> {
        if depth > self.bounds.depth {
            return Err(ChatError::invalid(
                path,
                format!(
                    "is nested too deeply (at most {} levels)",
                    self.bounds.depth
                ),
            ));
        }
        Ok(())
    }

    fn count(&mut self, path: &str, bytes: usize) -> Result<(), ChatError> {
        self.bytes = self.bytes.saturating_add(bytes.max(1));
        if self.bytes > self.bounds.bytes {
            return Err(ChatError::invalid(
                path,
                format!(
                    "takes {} past {} bytes",
                    self.bounds.what, self.bounds.bytes
                ),
            ));
        }
        Ok(())
    }

    fn entries(
        &mut self,
        parent: Option<&str>,
        m: &'a Map<String, Value>,
        depth: usize,
        names: bool,
    ) -> Result<(), ChatError> {
        for (k, v) in m {
            let path = field(parent, k);
            self.deeper(&path, depth)?;
            self.keys += 1;
            if self.keys > self.bounds.keys {
                return Err(ChatError::invalid(
                    path,
                    format!(
                        "is one key too many ({} have at most {})",
                        self.bounds.what, self.bounds.keys
                    ),
                ));
            }
            if names {
                if !xml::is_param_name(k) {
                    return Err(ChatError::invalid(path, BAD_NAME));
                }
            } else {
                check_text(&path, k)?;
            }
            self.count(&path, k.len())?;
            self.work.push((path, v, depth, names));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const B: Bounds = Bounds {
        what: "the custom parameters",
        keys: 8,
        bytes: 100,
        depth: 3,
    };

    fn run(v: Value, keys: Keys) -> Result<(), (String, String)> {
        let Value::Object(m) = v else { panic!() };
        check(None, &m, keys, B, &["message_id"]).map_err(|e| match e {
            ChatError::Invalid { field, message } => (field, message),
            other => panic!("{other:?}"),
        })
    }

    fn field_of(v: Value, keys: Keys) -> String {
        run(v, keys).expect_err("refused").0
    }

    #[test]
    fn valid_parameters_pass() {
        run(
            json!({"country": "USA", "n": 1, "o": {"a": [1, "x"], "b": null}}),
            Keys::AllNames,
        )
        .unwrap();
    }

    #[test]
    fn a_key_that_is_not_a_name_is_refused_by_its_path() {
        assert_eq!(
            field_of(json!({"x/><message": null}), Keys::AllNames),
            "x/><message"
        );
        assert_eq!(field_of(json!({"o": {"a b": 1}}), Keys::AllNames), "o[a b]");
        assert_eq!(field_of(json!({"xmlfoo": 1}), Keys::AllNames), "xmlfoo");
        assert_eq!(field_of(json!({"a:b": 1}), Keys::AllNames), "a:b");
        // Below the top, attachment and data keys are JSON text: only characters matter.
        run(json!({"o": {"a b": 1}}), Keys::TopNames).unwrap();
        assert_eq!(
            field_of(json!({"o": {"a\u{0}": 1}}), Keys::TopNames),
            "o[a\u{0}]"
        );
    }

    #[test]
    fn long_keys_are_shortened_in_the_field_name() {
        let key = format!("<{}", "a".repeat(200));
        let f = field_of(json!({ key: 1 }), Keys::AllNames);
        assert_eq!(f.chars().count(), SHOWN_CHARS + 1);
        assert!(f.ends_with('…'));
    }

    #[test]
    fn forbidden_characters_in_values_are_refused() {
        let (f, m) = run(json!({"o": {"a": ["ok", "n\u{0}"]}}), Keys::AllNames).unwrap_err();
        assert_eq!(f, "o[a][1]");
        assert!(m.contains("U+0000"), "{m}");
    }

    #[test]
    fn reserved_names_are_refused() {
        assert_eq!(
            field_of(json!({"message_id": "x"}), Keys::AllNames),
            "message_id"
        );
    }

    #[test]
    fn nesting_keys_and_bytes_are_bounded() {
        run(json!({"a": {"b": {"c": 1}}}), Keys::AllNames).unwrap();
        assert_eq!(
            field_of(json!({"a": {"b": {"c": {"d": 1}}}}), Keys::AllNames),
            "a[b][c][d]"
        );
        assert_eq!(
            field_of(json!({"a": {"b": [[1]]}}), Keys::AllNames),
            "a[b][0]"
        );
        let many: Map<String, Value> = (0..9).map(|i| (format!("k{i}"), json!(1))).collect();
        assert_eq!(field_of(Value::Object(many), Keys::AllNames), "k8");
        assert_eq!(
            field_of(json!({"big": "x".repeat(100)}), Keys::AllNames),
            "big"
        );
    }

    #[test]
    fn very_deep_values_are_refused_without_recursing() {
        let mut v = json!(1);
        for _ in 0..1_000 {
            v = json!({ "a": v });
        }
        let mut m = Map::new();
        m.insert("deep".into(), v);
        assert_eq!(
            check(None, &m, Keys::AllNames, B, &[]).map_err(|e| e.to_string()),
            Err("deep[a][a][a] is nested too deeply (at most 3 levels)".to_string())
        );
    }
}
