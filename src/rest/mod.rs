//! The REST adapter: HTTP/1.1 on hyper, the route table, parameter extraction, authentication
//! and the error shape. Handlers are thin: parse, call one domain function, render. It must
//! not hold the database pool or run SQL (readiness goes through `db::Health`), nor reach the
//! XMPP adapter or the hub: what XMPP clients see of a REST change follows the chat events.

mod access;
mod blobs;
mod calls;
pub mod conn;
mod dialogs;
pub mod error;
pub mod extract;
mod health;
mod json;
mod messages;
mod multipart;
mod openapi;
mod push;
pub mod router;
mod session;
mod storage;
mod users;

use std::convert::Infallible;
use std::future::Future;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::chat::{Actor, Chat};
use crate::config::{Config, HttpConfig};
use crate::db::Health;
use crate::identity::{Caller, Identity};
use crate::limits::conns::ip_key;
use crate::limits::rate::retry_after_secs;
use crate::limits::{ConnLimiter, ConnRefusal, KeyedLimiter};
pub use error::ApiError;
pub use extract::Params;

/// What every handler can reach.
pub struct State {
    pub config: Arc<Config>,
    /// Readiness (`/readyz`); REST holds no database pool.
    pub health: Health,
    pub identity: Identity,
    pub chat: Chat,
    /// The storage API (`/blobs`) and the disk store's byte paths (`/storage/…`).
    pub files: crate::files::Files,
    pub push: crate::push::Push,
    pub routes: Vec<router::Route>,
    pub limits: RestLimits,
}

/// Connections refused by the caps that may be answered at once; more are dropped unanswered.
const REFUSALS_IN_FLIGHT: usize = 256;
/// How long answering one refused connection may take.
const REFUSAL_BUDGET: Duration = Duration::from_secs(2);

/// The REST listener's caps and request-rate limiters (`[http]` options).
pub struct RestLimits {
    pub conns: Arc<ConnLimiter>,
    per_ip: KeyedLimiter<IpAddr>,
    /// Keyed by a hash of the `CB-Token` header (a key never holds the caller's bytes).
    per_token: KeyedLimiter<u64>,
    token_hasher: std::collections::hash_map::RandomState,
    refusals: Arc<Semaphore>,
}

impl RestLimits {
    pub fn new(c: &HttpConfig) -> Self {
        Self {
            conns: ConnLimiter::new(c.max_connections, c.max_connections_per_ip),
            per_ip: KeyedLimiter::new(
                c.requests_per_sec_per_ip,
                c.request_burst_per_ip,
                c.rate_limit_max_keys,
            ),
            per_token: KeyedLimiter::new(
                c.requests_per_sec_per_token,
                c.request_burst_per_token,
                c.rate_limit_max_keys,
            ),
            token_hasher: Default::default(),
            refusals: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
        }
    }

    /// One request from `ip` with these headers: 429 with `Retry-After` past a rate.
    fn admit(&self, ip: IpAddr, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Err(wait) = self.per_ip.check(&ip_key(ip)) {
            return Err(ApiError::too_many(
                "Too many requests from your address",
                retry_after_secs(wait),
            ));
        }
        if self.per_token.unlimited() {
            return Ok(());
        }
        if let Some(token) = headers.get("cb-token") {
            let key = self.token_hasher.hash_one(token.as_bytes());
            if let Err(wait) = self.per_token.check(&key) {
                return Err(ApiError::too_many(
                    "Too many requests with this token",
                    retry_after_secs(wait),
                ));
            }
        }
        Ok(())
    }
}

/// One request, parsed: path captures, merged parameters and credentials headers.
pub struct Ctx {
    pub state: Arc<State>,
    pub args: Vec<String>,
    pub params: Params,
    headers: HeaderMap,
    /// The client's address (password throttling).
    pub peer: SocketAddr,
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
    /// A redirect's target (`Location`), sent with `Cache-Control: no-store`: the storage API's
    /// download answers point at URLs that expire.
    pub location: Option<String>,
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
            location: None,
        }
    }

    fn encode<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Self {
        // Our own types and `Value`s always serialize (string keys only); the fallback keeps
        // the answer valid JSON should that ever change.
        let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
        Self {
            status,
            body,
            location: None,
        }
    }
}

/// Serves HTTP on `listener` until `shutdown` turns true, then drains open connections for at
/// most `drain_timeout_secs`. Each connection is admitted by the connection caps and bounded
/// in time (`conn`).
pub async fn serve(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let http = &state.config.http;
    let header_timeout = Duration::from_secs(http.header_timeout_secs.max(1));
    let idle = Duration::from_secs(http.keepalive_idle_secs.max(1));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = match state.limits.conns.try_acquire(peer.ip()) {
                    Ok(p) => p,
                    Err(why) => {
                        refuse(&state, stream, why);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let clock = conn::ConnClock::new(header_timeout);
                let io = TokioIo::new(conn::ClockedStream::new(stream, clock.clone()));
                let st = state.clone();
                let svc = service_fn(move |req| handle(st.clone(), peer, req));
                let conn = http1::Builder::new()
                    .timer(conn::HeadTimer(clock))
                    .header_read_timeout(idle)
                    .serve_connection(io, svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
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

/// A connection over a cap: answered 503 (when few refusals are in flight) and closed.
fn refuse(state: &State, stream: tokio::net::TcpStream, why: ConnRefusal) {
    let Ok(slot) = state.limits.refusals.clone().try_acquire_owned() else {
        return;
    };
    let message = match why {
        ConnRefusal::Total => "The server is at its connection limit, try again later",
        ConnRefusal::PerIp => "Too many connections from your address",
    };
    tracing::debug!(?why, "REST connection refused");
    tokio::spawn(async move {
        conn::refuse(stream, message, REFUSAL_BUDGET).await;
        drop(slot);
    });
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// One request, start to end: its id and span, the route, the limits, the handler, the answer,
/// and what it leaves for the operator (`access`).
async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<storage::Body>, Infallible> {
    let started = Instant::now();
    let request_id = access::request_id(req.headers());
    // Every log line of the request (the handler's, the domain's) carries its id.
    let span = tracing::info_span!("request", request_id = %request_id);
    let method = access::method_label(req.method());
    let segs = router::segments(req.uri().path());
    if let Some((route, uid)) = storage::route(req.method(), &segs) {
        // The disk store's byte paths stream their bodies: outside the JSON handlers.
        let result = match state.limits.admit(peer.ip(), req.headers()) {
            Err(e) => Err(e),
            Ok(()) => {
                let work = storage::serve(&state, req, uid);
                work.instrument(span.clone()).await
            }
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                let body = serde_json::to_vec(&e.body).unwrap_or_else(|_| b"{}".to_vec());
                let mut r = respond(e.status, body, None)
                    .map(|b| b.map_err(|never| match never {}).boxed_unsync());
                if let Some(secs) = e.retry_after {
                    r.headers_mut()
                        .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
                }
                // An upload refused part-way leaves its body unread: the connection cannot
                // carry another request.
                r.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
        };
        let answered = access::Answered {
            method,
            route,
            status: resp.status(),
            bytes: 0,
            started,
            request_id: &request_id,
            peer,
        };
        span.in_scope(|| access::record(&answered));
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(access::REQUEST_ID, v);
        }
        return Ok(resp);
    }
    let (route, target) = match router::find(&state.routes, req.method(), &segs) {
        router::Match::Found(route, args) => (route.pattern, Ok((route.handler, args))),
        router::Match::WrongMethod(pattern) => (
            pattern,
            Err(ApiError::base(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{} is not allowed here", req.method()),
            )),
        ),
        router::Match::NotFound => (
            access::UNMATCHED,
            Err(ApiError::not_found("No such API endpoint")),
        ),
    };
    let expires = Arc::new(OnceLock::new());
    let result = if let Err(e) = state.limits.admit(peer.ip(), req.headers()) {
        Err(e)
    } else if req.method() == Method::OPTIONS {
        Ok(Reply::empty())
    } else {
        match target {
            Ok((handler, args)) => {
                let work = dispatch(state, peer, req, handler, args, expires.clone());
                contain_panic(work).instrument(span.clone()).await
            }
            Err(e) => Err(e),
        }
    };
    let (status, body, retry_after, location) = match result {
        Ok(r) => (r.status, r.body, None, r.location),
        Err(e) => (
            e.status,
            serde_json::to_vec(&e.body).unwrap_or_else(|_| b"{}".to_vec()),
            e.retry_after,
            None,
        ),
    };
    let answered = access::Answered {
        method,
        route,
        status,
        bytes: body.len(),
        started,
        request_id: &request_id,
        peer,
    };
    span.in_scope(|| access::record(&answered));
    let mut resp = respond(status, body, expires.get().copied());
    // Sane by construction (`access::request_id`), so always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(access::REQUEST_ID, v);
    }
    if let Some(v) = location.and_then(|l| HeaderValue::try_from(l).ok()) {
        resp.headers_mut().insert(hyper::header::LOCATION, v);
        resp.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if status == StatusCode::REQUEST_TIMEOUT {
        // The body did not arrive in time: the rest of it would be read as a next request.
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp.map(|b| b.map_err(|never| match never {}).boxed_unsync()))
}

/// Reads the body and runs the route's handler.
async fn dispatch(
    state: Arc<State>,
    peer: SocketAddr,
    req: Request<Incoming>,
    handler: router::Handler,
    args: Vec<String>,
    expires: Arc<OnceLock<OffsetDateTime>>,
) -> Result<Reply, ApiError> {
    let (parts, body) = req.into_parts();
    let limit = state.config.http.max_body_bytes;
    let body_time = Duration::from_secs(state.config.http.body_timeout_secs.max(1));
    let Ok(collected) = tokio::time::timeout(body_time, Limited::new(body, limit).collect()).await
    else {
        return Err(ApiError::base(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the request body was not received within {} seconds",
                body_time.as_secs()
            ),
        ));
    };
    let body = match collected {
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
        peer,
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
            "Content-Type, CB-Token, CB-AuthKey, CB-SDK, ConnectyCube-REST-API-Version, X-Request-Id",
        ),
    );
    h.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("CB-Token-ExpirationDate, X-Request-Id"),
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
