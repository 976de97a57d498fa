//! A blob (the storage API's file record) as plain data: the bytes live in the store under `uid`.

use time::OffsetDateTime;

use super::{AppId, UserId};

#[derive(Clone, Debug, PartialEq)]
pub struct Blob {
    pub id: i64,
    pub app: AppId,
    /// The user who created it (the only one who may complete or delete it).
    pub owner: UserId,
    /// 32 hex digits: the object's key in the store and the download handle.
    pub uid: String,
    pub name: String,
    pub content_type: String,
    /// Bytes, known once the upload is completed.
    pub size: Option<i64>,
    pub public: bool,
    /// An XEP-0363 slot's granted size (its upload is completed by the PUT, or on S3 when the
    /// object is found with this size); `None` for the REST API's uploads.
    pub upload_size: Option<i64>,
    pub completed_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Blob {
    pub fn completed(&self) -> bool {
        self.completed_at.is_some()
    }
}

/// True for a well-formed blob uid (what the store is keyed by): exactly 32 lower-case hex
/// digits, so a uid can never name a path outside the store's directory.
pub fn is_uid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
