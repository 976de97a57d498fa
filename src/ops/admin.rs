//! The admin listener (`admin.addr`): `GET /metrics` (Prometheus text), `GET /healthz`,
//! `GET /readyz`, `GET /stats` (live numbers as JSON, read by `parley stats`). Meant for loopback or a private network: it answers without authentication,
//! so it must never serve anything a chat user could abuse, and it never joins the public
//! listeners. Bounded like every listener: few connections, small requests, short timeouts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::db::Health;

/// Most admin connections served at once; an operator's scraper and CLI need a handful.
const MAX_CONNECTIONS: usize = 64;
/// How long a request head may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin endpoints read.
pub struct AdminState {
    pub health: Health,
    /// This node's cluster, if it is one of several: `/readyz` reports the bus.
    pub cluster: Option<Arc<crate::hub::cluster::Cluster>>,
    /// The live numbers of `GET /stats`.
    pub live: super::stats::Live,
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // Over the cap the connection is simply closed: scrapers retry.
                let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                let st = state.clone();
                let svc = service_fn(move |req| handle(st.clone(), req));
                let conn = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc);
                let mut stop = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                    drop(slot);
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn handle(
    state: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            super::telemetry::render(),
        ),
        (&Method::GET, "/healthz") => (
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.into(),
        ),
        (&Method::GET, "/readyz") => match state.health.ready().await {
            // A node cut off from the bus still serves its own users (and stores messages for
            // the others' offline): still ready for a load balancer, reported as degraded.
            Ok(()) => match &state.cluster {
                None => (
                    StatusCode::OK,
                    "application/json",
                    r#"{"status":"ready"}"#.into(),
                ),
                Some(c) => (
                    StatusCode::OK,
                    "application/json",
                    serde_json::json!({
                        "status": "ready",
                        "cluster": if c.is_up() { "up" } else { "degraded" },
                        "node": c.node(),
                        "peers": c.peers(),
                    })
                    .to_string(),
                ),
            },
            Err(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                serde_json::json!({ "status": "unavailable", "reason": e.to_string() }).to_string(),
            ),
        },
        (&Method::GET, "/stats") => (
            StatusCode::OK,
            "application/json",
            state.live.snapshot().to_string(),
        ),
        (_, "/metrics" | "/healthz" | "/readyz" | "/stats") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}
