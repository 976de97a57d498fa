//! The `blobs` table (the storage API's records; the bytes are in the store).

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Cached, DbError, DbPool};
use crate::model::blob::Blob;
use crate::model::{AppId, UserId};

const COLUMNS: &str = "id, application_id, user_id, uid, name, content_type, size, public, \
     completed_at, created_at, updated_at, upload_size";

fn from_row(r: &Row) -> Blob {
    Blob {
        id: r.get(0),
        app: AppId(r.get(1)),
        owner: UserId(r.get(2)),
        uid: r.get(3),
        name: r.get(4),
        content_type: r.get(5),
        size: r.get(6),
        public: r.get(7),
        completed_at: r.get(8),
        created_at: r.get(9),
        updated_at: r.get(10),
        upload_size: r.get(11),
    }
}

/// The fields of a new blob.
pub struct NewBlob<'a> {
    pub app: AppId,
    pub owner: UserId,
    pub uid: &'a str,
    pub name: &'a str,
    pub content_type: &'a str,
    pub public: bool,
    /// An XEP-0363 slot's size; `None` for a REST upload.
    pub upload_size: Option<i64>,
}

pub async fn insert(pool: &DbPool, b: &NewBlob<'_>, now: OffsetDateTime) -> Result<Blob, DbError> {
    let c = pool.get().await?;
    let row = c
        .q1(
            &format!(
                "INSERT INTO blobs (application_id, user_id, uid, name, content_type, public, upload_size, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7) RETURNING {COLUMNS}"
            ),
            &[&b.app.0, &b.owner.0, &b.uid, &b.name, &b.content_type, &b.public, &now, &b.upload_size],
        )
        .await?;
    Ok(from_row(&row))
}

pub async fn by_id(pool: &DbPool, app: AppId, id: i64) -> Result<Option<Blob>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            &format!("SELECT {COLUMNS} FROM blobs WHERE application_id = $1 AND id = $2"),
            &[&app.0, &id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// By uid in any application: the store's own byte paths (signed URLs) carry no application.
pub async fn by_uid(pool: &DbPool, uid: &str) -> Result<Option<Blob>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            &format!("SELECT {COLUMNS} FROM blobs WHERE uid = $1"),
            &[&uid],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// One page of a user's blobs, newest first, with their total.
pub async fn page(
    pool: &DbPool,
    app: AppId,
    owner: UserId,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Blob>, i64), DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            &format!(
                "SELECT {COLUMNS} FROM blobs WHERE application_id = $1 AND user_id = $2
                 ORDER BY id DESC LIMIT $3 OFFSET $4"
            ),
            &[&app.0, &owner.0, &limit, &offset],
        )
        .await?;
    let total: i64 = c
        .q1(
            "SELECT count(*) FROM blobs WHERE application_id = $1 AND user_id = $2",
            &[&app.0, &owner.0],
        )
        .await?
        .get(0);
    Ok((rows.iter().map(from_row).collect(), total))
}

/// Marks an unfinished blob completed with its size; `None` when it was not unfinished.
pub async fn complete(
    pool: &DbPool,
    id: i64,
    size: i64,
    now: OffsetDateTime,
) -> Result<Option<Blob>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            &format!(
                "UPDATE blobs SET size = $2, completed_at = $3, updated_at = $3
                 WHERE id = $1 AND completed_at IS NULL RETURNING {COLUMNS}"
            ),
            &[&id, &size, &now],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// A user's uploads in progress (`storage.max_unfinished_per_user`).
pub async fn count_unfinished(pool: &DbPool, app: AppId, owner: UserId) -> Result<i64, DbError> {
    let c = pool.get().await?;
    Ok(c.q1(
        "SELECT count(*) FROM blobs
         WHERE application_id = $1 AND user_id = $2 AND completed_at IS NULL",
        &[&app.0, &owner.0],
    )
    .await?
    .get(0))
}

/// `PUT /blobs/{id}`: a new name and/or content type; `restart` makes it an upload in progress
/// again (size and completion cleared, the same uid).
pub async fn update(
    pool: &DbPool,
    id: i64,
    name: Option<&str>,
    content_type: Option<&str>,
    restart: bool,
    now: OffsetDateTime,
) -> Result<Option<Blob>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            &format!(
                "UPDATE blobs SET name = COALESCE($2, name),
                     content_type = COALESCE($3, content_type),
                     size = CASE WHEN $4 THEN NULL ELSE size END,
                     upload_size = CASE WHEN $4 THEN NULL ELSE upload_size END,
                     completed_at = CASE WHEN $4 THEN NULL ELSE completed_at END,
                     updated_at = $5
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &name, &content_type, &restart, &now],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Deletes a blob's record and queues its stored object for removal, in one statement; the
/// uid when there was one.
pub async fn delete(
    pool: &DbPool,
    id: i64,
    now: OffsetDateTime,
) -> Result<Option<String>, DbError> {
    let c = pool.get().await?;
    let row = c
        .q01(
            "WITH gone AS (DELETE FROM blobs WHERE id = $1 RETURNING uid)
             INSERT INTO blob_deletions (uid, queued_at) SELECT uid, $2 FROM gone
             ON CONFLICT (uid) DO UPDATE SET queued_at = EXCLUDED.queued_at
             RETURNING uid",
            &[&id, &now],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Unfinished XEP-0363 slots last changed before `before` (the sweep asks the store about each
/// before the slot is given up).
pub async fn stale_slots(
    pool: &DbPool,
    before: OffsetDateTime,
    limit: i64,
) -> Result<Vec<Blob>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            &format!(
                "SELECT {COLUMNS} FROM blobs
                 WHERE completed_at IS NULL AND updated_at < $1 AND upload_size IS NOT NULL
                 ORDER BY updated_at LIMIT $2"
            ),
            &[&before, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// A user's unfinished XEP-0363 slots, oldest first (asked of the store before the user is
/// told they have too many uploads in progress).
pub async fn open_slots_of(
    pool: &DbPool,
    app: AppId,
    owner: UserId,
    limit: i64,
) -> Result<Vec<Blob>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            &format!(
                "SELECT {COLUMNS} FROM blobs
                 WHERE application_id = $1 AND user_id = $2 AND completed_at IS NULL
                   AND upload_size IS NOT NULL
                 ORDER BY id LIMIT $3"
            ),
            &[&app.0, &owner.0, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Deletes up to `limit` unfinished blobs last changed before `before` and queues their stored
/// objects (if any bytes arrived) for removal; how many there were.
pub async fn delete_unfinished(
    pool: &DbPool,
    before: OffsetDateTime,
    limit: i64,
    now: OffsetDateTime,
) -> Result<u64, DbError> {
    let c = pool.get().await?;
    Ok(c.x(
        "WITH gone AS (
             DELETE FROM blobs WHERE id IN (
                 SELECT id FROM blobs WHERE completed_at IS NULL AND updated_at < $1
                 ORDER BY updated_at LIMIT $2)
             RETURNING uid)
         INSERT INTO blob_deletions (uid, queued_at) SELECT uid, $3 FROM gone
         ON CONFLICT (uid) DO NOTHING",
        &[&before, &limit, &now],
    )
    .await?)
}

/// Up to `limit` stored objects waiting for removal, oldest first.
pub async fn queued_deletions(pool: &DbPool, limit: i64) -> Result<Vec<String>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            "SELECT uid FROM blob_deletions ORDER BY queued_at LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The object is gone from the store: forget it.
pub async fn dequeue_deletion(pool: &DbPool, uid: &str) -> Result<(), DbError> {
    let c = pool.get().await?;
    c.x("DELETE FROM blob_deletions WHERE uid = $1", &[&uid])
        .await?;
    Ok(())
}
