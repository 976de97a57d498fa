//! An S3-compatible store (AWS S3, MinIO, Ceph, R2): clients upload with a pre-signed POST form
//! and download from pre-signed URLs, so the bytes never pass through Parley. Parley itself
//! only asks an object's size (when an upload is completed) and deletes objects, with
//! pre-signed HEAD and DELETE requests over a small HTTP/1.1 client (hyper, rustls for https).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;

use super::sigv4::{uri_encode, Signer, Target};
use super::StoreError;
use crate::config::StorageConfig;

/// One request to the store may take this long, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

pub struct S3Store {
    signer: Signer,
    https: bool,
    /// The endpoint's `host[:port]`.
    endpoint_host: String,
    /// Where to connect: `host:port`.
    connect_to: String,
    bucket: String,
    path_style: bool,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl S3Store {
    pub fn open(c: &StorageConfig) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Config(format!("storage.s3_endpoint: {why}"));
        let endpoint = c.s3_endpoint.trim().trim_end_matches('/');
        let (https, rest) = if let Some(r) = endpoint.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = endpoint.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("not an http(s) URL"));
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(bad("give scheme://host[:port] only"));
        }
        let default_port = if https { 443 } else { 80 };
        let connect_to = if rest
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            rest.to_owned()
        } else {
            format!("{rest}:{default_port}")
        };
        if c.s3_bucket.is_empty()
            || !c
                .s3_bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(StoreError::Config(
                "storage.s3_bucket: lower-case letters, digits, '-' and '.' only".into(),
            ));
        }
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(&c.s3_ca_file)
                .map_err(|e| StoreError::Config(format!("storage.s3_ca_file: {e}")))?;
            for cert in certs.flatten() {
                let _ = roots.add(cert);
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self {
            signer: Signer {
                access_key: c.s3_access_key.clone(),
                secret_key: c.s3_secret_key.clone(),
                region: c.s3_region.clone(),
            },
            https,
            endpoint_host: rest.to_owned(),
            connect_to,
            bucket: c.s3_bucket.clone(),
            path_style: c.s3_path_style,
            tls,
        })
    }

    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// (host, canonical path) of an object, or of the bucket with `uid` empty.
    fn locate(&self, uid: &str) -> (String, String) {
        if self.path_style {
            let path = if uid.is_empty() {
                format!("/{}", self.bucket)
            } else {
                format!("/{}/{}", self.bucket, uri_encode(uid, false))
            };
            (self.endpoint_host.clone(), path)
        } else {
            (
                format!("{}.{}", self.bucket, self.endpoint_host),
                format!("/{}", uri_encode(uid, false)),
            )
        }
    }

    /// The upload form: the bucket's URL with the signed POST-policy fields in its query.
    pub fn upload_url(
        &self,
        uid: &str,
        content_type: &str,
        max_bytes: u64,
        now: OffsetDateTime,
        ttl_secs: u64,
    ) -> String {
        let (host, path) = self.locate("");
        let fields =
            self.signer
                .post_form(&self.bucket, uid, content_type, max_bytes, now, ttl_secs);
        let query = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        format!("{}://{host}{path}/?{query}", self.scheme())
    }

    /// A pre-signed GET of the object, answered with `content_type`.
    pub fn download_url(
        &self,
        uid: &str,
        content_type: &str,
        now: OffsetDateTime,
        ttl_secs: u64,
    ) -> String {
        let (host, path) = self.locate(uid);
        let target = Target {
            scheme: self.scheme(),
            host: &host,
            path: &path,
        };
        self.signer.presign(
            "GET",
            target,
            &[("response-content-type", content_type)],
            now,
            ttl_secs,
        )
    }

    /// A pre-signed PUT of the object (XEP-0363) whose signature covers `content-length`: the
    /// store takes exactly `size` bytes or nothing.
    pub fn put_url(&self, uid: &str, size: u64, now: OffsetDateTime, ttl_secs: u64) -> String {
        let (host, path) = self.locate(uid);
        let target = Target {
            scheme: self.scheme(),
            host: &host,
            path: &path,
        };
        let size = size.to_string();
        self.signer.presign_headers(
            "PUT",
            target,
            &[],
            &[("content-length", &size)],
            now,
            ttl_secs,
        )
    }

    /// The object's size, `None` when it is not there.
    pub async fn size(&self, uid: &str, now: OffsetDateTime) -> Result<Option<u64>, StoreError> {
        let (status, length) = self.call("HEAD", uid, now).await?;
        match status {
            s if s.is_success() => Ok(Some(length.unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(StoreError::Backend(format!("HEAD answered {s}"))),
        }
    }

    pub async fn delete(&self, uid: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        let (status, _) = self.call("DELETE", uid, now).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(StoreError::Backend(format!("DELETE answered {status}")))
        }
    }

    /// One pre-signed request on an object: its status and `Content-Length`.
    async fn call(
        &self,
        method: &str,
        uid: &str,
        now: OffsetDateTime,
    ) -> Result<(StatusCode, Option<u64>), StoreError> {
        let (host, path) = self.locate(uid);
        let target = Target {
            scheme: self.scheme(),
            host: &host,
            path: &path,
        };
        let url = self.signer.presign(method, target, &[], now, 300);
        let target = url
            .split_once(&host)
            .map(|(_, t)| t.to_owned())
            .unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(target)
            .header(hyper::header::HOST, &host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let connect_to = if self.path_style {
            self.connect_to.clone()
        } else {
            let port = self.connect_to.rsplit_once(':').map_or("443", |(_, p)| p);
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            format!("{name}:{port}")
        };
        let sni = connect_to
            .rsplit_once(':')
            .map_or(connect_to.as_str(), |(h, _)| h)
            .to_owned();
        let work = async {
            let tcp = tokio::net::TcpStream::connect(&connect_to).await?;
            let resp = match &self.tls {
                Some(tls) => {
                    let name = ServerName::try_from(sni)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    let stream = tls.connect(name, tcp).await?;
                    send(TokioIo::new(stream), req).await?
                }
                None => send(TokioIo::new(tcp), req).await?,
            };
            Ok::<_, StoreError>(resp)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| StoreError::Backend("the S3 endpoint did not answer in time".into()))?
    }
}

async fn send<T>(
    io: TokioIo<T>,
    req: Request<Empty<Bytes>>,
) -> Result<(StatusCode, Option<u64>), StoreError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| StoreError::Backend(e.to_string()));
    let out = resp.map(|r| {
        let length = r
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        (r.status(), length)
    });
    // The body (if any) is not read: the connection is not reused.
    driver.abort();
    out
}
