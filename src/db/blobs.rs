//! The `blobs` table (the storage API's records; the bytes are in the store).

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Cached, DbError, DbPool};
use crate::model::blob::Blob;
use crate::model::{AppId, UserId};

const COLUMNS: &str = "id, application_id, user_id, uid, name, content_type, size, public, \
     completed_at, created_at, updated_at";

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
}

pub async fn insert(pool: &DbPool, b: &NewBlob<'_>, now: OffsetDateTime) -> Result<Blob, DbError> {
    let c = pool.get().await?;
    let row = c
        .q1(
            &format!(
                "INSERT INTO blobs (application_id, user_id, uid, name, content_type, public, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
            ),
            &[&b.app.0, &b.owner.0, &b.uid, &b.name, &b.content_type, &b.public, &now],
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

/// Deletes a blob's record; true when there was one.
pub async fn delete(pool: &DbPool, id: i64) -> Result<bool, DbError> {
    let c = pool.get().await?;
    Ok(c.x("DELETE FROM blobs WHERE id = $1", &[&id]).await? > 0)
}

/// Deletes up to `limit` unfinished blobs created before `before`; returns their uids (whose
/// bytes, if any arrived, the caller removes from the store).
pub async fn delete_unfinished(
    pool: &DbPool,
    before: OffsetDateTime,
    limit: i64,
) -> Result<Vec<String>, DbError> {
    let c = pool.get().await?;
    let rows = c
        .q(
            "DELETE FROM blobs WHERE id IN (
                 SELECT id FROM blobs WHERE completed_at IS NULL AND created_at < $1
                 ORDER BY created_at LIMIT $2)
             RETURNING uid",
            &[&before, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
