//! The disk store's own byte paths, outside the JSON route table because they stream:
//! `POST /storage/upload` (the upload form of `POST /blobs`: `multipart/form-data`, signed
//! fields, then `file`; streamed to a temporary file, renamed into place when whole),
//! `PUT /storage/{uid}?size=&type=&expires=&signature=` (an XEP-0363 slot's PUT: exactly the
//! signed size, streamed the same way, and the blob is complete) and
//! `GET /storage/{uid}?expires=&signature=` (the bytes, streamed). The signature is the
//! permission (no session token: an `<img src>` works); it was issued by the files service
//! to a caller it allowed. With the S3 store these paths answer 404: bytes never pass here.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::multipart::{self, Event, Multipart};
use super::{ApiError, State};
use crate::storage::{DiskStore, StoreError, UploadGrant};

pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Which byte path a request is for, if any: `(route label, uid)`.
pub fn route(method: &Method, segs: &[String]) -> Option<(&'static str, String)> {
    match (method, segs) {
        (&Method::POST, [a, b]) if a == "storage" && b == "upload" => {
            Some(("storage/upload", String::new()))
        }
        (&Method::GET | &Method::HEAD | &Method::PUT, [a, uid]) if a == "storage" => {
            Some(("storage/{}", uid.clone()))
        }
        _ => None,
    }
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Expired => ApiError::base(StatusCode::FORBIDDEN, "The signed URL has expired"),
        StoreError::Refused(field) => ApiError::field(
            StatusCode::FORBIDDEN,
            field,
            "is missing or does not match the signature",
        ),
        other => {
            tracing::error!(error = %other, "disk store");
            ApiError::busy("The file store is unavailable, try again", 1)
        }
    }
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .take(64)
        .collect()
}

/// Serves one byte-path request.
pub async fn serve(
    state: &State,
    req: Request<Incoming>,
    uid: String,
) -> Result<Response<Body>, ApiError> {
    let Some(disk) = state.files.store().disk() else {
        return Err(ApiError::not_found("No such API endpoint"));
    };
    if req.method() == Method::POST {
        upload(state, disk, req).await
    } else if req.method() == Method::PUT {
        put(state, disk, req, &uid).await
    } else {
        download(state, disk, req, &uid).await
    }
}

async fn download(
    state: &State,
    disk: &DiskStore,
    req: Request<Incoming>,
    uid: &str,
) -> Result<Response<Body>, ApiError> {
    let q = query(&req);
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let now = state.files.now().unix_timestamp();
    disk.check_download(uid, get("expires"), get("signature"), now)
        .map_err(store_error)?;
    let nf = || ApiError::not_found("No such file");
    // The record decides: a deleted blob's bytes are not served, even under a valid signature.
    let blob = state.files.by_uid(uid).await?.ok_or_else(nf)?;
    let path = disk.path(uid).ok_or_else(nf)?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(nf()),
        Err(e) => return Err(store_error(e.into())),
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| store_error(e.into()))?
        .len();
    let body = if req.method() == Method::HEAD {
        empty()
    } else {
        FileBody {
            file,
            left: len,
            buf: Vec::new(),
        }
        .boxed_unsync()
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::try_from(blob.content_type.as_str())
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
    // User content from the API's origin: never sniffed into something active, never able to
    // run script against this origin.
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    let disposition = format!(
        "inline; filename*=UTF-8''{}",
        crate::storage::sigv4::uri_encode(&blob.name, false)
    );
    if let Ok(v) = HeaderValue::try_from(disposition) {
        h.insert(hyper::header::CONTENT_DISPOSITION, v);
    }
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(resp)
}

/// Streams the `file` part of an upload form into a temporary file; the signed fields (form
/// fields, or the URL's query for a hand-made request) must come before it.
async fn upload(
    state: &State,
    disk: &DiskStore,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let bad = |m: &str| ApiError::base(StatusCode::BAD_REQUEST, m);
    let boundary = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(multipart::boundary)
        .ok_or_else(|| bad("the upload must be multipart/form-data with a boundary"))?;
    let query = query(&req);
    let idle = Duration::from_secs(state.config.http.body_timeout_secs.max(1));
    let mut body = req.into_body();
    let mut parts = Multipart::new(&boundary, "file");
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut writing: Option<(std::path::PathBuf, tokio::fs::File, UploadGrant, u64)> = None;
    let result = async {
        loop {
            let Some(data) = next_chunk(&mut body, idle).await? else {
                break;
            };
            let events = parts
                .push(&data)
                .map_err(|multipart::MultipartError::Malformed(m)| bad(m))?;
            for e in events {
                match e {
                    Event::Field(k, v) => fields.push((k, v)),
                    Event::FileStart(_) => {
                        let field = |k: &str| {
                            fields
                                .iter()
                                .chain(query.iter())
                                .find(|(n, _)| n == k)
                                .map(|(_, v)| v.clone())
                        };
                        let now = state.files.now().unix_timestamp();
                        let grant = disk.check_upload(field, now).map_err(store_error)?;
                        // Only an upload still in progress takes bytes: a completed (or
                        // deleted) blob cannot be overwritten with its old form.
                        match state.files.by_uid(&grant.uid).await? {
                            Some(b) if !b.completed() => {}
                            _ => {
                                return Err(ApiError::base(
                                    StatusCode::CONFLICT,
                                    "This upload is closed",
                                ))
                            }
                        }
                        let (path, file) = disk.temp_file().await.map_err(store_error)?;
                        writing = Some((path, file, grant, 0));
                    }
                    Event::FileData(d) => {
                        let Some((_, file, grant, written)) = writing.as_mut() else {
                            continue;
                        };
                        *written += d.len() as u64;
                        if *written > grant.max_bytes {
                            return Err(ApiError::field(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "file",
                                &format!("must be at most {} bytes", grant.max_bytes),
                            ));
                        }
                        file.write_all(&d)
                            .await
                            .map_err(|e| store_error(e.into()))?;
                    }
                    Event::FileEnd => {
                        let Some((path, mut file, grant, _)) = writing.take() else {
                            continue;
                        };
                        file.flush().await.map_err(|e| store_error(e.into()))?;
                        file.sync_all().await.map_err(|e| store_error(e.into()))?;
                        drop(file);
                        if let Err(e) = disk.commit(&path, &grant.uid).await {
                            let _ = tokio::fs::remove_file(&path).await;
                            return Err(store_error(e));
                        }
                        return Ok(grant.uid);
                    }
                    Event::End => {}
                }
            }
            if parts.done() {
                break;
            }
        }
        Err(ApiError::invalid("file", "is required"))
    }
    .await;
    if let Some((path, file, _, _)) = writing.take() {
        drop(file);
        let _ = tokio::fs::remove_file(&path).await;
    }
    let uid = result?;
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Bucket>blobs</Bucket><Key>{uid}</Key></PostResponse>"
    );
    let mut resp = Response::new(full(xml.into_bytes()));
    *resp.status_mut() = StatusCode::CREATED;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    resp.headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    Ok(resp)
}

/// An XEP-0363 PUT: the signed query is the permission; the body must be exactly the slot's
/// size (`Content-Length` says so before a byte is read; a body that ends early or runs over
/// is refused), of the slot's content type when the request names one. Streamed to a temporary
/// file, moved into place when whole; then the blob is complete.
async fn put(
    state: &State,
    disk: &DiskStore,
    req: Request<Incoming>,
    uid: &str,
) -> Result<Response<Body>, ApiError> {
    let bad = |m: &str| ApiError::base(StatusCode::BAD_REQUEST, m);
    let q = query(&req);
    let field = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let now = state.files.now().unix_timestamp();
    let grant = disk.check_put(uid, field, now).map_err(store_error)?;
    let length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        None => {
            return Err(ApiError::base(
                StatusCode::LENGTH_REQUIRED,
                "Content-Length is required",
            ))
        }
        Some(n) if n != grant.size => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "Content-Length",
                &format!("must be the slot's size, {} bytes", grant.size),
            ))
        }
        Some(_) => {}
    }
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let media = ct
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media.is_some_and(|m| m.eq_ignore_ascii_case(&grant.content_type)) {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "Content-Type",
                &format!("must be the slot's, {}", grant.content_type),
            ));
        }
    }
    // Only a slot still waiting for its bytes takes them: a completed (or deleted) one cannot
    // be overwritten with its old URL.
    let closed = || ApiError::base(StatusCode::CONFLICT, "This upload is closed");
    match state.files.by_uid(uid).await? {
        Some(b) if !b.completed() => {}
        _ => return Err(closed()),
    }
    let idle = Duration::from_secs(state.config.http.body_timeout_secs.max(1));
    let (path, mut file) = disk.temp_file().await.map_err(store_error)?;
    let mut body = req.into_body();
    let written = async {
        let mut written: u64 = 0;
        loop {
            let Some(data) = next_chunk(&mut body, idle).await? else {
                break;
            };
            written += data.len() as u64;
            if written > grant.size {
                return Err(bad("the body is longer than Content-Length"));
            }
            file.write_all(&data)
                .await
                .map_err(|e| store_error(e.into()))?;
        }
        if written != grant.size {
            return Err(bad("the body is shorter than Content-Length"));
        }
        file.flush().await.map_err(|e| store_error(e.into()))?;
        file.sync_all().await.map_err(|e| store_error(e.into()))?;
        Ok(written)
    }
    .await;
    drop(file);
    let committed = match written {
        Ok(_) => disk.commit(&path, uid).await.map_err(store_error),
        Err(e) => Err(e),
    };
    if let Err(e) = committed {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e);
    }
    if !state.files.complete_put(uid, grant.size).await? {
        // Deleted while the bytes arrived: they must not stay. (Completed meanwhile by a
        // concurrent PUT of the same slot: the same size, from the same grant; they stay.)
        if state.files.by_uid(uid).await?.is_none() {
            let _ = disk.delete(uid).await;
        }
        return Err(closed());
    }
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::CREATED;
    resp.headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    Ok(resp)
}

pub fn full(bytes: Vec<u8>) -> Body {
    http_body_util::Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    full(Vec::new())
}

/// A file streamed in chunks of at most 64 KiB.
struct FileBody {
    file: tokio::fs::File,
    left: u64,
    buf: Vec<u8>,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = this.left.min(64 * 1024) as usize;
        this.buf.resize(want, 0);
        let mut rb = ReadBuf::new(&mut this.buf);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    // The file shrank under us: end here rather than promise more.
                    this.left = 0;
                    return Poll::Ready(None);
                }
                this.left -= n as u64;
                let chunk = Bytes::copy_from_slice(rb.filled());
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// The next chunk of an upload's body (`None` at its end), trailers skipped; a body silent for
/// `idle` is a stalled upload (408), so a slow client cannot hold a temporary file forever.
async fn next_chunk(body: &mut Incoming, idle: Duration) -> Result<Option<Bytes>, ApiError> {
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(ApiError::base(
                    StatusCode::REQUEST_TIMEOUT,
                    "the upload stalled",
                ))
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(_))) => {
                return Err(ApiError::base(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ))
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}
