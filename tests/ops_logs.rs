//! What each request and connection leaves for the operator: `X-Request-Id` on every REST
//! answer, one access-log line per request (JSON in production), REST metrics by route
//! pattern, and a span per XMPP connection naming its transport, peer and user.

use crate::common::spawn::Parley;
use crate::common::xmpp::{Client, Via};
use crate::common::{TestServer, PASSWORD};

fn is_generated_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn every_rest_answer_carries_a_request_id() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let ok = s.http.get("/session", Some(&token)).await;
    let unauthorized = s.http.get("/session", None).await;
    let not_found = s.http.get("/no/such/thing", None).await;
    let mut ids = Vec::new();
    for (r, status) in [(ok, 200), (unauthorized, 401), (not_found, 404)] {
        assert_eq!(r.status, status, "{}", r.body);
        let id = r.header("x-request-id").expect("X-Request-Id").to_owned();
        assert!(is_generated_id(&id), "{id}");
        ids.push(id);
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 3, "each request has its own id: {ids:?}");
}

#[tokio::test]
async fn a_sane_client_request_id_is_echoed() {
    let s = TestServer::start().await;
    let id = format!("Client.req_1-{}", "x".repeat(64 - 13));
    assert_eq!(id.len(), 64);
    let r = s
        .http
        .request("GET", "/healthz", &[("X-Request-Id", &id)], None)
        .await;
    assert_eq!(r.header("x-request-id"), Some(id.as_str()));
}

#[tokio::test]
async fn a_client_request_id_too_long_or_with_other_characters_is_replaced() {
    let s = TestServer::start().await;
    let too_long = "a".repeat(65);
    for bad in [
        too_long.as_str(),
        "a b",
        "a\"b",
        "a/b",
        "<script>",
        "id;drop",
    ] {
        let r = s
            .http
            .request("GET", "/healthz", &[("X-Request-Id", bad)], None)
            .await;
        let id = r.header("x-request-id").expect("X-Request-Id");
        assert!(is_generated_id(id), "{bad:?} answered with {id:?}");
    }
}

/// The value of the series `name{labels…}` in a Prometheus text exposition (0 when absent).
fn series(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn rest_requests_are_counted_by_route_pattern_and_status_never_by_raw_path() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let labels = [
        ("method", "DELETE"),
        ("route", "chat/Message/{}/reactions"),
        ("status", "405"),
    ];
    let before = series(
        &s.admin().get("/metrics", None).await.body,
        "parley_http_requests_total",
        &labels,
    );
    for id in ["5f0000000000000000000abc", "5f0000000000000000000def"] {
        let r = s
            .http
            .delete(&format!("/chat/Message/{id}/reactions"), Some(&token))
            .await;
        assert_eq!(r.status, 405, "{}", r.body);
    }
    let metrics = s.admin().get("/metrics", None).await.body;
    let after = series(&metrics, "parley_http_requests_total", &labels);
    // Other tests share the process-wide recorder: at least our two.
    assert!(after - before >= 2.0, "{before} → {after}");
    assert!(!metrics.contains("5f0000000000000000000abc"), "{metrics}");
}

#[tokio::test]
async fn rest_latency_is_a_histogram_by_method_and_route_pattern() {
    let s = TestServer::start().await;
    let token = s.app_token().await;
    let r = s.http.get("/users/424242", Some(&token)).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let metrics = s.admin().get("/metrics", None).await.body;
    let route = [("method", "GET"), ("route", "users/{}")];
    assert!(
        series(
            &metrics,
            "parley_http_request_duration_seconds_count",
            &route
        ) >= 1.0,
        "{metrics}"
    );
    let le_10s = [route[0], route[1], ("le", "10")];
    assert!(
        series(
            &metrics,
            "parley_http_request_duration_seconds_bucket",
            &le_10s
        ) >= 1.0,
        "latency has buckets: {metrics}"
    );
}

#[tokio::test]
async fn paths_no_route_matches_are_counted_as_unmatched() {
    let s = TestServer::start().await;
    let labels = [("route", "unmatched"), ("status", "404")];
    let before = series(
        &s.admin().get("/metrics", None).await.body,
        "parley_http_requests_total",
        &labels,
    );
    let r = s.http.get("/probe/wp-admin/x1y2z3", None).await;
    assert_eq!(r.status, 404);
    let metrics = s.admin().get("/metrics", None).await.body;
    assert!(series(&metrics, "parley_http_requests_total", &labels) - before >= 1.0);
    assert!(!metrics.contains("x1y2z3"), "{metrics}");
}

#[tokio::test]
async fn a_json_access_line_names_method_route_status_bytes_latency_request_id_and_peer() {
    let mut p = Parley::start(
        "access-json",
        &[("PARLEY_LOG_FORMAT", "json"), ("PARLEY_LOG", "info")],
    )
    .await;
    let r = p
        .http
        .request(
            "GET",
            "/users/31337",
            &[("X-Request-Id", "json-line-1")],
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let line = p
        .log_line("the access line of json-line-1", |v| {
            v["target"] == "parley::access" && v["fields"]["request_id"] == "json-line-1"
        })
        .await;
    let f = &line["fields"];
    assert_eq!(f["method"], "GET", "{line}");
    assert_eq!(f["route"], "users/{}", "the pattern, not the path: {line}");
    assert_eq!(f["status"], 401, "{line}");
    assert_eq!(f["bytes"], r.body.len(), "{line}");
    assert!(
        f["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    let peer: std::net::SocketAddr = f["peer"].as_str().unwrap().parse().unwrap();
    assert!(peer.ip().is_loopback(), "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    // The request's span carries the id, so every line logged while serving it does.
    assert_eq!(line["span"]["request_id"], "json-line-1", "{line}");
    assert!(!line.to_string().contains("31337"), "{line}");
}

#[tokio::test]
async fn an_xmpp_connection_span_names_its_transport_peer_and_user() {
    let mut p = Parley::start(
        "xmpp-span",
        &[
            ("PARLEY_LOG_FORMAT", "json"),
            ("PARLEY_LOG", "info,parley::xmpp=debug"),
        ],
    )
    .await;
    let addrs = p.xmpp_addrs().await;
    let local = p.chat_user("span-user").await;
    let mut c = Client::login(addrs, Via::DirectTls, &local, PASSWORD).await;
    let line = p
        .log_line("XMPP session bound", |v| {
            v["fields"]["message"] == "XMPP session bound"
        })
        .await;
    let span = &line["span"];
    assert_eq!(span["name"], "xmpp", "{line}");
    assert_eq!(span["transport"], "tls", "{line}");
    assert_eq!(span["user"], format!("{local}@localhost"), "{line}");
    let peer: std::net::SocketAddr = span["peer"].as_str().unwrap().parse().unwrap();
    assert!(peer.ip().is_loopback(), "{line}");
    c.close().await;
    let end = p
        .log_line("XMPP session ended", |v| {
            v["fields"]["message"] == "XMPP session ended"
        })
        .await;
    assert_eq!(end["span"]["user"], format!("{local}@localhost"), "{end}");
}
