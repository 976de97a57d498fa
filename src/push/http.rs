//! The outgoing HTTP client of the providers and webhooks: HTTP/1.1 or HTTP/2 (ALPN) over
//! rustls, or plain HTTP for `http://` URLs (tests, an internal webhook). HTTP/2 connections
//! are kept per origin and shared (APNs wants long-lived connections); HTTP/1.1 ones are kept
//! alive after a complete answer, up to `push.max_idle_per_host` idle per origin, and reused
//! (a webhook receiver or a push service without HTTP/2 then costs no TCP and TLS handshake per
//! delivery). Every request is bounded in time and its answer in size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// Largest provider answer read (their error bodies are small JSON).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Origins with idle HTTP/1.1 connections kept at once. Web Push endpoints come from
/// subscriptions (any origin a client names), so the pool is bounded in origins as well as per
/// origin; past it a finished connection is closed instead of kept.
const MAX_IDLE_ORIGINS: usize = 64;

type H1 = http1::SendRequest<Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {0}")]
    Url(String),
    #[error("timed out")]
    Timeout,
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Hyper(#[from] hyper::Error),
    #[error("answer: {0}")]
    Body(String),
}

/// An answer: status, headers and (bounded) body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    h2: Arc<Mutex<HashMap<String, http2::SendRequest<Full<Bytes>>>>>,
    /// Idle HTTP/1.1 connections by origin, newest last.
    h1: Arc<Mutex<HashMap<String, Vec<H1>>>>,
    max_idle_per_host: usize,
}

impl HttpClient {
    /// Trusts the certificate authorities of the PEM bundle `ca_file` (none if it does not load:
    /// logged, and HTTPS then fails with a certificate error naming it).
    pub fn new(ca_file: &std::path::Path, timeout: Duration, max_idle_per_host: usize) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        match CertificateDer::pem_file_iter(ca_file) {
            Ok(certs) => {
                for c in certs.flatten() {
                    let _ = roots.add(c);
                }
            }
            Err(e) => {
                tracing::warn!(file = %ca_file.display(), error = %e, "push.ca_file does not load: HTTPS to providers will fail")
            }
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            tls: Arc::new(tls),
            timeout,
            h2: Default::default(),
            h1: Default::default(),
            max_idle_per_host,
        }
    }

    /// An idle HTTP/1.1 connection to `origin` that is still open, if one is kept.
    fn idle_h1(&self, origin: &str) -> Option<H1> {
        let mut pool = self.h1.lock().unwrap_or_else(|e| e.into_inner());
        let idle = pool.get_mut(origin)?;
        let mut found = None;
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                found = Some(c);
                break;
            }
        }
        if idle.is_empty() {
            pool.remove(origin);
        }
        found
    }

    /// Keeps a connection whose answer was read completely, unless the pool is full.
    fn keep_h1(&self, origin: &str, c: H1) {
        if c.is_closed() || self.max_idle_per_host == 0 {
            return;
        }
        let mut pool = self.h1.lock().unwrap_or_else(|e| e.into_inner());
        if !pool.contains_key(origin) && pool.len() >= MAX_IDLE_ORIGINS {
            pool.retain(|_, idle| {
                idle.retain(|c| !c.is_closed());
                !idle.is_empty()
            });
            if pool.len() >= MAX_IDLE_ORIGINS {
                return;
            }
        }
        let idle = pool.entry(origin.to_owned()).or_default();
        if idle.len() < self.max_idle_per_host {
            idle.push(c);
        }
    }

    /// Sends on `c` and reads the answer, then keeps `c` for the next request to `origin`.
    async fn send_h1(
        &self,
        origin: &str,
        mut c: H1,
        req: Request<Full<Bytes>>,
    ) -> Result<Answer, HttpError> {
        let answer = read(c.send_request(req).await?).await?;
        self.keep_h1(origin, c);
        Ok(answer)
    }

    /// Sends one request and reads the answer, within the client's timeout.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, HttpError> {
        tokio::time::timeout(self.timeout, self.send_now(method, url, headers, body))
            .await
            .map_err(|_| HttpError::Timeout)?
    }

    async fn send_now(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, HttpError> {
        let uri: Uri = url.parse().map_err(|_| HttpError::Url(url.into()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(HttpError::Url(url.into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| HttpError::Url(url.into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let origin = format!("{}://{}:{port}", if https { "https" } else { "http" }, host);
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let body = Bytes::from(body);
        let len = body.len().to_string();
        let make = |h2: bool| {
            let mut req = Request::builder().method(method.clone());
            req = if h2 {
                req.uri(uri.clone())
            } else {
                req.uri(
                    uri.path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/")
                        .to_owned(),
                )
                .header("host", authority.as_str())
            };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.header("content-length", len.as_str())
                .body(Full::new(body.clone()))
                .map_err(|e| HttpError::Url(e.to_string()))
        };
        // A shared HTTP/2 connection to this origin, if one is open.
        let cached = self.h2.lock().ok().and_then(|m| m.get(&origin).cloned());
        if let Some(mut h2) = cached {
            if h2.ready().await.is_ok() {
                let answer = h2.send_request(make(true)?).await?;
                return read(answer).await;
            }
            if let Ok(mut m) = self.h2.lock() {
                m.remove(&origin);
            }
        }
        // An idle HTTP/1.1 connection to this origin. One the server closed since (its idle
        // timeout) hands the request back unsent: then the next one, or a new connection.
        let mut req = make(false)?;
        while let Some(mut c) = self.idle_h1(&origin) {
            // Its previous answer was read; the connection task may not have said so yet.
            if c.ready().await.is_err() {
                continue;
            }
            match c.try_send_request(req).await {
                Ok(answer) => {
                    let answer = read(answer).await?;
                    self.keep_h1(&origin, c);
                    return Ok(answer);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        let _ = tcp.set_nodelay(true);
        if !https {
            let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            return self.send_h1(&origin, send, req).await;
        }
        let name = ServerName::try_from(host.clone()).map_err(|_| HttpError::Url(url.into()))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        if h2 {
            let (mut send, conn) =
                http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            send.ready().await?;
            if let Ok(mut m) = self.h2.lock() {
                m.insert(origin, send.clone());
            }
            let answer = send.send_request(make(true)?).await?;
            read(answer).await
        } else {
            let (send, conn) = http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.send_h1(&origin, send, req).await
        }
    }
}

async fn read(answer: hyper::Response<hyper::body::Incoming>) -> Result<Answer, HttpError> {
    let (parts, body) = answer.into_parts();
    let body = Limited::new(body, MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| HttpError::Body(e.to_string()))?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
