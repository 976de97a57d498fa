//! Where blob bytes live, behind one interface: the local disk (`disk`, the default: files under
//! `<data_dir>/blobs`, served by Parley with signed, expiring URLs) or any S3-compatible
//! service (`s3`, pre-signed URLs: bytes go straight between client and store). It knows
//! objects by uid only: who may read or write which blob is decided by `files`, never here.
//! Imports only `config`, `model` and `secret_file`.

pub mod disk;
pub mod s3;
pub mod sigv4;

use std::net::SocketAddr;

use time::OffsetDateTime;

use crate::config::Config;
pub use disk::{DiskStore, PutGrant, UploadGrant};
pub use s3::S3Store;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("S3 store: {0}")]
    Backend(String),
    /// A signed URL or form whose signature (or the named field) is missing or wrong.
    #[error("{0} is missing or not valid")]
    Refused(&'static str),
    /// A signed URL or form past its deadline.
    #[error("the signed URL has expired")]
    Expired,
}

/// Where clients reach Parley's REST port: `storage.public_url`, else `http://<bound address>`.
pub fn public_base(config: &Config, http_addr: SocketAddr) -> String {
    let url = config.storage.public_url.trim();
    if url.is_empty() {
        format!("http://{http_addr}")
    } else {
        url.to_owned()
    }
}

pub enum Store {
    Disk(DiskStore),
    S3(S3Store),
}

impl Store {
    /// The store `storage.backend` names; `http_addr` is the bound REST address, the disk
    /// store's base URL when `storage.public_url` is empty.
    pub fn open(config: &Config, http_addr: SocketAddr) -> Result<Self, StoreError> {
        let c = &config.storage;
        match c.backend.as_str() {
            "disk" => Ok(Store::Disk(DiskStore::open(
                &config.data_dir,
                &c.signing_key,
                public_base(config, http_addr),
            )?)),
            "s3" => Ok(Store::S3(S3Store::open(c)?)),
            other => Err(StoreError::Config(format!(
                "storage.backend: {other:?} is neither \"disk\" nor \"s3\""
            ))),
        }
    }

    /// The upload form's URL (fields in its query), for `uid`, `content_type` exactly and at
    /// most `max_bytes`, valid `ttl_secs` from `now`.
    pub fn upload_url(
        &self,
        uid: &str,
        content_type: &str,
        max_bytes: u64,
        now: OffsetDateTime,
        ttl_secs: u64,
    ) -> String {
        match self {
            Store::Disk(d) => d.upload_url(
                uid,
                content_type,
                max_bytes,
                now.unix_timestamp().saturating_add(ttl_secs as i64),
            ),
            Store::S3(s) => s.upload_url(uid, content_type, max_bytes, now, ttl_secs),
        }
    }

    /// An XEP-0363 PUT URL: exactly `size` bytes for `uid`, valid `ttl_secs` from `now`
    /// (disk: Parley's own signed path; S3: a pre-signed PUT whose signature covers the length).
    pub fn put_url(
        &self,
        uid: &str,
        content_type: &str,
        size: u64,
        now: OffsetDateTime,
        ttl_secs: u64,
    ) -> String {
        match self {
            Store::Disk(d) => d.put_url(
                uid,
                content_type,
                size,
                now.unix_timestamp().saturating_add(ttl_secs as i64),
            ),
            Store::S3(s) => s.put_url(uid, size, now, ttl_secs),
        }
    }

    /// A URL that reads the object for `ttl_secs` from `now`, with no other credential.
    pub fn download_url(
        &self,
        uid: &str,
        content_type: &str,
        now: OffsetDateTime,
        ttl_secs: u64,
    ) -> String {
        match self {
            Store::Disk(d) => {
                d.download_url(uid, now.unix_timestamp().saturating_add(ttl_secs as i64))
            }
            Store::S3(s) => s.download_url(uid, content_type, now, ttl_secs),
        }
    }

    /// The stored object's size; `None` when nothing was uploaded.
    pub async fn size(&self, uid: &str, now: OffsetDateTime) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Disk(d) => d.size(uid).await,
            Store::S3(s) => s.size(uid, now).await,
        }
    }

    /// Removes the object (nothing there is not an error).
    pub async fn delete(&self, uid: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        match self {
            Store::Disk(d) => d.delete(uid).await,
            Store::S3(s) => s.delete(uid, now).await,
        }
    }

    /// The disk store, for the byte paths Parley serves itself.
    pub fn disk(&self) -> Option<&DiskStore> {
        match self {
            Store::Disk(d) => Some(d),
            Store::S3(_) => None,
        }
    }
}
