//! The admin listener: metrics and probes on their own port, off the public REST port.

use crate::common::TestServer;

#[tokio::test]
async fn admin_listener_answers_probes() {
    let s = TestServer::start().await;
    let admin = s.admin();
    let r = admin.get("/healthz", None).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    let r = admin.get("/readyz", None).await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("ready"))
    );
}

#[tokio::test]
async fn admin_listener_serves_prometheus_text() {
    let s = TestServer::start().await;
    let r = s.admin().get("/metrics", None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
}

#[tokio::test]
async fn metrics_are_not_served_on_the_public_port() {
    let s = TestServer::start().await;
    assert_eq!(s.http.get("/metrics", None).await.status, 404);
}

#[tokio::test]
async fn admin_listener_refuses_unknown_paths() {
    let s = TestServer::start().await;
    assert_eq!(s.admin().get("/users", None).await.status, 404);
}
