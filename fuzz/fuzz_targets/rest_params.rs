//! Arbitrary query string, content type and body into the REST parameter extractor, and an
//! arbitrary path into the router: never a panic; an accepted request's parameters are within
//! the limits and hold no character XML 1.0 forbids.
//!
//! Input: `path \n query \n content-type \n body` (an empty query line is no query; content
//! type `-` is none), so seeds are written by hand.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley::rest::extract::{raw_filters, sort, xml_forbidden, ParamLimits, Params};
use parley::rest::router;
use serde_json::Value;

/// Depth (containers, the root object counted) and leaf count of the tree, and whether any
/// key or string holds a forbidden character. Iterative.
fn shape(root: &serde_json::Map<String, Value>) -> (usize, usize, bool) {
    let bad = |s: &str| s.chars().any(xml_forbidden);
    let (mut depth, mut leaves, mut forbidden) = (0, 0, false);
    let mut stack: Vec<(&Value, usize)> = Vec::new();
    for (k, v) in root {
        forbidden |= bad(k);
        stack.push((v, 2));
    }
    depth = depth.max(1);
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                depth = depth.max(d);
                if m.is_empty() {
                    leaves += 1;
                }
                for (k, c) in m {
                    forbidden |= bad(k);
                    stack.push((c, d + 1));
                }
            }
            Value::Array(a) => {
                depth = depth.max(d);
                if a.is_empty() {
                    leaves += 1;
                }
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            Value::String(s) => {
                forbidden |= bad(s);
                leaves += 1;
            }
            _ => leaves += 1,
        }
    }
    (depth, leaves, forbidden)
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let (Some(path), Some(query), Some(ct), body) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next().unwrap_or_default(),
    ) else {
        return;
    };
    // hyper hands the router and the extractor text (a URI is ASCII; a header value is checked
    // with `to_str`).
    let (Ok(path), Ok(query), Ok(ct)) = (
        std::str::from_utf8(path),
        std::str::from_utf8(query),
        std::str::from_utf8(ct),
    ) else {
        return;
    };
    let query = (!query.is_empty()).then_some(query);
    let ct = (ct != "-").then_some(ct);
    let segs = router::segments(path);
    let table = router::table();
    for m in [
        hyper::Method::GET,
        hyper::Method::POST,
        hyper::Method::DELETE,
    ] {
        let _ = router::find(&table, &m, &segs);
    }

    let limits = ParamLimits {
        max_params: 1000,
        max_depth: 8,
        max_json_depth: 32,
    };
    let Ok(p) = Params::from_request(query, ct, body, &limits) else {
        return;
    };
    let (depth, leaves, forbidden) = shape(p.root());
    assert!(
        !forbidden,
        "a forbidden character got through: {:?}",
        p.root()
    );
    // A form key of depth 8 becomes 8 nested containers at most (plus the root).
    assert!(
        depth <= limits.max_json_depth.max(limits.max_depth + 1),
        "depth {depth}"
    );
    assert!(leaves <= limits.max_params, "{leaves} leaves");
    // Everything a handler may do with them.
    let _ = p.flatten();
    let _ = sort(&p);
    let _ = raw_filters(&p, &["limit", "skip"], &["extensions", "attachments"]);
    for k in p.root().keys().take(8) {
        let path = [k.as_str(), "x"];
        let _ = p.str(&path[..1]);
        let _ = p.i64(&path[..1]);
        let _ = p.list(&path[..1]);
        let _ = p.flag(&path[..1]);
        let _ = p.nullable_str(&path);
        let _ = p.nullable_i64(&path);
    }
});
