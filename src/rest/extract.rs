//! Request parameters as one tree, whatever the client used: query string, JSON body or form
//! body (`user[login]=a`, `ids[]=1&ids[]=2`), plus typed getters whose errors name the field.
//!
//! This is the one place request parameters are parsed, so it is where hostile shapes stop:
//! nesting is bounded (bracket keys and JSON, both checked before anything deep is built, and
//! nothing here recurses on input depth), the number of parameters is bounded, and keys and
//! string values holding characters XML 1.0 forbids are refused, since they can end up in a
//! stanza.

use hyper::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::config::HttpConfig;
use crate::model::filter::{RawFilter, SortDir};

#[derive(Clone, Debug, Default)]
pub struct Params {
    root: Map<String, Value>,
}

/// The bounds [`Params::from_request`] enforces (`http.max_params`, `http.max_param_depth`,
/// `http.max_json_depth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamLimits {
    /// Query and form pairs plus JSON leaf values, counted together.
    pub max_params: usize,
    /// Segments of a bracketed key: `a[b][]` has 3.
    pub max_depth: usize,
    /// Nested arrays and objects in a JSON body, the body's own object included.
    pub max_json_depth: usize,
}

impl ParamLimits {
    pub fn from_config(http: &HttpConfig) -> Self {
        Self {
            max_params: http.max_params,
            max_depth: http.max_param_depth,
            max_json_depth: http.max_json_depth,
        }
    }
}

impl Default for ParamLimits {
    fn default() -> Self {
        Self::from_config(&HttpConfig::default())
    }
}

/// `user[login]` for the path `["user", "login"]`.
pub fn field_name(path: &[&str]) -> String {
    let mut s = path.first().copied().unwrap_or_default().to_string();
    for p in path.iter().skip(1) {
        s.push('[');
        s.push_str(p);
        s.push(']');
    }
    s
}

fn wrong_type(path: &[&str], what: &str) -> ApiError {
    ApiError::invalid(&field_name(path), &format!("must be {what}"))
}

/// A field name as an error shows it: at most 64 characters (a hostile key can be a megabyte).
fn shown(field: &str) -> String {
    const MAX: usize = 64;
    if field.is_empty() {
        return "base".into();
    }
    match field.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", field.get(..cut).unwrap_or_default()),
        None => field.to_string(),
    }
}

/// True for a character XML 1.0 does not allow in a document (C0 controls other than tab, LF
/// and CR; U+FFFE; U+FFFF). Surrogates cannot occur in a Rust string.
pub fn xml_forbidden(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}'
    )
}

/// The 422 for text holding a character XML 1.0 forbids, or `Ok`.
fn check_chars(field: impl FnOnce() -> String, text: &str) -> Result<(), ApiError> {
    match text.chars().find(|c| xml_forbidden(*c)) {
        None => Ok(()),
        Some(c) => Err(ApiError::invalid(
            &shown(&field()),
            &format!(
                "contains the character U+{:04X}, which XML 1.0 does not allow",
                u32::from(c)
            ),
        )),
    }
}

fn too_many(max: usize) -> ApiError {
    ApiError::invalid(
        "base",
        &format!("too many parameters: at most {max} are accepted"),
    )
}

impl Params {
    /// Merges the query string with the body (the body wins on a clash), within `limits`.
    pub fn from_request(
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
        limits: &ParamLimits,
    ) -> Result<Self, ApiError> {
        let mut p = Params::default();
        let mut count = 0;
        if let Some(q) = query {
            p.add_form(q.as_bytes(), limits, &mut count)?;
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
            "application/json" | "text/json" => p.add_json(body, limits, &mut count)?,
            "application/x-www-form-urlencoded" => p.add_form(body, limits, &mut count)?,
            // No type given: JSON if it looks like JSON, a form otherwise.
            "" if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => {
                p.add_json(body, limits, &mut count)?
            }
            "" => p.add_form(body, limits, &mut count)?,
            other => {
                return Err(ApiError::base(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!("Content-Type `{other}` is not supported: send application/json or application/x-www-form-urlencoded"),
                ))
            }
        }
        Ok(p)
    }

    fn add_json(
        &mut self,
        body: &[u8],
        limits: &ParamLimits,
        count: &mut usize,
    ) -> Result<(), ApiError> {
        // Before parsing: a deep value is never built (nor dropped, which recurses too).
        check_json_depth(body, limits.max_json_depth)?;
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => {
                check_tree(&m, limits.max_params, count)?;
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

    fn add_form(
        &mut self,
        bytes: &[u8],
        limits: &ParamLimits,
        count: &mut usize,
    ) -> Result<(), ApiError> {
        for (k, v) in form_urlencoded::parse(bytes) {
            *count += 1;
            if *count > limits.max_params {
                return Err(too_many(limits.max_params));
            }
            check_chars(|| k.to_string(), &k)?;
            check_chars(|| k.to_string(), &v)?;
            let segs = split_key(&k, limits.max_depth).ok_or_else(|| {
                ApiError::invalid(
                    &shown(&k),
                    &format!("nests deeper than {} levels", limits.max_depth),
                )
            })?;
            insert(&mut self.root, &segs, v.into_owned());
        }
        Ok(())
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

    /// Every parameter as flat `key[sub]=value` pairs (what a session signature covers), in
    /// key order. Iterative: no recursion on the tree's depth.
    pub fn flatten(&self) -> Vec<(String, String)> {
        enum Items<'a> {
            Obj(serde_json::map::Iter<'a>),
            Arr(std::slice::Iter<'a, Value>),
        }
        let mut out = Vec::new();
        // Each frame: the key its children extend, and the children not yet visited.
        let mut stack: Vec<(String, Items<'_>)> = Vec::new();
        for (k, v) in &self.root {
            let mut next = Some((k.clone(), v));
            loop {
                if let Some((key, v)) = next.take() {
                    match v {
                        Value::Object(m) => stack.push((key, Items::Obj(m.iter()))),
                        Value::Array(a) => stack.push((key, Items::Arr(a.iter()))),
                        Value::Null => out.push((key, String::new())),
                        other => out.push((key, scalar_text(other).unwrap_or_default())),
                    }
                }
                let Some((prefix, items)) = stack.last_mut() else {
                    break;
                };
                next = match items {
                    Items::Obj(it) => it.next().map(|(k, v)| (format!("{prefix}[{k}]"), v)),
                    Items::Arr(it) => it.next().map(|v| (format!("{prefix}[]"), v)),
                };
                if next.is_none() {
                    stack.pop();
                }
            }
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

/// Refuses a JSON body nested deeper than `max` (arrays and objects, the body's own object
/// counted), naming the field where it goes too deep. A linear scan of the bytes with no
/// recursion, before any value is built; malformed input is left to the parser to report.
fn check_json_depth(body: &[u8], max: usize) -> Result<(), ApiError> {
    // One frame per open container: is it an object, and the byte range of the quoted key of
    // the member being read (objects only).
    let mut stack: Vec<(bool, Option<(usize, usize)>)> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match body.get(i) {
                        None => return Ok(()),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                if expect_key {
                    if let Some(top) = stack.last_mut() {
                        top.1 = Some((start, i + 1));
                    }
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                if stack.len() >= max {
                    let path: Vec<String> = stack
                        .iter()
                        .map(|(_, key)| {
                            key.and_then(|(a, z)| body.get(a..z))
                                .and_then(|raw| serde_json::from_slice::<String>(raw).ok())
                                .unwrap_or_default()
                        })
                        .collect();
                    let path: Vec<&str> = path.iter().map(String::as_str).collect();
                    return Err(ApiError::invalid(
                        &shown(&field_name(&path)),
                        &format!("nests deeper than {max} levels"),
                    ));
                }
                stack.push((b == b'{', None));
                expect_key = b == b'{';
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = matches!(stack.last(), Some((true, _))),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Counts the leaf values of a parsed JSON body against `max` (on top of `count`) and refuses
/// keys and strings holding characters XML 1.0 forbids. Walks with an explicit stack.
fn check_tree(root: &Map<String, Value>, max: usize, count: &mut usize) -> Result<(), ApiError> {
    use std::borrow::Cow;
    enum Items<'a> {
        Obj(serde_json::map::Iter<'a>),
        Arr(std::iter::Enumerate<std::slice::Iter<'a, Value>>),
    }
    let mut stack = vec![Items::Obj(root.iter())];
    // The keys leading to the values the top frame yields (an array item's key is its index,
    // so an error names exactly the value it refuses: `a[b][1]`).
    let mut path: Vec<Cow<'_, str>> = Vec::new();
    let here = |path: &[Cow<'_, str>], key: &str| {
        let mut p: Vec<&str> = path.iter().map(|k| k.as_ref()).collect();
        p.push(key);
        field_name(&p)
    };
    while let Some(top) = stack.last_mut() {
        let next = match top {
            Items::Obj(it) => it.next().map(|(k, v)| (Cow::Borrowed(k.as_str()), v)),
            Items::Arr(it) => it.next().map(|(i, v)| (Cow::Owned(i.to_string()), v)),
        };
        let Some((key, v)) = next else {
            stack.pop();
            path.pop();
            continue;
        };
        check_chars(|| here(&path, &key), &key)?;
        let leaf = match v {
            Value::Object(m) => {
                stack.push(Items::Obj(m.iter()));
                path.push(key);
                m.is_empty()
            }
            Value::Array(a) => {
                stack.push(Items::Arr(a.iter().enumerate()));
                path.push(key);
                a.is_empty()
            }
            Value::String(s) => {
                check_chars(|| here(&path, &key), s)?;
                true
            }
            _ => true,
        };
        if leaf {
            *count += 1;
            if *count > max {
                return Err(too_many(max));
            }
        }
    }
    Ok(())
}

/// `a[b][]` → `["a", "b", ""]`; `None` when it has more than `max_depth` segments (counted
/// without building them).
fn split_key(key: &str, max_depth: usize) -> Option<Vec<String>> {
    let whole = || (max_depth >= 1).then(|| vec![key.to_string()]);
    let Some(open) = key.find('[') else {
        return whole();
    };
    if !key.ends_with(']') || open == 0 {
        return whole();
    }
    let (Some(head), Some(inner)) = (key.get(..open), key.get(open + 1..key.len() - 1)) else {
        return whole();
    };
    let mut segs = vec![head.to_string()];
    for seg in inner.split("][") {
        if segs.len() >= max_depth {
            return None;
        }
        segs.push(seg.to_string());
    }
    Some(segs)
}

/// Puts `value` at `segs` in the tree (a trailing `[]` appends to a list). Iterative.
fn insert(root: &mut Map<String, Value>, segs: &[String], value: String) {
    let mut map = root;
    let mut rest = segs;
    loop {
        let Some((first, tail)) = rest.split_first() else {
            return;
        };
        match tail {
            [] => {
                map.insert(first.clone(), Value::String(value));
                return;
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
                return;
            }
            _ => {
                let slot = map
                    .entry(first.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                let Value::Object(child) = slot else {
                    return;
                };
                map = child;
                rest = tail;
            }
        }
    }
}

/// Percent-decodes one path segment.
pub fn decode_segment(s: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: ParamLimits = ParamLimits {
        max_params: 1000,
        max_depth: 8,
        max_json_depth: 32,
    };

    #[test]
    fn bracketed_form_keys_nest() {
        let p = Params::from_request(
            Some("user%5Blogin%5D=al&user[password]=pw&ids[]=1&ids[]=2&type[in]=2%2C3"),
            None,
            b"",
            &ParamLimits::default(),
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
            &ParamLimits::default(),
        )
        .unwrap();
        assert_eq!(p.i64(&["a"]).unwrap(), Some(2));
        assert_eq!(p.list(&["ids"]).unwrap().unwrap(), vec!["1002", "1003"]);
    }

    #[test]
    fn malformed_json_and_unknown_type_are_client_errors() {
        let e = Params::from_request(None, Some("application/json"), b"{nope", &LIM).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = Params::from_request(None, Some("text/plain"), b"hello", &LIM).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let p = Params::from_request(
            None,
            Some("application/json"),
            br#"{"user":{"timezone":"abc"}}"#,
            &LIM,
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
            &LIM,
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

    fn form(q: &str) -> Result<Params, ApiError> {
        Params::from_request(Some(q), None, b"", &LIM)
    }

    fn json(body: &[u8]) -> Result<Params, ApiError> {
        Params::from_request(None, Some("application/json"), body, &LIM)
    }

    /// The field an error names (the first key of `errors`).
    fn named(e: &ApiError) -> String {
        e.body["errors"]
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .unwrap_or_default()
    }

    #[test]
    fn a_bracket_key_deeper_than_the_limit_is_refused_naming_it() {
        assert!(form("a[b][c][d][e][f][g][h]=1").is_ok());
        let e = form("a[b][c][d][e][f][g][h][i]=1").unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(named(&e).starts_with("a[b]"), "{}", e.body);
    }

    #[test]
    fn four_hundred_thousand_brackets_are_refused_without_building_them() {
        let key = format!("a{}", "[]".repeat(200_000));
        let e = form(&format!("{key}=1")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        // The error names the key, shortened.
        assert!(named(&e).chars().count() <= 65, "{}", named(&e));
    }

    #[test]
    fn more_parameters_than_the_limit_are_refused() {
        let ok: Vec<String> = (0..1000).map(|i| format!("k{i}=v")).collect();
        assert!(form(&ok.join("&")).is_ok());
        let over: Vec<String> = (0..1001).map(|i| format!("k{i}=v")).collect();
        let e = form(&over.join("&")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(named(&e), "base");
    }

    #[test]
    fn query_pairs_and_json_leaves_count_together() {
        let items: Vec<String> = (0..999).map(|i| i.to_string()).collect();
        let body = format!(r#"{{"ids":[{}]}}"#, items.join(","));
        assert!(
            Params::from_request(Some("a=1"), Some("application/json"), body.as_bytes(), &LIM)
                .is_ok()
        );
        let e = Params::from_request(
            Some("a=1&b=2"),
            Some("application/json"),
            body.as_bytes(),
            &LIM,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn json_deeper_than_the_limit_is_refused_naming_the_field() {
        // The body's object and 31 arrays: 32 levels.
        let ok = format!(r#"{{"data":{}1{}}}"#, "[".repeat(31), "]".repeat(31));
        assert!(json(ok.as_bytes()).is_ok());
        let deep = format!(r#"{{"data":{}1{}}}"#, "[".repeat(32), "]".repeat(32));
        let e = json(deep.as_bytes()).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(named(&e).starts_with("data[]"), "{}", e.body);
        let e = json(br#"{"a":1,"b\"[{":{"c":{"d":{}}}}"#).map(|_| ()).err();
        assert!(e.is_none(), "brackets inside strings are not nesting");
    }

    #[test]
    fn a_hundred_thousand_open_brackets_are_refused_before_parsing() {
        let e = json(format!("{{\"a\":{}", "[".repeat(100_000)).as_bytes()).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let e = json("[".repeat(100_000).as_bytes()).unwrap_err();
        assert!(e.status.is_client_error());
    }

    #[test]
    fn characters_xml_forbids_are_refused_naming_the_field() {
        for bad in ["%00", "%01", "%0B", "%0C", "%1F", "%EF%BF%BE", "%EF%BF%BF"] {
            let e = form(&format!("message=a{bad}b")).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert_eq!(named(&e), "message", "{bad}");
            let e = form(&format!("x{bad}=1")).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        }
        assert!(form("message=tab%09lf%0Acr%0D%C3%A9").is_ok());
        let e = json(br#"{"dialog":{"name":"a\u0000b"}}"#).unwrap_err();
        assert_eq!(named(&e), "dialog[name]");
        let e = json(br#"{"attachments":[{"ty\u0007pe":"x"}]}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(named(&e).starts_with("attachments[0][ty"), "{}", e.body);
    }

    #[test]
    fn flatten_writes_nested_keys_in_order() {
        let p = json(br#"{"a":{"b":[1,{"c":null}],"d":"x"},"e":true}"#).unwrap();
        assert_eq!(
            p.flatten(),
            vec![
                ("a[b][]".into(), "1".into()),
                ("a[b][][c]".into(), String::new()),
                ("a[d]".into(), "x".into()),
                ("e".into(), "true".into()),
            ]
        );
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(decode_segment("a%2Cb"), "a,b");
        assert_eq!(decode_segment("%zz%"), "%zz%");
        assert_eq!(decode_segment("%E2%9C%93"), "✓");
        assert_eq!(decode_segment("%4"), "%4");
        assert_eq!(decode_segment("%FF"), "\u{FFFD}");
    }
}
