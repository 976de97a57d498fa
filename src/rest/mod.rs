//! The REST adapter: HTTP/1.1 on hyper, the route table, parameter extraction, authentication
//! and the error shape. Handlers are thin: parse, call one domain function, render.

mod dialogs;
pub mod error;
pub mod extract;
mod health;
mod json;
mod messages;
pub mod router;
mod session;
mod users;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::chat::{Actor, Chat};
use crate::config::Config;
use crate::db::DbPool;
use crate::identity::{Caller, Identity};
pub use error::ApiError;
pub use extract::Params;

/// What every handler can reach.
pub struct State {
    pub config: Arc<Config>,
    pub pool: DbPool,
    pub identity: Identity,
    pub chat: Chat,
    pub routes: Vec<router::Route>,
}

/// One request, parsed: path captures, merged parameters and credentials headers.
pub struct Ctx {
    pub state: Arc<State>,
    pub args: Vec<String>,
    pub params: Params,
    headers: HeaderMap,
    /// Set once the caller is authenticated, for the `CB-Token-ExpirationDate` header.
    expires: Arc<OnceLock<OffsetDateTime>>,
}

impl Ctx {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    /// Authenticates `CB-Token`, extending the session.
    pub async fn caller(&self) -> Result<Caller, ApiError> {
        let caller = self
            .state
            .identity
            .authenticate(self.header("cb-token"))
            .await?;
        let _ = self.expires.set(caller.session.expires_at);
        Ok(caller)
    }

    /// Authenticates and requires a user session: the actor of chat operations.
    pub async fn actor(&self) -> Result<Actor, ApiError> {
        Ok(Actor::try_from(&self.caller().await?)?)
    }

    /// Path capture `i` (the router guarantees it exists).
    pub fn arg(&self, i: usize) -> &str {
        self.args.get(i).map(String::as_str).unwrap_or("")
    }
}

/// A successful answer: always a JSON body, encoded when the handler returns, so a hot handler
/// can serialize its own types straight to bytes instead of building a `serde_json::Value` tree
/// first (for a page of 100 dialogs that tree cost more CPU than the database work).
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self::encode(StatusCode::OK, &body)
    }

    pub fn created(body: Value) -> Self {
        Self::encode(StatusCode::CREATED, &body)
    }

    /// A 200 answer serialized directly from any `Serialize` type.
    pub fn ok_from<T: serde::Serialize + ?Sized>(body: &T) -> Self {
        Self::encode(StatusCode::OK, body)
    }

    /// The empty success of DELETE/PUT endpoints, still valid JSON for SDKs that parse it.
    pub fn empty() -> Self {
        Self {
            status: StatusCode::OK,
            body: b"{}".to_vec(),
        }
    }

    fn encode<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Self {
        // Our own types and `Value`s always serialize (string keys only); the fallback keeps
        // the answer valid JSON should that ever change.
        let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
        Self { status, body }
    }
}

/// Serves HTTP on `listener` until `shutdown` turns true, then drains open connections for at
/// most `drain_timeout_secs`.
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let svc = service_fn(move |req| handle(state.clone(), req));
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drain = Duration::from_secs(state.config.http.drain_timeout_secs);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("REST connections still open after the drain timeout; closing them");
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let expires = Arc::new(OnceLock::new());
    let result = if method == Method::OPTIONS {
        Ok(Reply::empty())
    } else {
        contain_panic(dispatch(state, req, expires.clone())).await
    };
    let (status, body) = match result {
        Ok(r) => (r.status, r.body),
        Err(e) => (
            e.status,
            serde_json::to_vec(&e.body).unwrap_or_else(|_| b"{}".to_vec()),
        ),
    };
    if status.is_server_error() {
        tracing::warn!(%method, %path, %status, "request failed");
    } else {
        tracing::debug!(%method, %path, %status, "request");
    }
    Ok(respond(status, body, expires.get().copied()))
}

async fn dispatch(
    state: Arc<State>,
    req: Request<Incoming>,
    expires: Arc<OnceLock<OffsetDateTime>>,
) -> Result<Reply, ApiError> {
    let segs = router::segments(req.uri().path());
    let (handler, args) = match router::find(&state.routes, req.method(), &segs) {
        router::Match::Found(route, args) => (route.handler, args),
        router::Match::WrongMethod => {
            return Err(ApiError::base(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{} is not allowed here", req.method()),
            ))
        }
        router::Match::NotFound => return Err(ApiError::not_found("No such API endpoint")),
    };
    let (parts, body) = req.into_parts();
    let limit = state.config.http.max_body_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::base(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body exceeds {limit} bytes"),
            ))
        }
        Err(_) => {
            return Err(ApiError::base(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ))
        }
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let limits = extract::ParamLimits::from_config(&state.config.http);
    let params = Params::from_request(parts.uri.query(), content_type, &body, &limits)?;
    let ctx = Ctx {
        state,
        args,
        params,
        headers: parts.headers,
        expires,
    };
    handler(ctx).await
}

/// Runs a request's future so that a panic in it (a bug) answers 500 for that request alone:
/// the connection stays usable, and nothing it held is left half-done across an `await` of
/// another request. Shared state uses poison-tolerant locks, so others carry on either way.
async fn contain_panic<F>(fut: F) -> Result<Reply, ApiError>
where
    F: Future<Output = Result<Reply, ApiError>>,
{
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "request handler panicked");
            Err(ApiError::internal())
        }
    }
}

fn respond(
    status: StatusCode,
    body: Vec<u8>,
    expires: Option<OffsetDateTime>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static(
            "Content-Type, CB-Token, CB-AuthKey, CB-SDK, ConnectyCube-REST-API-Version",
        ),
    );
    h.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("CB-Token-ExpirationDate"),
    );
    if let Some(t) = expires {
        let fmt =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
        if let Some(v) = t
            .format(&fmt)
            .ok()
            .and_then(|s| HeaderValue::try_from(s).ok())
        {
            h.insert("cb-token-expirationdate", v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_for_that_request_alone() {
        let e = contain_panic(async {
            if true {
                panic!("a handler's bug");
            }
            Ok(Reply::empty())
        })
        .await
        .err()
        .map(|e| e.status);
        assert_eq!(e, Some(StatusCode::INTERNAL_SERVER_ERROR));
        let ok = contain_panic(async { Ok(Reply::empty()) }).await;
        assert!(matches!(ok, Ok(r) if r.status == StatusCode::OK));
    }
}
