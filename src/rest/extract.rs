//! Request parameters as one tree, whatever the client used: query string, JSON body or form
//! body (`user[login]=a`, `ids[]=1&ids[]=2`), plus typed getters whose errors name the field.

use hyper::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::model::filter::{RawFilter, SortDir};

#[derive(Clone, Debug, Default)]
pub struct Params {
    root: Map<String, Value>,
}

/// `user[login]` for the path `["user", "login"]`.
pub fn field_name(path: &[&str]) -> String {
    let mut s = path.first().copied().unwrap_or_default().to_string();
    for p in &path[1.min(path.len())..] {
        s.push('[');
        s.push_str(p);
        s.push(']');
    }
    s
}

fn wrong_type(path: &[&str], what: &str) -> ApiError {
    ApiError::invalid(&field_name(path), &format!("must be {what}"))
}

impl Params {
    /// Merges the query string with the body (the body wins on a clash).
    pub fn from_request(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Self, ApiError> {
        let mut p = Params::default();
        if let Some(q) = query {
            p.add_form(q.as_bytes());
        }
        let body_is_blank = body.iter().all(u8::is_ascii_whitespace);
        if body_is_blank {
            return Ok(p);
        }
        let mime = content_type
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        match mime.as_str() {
            "application/json" | "text/json" => p.add_json(body)?,
            "application/x-www-form-urlencoded" => p.add_form(body),
            // No type given: JSON if it looks like JSON, a form otherwise.
            "" if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => p.add_json(body)?,
            "" => p.add_form(body),
            other => {
                return Err(ApiError::base(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!("Content-Type `{other}` is not supported: send application/json or application/x-www-form-urlencoded"),
                ))
            }
        }
        Ok(p)
    }

    fn add_json(&mut self, body: &[u8]) -> Result<(), ApiError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => {
                self.root.extend(m);
                Ok(())
            }
            Ok(_) => Err(ApiError::base(
                StatusCode::BAD_REQUEST,
                "the JSON body must be an object",
            )),
            Err(e) => Err(ApiError::base(
                StatusCode::BAD_REQUEST,
                &format!("malformed JSON body: {e}"),
            )),
        }
    }

    fn add_form(&mut self, bytes: &[u8]) {
        for (k, v) in form_urlencoded::parse(bytes) {
            let segs = split_key(&k);
            insert(&mut self.root, &segs, v.into_owned());
        }
    }

    pub fn root(&self) -> &Map<String, Value> {
        &self.root
    }

    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut v = self.root.get(*first)?;
        for p in rest {
            v = v.as_object()?.get(*p)?;
        }
        Some(v)
    }

    pub fn has(&self, path: &[&str]) -> bool {
        self.get(path).is_some()
    }

    /// A text value; numbers and booleans are taken as their text. `null` is `None`.
    pub fn str(&self, path: &[&str]) -> Result<Option<String>, ApiError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => scalar_text(v)
                .map(Some)
                .ok_or_else(|| wrong_type(path, "a string")),
        }
    }

    /// Like [`str`](Self::str) but keeps "given as null" apart from "not given".
    pub fn nullable_str(&self, path: &[&str]) -> Result<Option<Option<String>>, ApiError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(v) => {
                let s = scalar_text(v).ok_or_else(|| wrong_type(path, "a string"))?;
                Ok(Some(if s.is_empty() { None } else { Some(s) }))
            }
        }
    }

    pub fn i64(&self, path: &[&str]) -> Result<Option<i64>, ApiError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong_type(path, "an integer")),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| wrong_type(path, "an integer")),
            Some(_) => Err(wrong_type(path, "an integer")),
        }
    }

    pub fn nullable_i64(&self, path: &[&str]) -> Result<Option<Option<i64>>, ApiError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(_) => self.i64(path).map(Some),
        }
    }

    /// A list given as a JSON array, `a[]=x&a[]=y`, or one string `"a, b"`.
    pub fn list(&self, path: &[&str]) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => value_list(v)
                .map(Some)
                .ok_or_else(|| wrong_type(path, "a list")),
        }
    }

    /// Truthy flags as the SDKs send them: `1`, `"1"`, `true`, `"true"`.
    pub fn flag(&self, path: &[&str]) -> Result<bool, ApiError> {
        Ok(match self.get(path) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => match scalar_text(v).as_deref().map(str::trim) {
                Some("1" | "true" | "yes") => true,
                Some("0" | "false" | "no" | "") => false,
                _ => return Err(wrong_type(path, "0 or 1")),
            },
        })
    }

    /// Every parameter as flat `key[sub]=value` pairs (what a session signature covers).
    pub fn flatten(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in &self.root {
            flatten_into(k, v, &mut out);
        }
        out
    }
}

/// `sort_asc=field` or `sort_desc=field`.
pub fn sort(p: &Params) -> Result<Option<(String, SortDir)>, ApiError> {
    Ok(match (p.str(&["sort_asc"])?, p.str(&["sort_desc"])?) {
        (Some(f), _) => Some((f, SortDir::Asc)),
        (None, Some(f)) => Some((f, SortDir::Desc)),
        (None, None) => None,
    })
}

/// Every parameter but `skip` as a filter: `f=v` (no operator), `f[op]=v` (lists as `a,b` or
/// `f[op][]=a`), `f[]=a&f[]=b` (`in`). Keys in `nested` hold sub-fields written `key.sub`
/// (`extensions[k][in]=…` → field `extensions.k`). Operators and fields are typed by the domain.
pub fn raw_filters(p: &Params, skip: &[&str], nested: &[&str]) -> Result<Vec<RawFilter>, ApiError> {
    fn push(out: &mut Vec<RawFilter>, field: String, value: &Value) -> Result<(), ApiError> {
        let list = |v: &Value| {
            value_list(v).ok_or_else(|| ApiError::invalid(&field, "has a malformed value"))
        };
        match value {
            Value::Object(ops) => {
                for (op, v) in ops {
                    out.push(RawFilter {
                        field: field.clone(),
                        op: Some(op.clone()),
                        values: list(v)?,
                    });
                }
            }
            Value::Array(_) => out.push(RawFilter {
                field: field.clone(),
                op: Some("in".into()),
                values: list(value)?,
            }),
            v => out.push(RawFilter {
                field,
                op: None,
                values: vec![scalar_text(v).unwrap_or_default()],
            }),
        }
        Ok(())
    }
    let mut out = Vec::new();
    for (key, value) in p.root().iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        match value {
            Value::Object(subs) if nested.contains(&key.as_str()) => {
                for (k, v) in subs {
                    push(&mut out, format!("{key}.{k}"), v)?;
                }
            }
            _ => push(&mut out, key.clone(), value)?,
        }
    }
    Ok(out)
}

/// The items of a list value: an array, or a comma-separated string (items trimmed).
pub fn value_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => items.iter().map(scalar_text).collect(),
        Value::Object(m) => m.values().map(scalar_text).collect(),
        other => Some(
            scalar_text(other)?
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        ),
    }
}

pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flatten_into(key: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                flatten_into(&format!("{key}[{k}]"), child, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                flatten_into(&format!("{key}[]"), item, out);
            }
        }
        Value::Null => out.push((key.to_string(), String::new())),
        other => out.push((key.to_string(), scalar_text(other).unwrap_or_default())),
    }
}

/// `a[b][]` → `["a", "b", ""]`.
fn split_key(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_string()];
    };
    if !key.ends_with(']') || open == 0 {
        return vec![key.to_string()];
    }
    let mut segs = vec![key[..open].to_string()];
    segs.extend(key[open + 1..key.len() - 1].split("][").map(str::to_string));
    segs
}

fn insert(map: &mut Map<String, Value>, segs: &[String], value: String) {
    let Some((first, rest)) = segs.split_first() else {
        return;
    };
    match rest {
        [] => {
            map.insert(first.clone(), Value::String(value));
        }
        [last] if last.is_empty() => {
            let slot = map
                .entry(first.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            match slot {
                Value::Array(a) => a.push(Value::String(value)),
                other => {
                    let prev = std::mem::take(other);
                    *other = Value::Array(vec![prev, Value::String(value)]);
                }
            }
        }
        _ => {
            let slot = map
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(child) = slot {
                insert(child, rest, value);
            }
        }
    }
}

/// Percent-decodes one path segment.
pub fn decode_segment(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracketed_form_keys_nest() {
        let p = Params::from_request(
            Some("user%5Blogin%5D=al&user[password]=pw&ids[]=1&ids[]=2&type[in]=2%2C3"),
            None,
            b"",
        )
        .unwrap();
        assert_eq!(p.str(&["user", "login"]).unwrap().as_deref(), Some("al"));
        assert_eq!(p.list(&["ids"]).unwrap().unwrap(), vec!["1", "2"]);
        assert_eq!(p.list(&["type", "in"]).unwrap().unwrap(), vec!["2", "3"]);
    }

    #[test]
    fn json_body_overrides_query() {
        let p = Params::from_request(
            Some("a=1"),
            Some("application/json;charset=utf-8"),
            br#"{"a":2,"ids":"1002, 1003"}"#,
        )
        .unwrap();
        assert_eq!(p.i64(&["a"]).unwrap(), Some(2));
        assert_eq!(p.list(&["ids"]).unwrap().unwrap(), vec!["1002", "1003"]);
    }

    #[test]
    fn malformed_json_and_unknown_type_are_client_errors() {
        let e = Params::from_request(None, Some("application/json"), b"{nope").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = Params::from_request(None, Some("text/plain"), b"hello").unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let p = Params::from_request(
            None,
            Some("application/json"),
            br#"{"user":{"timezone":"abc"}}"#,
        )
        .unwrap();
        let e = p.i64(&["user", "timezone"]).unwrap_err();
        assert!(e.body.to_string().contains("user[timezone]"));
    }

    #[test]
    fn flatten_writes_brackets_back() {
        let p = Params::from_request(
            None,
            Some("application/json"),
            br#"{"application_id":42,"user":{"login":"a"}}"#,
        )
        .unwrap();
        let mut f = p.flatten();
        f.sort();
        assert_eq!(
            f,
            vec![
                ("application_id".into(), "42".into()),
                ("user[login]".into(), "a".into())
            ]
        );
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(decode_segment("a%2Cb"), "a,b");
        assert_eq!(decode_segment("%zz%"), "%zz%");
        assert_eq!(decode_segment("%E2%9C%93"), "✓");
    }
}
