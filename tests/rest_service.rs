//! Service basics: probes, CORS, bad input that must not hurt the server.

use serde_json::json;

use crate::common::TestServer;

#[tokio::test]
async fn health_and_readiness_probes_answer() {
    let s = TestServer::start().await;
    let r = s.http.get("/healthz", None).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    let r = s.http.get("/readyz", None).await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("ready"))
    );
}

#[tokio::test]
async fn responses_carry_json_type_and_cors_headers() {
    let s = TestServer::start().await;
    let r = s.http.get("/session", None).await;
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let r = s
        .http
        .request(
            "OPTIONS",
            "/session.json",
            &[
                ("Origin", "http://x"),
                ("Access-Control-Request-Method", "POST"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("CB-Token"));
}

#[tokio::test]
async fn malformed_json_is_a_client_error_and_the_server_stays_up() {
    let s = TestServer::start().await;
    let r = s
        .http
        .request(
            "POST",
            "/session",
            &[],
            Some(("application/json", b"{\"application_id\": 1,")),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["errors"]["base"][0]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));
    let r = s
        .http
        .request(
            "POST",
            "/session",
            &[],
            Some(("application/json", b"[1,2]")),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(s.http.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn wrong_content_type_is_refused_with_a_message() {
    let s = TestServer::start().await;
    let r = s
        .http
        .request(
            "POST",
            "/session",
            &[],
            Some(("application/xml", b"<session/>")),
        )
        .await;
    assert_eq!(r.status, 415);
    assert!(r.json()["errors"]["base"][0]
        .as_str()
        .unwrap()
        .contains("application/xml"));
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let mut c = crate::common::test_config();
    c.http.max_body_bytes = 1024;
    let s = TestServer::start_with(c).await;
    let big = json!({"application_id": 1, "pad": "x".repeat(4096)}).to_string();
    let r = s
        .http
        .request(
            "POST",
            "/session",
            &[],
            Some(("application/json", big.as_bytes())),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(s.http.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn wrongly_typed_field_is_named() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post_json(
            "/session",
            None,
            json!({"application_id": {"x": 1}, "auth_key": "k"}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.field_error("application_id").is_some(), "{}", r.body);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_told_apart() {
    let s = TestServer::start().await;
    assert_eq!(s.http.get("/nope.json", None).await.status, 404);
    assert_eq!(
        s.http.request("PATCH", "/session", &[], None).await.status,
        405
    );
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_hurt_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await;
    let mut raw = tokio::net::TcpStream::connect(s.http.addr).await.unwrap();
    raw.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = raw.read_to_end(&mut buf).await;
    assert_eq!(s.http.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn shutdown_drains_and_stops_accepting() {
    let s = TestServer::start().await;
    let addr = s.http.addr;
    s.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
