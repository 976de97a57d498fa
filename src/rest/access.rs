//! What each REST request leaves for the operator: its request id (the client's `X-Request-Id`
//! when sane, else a fresh one; echoed on every response), one access-log line (target
//! `parley::access`) and the request metrics.
//!
//! Labels and log fields name the route table's pattern (`users/{}`), never the raw path: a
//! path holds ids and whatever a caller typed, which would make every line and every metric
//! series unique. The method label is one of the methods the API knows, else `other`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use hyper::{HeaderMap, Method, StatusCode};

use crate::ops::telemetry::{HTTP_REQUESTS, HTTP_REQUEST_DURATION};

/// The request id header (requests and responses).
pub const REQUEST_ID: &str = "x-request-id";
/// The longest client-chosen request id that is kept.
pub const MAX_REQUEST_ID: usize = 64;
/// The route label of a request no route matched (404s, and refusals before routing).
pub const UNMATCHED: &str = "unmatched";

/// The client's `X-Request-Id` if it is 1–64 characters of `[A-Za-z0-9._-]` (safe in a header,
/// a log line and a JSON string as it stands), else a fresh id. The first such header counts.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .map(|v| v.as_bytes())
        .filter(|v| is_sane(v))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map_or_else(fresh_id, str::to_owned)
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// 16 hex digits, distinct for every request of this process: a counter through a bijective
/// mix keyed by a random seed, so ids of other processes do not collide in one log store and
/// the ids do not reveal how many requests the server has answered. No system call per request.
fn fresh_id() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| rand_core::RngCore::next_u64(&mut rand_core::OsRng));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // splitmix64: an odd-step walk from the seed, then a bijective finaliser.
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", z ^ (z >> 31))
}

/// The method as a label: a caller may send any token as a method.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// One answered request, as the access log and the metrics see it.
pub struct Answered<'a> {
    pub method: &'static str,
    pub route: &'static str,
    pub status: StatusCode,
    /// Response body bytes.
    pub bytes: usize,
    pub started: Instant,
    pub request_id: &'a str,
    pub peer: SocketAddr,
}

/// Writes the access-log line (5xx at `warn`, the rest at `info`) and records the metrics.
pub fn record(a: &Answered<'_>) {
    let elapsed = a.started.elapsed();
    let status = a.status.as_u16();
    metrics::counter!(HTTP_REQUESTS, "method" => a.method, "route" => a.route, "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "method" => a.method, "route" => a.route)
        .record(elapsed.as_secs_f64());
    // Milliseconds with microsecond precision: what a person reads, exact enough to sum.
    let latency_ms = elapsed.as_micros() as f64 / 1000.0;
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(
                target: "parley::access",
                method = %a.method,
                route = %a.route,
                status,
                bytes = a.bytes,
                latency_ms,
                request_id = %a.request_id,
                peer = %a.peer,
                "request"
            )
        };
    }
    if a.status.is_server_error() {
        line!(warn);
    } else {
        line!(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn id_for(value: &[u8]) -> String {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        request_id(&h)
    }

    #[test]
    fn a_sane_client_request_id_is_kept() {
        assert_eq!(id_for(b"abc-123_X.y"), "abc-123_X.y");
        let longest = "a".repeat(MAX_REQUEST_ID);
        assert_eq!(id_for(longest.as_bytes()), longest);
    }

    #[test]
    fn an_insane_client_request_id_is_replaced() {
        let too_long = "a".repeat(MAX_REQUEST_ID + 1);
        for bad in [
            too_long.as_bytes(),
            b"a b",
            b"a\"b",
            b"\xc3\xa9",
            b"a/b",
            b"{}",
        ] {
            let id = id_for(bad);
            assert_ne!(id.as_bytes(), bad);
            assert!(is_sane(id.as_bytes()), "{id}");
        }
    }

    #[test]
    fn fresh_request_ids_differ() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| request_id(&HeaderMap::new())).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|i| i.len() == 16 && is_sane(i.as_bytes())));
    }
}
