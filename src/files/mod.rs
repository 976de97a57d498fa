//! The storage API's rules (`/blobs` and XEP-0363 upload slots): creating a blob and its upload
//! form or PUT URL (one check of name, content type, size and quota for both), completing it
//! (the stored size is what counts, checked against the application's limit), listing,
//! updating, deleting (the stored object through a queue, so a store that is down delays its
//! removal but never loses it), and **who may read a file**: anyone when it is public, else its
//! owner and the users who may read a message that carries it as an attachment (asked of the
//! chat service, `Chat::sees_attachment`). Bytes are the store's (`storage`), SQL is `db`'s;
//! the adapters only parse and render.

use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::chat::{Actor, Chat, ChatError};
use crate::config::{ApplicationConfig, StorageConfig};
use crate::db::blobs::{self as repo, NewBlob};
use crate::db::{DbError, DbPool};
use crate::model::blob::{is_uid, Blob};
use crate::model::{AppId, Clock};
use crate::storage::{Store, StoreError};

/// Longest blob name, in characters (as the hosted service).
pub const MAX_NAME_CHARS: usize = 100;
/// Longest content type, in bytes.
const MAX_CONTENT_TYPE_BYTES: usize = 255;
/// Most blobs on one page of `GET /blobs`.
pub const MAX_PER_PAGE: i64 = 100;
/// Unfinished uploads removed per pass of the cleanup loop.
const CLEANUP_BATCH: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{field} {message}")]
    Invalid { field: String, message: String },
    /// Larger than the application's limit (XEP-0363's `<file-too-large>`).
    #[error("the file is larger than the limit of {max} bytes")]
    TooLarge { max: u64 },
    /// Too many uploads in progress (`storage.max_unfinished_per_user`).
    #[error("{0}")]
    Quota(String),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> FilesError {
    FilesError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// What an application may upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    /// Exact types or `family/*`; empty: any.
    pub content_types: Vec<String>,
}

impl Limits {
    pub fn allows(&self, content_type: &str) -> bool {
        self.content_types.is_empty()
            || self
                .content_types
                .iter()
                .any(|allowed| match allowed.strip_suffix("/*") {
                    Some(family) => content_type
                        .split_once('/')
                        .is_some_and(|(f, _)| f.eq_ignore_ascii_case(family)),
                    None => allowed.eq_ignore_ascii_case(content_type),
                })
    }
}

/// The files service: cheap to clone, shared by the adapters.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    pool: DbPool,
    clock: Clock,
    chat: Chat,
    store: Store,
    config: StorageConfig,
    apps: Vec<ApplicationConfig>,
    /// `scheme://host[:port]` of the REST port as clients reach it (XEP-0363 GET URLs).
    public_base: String,
}

/// An XEP-0363 upload slot: where to PUT the bytes, where they will be read.
pub struct Slot {
    pub blob: Blob,
    pub put_url: String,
    pub get_url: String,
}

/// A blob with the URL its next step needs (upload form or download).
pub struct WithUrl {
    pub blob: Blob,
    pub url: String,
    pub expires: OffsetDateTime,
}

fn new_uid() -> String {
    let mut r = [0u8; 16];
    OsRng.fill_bytes(&mut r);
    hex::encode(r)
}

/// A `type/subtype` of token characters (RFC 9110), no parameters.
fn check_content_type(ct: &str) -> Result<(), FilesError> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let ok = ct.len() <= MAX_CONTENT_TYPE_BYTES
        && ct
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "content_type",
            "must be a media type such as image/png",
        ))
    }
}

fn check_name(name: &str) -> Result<(), FilesError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name", "must not contain control characters"));
    }
    Ok(())
}

impl Files {
    pub fn new(
        pool: DbPool,
        clock: Clock,
        chat: Chat,
        store: Store,
        config: StorageConfig,
        apps: Vec<ApplicationConfig>,
        public_base: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                clock,
                chat,
                store,
                config,
                apps,
                public_base: public_base.trim_end_matches('/').to_owned(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// An application's limits: its own from `[[applications]]`, else `[storage]`'s.
    pub fn limits(&self, app: AppId) -> Limits {
        let c = &self.inner.config;
        let own = self.inner.apps.iter().find(|a| a.id == app.0);
        Limits {
            max_bytes: own
                .and_then(|a| a.max_blob_bytes)
                .unwrap_or(c.max_blob_bytes),
            content_types: own
                .and_then(|a| a.blob_content_types.clone())
                .unwrap_or_else(|| c.allowed_content_types.clone()),
        }
    }

    /// **May the actor start this upload**, written once for `POST /blobs`, `PUT /blobs/{id}`
    /// with `new=1` and XEP-0363 slots: a valid name, a content type the application allows,
    /// a size (when told in advance) within its limit, and fewer uploads in progress than
    /// `storage.max_unfinished_per_user`. The application's limits when it may.
    async fn check_new(
        &self,
        actor: &Actor,
        name: &str,
        content_type: &str,
        size: Option<u64>,
    ) -> Result<Limits, FilesError> {
        check_name(name)?;
        self.check_type(actor, content_type)?;
        let limits = self.limits(actor.app.id);
        if size.is_some_and(|s| s > limits.max_bytes) {
            return Err(FilesError::TooLarge {
                max: limits.max_bytes,
            });
        }
        let max = self.inner.config.max_unfinished_per_user;
        if max > 0 {
            let (app, user) = (actor.app.id, actor.user);
            let mut open = repo::count_unfinished(&self.inner.pool, app, user).await?;
            if u64::try_from(open).unwrap_or(0) >= max {
                // Slots uploaded straight to S3 are complete but not yet known to be: ask the
                // store before refusing (only at the limit, so it costs nothing before it).
                let slots = repo::open_slots_of(&self.inner.pool, app, user, CLEANUP_BATCH).await?;
                for blob in &slots {
                    if self.settle_slot(blob).await?.is_some() {
                        open -= 1;
                    }
                }
            }
            if u64::try_from(open).unwrap_or(0) >= max {
                return Err(FilesError::Quota(format!(
                    "Too many uploads in progress ({max}): complete or delete some first"
                )));
            }
        }
        Ok(limits)
    }

    /// A media type the actor's application allows.
    fn check_type(&self, actor: &Actor, content_type: &str) -> Result<(), FilesError> {
        check_content_type(content_type)?;
        let limits = self.limits(actor.app.id);
        if !limits.allows(content_type) {
            return Err(invalid(
                "content_type",
                format!(
                    "{content_type} is not allowed here (allowed: {})",
                    limits.content_types.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// `POST /blobs`: a new, unfinished blob of the actor's and its upload form.
    pub async fn create(
        &self,
        actor: &Actor,
        name: &str,
        content_type: &str,
        public: bool,
    ) -> Result<WithUrl, FilesError> {
        let limits = self.check_new(actor, name, content_type, None).await?;
        let now = self.now();
        let uid = new_uid();
        let blob = repo::insert(
            &self.inner.pool,
            &NewBlob {
                app: actor.app.id,
                owner: actor.user,
                uid: &uid,
                name,
                content_type,
                public,
                upload_size: None,
            },
            now,
        )
        .await?;
        let ttl = self.inner.config.upload_url_ttl_secs;
        let url = self
            .store()
            .upload_url(&uid, content_type, limits.max_bytes, now, ttl);
        Ok(WithUrl {
            blob,
            url,
            expires: now + Duration::from_secs(ttl),
        })
    }

    /// XEP-0363: a slot for exactly `size` bytes named `filename`. The blob is public (an
    /// XEP-0363 GET URL carries no credential: anyone holding it may read the file; its uid is
    /// 128 random bits); the GET URL is its download route with the file's name appended (for
    /// clients that guess the type from the URL's extension).
    pub async fn slot(
        &self,
        actor: &Actor,
        filename: &str,
        size: u64,
        content_type: &str,
    ) -> Result<Slot, FilesError> {
        self.check_new(actor, filename, content_type, Some(size))
            .await?;
        let now = self.now();
        let uid = new_uid();
        let blob = repo::insert(
            &self.inner.pool,
            &NewBlob {
                app: actor.app.id,
                owner: actor.user,
                uid: &uid,
                name: filename,
                content_type,
                public: true,
                upload_size: Some(i64::try_from(size).unwrap_or(i64::MAX)),
            },
            now,
        )
        .await?;
        let ttl = self.inner.config.upload_url_ttl_secs;
        let put_url = self.store().put_url(&uid, content_type, size, now, ttl);
        let get_url = format!(
            "{}/blobs/{uid}/download/{}",
            self.inner.public_base,
            crate::storage::sigv4::uri_encode(filename, false)
        );
        Ok(Slot {
            blob,
            put_url,
            get_url,
        })
    }

    /// The disk store received a slot's whole PUT (`size` bytes, as signed): the blob is
    /// complete. False when it no longer waits for bytes (deleted, or completed meanwhile).
    pub async fn complete_put(&self, uid: &str, size: u64) -> Result<bool, FilesError> {
        let Some(blob) = self.by_uid(uid).await? else {
            return Ok(false);
        };
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        Ok(repo::complete(&self.inner.pool, blob.id, size, self.now())
            .await?
            .is_some())
    }

    /// An unfinished XEP-0363 slot whose object is in the store with exactly its granted size
    /// (an S3 PUT, which Parley does not see) is completed now; `None` when it is not there.
    async fn settle_slot(&self, blob: &Blob) -> Result<Option<Blob>, FilesError> {
        let Some(want) = blob.upload_size else {
            return Ok(None);
        };
        let now = self.now();
        let Some(size) = self.store().size(&blob.uid, now).await? else {
            return Ok(None);
        };
        if i64::try_from(size).ok() != Some(want) {
            return Ok(None);
        }
        match repo::complete(&self.inner.pool, blob.id, want, now).await? {
            Some(b) => Ok(Some(b)),
            None => Ok(repo::by_uid(&self.inner.pool, &blob.uid).await?),
        }
    }

    /// A blob of the actor's application by id; `NotFound` for another application's.
    async fn by_id(&self, actor: &Actor, id: &str) -> Result<Blob, FilesError> {
        let nf = || FilesError::NotFound(format!("Blob {id} not found"));
        let id: i64 = id.parse().map_err(|_| nf())?;
        repo::by_id(&self.inner.pool, actor.app.id, id)
            .await?
            .ok_or_else(nf)
    }

    async fn owned(&self, actor: &Actor, id: &str) -> Result<Blob, FilesError> {
        let blob = self.by_id(actor, id).await?;
        if blob.owner != actor.user {
            return Err(FilesError::Forbidden(
                "Only the blob's owner may do this".into(),
            ));
        }
        Ok(blob)
    }

    /// `PUT /blobs/{id}/complete`: the upload is over. The size recorded is the stored
    /// object's, whatever the client claims; over the application's limit (a store that does
    /// not enforce the form's bound) the object is removed and the request refused.
    pub async fn complete(&self, actor: &Actor, id: &str) -> Result<Blob, FilesError> {
        let blob = self.owned(actor, id).await?;
        if blob.completed() {
            return Ok(blob);
        }
        let now = self.now();
        let Some(size) = self.store().size(&blob.uid, now).await? else {
            return Err(invalid("base", "the file has not been uploaded yet"));
        };
        let max = self.limits(actor.app.id).max_bytes;
        if size > max {
            self.store().delete(&blob.uid, now).await?;
            return Err(invalid("size", format!("must be at most {max} bytes")));
        }
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        match repo::complete(&self.inner.pool, blob.id, size, now).await? {
            Some(b) => Ok(b),
            // Completed meanwhile by a concurrent request.
            None => self.by_id(actor, id).await,
        }
    }

    /// `GET /blobs/{id}`: the record, for whoever may read the file.
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<Blob, FilesError> {
        let blob = self.by_id(actor, id).await?;
        if self.may_read(Some(actor), &blob).await? {
            Ok(blob)
        } else {
            Err(FilesError::NotFound(format!("Blob {id} not found")))
        }
    }

    /// `GET /blobs`: one page (1-based) of the actor's blobs, newest first, and their total.
    pub async fn list(
        &self,
        actor: &Actor,
        page: i64,
        per_page: i64,
    ) -> Result<(Vec<Blob>, i64), FilesError> {
        if page < 1 {
            return Err(invalid("page", "must be at least 1"));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(invalid("per_page", format!("must be 1 to {MAX_PER_PAGE}")));
        }
        let offset = (page - 1).saturating_mul(per_page);
        Ok(repo::page(&self.inner.pool, actor.app.id, actor.user, per_page, offset).await?)
    }

    /// `PUT /blobs/{id}` (deprecated in the hosted API): the owner renames the blob and/or
    /// changes its content type; with `restart` (`new=1`) the upload starts again: the old
    /// bytes are removed, the blob is unfinished (same id and uid) and a new upload form is
    /// returned.
    pub async fn update(
        &self,
        actor: &Actor,
        id: &str,
        name: Option<&str>,
        content_type: Option<&str>,
        restart: bool,
    ) -> Result<(Blob, Option<WithUrl>), FilesError> {
        let blob = self.owned(actor, id).await?;
        if let Some(n) = name {
            check_name(n)?;
        }
        if let Some(ct) = content_type {
            self.check_type(actor, ct)?;
        }
        let now = self.now();
        if restart {
            if blob.completed() {
                let (n, ct) = (
                    name.unwrap_or(&blob.name),
                    content_type.unwrap_or(&blob.content_type),
                );
                self.check_new(actor, n, ct, None).await?;
            }
            // Before the record changes: a failure leaves the blob as it was.
            self.store().delete(&blob.uid, now).await?;
        }
        let blob = repo::update(&self.inner.pool, blob.id, name, content_type, restart, now)
            .await?
            .ok_or_else(|| FilesError::NotFound(format!("Blob {id} not found")))?;
        if !restart {
            return Ok((blob, None));
        }
        let ttl = self.inner.config.upload_url_ttl_secs;
        let max = self.limits(actor.app.id).max_bytes;
        let url = self
            .store()
            .upload_url(&blob.uid, &blob.content_type, max, now, ttl);
        let form = WithUrl {
            blob: blob.clone(),
            url,
            expires: now + Duration::from_secs(ttl),
        };
        Ok((blob, Some(form)))
    }

    /// `DELETE /blobs/{id}`: the owner removes the record and the bytes; every share of it
    /// (attachments naming its uid) stops working. The stored object is queued with the record's
    /// removal and removed at once when the store answers, else by the sweep.
    pub async fn delete(&self, actor: &Actor, id: &str) -> Result<(), FilesError> {
        let blob = self.owned(actor, id).await?;
        if let Some(uid) = repo::delete(&self.inner.pool, blob.id, self.now()).await? {
            if let Err(e) = self.remove_object(&uid).await {
                tracing::warn!(error = %e, uid, "a deleted blob's bytes stay queued for removal");
            }
        }
        Ok(())
    }

    /// Removes a queued object from the store, then from the queue.
    async fn remove_object(&self, uid: &str) -> Result<(), FilesError> {
        self.store().delete(uid, self.now()).await?;
        repo::dequeue_deletion(&self.inner.pool, uid).await?;
        Ok(())
    }

    /// Removes the queued stored objects (deleted blobs, a deleted user's files, unfinished
    /// uploads given up); how many. Stops at the first the store refuses: they stay queued.
    pub async fn sweep_deletions(&self) -> Result<usize, FilesError> {
        let mut removed = 0;
        loop {
            let uids = repo::queued_deletions(&self.inner.pool, CLEANUP_BATCH).await?;
            for uid in &uids {
                self.remove_object(uid).await?;
                removed += 1;
            }
            if (uids.len() as i64) < CLEANUP_BATCH {
                return Ok(removed);
            }
        }
    }

    /// **Who may read a blob**, written once: anyone when it is public, its owner, and a user
    /// who may read a message that carries it (the chat service decides that).
    async fn may_read(&self, reader: Option<&Actor>, blob: &Blob) -> Result<bool, FilesError> {
        if blob.public {
            return Ok(true);
        }
        let Some(actor) = reader.filter(|a| a.app.id == blob.app) else {
            return Ok(false);
        };
        if actor.user == blob.owner {
            return Ok(true);
        }
        Ok(self.inner.chat.sees_attachment(actor, &blob.uid).await?)
    }

    /// `GET /blobs/{uid}/download` and `/object?download_url=1`: a download URL for a completed
    /// blob the reader may read (`None`: anonymous). A public blob is reachable by its uid
    /// alone (128 random bits), as hosted; a private one only within its application.
    pub async fn download(&self, reader: Option<&Actor>, uid: &str) -> Result<WithUrl, FilesError> {
        let nf = || FilesError::NotFound(format!("Blob {uid} not found"));
        if !is_uid(uid) {
            return Err(nf());
        }
        let mut blob = repo::by_uid(&self.inner.pool, uid).await?.ok_or_else(nf)?;
        if !blob.completed() {
            blob = self.settle_slot(&blob).await?.ok_or_else(nf)?;
        }
        if !self.may_read(reader, &blob).await? {
            return Err(if reader.is_none() {
                FilesError::Forbidden("This file is private: a session token is required".into())
            } else {
                nf()
            });
        }
        let now = self.now();
        let ttl = self.inner.config.download_url_ttl_secs;
        let url = self
            .store()
            .download_url(&blob.uid, &blob.content_type, now, ttl);
        Ok(WithUrl {
            blob,
            url,
            expires: now + Duration::from_secs(ttl),
        })
    }

    /// A blob by uid for the store's own signed byte paths (the signature was the permission).
    pub async fn by_uid(&self, uid: &str) -> Result<Option<Blob>, FilesError> {
        if !is_uid(uid) {
            return Ok(None);
        }
        Ok(repo::by_uid(&self.inner.pool, uid).await?)
    }

    /// Removes uploads not completed within `storage.unfinished_ttl_secs` of their last change
    /// (an XEP-0363 slot whose object did arrive in the store is completed instead), then sweeps
    /// the deletion queue; how many uploads were given up.
    pub async fn clean_unfinished(&self) -> Result<usize, FilesError> {
        let now = self.now();
        let before = now - Duration::from_secs(self.inner.config.unfinished_ttl_secs);
        // Asked before anything is deleted: a store that does not answer keeps every slot.
        loop {
            let slots = repo::stale_slots(&self.inner.pool, before, CLEANUP_BATCH).await?;
            let mut settled = 0;
            for blob in &slots {
                if self.settle_slot(blob).await?.is_some() {
                    settled += 1;
                }
            }
            if settled == 0 || (slots.len() as i64) < CLEANUP_BATCH {
                break;
            }
        }
        let mut removed = 0;
        loop {
            let n = repo::delete_unfinished(&self.inner.pool, before, CLEANUP_BATCH, now).await?;
            removed += n as usize;
            if (n as i64) < CLEANUP_BATCH {
                break;
            }
        }
        if let Err(e) = self.sweep_deletions().await {
            tracing::warn!(error = %e, "removing deleted files from the store; retried next sweep");
        }
        Ok(removed)
    }

    /// The cleanup loop: hourly (and at start) until shutdown.
    pub async fn cleanup_loop(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.clean_unfinished().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "unfinished uploads removed"),
                Err(e) => tracing::warn!(error = %e, "cleaning unfinished uploads"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_match_exactly_or_by_family() {
        let l = Limits {
            max_bytes: 1,
            content_types: vec!["image/*".into(), "application/pdf".into()],
        };
        assert!(l.allows("image/png"));
        assert!(l.allows("application/pdf"));
        assert!(!l.allows("application/zip"));
        assert!(!l.allows("imagex/png"));
        let any = Limits {
            max_bytes: 1,
            content_types: vec![],
        };
        assert!(any.allows("text/html"));
    }

    #[test]
    fn a_content_type_is_a_plain_media_type() {
        assert!(check_content_type("image/png").is_ok());
        assert!(check_content_type("application/vnd.api+json").is_ok());
        for bad in ["", "image", "image/", "text/html; charset=x", "a/b\r\nX: y"] {
            assert!(check_content_type(bad).is_err(), "{bad:?}");
        }
    }
}
