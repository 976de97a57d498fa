//! The OpenAPI document (`docs/openapi.json`, served at `GET /openapi.json`): it describes the
//! route table exactly (every route documented, every documented operation served), it is
//! structurally OpenAPI 3.1, and the error answers it shows are the ones the server gives.

use std::collections::BTreeSet;

use hyper::Method;
use parley::rest::router::{self, Match};
use serde_json::Value;

use crate::common::TestServer;

/// The committed file, byte for byte what the server compiles in.
const DOCUMENT: &str = include_str!("../docs/openapi.json");

/// The keys of a path item that are operations (OpenAPI 3.1 §4.8.9).
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
}

fn paths(doc: &Value) -> &serde_json::Map<String, Value> {
    doc["paths"].as_object().expect("`paths` is an object")
}

/// Every documented operation: (method, path, operation object).
fn operations(doc: &Value) -> Vec<(Method, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in paths(doc) {
        for (key, op) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&key.as_str()) {
                let method = Method::from_bytes(key.to_ascii_uppercase().as_bytes())
                    .expect("an HTTP method");
                out.push((method, path.clone(), op));
            }
        }
    }
    out
}

/// A documented path written as a router pattern: `.json` dropped, `{name}` → `{}`.
fn as_pattern(path: &str) -> String {
    router::segments(path)
        .iter()
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s.as_str()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A request path for a documented one: every `{name}` filled with `1`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Follows a local `$ref` (the only kind the document uses), once.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix('#')
            .and_then(|p| doc.pointer(p))
            .unwrap_or_else(|| panic!("unresolved $ref {r}")),
        None => v,
    }
}

#[test]
fn every_route_is_documented_with_its_method() {
    let d = doc();
    let documented: BTreeSet<(String, String)> = operations(&d)
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), as_pattern(&p)))
        .collect();
    let missing: Vec<String> = router::table()
        .iter()
        .map(|r| (r.method.to_string(), r.pattern.to_string()))
        .filter(|k| !documented.contains(k))
        .map(|(m, p)| format!("{m} /{p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from docs/openapi.json: {missing:?}"
    );
}

#[test]
fn every_documented_operation_is_served_by_the_route_it_names() {
    let d = doc();
    let table = router::table();
    for (method, path, _) in operations(&d) {
        let segs = router::segments(&concrete(&path));
        match router::find(&table, &method, &segs) {
            Match::Found(route, _) => assert_eq!(
                route.pattern,
                as_pattern(&path),
                "{method} {path} is served by another route"
            ),
            Match::WrongMethod(_) => panic!("{method} {path} is documented but answers 405"),
            Match::NotFound => panic!("{method} {path} is documented but answers 404"),
        }
    }
}

#[tokio::test]
async fn every_documented_operation_answers_over_http_without_a_router_error() {
    let s = TestServer::start().await;
    for (method, path, _) in operations(&doc()) {
        let r = s
            .http
            .request(method.as_str(), &concrete(&path), &[], None)
            .await;
        assert_ne!(r.status, 405, "{method} {path}: {}", r.body);
        assert!(
            !(r.status == 404 && r.body.contains("No such API endpoint")),
            "{method} {path}: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn the_committed_document_is_served_at_openapi_json_without_a_token() {
    let s = TestServer::start().await;
    let r = s.http.get("/openapi.json", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        r.header("content-type")
    );
    assert!(
        r.body == DOCUMENT,
        "the served document is not the committed file"
    );
}

#[test]
fn the_document_declares_openapi_3_1() {
    let d = doc();
    let version = d["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi: {version:?}");
    assert!(d["info"]["title"].is_string() && d["info"]["version"].is_string());
}

#[test]
fn every_ref_resolves_inside_the_document() {
    let d = doc();
    let mut refs = Vec::new();
    let mut todo = vec![&d];
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    refs.push(r.clone());
                }
                todo.extend(m.values());
            }
            Value::Array(a) => todo.extend(a),
            _ => {}
        }
    }
    assert!(!refs.is_empty());
    let broken: Vec<&String> = refs
        .iter()
        .filter(|r| r.strip_prefix('#').and_then(|p| d.pointer(p)).is_none())
        .collect();
    assert!(broken.is_empty(), "unresolved $ref: {broken:?}");
}

#[test]
fn every_path_parameter_is_declared_and_every_declared_one_is_in_the_path() {
    let d = doc();
    for (method, path, op) in operations(&d) {
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let shared = paths(&d)[&path]["parameters"].as_array();
        let declared: BTreeSet<&str> = shared
            .into_iter()
            .chain(op["parameters"].as_array())
            .flatten()
            .map(|p| resolve(&d, p))
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(in_path, declared, "{method} {path}");
    }
}

#[test]
fn operation_ids_are_unique() {
    let d = doc();
    let mut seen = BTreeSet::new();
    for (method, path, op) in operations(&d) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(seen.insert(id), "operationId {id} is used twice");
    }
}

#[test]
fn every_error_answer_is_documented_in_the_one_error_shape() {
    let d = doc();
    for (method, path, op) in operations(&d) {
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.contains_key("default"),
            "{method} {path} has no default (error) response"
        );
        for (status, r) in responses {
            // Successes, and redirects (the storage API's downloads), are not errors.
            if status.starts_with('2') || status.starts_with('3') {
                continue;
            }
            let schema = &resolve(&d, r)["content"]["application/json"]["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/Errors",
                "{method} {path} {status}"
            );
        }
    }
}

#[test]
fn refusals_that_say_when_to_retry_document_retry_after() {
    let d = doc();
    for name in ["TooManyRequests", "ServiceUnavailable"] {
        let header = &d["components"]["responses"][name]["headers"]["Retry-After"];
        assert!(!header.is_null(), "{name} has no Retry-After header");
    }
}

#[tokio::test]
async fn the_documented_error_examples_are_what_the_server_answers() {
    let s = TestServer::start().await;
    let d = doc();
    let example = |response: &str, name: Option<&str>| {
        let content = &d["components"]["responses"][response]["content"]["application/json"];
        match name {
            Some(n) => content["examples"][n]["value"].clone(),
            None => content["example"].clone(),
        }
    };
    let r = s.http.get("/session", None).await;
    assert_eq!(
        (r.status, r.json()),
        (401, example("Unauthorized", Some("missing")))
    );
    let r = s.http.get("/session", Some("no-such-token")).await;
    assert_eq!(
        (r.status, r.json()),
        (401, example("Unauthorized", Some("expired")))
    );
    let app = s.app_token().await;
    let r = s.http.get("/chat/Dialog", Some(&app)).await;
    assert_eq!((r.status, r.json()), (403, example("Forbidden", None)));
    let r = s.http.get("/users/v2?login=a&limit=101", Some(&app)).await;
    assert_eq!((r.status, r.json()), (422, example("Unprocessable", None)));
}
